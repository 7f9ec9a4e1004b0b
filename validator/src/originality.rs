//! Originality: which uploads of a window are the same update, or overlap beyond the window's
//! typical pair, and which of each such pair is the copy (docs/protocol.md §14, "Copies").

use std::collections::BTreeMap;

use ferrum_common::codec::{self, EncodedTensor};
use ferrum_common::config::CopyConfig;
use ferrum_gauntlet::rules;

use crate::state::CopyEvidence;

/// Every pair of `uploads` (`(uid, LastModified ms)` and the update) that is the same update
/// (bit for bit or within `duplicate_distance`, empty updates aside) or whose index overlap
/// stands at least `overlap_threshold` beyond the window's median pair.
pub fn alike_pairs(uploads: &[((u16, u64), &[EncodedTensor])], ks: &[usize], cfg: &CopyConfig) -> Vec<rules::Alike> {
    let norms: Vec<f64> = uploads.iter().map(|(_, u)| codec::similar::squared_norm(u)).collect();
    let mut pairs = Vec::new();
    for (i, (a, ua)) in uploads.iter().enumerate() {
        for (j, (b, ub)) in uploads.iter().enumerate().skip(i + 1) {
            let equal = ua == ub;
            let same = equal
                || codec::similar::distance_within(ua, ub, ks, (norms[i], norms[j]), cfg.duplicate_distance).is_some();
            // An empty update is the free rider's, not a copy (two of them are alike anyway).
            let identical = same && !is_empty_update(ua);
            let overlap = if equal { 1.0 } else { rules::overlap(ua, ub, ks) };
            pairs.push((*a, *b, overlap, identical));
        }
    }
    // Overlap is judged against the window's typical pair, not on its own.
    let median = codec::median(pairs.iter().map(|p| p.2).collect()).unwrap_or(0.0);
    pairs
        .into_iter()
        .map(|(a, b, overlap, identical)| rules::Alike {
            a,
            b,
            overlap,
            excess: rules::excess_overlap(overlap, median),
            identical,
        })
        .filter(|p| p.identical || p.excess >= cfg.overlap_threshold)
        .collect()
}

/// Decides which of each alike pair is the copy, with the pair's evidence from earlier windows
/// (`kept`, updated here; kept while both uids keep their hotkeys).
pub fn attribute_copies(
    kept: &mut Vec<CopyEvidence>,
    alike: &[rules::Alike],
    losses: &BTreeMap<u16, rules::Losses>,
    hotkeys: &BTreeMap<u16, String>,
) -> BTreeMap<u16, ferrum_gauntlet::CopyOf> {
    // Evidence belongs to a pair of hotkeys: a uid that changed hands starts with none.
    let current = |uid: u16, hotkey: &str| hotkeys.get(&uid).is_none_or(|h| h == hotkey);
    kept.retain(|e| current(e.a.0, &e.a.1) && current(e.b.0, &e.b.1));
    let mut evidence: BTreeMap<(u16, u16), rules::PairEvidence> =
        kept.iter().map(|e| ((e.a.0, e.b.0), e.evidence)).collect();
    let copies = rules::attribute_copies(alike, losses, &mut evidence);
    for e in kept.iter_mut() {
        if let Some(updated) = evidence.remove(&(e.a.0, e.b.0)) {
            e.evidence = updated;
        }
    }
    // What is left is new pairs (both uids were received, so both hotkeys are known).
    for ((a, b), evidence) in evidence {
        if let (Some(ha), Some(hb)) = (hotkeys.get(&a), hotkeys.get(&b)) {
            kept.push(CopyEvidence { a: (a, ha.clone()), b: (b, hb.clone()), evidence });
        }
    }
    copies
}

/// Whether every transmitted value of an update is zero.
pub fn is_empty_update(tensors: &[EncodedTensor]) -> bool {
    tensors.iter().all(|t| (0..t.indices.len()).all(|j| t.value(j) == 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrum_common::codec::Values;

    fn update(indices: &[u32], values: &[f32]) -> Vec<EncodedTensor> {
        vec![EncodedTensor { indices: indices.to_vec(), values: Values::Raw(values.to_vec()) }]
    }

    /// Four honest-looking updates sharing half their indices, a copy of one scaled by 1.001,
    /// and one that keeps another's indices with other values.
    #[test]
    fn copies_stand_out_from_the_windows_typical_overlap() {
        let cfg = ferrum_common::config::Preset::Test.config().gauntlet.copy;
        let k = 4;
        let honest = [
            update(&[0, 1, 2, 3], &[1.0, 2.0, 3.0, 4.0]),
            update(&[0, 1, 4, 5], &[-1.0, 2.0, 1.0, 3.0]),
            update(&[0, 1, 6, 7], &[2.0, -2.0, 1.0, 1.0]),
            update(&[2, 3, 6, 7], &[1.0, 1.0, -3.0, 2.0]),
        ];
        let near = update(&[0, 1, 2, 3], &[1.001, 2.002, 3.003, 4.004]);
        let reindexed = update(&[0, 1, 4, 5], &[5.0, -4.0, 3.0, -2.0]);
        let mut uploads: Vec<((u16, u64), &[EncodedTensor])> =
            honest.iter().enumerate().map(|(i, u)| ((i as u16 + 1, 0), u.as_slice())).collect();
        let alike = alike_pairs(&uploads, &[k], &cfg);
        assert!(alike.is_empty(), "honest pairs overlapping 0.5 each are the background: {alike:?}");
        uploads.push(((5, 0), &near));
        uploads.push(((6, 0), &reindexed));
        let alike = alike_pairs(&uploads, &[k], &cfg);
        let found: Vec<((u16, u16), bool)> = alike.iter().map(|p| ((p.a.0, p.b.0), p.identical)).collect();
        assert_eq!(found, [((1, 5), true), ((2, 6), false)], "{alike:?}");
        assert!(alike[1].excess >= cfg.exclude_overlap, "{alike:?}");
        // Two empty updates are alike, not copies.
        let zeros = update(&[0, 1, 2, 3], &[0.0; 4]);
        let empty: Vec<((u16, u64), &[EncodedTensor])> = vec![((1, 0), &zeros), ((2, 0), &zeros)];
        assert!(alike_pairs(&empty, &[k], &cfg).iter().all(|p| !p.identical));
    }

    /// Identical pairs' evidence adds up across windows and is dropped when a uid changes hands.
    #[test]
    fn copy_evidence_follows_the_pair_of_hotkeys() {
        let pair = rules::Alike { a: (1, 0), b: (2, 0), overlap: 1.0, excess: 1.0, identical: true };
        let losses = |own_after_1: f64, own_after_2: f64| {
            let l = |own_after| rules::Losses::new(4.0, own_after, 4.0, 3.8);
            BTreeMap::from([(1, l(own_after_1)), (2, l(own_after_2))])
        };
        let hotkeys = BTreeMap::from([(1, "alice".to_string()), (2, "bob".to_string())]);
        let mut kept = Vec::new();
        for _ in 0..3 {
            let c = attribute_copies(&mut kept, &[pair], &losses(3.7, 3.79), &hotkeys);
            assert_eq!(c.get(&2).map(|c| c.uid), Some(1));
        }
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].evidence.windows, 3);
        // A window without the pair keeps the evidence.
        attribute_copies(&mut kept, &[], &BTreeMap::new(), &hotkeys);
        assert_eq!(kept[0].evidence.windows, 3);
        // uid 2 registered by someone else: its evidence is gone, the new pair starts over.
        let taken = BTreeMap::from([(1, "alice".to_string()), (2, "carol".to_string())]);
        let c = attribute_copies(&mut kept, &[pair], &losses(3.7, 3.79), &taken);
        assert_eq!(c.get(&2).map(|c| c.evidence_windows), Some(1));
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].b.1, "carol");
    }
}
