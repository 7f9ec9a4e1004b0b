//! How close two encoded updates are. A copier that re-signs another miner's update with a
//! small perturbation is not bit-identical to it, yet aggregating both counts one miner's work
//! twice; the gather counts updates within `gauntlet.copy.duplicate_distance` of each other
//! once (docs/protocol.md §7.3), and validators judge such a pair as one update (§14).
//!
//! Everything here is summed in f64 in a fixed order (tensor, block, index), so every node
//! reaches the same decision from the same payloads.

use super::EncodedTensor;

/// Σ of the squared decoded values of every tensor, in tensor and index order.
pub fn squared_norm(update: &[EncodedTensor]) -> f64 {
    update.iter().map(|t| (0..t.indices.len()).map(|j| f64::from(t.value(j)).powi(2)).sum::<f64>()).sum()
}

/// The relative L2 distance `‖a − b‖ / max(‖a‖, ‖b‖)` of two updates (as sparse vectors of
/// their decoded values, block by block), when it is at most `limit`; `None` otherwise.
///
/// `squared_norms` are [`squared_norm`] of `a` and `b` (callers comparing many pairs compute
/// each once). The sum stops as soon as it passes the bound, so unrelated updates, the usual
/// case, cost a few blocks, and only near-identical ones a full pass. Two empty updates are at
/// distance 0. Tensors whose kept counts differ (no parsed payload has them) are never close.
pub fn distance_within(
    a: &[EncodedTensor],
    b: &[EncodedTensor],
    k_per_block: &[usize],
    squared_norms: (f64, f64),
    limit: f64,
) -> Option<f64> {
    if a.len() != b.len() || a.len() != k_per_block.len() {
        return None;
    }
    let scale = squared_norms.0.max(squared_norms.1);
    if scale == 0.0 {
        return Some(0.0);
    }
    let bound = limit * limit * scale;
    let mut acc = 0.0f64;
    for ((ta, tb), &k) in a.iter().zip(b).zip(k_per_block) {
        if ta.indices.len() != tb.indices.len() {
            return None;
        }
        if ta == tb || k == 0 {
            continue;
        }
        for (block, (ia, ib)) in ta.indices.chunks_exact(k).zip(tb.indices.chunks_exact(k)).enumerate() {
            let base = block * k;
            let (mut i, mut j) = (0, 0);
            // Both are strictly increasing within a block (the parser checks it): a merge.
            while i < k || j < k {
                let d = match (ia.get(i), ib.get(j)) {
                    (Some(x), Some(y)) if x == y => {
                        let d = f64::from(ta.value(base + i)) - f64::from(tb.value(base + j));
                        i += 1;
                        j += 1;
                        d
                    }
                    (Some(x), Some(y)) if x < y => {
                        i += 1;
                        f64::from(ta.value(base + i - 1))
                    }
                    (Some(_), None) => {
                        i += 1;
                        f64::from(ta.value(base + i - 1))
                    }
                    _ => {
                        j += 1;
                        f64::from(tb.value(base + j - 1))
                    }
                };
                acc += d * d;
            }
            if acc > bound {
                return None;
            }
        }
    }
    (acc <= bound).then(|| (acc / scale).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Values;

    fn raw(indices: Vec<u32>, values: Vec<f32>) -> EncodedTensor {
        EncodedTensor { indices, values: Values::Raw(values) }
    }

    fn within(a: &[EncodedTensor], b: &[EncodedTensor], ks: &[usize], limit: f64) -> Option<f64> {
        distance_within(a, b, ks, (squared_norm(a), squared_norm(b)), limit)
    }

    #[test]
    fn the_distance_merges_each_block_and_is_relative_to_the_larger_norm() {
        // Block 0: a keeps {0: 3, 2: 4}, b keeps {0: 3, 1: 1}: differences 0, −1 (b only), 4 (a only).
        // Block 1 is the same in both.
        let a = [raw(vec![0, 2, 1, 3], vec![3.0, 4.0, 1.0, 1.0])];
        let b = [raw(vec![0, 1, 1, 3], vec![3.0, 1.0, 1.0, 1.0])];
        let d = within(&a, &b, &[2], 1.0).expect("within 1");
        // ‖a − b‖² = 1 + 16 = 17; ‖a‖² = 27 > ‖b‖² = 12.
        assert!((d - (17.0f64 / 27.0).sqrt()).abs() < 1e-12, "{d}");
        assert_eq!(within(&a, &b, &[2], 0.79), None, "the bound is the relative distance");
        assert_eq!(within(&b, &a, &[2], 1.0), Some(d), "symmetric");
    }

    #[test]
    fn identical_and_empty_updates_are_at_distance_zero_and_a_zero_limit_keeps_only_those() {
        let a = [raw(vec![0, 2], vec![1.0, -2.0]), raw(vec![1], vec![0.5])];
        assert_eq!(within(&a, &a, &[2, 1], 0.0), Some(0.0));
        let zeros = [raw(vec![0, 1], vec![0.0, 0.0])];
        assert_eq!(within(&zeros, &zeros, &[2], 0.0), Some(0.0));
        let mut near = a.clone();
        near[1] = raw(vec![1], vec![0.500_001]);
        assert_eq!(within(&a, &near, &[2, 1], 0.0), None);
        assert!(within(&a, &near, &[2, 1], 1e-3).is_some());
        // An empty update is far from any other.
        let empty = [raw(vec![0, 2], vec![0.0, 0.0]), raw(vec![1], vec![0.0])];
        assert_eq!(within(&a, &empty, &[2, 1], 0.99), None);
    }

    #[test]
    fn a_perturbed_copy_is_near_and_an_unrelated_update_is_not() {
        let update: Vec<f32> = (0..64).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.1).collect();
        let indices: Vec<u32> = (0..64).map(|i| (i % 8) * 2).collect();
        let a = [raw(indices.clone(), update.clone())];
        let copy =
            [raw(indices.clone(), update.iter().enumerate().map(|(i, v)| v * (1.0 + 1e-3 * (i % 3) as f32)).collect())];
        let other = [raw(indices.iter().map(|i| i + 1).collect(), update.clone())];
        assert!(within(&a, &copy, &[8], 0.01).is_some_and(|d| d < 2e-3));
        assert_eq!(within(&a, &other, &[8], 0.5), None, "no index shared: distance √2");
        assert!(within(&a, &other, &[8], 1.5).is_some_and(|d| (d - 2f64.sqrt()).abs() < 1e-9));
    }

    #[test]
    fn mismatched_shapes_are_never_close() {
        let a = [raw(vec![0, 1], vec![1.0, 1.0])];
        let b = [raw(vec![0], vec![1.0])];
        assert_eq!(within(&a, &b, &[2], 10.0), None);
        assert_eq!(within(&a, &a, &[2, 2], 10.0), None, "one k per tensor");
    }
}
