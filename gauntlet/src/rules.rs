//! The Gauntlet's formulas, each a plain function (docs/protocol.md §14).

use ferrum_common::codec::EncodedTensor;
use ferrum_common::config::{CopyConfig, SyncConfig};

use std::collections::BTreeMap;

use crate::ledger::CopyOf;

/// Mean losses measured by the validator for one miner in one window: on a sample of the
/// miner's own assigned data and on the window's random data, before and after applying
/// `eval_lr_factor ×` the miner's decoded update to the validator's model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Losses {
    pub own_before: f64,
    pub own_after: f64,
    pub random_before: f64,
    pub random_after: f64,
    /// The same own data under other miners' updates: the control the binary indicator compares
    /// against (empty when the window had no reference peers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Reference>,
    /// The order test's losses (`None`: not measured, as with `order_eval_samples` 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderLosses>,
}

/// The first `gauntlet.order_eval_samples` of a miner's own samples, in their order and with
/// their tokens shuffled ([`crate::order::shuffled`]), before and after its update.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OrderLosses {
    pub ordered_before: f64,
    pub ordered_after: f64,
    pub shuffled_before: f64,
    pub shuffled_after: f64,
}

impl OrderLosses {
    /// How much more the update helps the samples in their order than the same tokens
    /// shuffled (relative improvements); an update learned from text scores above 0.
    pub fn gain(&self) -> f64 {
        relative(self.ordered_before, self.ordered_after) - relative(self.shuffled_before, self.shuffled_after)
    }

    /// How much worse the base model does on the shuffled samples than on them in order,
    /// relative: what it has learned from order so far.
    pub fn base_gap(&self) -> f64 {
        if self.ordered_before > 0.0 && self.ordered_before.is_finite() && self.shuffled_before.is_finite() {
            (self.shuffled_before - self.ordered_before) / self.ordered_before
        } else {
            0.0
        }
    }
}

/// Another miner's update measured on this miner's own data.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reference {
    /// Whose update.
    pub uid: u16,
    /// Loss on this miner's own data after that update.
    pub own_after: f64,
    /// Loss on the window's random data after that update.
    pub random_after: f64,
}

fn relative(before: f64, after: f64) -> f64 {
    if before > 0.0 && before.is_finite() && after.is_finite() { (before - after) / before } else { 0.0 }
}

impl Losses {
    /// Losses on own and random data alone: no references, no order test.
    pub fn new(own_before: f64, own_after: f64, random_before: f64, random_after: f64) -> Losses {
        Losses { own_before, own_after, random_before, random_after, references: Vec::new(), order: None }
    }

    /// Relative improvement on the random data: the gradient score (can be negative).
    pub fn gradient_score(&self) -> f64 {
        relative(self.random_before, self.random_after)
    }

    /// How much more the update helps the miner's own data than random data.
    pub fn own_advantage(&self) -> f64 {
        relative(self.own_before, self.own_after) - relative(self.random_before, self.random_after)
    }

    /// The largest own advantage another miner's update has on this miner's own data; `None`
    /// without references.
    pub fn reference_advantage(&self) -> Option<f64> {
        self.reference_advantages().max_by(f64::total_cmp)
    }

    /// Each reference update's own advantage on this miner's own data.
    fn reference_advantages(&self) -> impl Iterator<Item = f64> + '_ {
        self.references
            .iter()
            .map(|r| relative(self.own_before, r.own_after) - relative(self.random_before, r.random_after))
    }

    /// The own advantage beyond what other updates achieve on the same own data: the mean
    /// reference advantage subtracted; `None` without references. Some sample sets improve
    /// more than others under any update; this margin measures what is left, the part owed to
    /// training on them.
    pub fn own_margin(&self) -> Option<f64> {
        let n = self.references.len();
        (n > 0).then(|| self.own_advantage() - self.reference_advantages().sum::<f64>() / n as f64)
    }

    /// +1 when the update lowers the loss on the miner's own data and helps that data more than
    /// every reference update does (it trained on what it was assigned), else −1. Without
    /// references the control is random data alone.
    ///
    /// The comparison is paired: the same own samples under different updates. Some samples are
    /// simply easier than the random ones, for every update alike; comparing against random data
    /// alone lets that difference, not the miner's training, decide the sign. Beating every
    /// reference, not their median, is the margin: an update trained elsewhere beats each one
    /// by chance about half the time, so all of them only rarely.
    ///
    /// The order test, where measured and once the base model does at least `order_gap`
    /// worse on the shuffled samples than in order ([`OrderLosses::base_gap`]): the update must
    /// also help the own samples in their order more than their tokens shuffled
    /// ([`OrderLosses::gain`] above 0). Training on the right tokens without their language
    /// helps its own data's token counts, and beats the references on those alone; that is
    /// real help while the model knows little more than token counts, so the test waits until
    /// the model has learned from order (before, honest gains scatter around 0:
    /// docs/performance.md).
    pub fn binary_indicator(&self, order_gap: f64) -> f64 {
        let own = relative(self.own_before, self.own_after);
        let control = self.reference_advantage().unwrap_or(0.0);
        let in_order = self.order_verdict(order_gap).is_none_or(|g| g > 0.0);
        if own > 0.0 && self.own_advantage() > control && in_order { 1.0 } else { -1.0 }
    }

    /// The order test's gain ([`OrderLosses::gain`]) where measured and the base model's gap
    /// is at least `order_gap`; `None` where the test does not apply.
    pub fn order_verdict(&self, order_gap: f64) -> Option<f64> {
        self.order.as_ref().filter(|o| o.base_gap() >= order_gap).map(OrderLosses::gain)
    }
}

/// The reference peers of each evaluated miner: the next `count` eligible miners after it in
/// evaluation order (cyclic), itself aside. `order` is the evaluation order; `eligible` the
/// miners whose updates make a fair control (the validator takes in-sync updates that are not
/// identical copies and lower the loss on random data: a zero or noise update would hand a
/// wrong-data miner an easy control to beat).
pub fn references(order: &[u16], eligible: &std::collections::BTreeSet<u16>, count: usize) -> Vec<(u16, Vec<u16>)> {
    order
        .iter()
        .enumerate()
        .map(|(i, &uid)| {
            let refs = (1..order.len())
                .map(|d| order[(i + d) % order.len()])
                .filter(|other| eligible.contains(other))
                .take(count)
                .collect();
            (uid, refs)
        })
        .collect()
}

/// Windows a payload's base model is behind the validator's: the position of its base
/// fingerprint among the validator's recent bases (`recent[0]` is this window's base, then the
/// one before, ...). `None` when it is none of them (forked, or further behind).
pub fn lag(base: &[u8; 32], recent: &[[u8; 32]]) -> Option<u64> {
    recent.iter().position(|f| f == base).map(|p| p as u64)
}

/// `(1 − min(lag, max)/max)^exponent`; an unknown base scores 0.
pub fn sync_score(lag: Option<u64>, cfg: &SyncConfig) -> f64 {
    match lag {
        None => 0.0,
        Some(l) => {
            let x = (l as f64).min(cfg.max_steps_behind) / cfg.max_steps_behind;
            (1.0 - x).max(0.0).powf(cfg.exponent)
        }
    }
}

/// Top-k index overlap of two payloads: per tensor, the share of `a`'s kept indices that `b`
/// keeps in the same block, weighted by the tensor's kept count.
pub fn overlap(a: &[EncodedTensor], b: &[EncodedTensor], k_per_block: &[usize]) -> f64 {
    let (mut shared, mut total) = (0usize, 0usize);
    for ((ta, tb), &k) in a.iter().zip(b).zip(k_per_block) {
        if k == 0 || ta.indices.len() != tb.indices.len() {
            continue;
        }
        for (ba, bb) in ta.indices.chunks_exact(k).zip(tb.indices.chunks_exact(k)) {
            // Both are strictly increasing within a block (the parser checks it).
            let (mut i, mut j) = (0, 0);
            while i < ba.len() && j < bb.len() {
                match ba[i].cmp(&bb[j]) {
                    std::cmp::Ordering::Equal => {
                        shared += 1;
                        i += 1;
                        j += 1;
                    }
                    std::cmp::Ordering::Less => i += 1,
                    std::cmp::Ordering::Greater => j += 1,
                }
            }
        }
        total += ta.indices.len();
    }
    if total == 0 { 0.0 } else { shared as f64 / total as f64 }
}

/// How far a pair's index overlap stands above the window's typical pair: `(o − m) / (1 − m)`,
/// at least 0, with `m` the median overlap over every pair of the window's received payloads
/// (0 when `m` is 1). Honest updates share many top-k indices (the DCT's low frequencies, the
/// common tokens' rows): in a `test`-preset devnet every honest pair overlapped 0.40-0.60 in
/// every one of 30 windows, so a fixed threshold of 0.4 judged each honest miner a copier once
/// the grace steps ended. A copy keeps its original's indices and stands out from that
/// background whatever it is.
pub fn excess_overlap(overlap: f64, median: f64) -> f64 {
    if median >= 1.0 || !overlap.is_finite() || !median.is_finite() {
        0.0
    } else {
        ((overlap - median) / (1.0 - median)).max(0.0)
    }
}

/// Two uploads of a window that are the same update or overlap heavily.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alike {
    /// Uid and `LastModified` (ms, as the uploader's own server reports it) of each.
    pub a: (u16, u64),
    pub b: (u16, u64),
    pub overlap: f64,
    /// [`excess_overlap`] of `overlap` over the window's median pair.
    pub excess: f64,
    /// The same update: bit for bit, or within `gauntlet.copy.duplicate_distance`.
    pub identical: bool,
}

/// What a validator has measured about one identical pair over the windows it was: the sum
/// of `value(a) − value(b)` (own margins, else own advantages; positive: the update helps `a`'s
/// data more, so `b` is the copy) and the windows that added to it. Keyed by `(a, b)`, `a < b`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PairEvidence {
    pub sum: f64,
    pub windows: u32,
}

/// Identical updates are excluded only once their pair's evidence spans this many windows;
/// before that the copy's score is withheld for the window and nothing is reset, so one noisy
/// window cannot exclude the miner that was copied.
pub const IDENTICAL_EVIDENCE_WINDOWS: u32 = 3;

/// Which upload of each alike pair is the copy, as `copy → what it copies` (the worst pair per
/// copy), with identical pairs' `evidence` carried from earlier windows and updated here.
///
/// An update learned from one miner's samples helps those samples more than another's, whoever
/// signed it: with both uids' losses known, the copy is the one whose own data the update helps
/// less, measured against the control of other updates on the same data (own margin, §14), or
/// by the own advantage alone where either uid has no references; for an identical pair summed
/// over every window it was identical, so the decision firms up as a copier keeps copying. Only
/// where nothing was ever measured (no losses, or a zero sum) does the later `LastModified`
/// decide, then the higher uid: a clock the uploader's own server reports, so a copier that
/// backdates its object wins only where no losses were measured (and is then only withheld,
/// [`IDENTICAL_EVIDENCE_WINDOWS`]).
///
/// The control matters: without it, which of two sample sets happens to improve more under any
/// update decided 4 of 12 windows against the victim in a devnet (an honest miner excluded as
/// the copy of its copier); with it, 1 of 12 in another run, and with the sum none
/// (docs/performance.md).
pub fn attribute_copies(
    pairs: &[Alike],
    losses: &BTreeMap<u16, Losses>,
    evidence: &mut BTreeMap<(u16, u16), PairEvidence>,
) -> BTreeMap<u16, CopyOf> {
    let mut copies: BTreeMap<u16, CopyOf> = BTreeMap::new();
    for p in pairs {
        let ((lo, lo_ms), (hi, hi_ms)) = if p.a.0 < p.b.0 { (p.a, p.b) } else { (p.b, p.a) };
        let finite = |v: &f64| v.is_finite();
        let margin = |uid: u16| losses.get(&uid).and_then(Losses::own_margin).filter(finite);
        let advantage = |uid: u16| losses.get(&uid).map(Losses::own_advantage).filter(finite);
        let measured = match (margin(lo), margin(hi)) {
            (Some(x), Some(y)) => Some(x - y),
            _ => advantage(lo).zip(advantage(hi)).map(|(x, y)| x - y),
        };
        // Identical pairs carry their evidence across windows (exclusion rests on it); an
        // overlap is judged on the window alone, so a validator keeps no state per pair of
        // merely similar miners (early in training, most pairs are).
        let mut window_only = PairEvidence::default();
        let e = if p.identical { evidence.entry((lo, hi)).or_default() } else { &mut window_only };
        if let Some(d) = measured {
            e.sum += d;
            e.windows += 1;
        }
        let lo_is_copy = if e.sum != 0.0 { e.sum < 0.0 } else { (lo_ms, lo) > (hi_ms, hi) };
        let (copy, original) = if lo_is_copy { (lo, hi) } else { (hi, lo) };
        let c = CopyOf {
            uid: original,
            overlap: p.overlap,
            excess: p.excess,
            identical: p.identical,
            evidence_windows: e.windows,
        };
        if copies.get(&copy).is_none_or(|old| (c.identical, c.excess) > (old.identical, old.excess)) {
            copies.insert(copy, c);
        }
    }
    copies
}

/// What an overlap costs the later uploader.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CopyVerdict {
    Original,
    /// Score and binary EMA multiplied by this.
    Reduced(f64),
    /// Scores reset.
    Reset,
    /// Scores reset and the uid excluded for `windows`.
    Excluded {
        windows: u32,
    },
    /// An identical update whose attribution rests on fewer than
    /// [`IDENTICAL_EVIDENCE_WINDOWS`] windows: this window's score is withheld, nothing reset.
    Withheld,
}

/// The penalty for copying an earlier upload. An identical update is excluded once the pair's
/// evidence spans [`IDENTICAL_EVIDENCE_WINDOWS`] windows (withheld before); index overlap only
/// after the grace steps, by its excess over the window's median pair ([`excess_overlap`]).
pub fn copy_verdict(copy: &CopyOf, global_step: u64, cfg: &CopyConfig) -> CopyVerdict {
    let overlap = copy.excess;
    if copy.identical && copy.evidence_windows < IDENTICAL_EVIDENCE_WINDOWS {
        CopyVerdict::Withheld
    } else if copy.identical {
        CopyVerdict::Excluded { windows: cfg.exclusion_windows }
    } else if global_step < cfg.grace_steps || overlap < cfg.overlap_threshold {
        CopyVerdict::Original
    } else if overlap >= cfg.exclude_overlap {
        CopyVerdict::Excluded { windows: cfg.exclusion_windows }
    } else if overlap >= cfg.reset_overlap {
        CopyVerdict::Reset
    } else {
        CopyVerdict::Reduced(cfg.high_multiplier)
    }
}

#[cfg(test)]
mod copy_tests {
    use super::*;

    fn losses(own_after: f64) -> Losses {
        Losses::new(4.0, own_after, 4.0, 3.8)
    }

    #[test]
    fn the_copy_is_the_uid_whose_own_data_the_update_helps_less_whatever_the_clocks_say() {
        // uid 7 copied uid 3's update and backdated its object by a minute.
        let pair = Alike { a: (3, 60_000), b: (7, 0), overlap: 1.0, excess: 1.0, identical: true };
        let measured = BTreeMap::from([(3, losses(3.0)), (7, losses(3.7))]);
        let c = attribute_copies(&[pair], &measured, &mut BTreeMap::new());
        assert_eq!(c.get(&7).map(|c| c.uid), Some(3), "{c:?}");
        assert!(!c.contains_key(&3));
        // Without losses for both, the reported times decide (the backdater wins there).
        let c = attribute_copies(&[pair], &BTreeMap::from([(3, losses(3.0))]), &mut BTreeMap::new());
        assert_eq!(c.get(&3).map(|c| c.uid), Some(7));
        // Equal times: the higher uid is the copy.
        let tie = Alike { a: (9, 5), b: (4, 5), overlap: 0.97, excess: 0.94, identical: false };
        assert_eq!(attribute_copies(&[tie], &BTreeMap::new(), &mut BTreeMap::new()).get(&9).map(|c| c.uid), Some(4));
    }

    /// Measured in a devnet (window 11 of the attacked run in docs/performance.md): uid 11
    /// re-signed uid 1's update. Its own samples happened to improve more under every update
    /// (own advantage 0.00096 against the victim's 0.00043), so the own advantage alone named
    /// the victim; against the mean of the references on the same data (0.00098 on the copier's,
    /// −0.00109 on the victim's) the copier is the one the update was not trained for.
    #[test]
    fn the_control_keeps_easy_samples_from_making_the_victim_the_copy() {
        let r = |uid, own_after| Reference { uid, own_after, random_after: 3.8 };
        let with = |own_after: f64, refs: Vec<Reference>| Losses { references: refs, ..losses(own_after) };
        // Random data improves 0.05 under every update here; own advantages are own − 0.05.
        let victim = with(3.798, vec![r(2, 3.804), r(3, 3.805)]); // adv 0.0005; refs −0.001, −0.00125
        let copier = with(3.796, vec![r(2, 3.796), r(3, 3.795)]); // adv 0.001; refs 0.001, 0.00125
        let pair = Alike { a: (1, 0), b: (11, 0), overlap: 1.0, excess: 1.0, identical: true };
        let plain = BTreeMap::from([(1, losses(3.798)), (11, losses(3.796))]);
        let fresh = &mut BTreeMap::new();
        assert_eq!(attribute_copies(&[pair], &plain, fresh).get(&1).map(|c| c.uid), Some(11), "no control: wrong");
        let measured = BTreeMap::from([(1, victim.clone()), (11, copier.clone())]);
        let c = attribute_copies(&[pair], &measured, &mut BTreeMap::new());
        assert_eq!(c.get(&11).map(|c| c.uid), Some(1), "{c:?}");
        assert!(!c.contains_key(&1));
    }

    /// Evidence adds up over the windows a pair is alike: one window that points the other way
    /// does not turn a settled attribution, and the window count gates an identical copy's
    /// exclusion.
    #[test]
    fn a_pairs_evidence_adds_up_over_windows() {
        let r = |uid, own_after| Reference { uid, own_after, random_after: 3.8 };
        let with = |own_after: f64, refs: Vec<Reference>| Losses { references: refs, ..losses(own_after) };
        let pair = Alike { a: (11, 0), b: (1, 0), overlap: 1.0, excess: 1.0, identical: true };
        let clear = BTreeMap::from([(1, with(3.790, vec![r(2, 3.80)])), (11, with(3.800, vec![r(2, 3.80)]))]);
        let against = BTreeMap::from([(1, with(3.799, vec![r(2, 3.80)])), (11, with(3.797, vec![r(2, 3.80)]))]);
        let mut evidence = BTreeMap::new();
        let first = attribute_copies(&[pair], &clear, &mut evidence);
        assert_eq!(first.get(&11).map(|c| (c.uid, c.evidence_windows)), Some((1, 1)));
        // Margins here: victim 0.0025 then 0.00025, copier 0 then 0.00075.
        let second = attribute_copies(&[pair], &against, &mut evidence);
        assert_eq!(second.get(&11).map(|c| (c.uid, c.evidence_windows)), Some((1, 2)), "{second:?}");
        let e = evidence[&(1, 11)];
        assert!((e.sum - (0.0025 - 0.0005)).abs() < 1e-9 && e.windows == 2, "{e:?}");
        // Without losses a window adds nothing, and the sum still decides.
        let third = attribute_copies(&[pair], &BTreeMap::new(), &mut evidence);
        assert_eq!(third.get(&11).map(|c| (c.uid, c.evidence_windows)), Some((1, 2)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrum_common::codec::{EncodedTensor, Values};
    use ferrum_common::config::Preset;

    const GAP: f64 = 0.1;

    fn losses(own_before: f64, own_after: f64, random_before: f64, random_after: f64) -> Losses {
        Losses::new(own_before, own_after, random_before, random_after)
    }

    #[test]
    fn scores_from_losses() {
        let honest = losses(4.0, 3.0, 4.0, 3.5);
        assert_eq!(honest.gradient_score(), 0.125);
        assert_eq!(honest.binary_indicator(GAP), 1.0);
        let wrong_data = losses(4.0, 3.9, 4.0, 3.5);
        assert_eq!(wrong_data.binary_indicator(GAP), -1.0);
        let zeros = losses(4.0, 4.0, 4.0, 4.0);
        assert_eq!((zeros.gradient_score(), zeros.binary_indicator(GAP)), (0.0, -1.0));
        let noise = losses(4.0, 9.0, 4.0, 9.5);
        assert!(noise.gradient_score() < 0.0);
        assert_eq!(noise.binary_indicator(GAP), -1.0, "worse on its own data");
        let nan = losses(4.0, f64::NAN, 4.0, f64::NAN);
        assert_eq!((nan.gradient_score(), nan.binary_indicator(GAP)), (0.0, -1.0));
    }

    #[test]
    fn the_binary_indicator_compares_against_other_updates_on_the_same_data() {
        let reference = |uid, own_after, random_after| Reference { uid, own_after, random_after };
        // Own data that every update improves a little more than random data: the plain rule
        // says +1, but other miners' updates do as well on it, so nothing shows it trained there.
        let mut wrong_data = losses(4.0, 3.58, 4.0, 3.6);
        assert_eq!(wrong_data.binary_indicator(GAP), 1.0, "own versus random alone");
        wrong_data.references = vec![reference(2, 3.57, 3.6), reference(3, 3.58, 3.6), reference(4, 3.55, 3.58)];
        // Advantages: self 0.005; references 0.0075, 0.005, 0.00625 → best 0.0075.
        assert!((wrong_data.reference_advantage().expect("references") - 0.0075).abs() < 1e-12);
        assert_eq!(wrong_data.binary_indicator(GAP), -1.0);
        let mut honest = wrong_data.clone();
        honest.own_after = 3.5;
        assert_eq!(honest.binary_indicator(GAP), 1.0);
        // Beating one of three is not enough.
        honest.own_after = 3.575;
        assert_eq!(honest.binary_indicator(GAP), -1.0);
        // A reference whose loss went non-finite counts as no improvement.
        honest.references = vec![reference(2, f64::NAN, f64::NAN)];
        assert_eq!(honest.reference_advantage(), Some(0.0));
    }

    #[test]
    fn an_update_that_helps_shuffled_tokens_as_much_as_their_order_fails_the_own_data_test() {
        let order = |ordered_after, shuffled_after| OrderLosses {
            ordered_before: 4.0,
            ordered_after,
            shuffled_before: 5.0,
            shuffled_after,
        };
        let mut update = losses(4.0, 3.0, 4.0, 3.5);
        assert_eq!(update.binary_indicator(GAP), 1.0, "not measured: the other tests decide");
        // Learned from text: its order improves by 25 %, the shuffled tokens by 4 %.
        update.order = Some(order(3.0, 4.8));
        assert!((update.order_verdict(GAP).expect("measured") - 0.21).abs() < 1e-12);
        assert_eq!(update.binary_indicator(GAP), 1.0);
        // Learned from token counts: the shuffled tokens improve as much, or more.
        update.order = Some(order(3.0, 3.75));
        assert_eq!(update.order_verdict(GAP), Some(0.0));
        assert_eq!(update.binary_indicator(GAP), -1.0);
        update.order = Some(order(3.2, 3.5));
        assert_eq!(update.binary_indicator(GAP), -1.0);
        // The base does 25 % worse shuffled: the test applies up to a gap of 0.25, not above.
        assert_eq!(update.order.expect("measured").base_gap(), 0.25);
        assert_eq!(update.binary_indicator(0.25), -1.0);
        assert_eq!(update.order_verdict(0.26), None);
        assert_eq!(update.binary_indicator(0.26), 1.0, "a model that has not learned order yet");
    }

    #[test]
    fn references_follow_the_evaluation_order_and_skip_the_ineligible() {
        let all: std::collections::BTreeSet<u16> = [5, 2, 9, 4].into();
        let refs = references(&[5, 2, 9, 4], &all, 2);
        assert_eq!(refs, vec![(5, vec![2, 9]), (2, vec![9, 4]), (9, vec![4, 5]), (4, vec![5, 2])]);
        // 4 sent a zero update: no one's control, still measured against the others.
        let some: std::collections::BTreeSet<u16> = [5, 2, 9].into();
        let refs = references(&[5, 2, 9, 4], &some, 2);
        assert_eq!(refs, vec![(5, vec![2, 9]), (2, vec![9, 5]), (9, vec![5, 2]), (4, vec![5, 2])]);
        assert_eq!(references(&[7], &[7].into(), 3), vec![(7, vec![])], "alone: no control");
        assert_eq!(references(&[1, 2], &[1, 2].into(), 3), vec![(1, vec![2]), (2, vec![1])]);
    }

    #[test]
    fn lag_and_sync_from_exact_fingerprints() {
        let cfg = Preset::Test.config().gauntlet.sync;
        let recent = [[3u8; 32], [2; 32], [1; 32]];
        assert_eq!(lag(&[3; 32], &recent), Some(0));
        assert_eq!(lag(&[1; 32], &recent), Some(2));
        assert_eq!(lag(&[9; 32], &recent), None);
        assert_eq!(sync_score(Some(0), &cfg), 1.0);
        assert!((sync_score(Some(1), &cfg) - 0.5f64.powf(2.5)).abs() < 1e-12);
        assert_eq!(sync_score(Some(2), &cfg), 0.0);
        assert_eq!(sync_score(None, &cfg), 0.0);
    }

    fn tensor(indices: Vec<u32>) -> EncodedTensor {
        let n = indices.len();
        EncodedTensor { indices, values: Values::Raw(vec![0.0; n]) }
    }

    #[test]
    fn overlap_counts_shared_indices_per_block() {
        let a = vec![tensor(vec![0, 1, 5, 7]), tensor(vec![2, 3])];
        let b = vec![tensor(vec![1, 2, 5, 6]), tensor(vec![2, 3])];
        // Blocks of 2: {0,1}∩{1,2} = 1, {5,7}∩{5,6} = 1; second tensor: 2 of 2.
        assert!((overlap(&a, &b, &[2, 2]) - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(overlap(&a, &a, &[2, 2]), 1.0);
    }

    #[test]
    fn an_overlap_is_judged_against_the_windows_median_pair() {
        // Honest pairs at 0.48 on median, one at 0.6: little beyond the background.
        assert!((excess_overlap(0.6, 0.48) - 0.12 / 0.52).abs() < 1e-12);
        assert_eq!(excess_overlap(0.4, 0.48), 0.0);
        // A copy that keeps its original's indices stands out whatever the background.
        assert_eq!(excess_overlap(1.0, 0.48), 1.0);
        assert_eq!(excess_overlap(0.5, 0.0), 0.5, "with no background, the overlap itself");
        assert_eq!(excess_overlap(1.0, 1.0), 0.0, "every pair the same: nothing stands out");
        assert_eq!(excess_overlap(f64::NAN, 0.5), 0.0);
    }

    #[test]
    fn copy_severity_follows_the_thresholds_after_the_grace_steps() {
        let cfg = Preset::Test.config().gauntlet.copy;
        let near = |excess| CopyOf { uid: 1, overlap: 0.9, excess, identical: false, evidence_windows: 1 };
        assert_eq!(copy_verdict(&near(1.0), 0, &cfg), CopyVerdict::Original, "grace steps");
        assert_eq!(copy_verdict(&near(0.3), 100, &cfg), CopyVerdict::Original);
        assert_eq!(copy_verdict(&near(0.45), 100, &cfg), CopyVerdict::Reduced(0.5));
        assert_eq!(copy_verdict(&near(0.55), 100, &cfg), CopyVerdict::Reset);
        assert_eq!(copy_verdict(&near(0.7), 100, &cfg), CopyVerdict::Excluded { windows: 200 });
        let same = CopyOf { uid: 1, overlap: 1.0, excess: 1.0, identical: true, evidence_windows: 3 };
        assert_eq!(copy_verdict(&same, 0, &cfg), CopyVerdict::Excluded { windows: 200 }, "no grace for an exact copy");
        let early = CopyOf { evidence_windows: 2, ..same };
        assert_eq!(copy_verdict(&early, 0, &cfg), CopyVerdict::Withheld, "two windows of evidence: withheld");
    }
}
