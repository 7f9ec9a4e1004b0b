//! Aggregation of peers' compressed tensors into one dense update (docs/protocol.md §7.4).
//!
//! Peers are put in uid order first, every sum runs in a fixed order, and all arithmetic is
//! plain IEEE f32/f64 without fused operations, so the same inputs give the same bits on every
//! machine, whatever order the caller passes them in.

use super::{CodecSpec, EncodedTensor, Geometry, dct, unblock};

/// Why a set of peers cannot be aggregated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    #[error("no peers to aggregate")]
    NoPeers,
    #[error("uid {0} appears twice")]
    DuplicateUid(u16),
    #[error("peer uid {uid} has {got} kept values, the geometry needs {expected}")]
    WrongShape { uid: u16, got: usize, expected: usize },
    #[error("peer uid {uid} has {got} tensors, the model has {expected}")]
    TensorCount { uid: u16, got: usize, expected: usize },
    #[error("peer uid {uid} has {got} values for {expected} indices")]
    ValueCount { uid: u16, got: usize, expected: usize },
    #[error("peer uid {uid} has a code past its {levels}-entry centroid table")]
    CodeRange { uid: u16, levels: usize },
    #[error("the aggregate is not finite")]
    NonFinite,
}

/// Guards the clipping ratio against a zero norm.
const NORM_EPS: f64 = 1e-8;

/// L2 norm of a peer's decoded values, summed in index order in f64.
fn norm(t: &EncodedTensor) -> f64 {
    (0..t.indices.len()).map(|j| f64::from(t.value(j)).powi(2)).sum::<f64>().sqrt()
}

/// Median of a non-empty list; the mean of the two middle values for an even count.
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 { xs[n / 2] } else { (xs[n / 2 - 1] + xs[n / 2]) / 2.0 }
}

/// Aggregates one tensor over peers `(uid, tensor)`:
/// 1. each peer's values are scaled by `min(1, median_norm / (norm + 1e-8))` (clip to the median);
/// 2. each coordinate is the mean over the peers that chose it (0 where none did);
/// 3. the block-domain result is inverse-transformed into a dense row-major tensor.
pub fn aggregate(
    peers: &[(u16, &EncodedTensor)],
    g: &Geometry,
    spec: &CodecSpec,
    bases: &mut dct::Bases,
) -> Result<Vec<f32>, AggregateError> {
    if peers.is_empty() {
        return Err(AggregateError::NoPeers);
    }
    let mut ordered: Vec<(u16, &EncodedTensor)> = peers.to_vec();
    ordered.sort_by_key(|(uid, _)| *uid);
    for w in ordered.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(AggregateError::DuplicateUid(w[0].0));
        }
    }
    for (uid, t) in &ordered {
        if t.indices.len() != g.kept() {
            return Err(AggregateError::WrongShape { uid: *uid, got: t.indices.len(), expected: g.kept() });
        }
        let values = match &t.values {
            super::Values::Quantized(q) => q.codes.len(),
            super::Values::Raw(v) => v.len(),
        };
        if values != g.kept() {
            return Err(AggregateError::ValueCount { uid: *uid, got: values, expected: g.kept() });
        }
        if let super::Values::Quantized(q) = &t.values
            && q.codes.iter().any(|&c| usize::from(c) >= q.table.len())
        {
            return Err(AggregateError::CodeRange { uid: *uid, levels: q.table.len() });
        }
    }
    let norms: Vec<f64> = ordered.iter().map(|(_, t)| norm(t)).collect();
    let m = median(norms.clone());
    let len = g.block_len();
    let mut sum = vec![0f32; g.numel()];
    let mut count = vec![0u32; g.numel()];
    for ((_, t), n) in ordered.iter().zip(&norms) {
        let factor = (m / (n + NORM_EPS)).min(1.0) as f32;
        for (j, &i) in t.indices.iter().enumerate() {
            let pos = (j / g.k) * len + i as usize;
            sum[pos] += t.value(j) * factor;
            count[pos] += 1;
        }
    }
    for (s, &c) in sum.iter_mut().zip(&count) {
        if c > 1 {
            *s /= c as f32;
        }
    }
    let out = unblock(sum, g, spec.dct, bases);
    if out.iter().all(|v| v.is_finite()) { Ok(out) } else { Err(AggregateError::NonFinite) }
}
