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
    /// The same update bit for bit (re-signed under another hotkey).
    pub identical: bool,
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
    pub missing_streak: u32,
    pub negative_streak: u32,
    /// The last `missing_lookback_windows` windows, oldest first: `true` where it missed.
    pub missed: Vec<bool>,
    /// Excluded from weights and the gather set before this window.
    pub excluded_until: Option<u64>,
    /// It has uploaded something at least once: from then on, missing a window counts.
    #[serde(default)]
    pub started: bool,
}

/// A score change and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Penalty {
    /// Multiplier applied to the final score (0 zeroes it).
    pub multiplier: f64,
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
    /// Kept out of the gather set (excluded, or negative scores in a row).
    pub gather_excluded: bool,
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
fn penalize(r: &mut MinerRecord, penalties: &mut Vec<Penalty>, multiplier: f64, reason: String) {
    if r.final_score > 0.0 {
        r.final_score *= multiplier;
        r.binary_ema *= multiplier;
    }
    penalties.push(Penalty { multiplier, reason });
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
        missing_streak: 0,
        negative_streak: 0,
        missed: Vec::new(),
        excluded_until: None,
        started: false,
    }
}

impl Ledger {
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
        let excluded = |r: &MinerRecord| r.excluded_until.is_some_and(|until| w < until);

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
                        reason: "not mining yet: nothing uploaded so far".into(),
                    }],
                    final_score: r.final_score,
                    excluded_until: None,
                    gather_excluded: false,
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
                        let (s, b) = (l.gradient_score(), l.binary_indicator());
                        gradient_score = Some(s);
                        binary_indicator = Some(b);
                        r.evaluations += 1;
                        r.binary_ema = (1.0 - g.binary_ema_alpha) * r.binary_ema + g.binary_ema_alpha * b;
                        r.gradient_ema = (1.0 - g.binary_ema_alpha) * r.gradient_ema + g.binary_ema_alpha * s;
                        r.negative_streak = if s < 0.0 { r.negative_streak + 1 } else { 0 };
                        // The floor pays a helpful miner that ranks last in a small field; the
                        // gradient and own-data rules below still zero a harmful one.
                        r.final_score = r.rating.ordinal().max(g.rating_floor) * r.binary_ema.max(0.0) * r.sync;
                        // A rating only ranks miners against each other; an update that does not
                        // lower the loss on random data earns nothing however it ranks.
                        if r.gradient_ema <= 0.0 && r.final_score > 0.0 {
                            r.final_score = 0.0;
                            penalties.push(Penalty {
                                multiplier: 0.0,
                                reason: format!(
                                    "its updates do not lower the loss (gradient score EMA {:.2e})",
                                    r.gradient_ema
                                ),
                            });
                        }
                    }
                    if r.sync < 1.0 {
                        let lag_text =
                            lag.map_or("an unknown base model".to_string(), |l| format!("{l} window(s) behind"));
                        if lag.is_none_or(|l| l as f64 >= g.sync.slash_steps_behind) {
                            penalize(r, &mut penalties, p.poor_sync, format!("out of sync: {lag_text}"));
                        } else {
                            penalties.push(Penalty {
                                multiplier: r.sync,
                                reason: format!("sync {:.3}: {lag_text}", r.sync),
                            });
                        }
                    }
                    if let Some(c) = copy_of {
                        let why = if c.identical {
                            format!("the same update as uid {}, uploaded earlier", c.uid)
                        } else {
                            format!("copies uid {} (index overlap {:.2})", c.uid, c.overlap)
                        };
                        match rules::copy_verdict(c, input.global_step, &g.copy) {
                            CopyVerdict::Original => {}
                            CopyVerdict::Reduced(m) => penalize(r, &mut penalties, m, why),
                            CopyVerdict::Reset => {
                                *r = MinerRecord { missed: r.missed.clone(), started: true, ..fresh(hotkey, &model) };
                                penalties.push(Penalty { multiplier: 0.0, reason: format!("{why}: scores reset") });
                            }
                            CopyVerdict::Excluded { windows } => {
                                *r = MinerRecord { missed: r.missed.clone(), started: true, ..fresh(hotkey, &model) };
                                r.excluded_until = Some(w + u64::from(windows));
                                penalties.push(Penalty {
                                    multiplier: 0.0,
                                    reason: format!("{why}: excluded {windows} windows"),
                                });
                            }
                        }
                    }
                    if r.evaluations > g.binary_warmup_windows
                        && r.binary_ema < g.binary_zero_threshold
                        && r.final_score > 0.0
                    {
                        r.final_score = 0.0;
                        penalties.push(Penalty {
                            multiplier: 0.0,
                            reason: format!("binary EMA {:.3} below {}", r.binary_ema, g.binary_zero_threshold),
                        });
                    }
                }
                Outcome::Missing { reason, .. } => {
                    r.missing_streak += 1;
                    let m = match r.missing_streak {
                        1 => p.missing_upload,
                        2 => p.missing_upload_repeat,
                        _ => 0.0,
                    };
                    penalize(r, &mut penalties, m, format!("{reason} ({} in a row)", r.missing_streak));
                    if r.missing_streak >= p.inactivity_reset_windows {
                        *r = MinerRecord {
                            missed: r.missed.clone(),
                            missing_streak: r.missing_streak,
                            started: true,
                            ..fresh(hotkey, &model)
                        };
                        penalties.push(Penalty { multiplier: 0.0, reason: "inactive: scores reset".into() });
                    }
                }
                Outcome::Invalid { reason } => {
                    r.missing_streak += 1;
                    penalize(r, &mut penalties, 0.0, format!("invalid upload: {reason}"));
                }
            }
            let misses = r.missed.iter().filter(|m| **m).count();
            if misses * 2 > lookback && !excluded(r) {
                r.excluded_until = Some(w + u64::from(p.missing_exclusion_windows));
                penalties.push(Penalty {
                    multiplier: 0.0,
                    reason: format!(
                        "missed {misses} of the last {lookback} windows: excluded {} windows",
                        p.missing_exclusion_windows
                    ),
                });
            }
            if excluded(r) {
                r.final_score = 0.0;
            }
            if r.final_score > 0.0 && r.final_score < p.score_zero_threshold {
                r.final_score = 0.0;
            }
            if r.final_score <= 0.0 && penalties.is_empty() {
                // No rule fired, yet it earns nothing: say what its standing is.
                penalties.push(Penalty {
                    multiplier: 1.0,
                    reason: format!(
                        "no positive score: rating ordinal {:.2}, binary EMA {:.3}, sync {:.2}",
                        r.rating.ordinal(),
                        r.binary_ema,
                        r.sync
                    ),
                });
            }
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
                gather_excluded: excluded(r) || r.negative_streak >= p.negative_streak_exclusion,
            });
        }
        let scores: BTreeMap<u16, f64> = self.records.iter().map(|(u, r)| (*u, r.final_score)).collect();
        WindowReport { window: w, uids, weights: crate::weights::weights(&scores, &config.weights) }
    }
}

#[cfg(test)]
mod tests;
