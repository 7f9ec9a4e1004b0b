//! The validator's memory of every miner (ratings, moving averages, streaks, exclusions) and
//! the per-window update that turns one window's facts into scores, penalties and weights, each
//! with its reason (docs/protocol.md §14).

use std::collections::BTreeMap;

use ferrum_common::SubnetConfig;
use serde::{Deserialize, Serialize};

use crate::openskill::{PlackettLuce, Rating};
use crate::rules::{self, CopyVerdict, Losses};

/// What the validator found for one miner in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing usable arrived in time: no object, or one uploaded early or late
    /// (`uploaded`: an object existed, so the uid is mining).
    Missing {
        reason: String,
        #[serde(default)]
        uploaded: bool,
    },
    /// An object arrived and was refused: malformed, oversized, forged, replayed, non-finite.
    Invalid { reason: String },
    /// A verified payload, with what the validator measured on it.
    Received {
        /// Loss measurements, when the miner was evaluated this window.
        losses: Option<Losses>,
        /// Windows its base model is behind (`None`: not a recent model at all).
        lag: Option<u64>,
        /// An earlier upload this one copies, if any.
        copy_of: Option<CopyOf>,
    },
}

/// The earlier upload a payload copies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CopyOf {
    pub uid: u16,
    /// Top-k index overlap with it.
    pub overlap: f64,
    /// The overlap beyond the window's median pair (`rules::excess_overlap`), which the
    /// thresholds judge.
    #[serde(default)]
    pub excess: f64,
    /// The same update: bit for bit, or within `gauntlet.copy.duplicate_distance` (re-signed
    /// under another hotkey, perhaps perturbed).
    pub identical: bool,
    /// Windows of measured evidence behind the attribution (`rules::PairEvidence`).
    #[serde(default)]
    pub evidence_windows: u32,
}

/// One window's facts for every miner the validator considered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowInput {
    pub window: u64,
    /// Outer steps applied so far (copy checks wait out the grace steps).
    pub global_step: u64,
    /// uid → (hotkey, outcome).
    pub miners: BTreeMap<u16, (String, Outcome)>,
}

/// A miner's standing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerRecord {
    pub hotkey: String,
    pub rating: Rating,
    pub binary_ema: f64,
    /// EMA of the gradient score, at the binary EMA's rate.
    #[serde(default)]
    pub gradient_ema: f64,
    pub final_score: f64,
    pub sync: f64,
    /// Loss evaluations so far.
    pub evaluations: u32,
    /// The window of the last one.
    #[serde(default)]
    pub last_evaluated: Option<u64>,
    pub missing_streak: u32,
    pub negative_streak: u32,
    /// The last `missing_lookback_windows` windows, oldest first: `true` where it missed.
    pub missed: Vec<bool>,
    /// Excluded from weights and the gather set before this window.
    pub excluded_until: Option<u64>,
    /// It has uploaded something at least once: from then on, missing a window counts.
    #[serde(default)]
    pub started: bool,
    /// The rule behind `excluded_until`.
    #[serde(default)]
    pub excluded_by: Option<Rule>,
}

/// The Gauntlet rule behind a penalty or a verdict (docs/protocol.md §14), so a report says
/// which test caught a miner, not only in prose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Nothing uploaded so far: not mining yet (informational).
    NotStarted,
    /// Nothing usable in time: no bucket or object, early, late, unreachable, not agreed.
    Missing,
    /// An object refused by the payload checks (§8): malformed, oversized, forged, replayed, NaN.
    Invalid,
    /// Missed more than half of the lookback windows.
    MissedWindows,
    /// Missed too many windows in a row: scores reset.
    Inactive,
    /// Its updates do not lower the loss on random data (gradient-score EMA at or below 0).
    NoGain,
    /// Negative gradient scores in a row, or no gain after enough evaluations: its updates are
    /// kept out of the gather set.
    Harmful,
    /// Its base model is behind the network's, or unknown.
    Sync,
    /// It copies another miner's update.
    Copy,
    /// The own-data test: its updates do not help its assigned data more than others' do
    /// (binary EMA below the threshold after the warm-up).
    OwnData,
    /// No rule fired, but its standing earns nothing (rating, binary EMA, sync).
    Standing,
    /// A record written before rules were named.
    #[default]
    Unnamed,
}

impl Rule {
    /// The name reports and logs use.
    pub fn name(self) -> &'static str {
        match self {
            Rule::NotStarted => "not_started",
            Rule::Missing => "missing",
            Rule::Invalid => "invalid",
            Rule::MissedWindows => "missed_windows",
            Rule::Inactive => "inactive",
            Rule::NoGain => "no_gain",
            Rule::Harmful => "harmful",
            Rule::Sync => "sync",
            Rule::Copy => "copy",
            Rule::OwnData => "own_data",
            Rule::Standing => "standing",
            Rule::Unnamed => "unnamed",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A score change and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Penalty {
    /// Multiplier applied to the final score (0 zeroes it).
    pub multiplier: f64,
    /// The rule that applied it.
    #[serde(default)]
    pub rule: Rule,
    pub reason: String,
}

/// Everything the Gauntlet decided about one uid in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UidReport {
    pub uid: u16,
    pub hotkey: String,
    pub outcome: Outcome,
    pub gradient_score: Option<f64>,
    pub binary_indicator: Option<f64>,
    pub binary_ema: f64,
    pub ordinal: f64,
    pub sync: f64,
    pub penalties: Vec<Penalty>,
    pub final_score: f64,
    pub excluded_until: Option<u64>,
    /// Kept out of the gather set (excluded, or judged harmful: see [`Rule::Harmful`]).
    pub gather_excluded: bool,
    /// The rule that leaves it unpaid this window (`None`: it earns a positive score).
    #[serde(default)]
    pub verdict: Option<Rule>,
}

impl UidReport {
    /// Every penalty as `[rule] reason`, joined by `; ` (empty without penalties).
    pub fn reasons(&self) -> String {
        self.penalties.iter().map(|p| format!("[{}] {}", p.rule, p.reason)).collect::<Vec<_>>().join("; ")
    }

    /// One line: the verdict's rule and every reason, for logs and summaries.
    pub fn explain(&self) -> String {
        match (self.verdict, self.reasons()) {
            (Some(rule), reasons) => format!("unpaid by rule {rule}: {reasons}"),
            (None, reasons) if reasons.is_empty() => "paid".into(),
            (None, reasons) => format!("paid: {reasons}"),
        }
    }
}

/// One window's Gauntlet record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    pub window: u64,
    pub uids: Vec<UidReport>,
    /// uid → weight (sums to 1), from every known miner's final score.
    pub weights: BTreeMap<u16, f64>,
}

/// The validator's records of all miners.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub records: BTreeMap<u16, MinerRecord>,
}

/// Multiplies a positive score and binary EMA by `multiplier` (negative scores are left: they
/// earn nothing already), recording why.
fn penalize(r: &mut MinerRecord, penalties: &mut Vec<Penalty>, multiplier: f64, rule: Rule, reason: String) {
    if r.final_score > 0.0 {
        r.final_score *= multiplier;
        r.binary_ema *= multiplier;
    }
    penalties.push(Penalty { multiplier, rule, reason });
}

/// Sets the score to 0 for this window, recording why (the moving averages stay: a miner that
/// recovers keeps its record).
fn zero(r: &mut MinerRecord, penalties: &mut Vec<Penalty>, rule: Rule, reason: String) {
    r.final_score = 0.0;
    penalties.push(Penalty { multiplier: 0.0, rule, reason });
}

/// The rule that leaves a score of 0: the most specific penalty that zeroed it, else the last
/// one recorded (an earlier window's zero carried on), else the miner's standing.
fn verdict(final_score: f64, penalties: &[Penalty]) -> Option<Rule> {
    if final_score > 0.0 {
        return None;
    }
    // Where several rules zeroed it, the most specific names it: a forged or copied upload
    // also fails the loss tests, but that is not why it is unpaid.
    const PRECEDENCE: [Rule; 12] = [
        Rule::Invalid,
        Rule::Copy,
        Rule::Sync,
        Rule::Harmful,
        Rule::NoGain,
        Rule::OwnData,
        Rule::MissedWindows,
        Rule::Inactive,
        Rule::Missing,
        Rule::NotStarted,
        Rule::Standing,
        Rule::Unnamed,
    ];
    let rank = |r: Rule| PRECEDENCE.iter().position(|x| *x == r).unwrap_or(PRECEDENCE.len());
    let zeroing = penalties.iter().filter(|p| p.multiplier == 0.0).min_by_key(|p| rank(p.rule));
    Some(zeroing.or(penalties.last()).map_or(Rule::Standing, |p| p.rule))
}

fn fresh(hotkey: &str, model: &PlackettLuce) -> MinerRecord {
    MinerRecord {
        hotkey: hotkey.to_string(),
        rating: model.rating(),
        binary_ema: 0.0,
        gradient_ema: 0.0,
        final_score: 0.0,
        sync: 0.0,
        evaluations: 0,
        last_evaluated: None,
        missing_streak: 0,
        negative_streak: 0,
        missed: Vec::new(),
        excluded_until: None,
        started: false,
        excluded_by: None,
    }
}

impl MinerRecord {
    /// Excluded from weights and the gather set in `window`.
    pub fn excluded_in(&self, window: u64) -> bool {
        self.excluded_until.is_some_and(|until| window < until)
    }

    /// Judged harmful ([`Rule::Harmful`]): negative gradient scores `streak` windows in a row,
    /// or a gradient-score EMA at or below 0 after `streak` evaluations.
    pub fn harmful(&self, streak: u32) -> bool {
        self.negative_streak >= streak || (self.evaluations >= streak && self.gradient_ema <= 0.0)
    }
}

impl Ledger {
    /// The uids this validator keeps out of its gather set in `window` (excluded or judged
    /// harmful): what a restarted validator's first gather leaves out, as its last report did.
    pub fn gather_excluded(&self, window: u64, config: &SubnetConfig) -> Vec<u16> {
        let streak = config.gauntlet.penalties.negative_streak_exclusion;
        self.records.iter().filter(|(_, r)| r.excluded_in(window) || r.harmful(streak)).map(|(u, _)| *u).collect()
    }

    /// When each of these miners (uid, SS58 hotkey) was last evaluated, for
    /// [`selection::for_evaluation`](crate::selection::for_evaluation); a uid now held by
    /// another hotkey never was.
    pub fn last_evaluated<'a>(&self, miners: impl IntoIterator<Item = (u16, &'a str)>) -> BTreeMap<u16, u64> {
        miners
            .into_iter()
            .filter_map(|(uid, hotkey)| {
                let r = self.records.get(&uid).filter(|r| r.hotkey == hotkey)?;
                Some((uid, r.last_evaluated?))
            })
            .collect()
    }

    /// Applies one window's facts: ratings, moving averages, penalties, exclusions, weights.
    pub fn update(&mut self, input: &WindowInput, config: &SubnetConfig) -> WindowReport {
        let g = &config.gauntlet;
        let p = &g.penalties;
        let model =
            PlackettLuce { beta: g.openskill.beta, tau: g.openskill.tau, mu: g.openskill.mu, sigma: g.openskill.sigma };
        let w = input.window;

        // A uid taken over by another hotkey starts over.
        for (uid, (hotkey, _)) in &input.miners {
            let r = self.records.entry(*uid).or_insert_with(|| fresh(hotkey, &model));
            if &r.hotkey != hotkey {
                *r = fresh(hotkey, &model);
            }
        }
        let excluded = |r: &MinerRecord| r.excluded_in(w);

        // One rating game over the evaluated and the missing (−99), excluded uids aside.
        let players: Vec<(u16, f64)> = input
            .miners
            .iter()
            .filter(|(uid, _)| !excluded(&self.records[uid]))
            .filter_map(|(uid, (_, o))| match o {
                Outcome::Received { losses: Some(l), .. } => Some((*uid, l.gradient_score())),
                Outcome::Received { losses: None, .. } => None,
                Outcome::Missing { uploaded: false, .. } if !self.records[uid].started => None,
                Outcome::Missing { .. } | Outcome::Invalid { .. } => Some((*uid, p.missing_rating_score)),
            })
            .collect();
        let games: Vec<(Rating, f64)> = players.iter().map(|(u, s)| (self.records[u].rating, *s)).collect();
        for ((uid, _), rating) in players.iter().zip(model.rate(&games)) {
            if let Some(r) = self.records.get_mut(uid) {
                r.rating = rating;
            }
        }

        let mut uids = Vec::with_capacity(input.miners.len());
        for (uid, (hotkey, outcome)) in &input.miners {
            let Some(r) = self.records.get_mut(uid) else { continue };
            let mut penalties = Vec::new();
            let (mut gradient_score, mut binary_indicator) = (None, None);
            // A uid that never uploaded anything has not started mining: nothing to miss yet.
            if matches!(outcome, Outcome::Missing { uploaded: false, .. }) && !r.started {
                uids.push(UidReport {
                    uid: *uid,
                    hotkey: hotkey.clone(),
                    outcome: outcome.clone(),
                    gradient_score: None,
                    binary_indicator: None,
                    binary_ema: r.binary_ema,
                    ordinal: r.rating.ordinal(),
                    sync: r.sync,
                    penalties: vec![Penalty {
                        multiplier: 1.0,
                        rule: Rule::NotStarted,
                        reason: "not mining yet: nothing uploaded so far".into(),
                    }],
                    final_score: r.final_score,
                    excluded_until: None,
                    gather_excluded: false,
                    verdict: Some(Rule::NotStarted),
                });
                continue;
            }
            r.started = true;
            let missed = !matches!(outcome, Outcome::Received { .. });
            r.missed.push(missed);
            let lookback = p.missing_lookback_windows as usize;
            if r.missed.len() > lookback {
                r.missed.drain(..r.missed.len() - lookback);
            }
            match outcome {
                Outcome::Received { losses, lag, copy_of } => {
                    r.missing_streak = 0;
                    r.sync = rules::sync_score(*lag, &g.sync);
                    if let Some(l) = losses {
                        let (s, b) = (l.gradient_score(), l.binary_indicator(g.order_gap));
                        gradient_score = Some(s);
                        binary_indicator = Some(b);
                        r.evaluations += 1;
                        r.last_evaluated = Some(w);
                        r.binary_ema = (1.0 - g.binary_ema_alpha) * r.binary_ema + g.binary_ema_alpha * b;
                        r.gradient_ema = (1.0 - g.binary_ema_alpha) * r.gradient_ema + g.binary_ema_alpha * s;
                        r.negative_streak = if s < 0.0 { r.negative_streak + 1 } else { 0 };
                        // The floor pays a helpful miner that ranks last in a small field; the
                        // gradient and own-data rules below still zero a harmful one.
                        r.final_score = r.rating.ordinal().max(g.rating_floor) * r.binary_ema.max(0.0) * r.sync;
                        // A rating only ranks miners against each other; an update that does not
                        // lower the loss on random data earns nothing however it ranks. Named
                        // even when the formula already gave 0, so the report says why.
                        if r.gradient_ema <= 0.0 {
                            let why = format!(
                                "its updates do not lower the loss (gradient score EMA {:.2e})",
                                r.gradient_ema
                            );
                            zero(r, &mut penalties, Rule::NoGain, why);
                        }
                    }
                    if r.sync < 1.0 {
                        let lag_text =
                            lag.map_or("an unknown base model".to_string(), |l| format!("{l} window(s) behind"));
                        if r.sync == 0.0 {
                            // The score's sync factor is 0: nothing left to multiply.
                            zero(r, &mut penalties, Rule::Sync, format!("out of sync: {lag_text}"));
                        } else if lag.is_none_or(|l| l as f64 >= g.sync.slash_steps_behind) {
                            penalize(r, &mut penalties, p.poor_sync, Rule::Sync, format!("out of sync: {lag_text}"));
                        } else {
                            penalties.push(Penalty {
                                multiplier: r.sync,
                                rule: Rule::Sync,
                                reason: format!("sync {:.3}: {lag_text}", r.sync),
                            });
                        }
                    }
                    if let Some(c) = copy_of {
                        let why = if c.identical {
                            format!("the same update as uid {} (within the duplicate distance)", c.uid)
                        } else {
                            format!(
                                "copies uid {} (index overlap {:.2}, {:.2} beyond the window's typical pair)",
                                c.uid, c.overlap, c.excess
                            )
                        };
                        match rules::copy_verdict(c, input.global_step, &g.copy) {
                            CopyVerdict::Original => {}
                            CopyVerdict::Reduced(m) => penalize(r, &mut penalties, m, Rule::Copy, why),
                            // This window only: the attribution may still turn.
                            CopyVerdict::Withheld => {
                                let n = c.evidence_windows;
                                let why = format!("{why}: score withheld (attributed on {n} window(s) of evidence)");
                                zero(r, &mut penalties, Rule::Copy, why);
                            }
                            CopyVerdict::Reset => {
                                *r = MinerRecord { missed: r.missed.clone(), started: true, ..fresh(hotkey, &model) };
                                penalties.push(Penalty {
                                    multiplier: 0.0,
                                    rule: Rule::Copy,
                                    reason: format!("{why}: scores reset"),
                                });
                            }
                            CopyVerdict::Excluded { windows } => {
                                *r = MinerRecord { missed: r.missed.clone(), started: true, ..fresh(hotkey, &model) };
                                r.excluded_until = Some(w + u64::from(windows));
                                r.excluded_by = Some(Rule::Copy);
                                penalties.push(Penalty {
                                    multiplier: 0.0,
                                    rule: Rule::Copy,
                                    reason: format!("{why}: excluded {windows} windows"),
                                });
                            }
                        }
                    }
                    // The own-data test zeroes a score through its factor (an EMA at or below 0)
                    // or, after the warm-up, below the threshold.
                    let own_data_fails = r.binary_ema <= 0.0
                        || (r.evaluations > g.binary_warmup_windows && r.binary_ema < g.binary_zero_threshold);
                    if losses.is_some() && own_data_fails {
                        let mut why = format!(
                            "own-data test: binary EMA {:.3} (paid from above 0, and from {} after {} evaluations)",
                            r.binary_ema, g.binary_zero_threshold, g.binary_warmup_windows
                        );
                        let order = losses.as_ref().and_then(|l| l.order_verdict(g.order_gap));
                        if let Some(gain) = order.filter(|g| *g <= 0.0) {
                            why.push_str(&format!(
                                "; its update helps its samples' tokens shuffled as much as in order (order gain {gain:.4})"
                            ));
                        }
                        zero(r, &mut penalties, Rule::OwnData, why);
                    }
                }
                Outcome::Missing { reason, .. } => {
                    r.missing_streak += 1;
                    let m = match r.missing_streak {
                        1 => p.missing_upload,
                        2 => p.missing_upload_repeat,
                        _ => 0.0,
                    };
                    penalize(r, &mut penalties, m, Rule::Missing, format!("{reason} ({} in a row)", r.missing_streak));
                    if r.missing_streak >= p.inactivity_reset_windows {
                        *r = MinerRecord {
                            missed: r.missed.clone(),
                            missing_streak: r.missing_streak,
                            started: true,
                            ..fresh(hotkey, &model)
                        };
                        penalties.push(Penalty {
                            multiplier: 0.0,
                            rule: Rule::Inactive,
                            reason: "inactive: scores reset".into(),
                        });
                    }
                }
                Outcome::Invalid { reason } => {
                    r.missing_streak += 1;
                    penalize(r, &mut penalties, 0.0, Rule::Invalid, format!("invalid upload: {reason}"));
                }
            }
            let misses = r.missed.iter().filter(|m| **m).count();
            if misses * 2 > lookback && !excluded(r) {
                r.excluded_until = Some(w + u64::from(p.missing_exclusion_windows));
                r.excluded_by = Some(Rule::MissedWindows);
                penalties.push(Penalty {
                    multiplier: 0.0,
                    rule: Rule::MissedWindows,
                    reason: format!(
                        "missed {misses} of the last {lookback} windows: excluded {} windows",
                        p.missing_exclusion_windows
                    ),
                });
            }
            // Judged harmful: its updates hurt the loss on random data several windows in a
            // row, or, after as many evaluations, have not lowered it on balance (a free rider's
            // zeros, a sign flip). The validator's record then leaves it out, so once a stake
            // majority judges the same, the agreed set (§16) no longer aggregates it.
            let streak = p.negative_streak_exclusion;
            let harmful = r.harmful(streak);
            if harmful && !excluded(r) && matches!(outcome, Outcome::Received { .. }) {
                let why = if r.negative_streak >= streak {
                    format!("{} negative gradient scores in a row", r.negative_streak)
                } else {
                    format!("gradient score EMA {:.2e} after {} evaluations", r.gradient_ema, r.evaluations)
                };
                zero(r, &mut penalties, Rule::Harmful, format!("harmful: {why}: out of the gather set"));
            }
            if excluded(r) {
                r.final_score = 0.0;
                let rule = r.excluded_by.unwrap_or_default();
                if !penalties.iter().any(|x| x.multiplier == 0.0 && x.rule == rule) {
                    let until = r.excluded_until.unwrap_or(w);
                    zero(r, &mut penalties, rule, format!("excluded until window {until} (rule {rule})"));
                }
            }
            if r.final_score > 0.0 && r.final_score < p.score_zero_threshold {
                r.final_score = 0.0;
            }
            if r.final_score <= 0.0 && penalties.is_empty() {
                // No rule fired, yet it earns nothing: say what its standing is.
                penalties.push(Penalty {
                    multiplier: 1.0,
                    rule: Rule::Standing,
                    reason: format!(
                        "no positive score: rating ordinal {:.2}, binary EMA {:.3}, sync {:.2}",
                        r.rating.ordinal(),
                        r.binary_ema,
                        r.sync
                    ),
                });
            }
            let verdict = verdict(r.final_score, &penalties);
            uids.push(UidReport {
                uid: *uid,
                hotkey: hotkey.clone(),
                outcome: outcome.clone(),
                gradient_score,
                binary_indicator,
                binary_ema: r.binary_ema,
                ordinal: r.rating.ordinal(),
                sync: r.sync,
                penalties,
                final_score: r.final_score,
                excluded_until: r.excluded_until.filter(|until| w < *until),
                gather_excluded: excluded(r) || harmful,
                verdict,
            });
        }
        let scores: BTreeMap<u16, f64> = self.records.iter().map(|(u, r)| (*u, r.final_score)).collect();
        WindowReport { window: w, uids, weights: crate::weights::weights(&scores, &config.weights) }
    }
}

#[cfg(test)]
mod tests;
