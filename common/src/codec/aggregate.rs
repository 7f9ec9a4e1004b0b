//! Aggregation of peers' compressed tensors into one dense update (docs/protocol.md §7.4).
//!
//! Peers are put in uid order first, every sum runs in a fixed order, and all arithmetic is
//! plain IEEE f32/f64 without fused operations, so the same inputs give the same bits on every
//! machine, whatever order the caller passes them in.

use super::{CodecSpec, EncodedTensor, Geometry, Scratch, dct};

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
pub fn norm(t: &EncodedTensor) -> f64 {
    (0..t.indices.len()).map(|j| f64::from(t.value(j)).powi(2)).sum::<f64>().sqrt()
}

/// Peers whose norms one task sums together: independent sums interleaved element by element,
/// so one's additions wait on its own previous one only, not on every peer's.
const NORMS_PER_TASK: usize = 4;

/// [`norm`] of each tensor, bit for bit, on `threads` threads.
pub(crate) fn norms(tensors: &[&EncodedTensor], threads: usize) -> Vec<f64> {
    let groups: Vec<&[&EncodedTensor]> = tensors.chunks(NORMS_PER_TASK).collect();
    crate::parallel::map(groups, threads, || (), |group, _| norm_group(group)).concat()
}

/// [`norm`] of up to [`NORMS_PER_TASK`] tensors. Quantized tensors of one length (what
/// aggregation has checked) are summed interleaved through a table of each code's square
/// (the same f64 as squaring the decoded value); anything else one by one.
fn norm_group(group: &[&EncodedTensor]) -> Vec<f64> {
    let n = group.first().map_or(0, |t| t.indices.len());
    let tables: Option<Vec<(&[u8], [f64; 256])>> = group
        .iter()
        .map(|t| match &t.values {
            super::Values::Quantized(q) if t.indices.len() == n && q.codes.len() == n => {
                // Codes past the table were refused before; NaN would show if one got here.
                let mut squares = [f64::NAN; 256];
                for (c, sq) in squares.iter_mut().enumerate().take(q.table.len()) {
                    *sq = f64::from(q.value(c as u8)).powi(2);
                }
                Some((&q.codes[..], squares))
            }
            _ => None,
        })
        .collect();
    let Some(tables) = tables else {
        return group.iter().map(|t| norm(t)).collect();
    };
    // `Sum` for floats starts at -0.0; the first square (≥ +0) gives the same value either way.
    let mut acc = [-0.0f64; NORMS_PER_TASK];
    for j in 0..n {
        for (a, (codes, squares)) in acc.iter_mut().zip(&tables) {
            *a += squares[usize::from(codes[j])];
        }
    }
    acc[..tables.len()].iter().map(|a| a.sqrt()).collect()
}

/// Median of a list; the mean of the two middle values for an even count; `None` when empty.
pub fn median(mut xs: Vec<f64>) -> Option<f64> {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(xs[n / 2]),
        _ => Some((xs[n / 2 - 1] + xs[n / 2]) / 2.0),
    }
}

/// The factor a peer's values are multiplied by before summing (§7.4 step 3): its norm
/// clipped to the median norm, `f32(min(1, median / (norm + 1e−8)))`.
pub fn clip_factor(norm: f64, median: f64) -> f32 {
    (median / (norm + NORM_EPS)).min(1.0) as f32
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
    let mut out = vec![0f32; g.numel()];
    let mut s = Scratch { bases: std::mem::take(bases), ..Scratch::default() };
    let r = aggregate_into(peers, g, spec, 1, &mut s, &mut out);
    *bases = s.bases;
    r.map(|()| out)
}

/// [`aggregate`] into `out` (`g.numel()` values, overwritten) on `threads` threads, so a node
/// can reuse one buffer window after window: a fresh 64 MB buffer costs more in page faults
/// than the aggregation itself. The bits do not depend on `threads`.
pub fn aggregate_into(
    peers: &[(u16, &EncodedTensor)],
    g: &Geometry,
    spec: &CodecSpec,
    threads: usize,
    scratch: &mut Scratch,
    out: &mut [f32],
) -> Result<(), AggregateError> {
    assert_eq!(out.len(), g.numel(), "output size does not match the geometry");
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
    let tensors: Vec<&EncodedTensor> = ordered.iter().map(|(_, t)| *t).collect();
    let norms = norms(&tensors, threads);
    let m = median(norms.clone()).ok_or(AggregateError::NoPeers)?;
    let factors: Vec<f32> = norms.iter().map(|&n| clip_factor(n, m)).collect();
    let contributors: Vec<Contributor> =
        ordered.iter().zip(factors).map(|((_, t), f)| Contributor::new(t, f)).collect();
    let bands = super::bands(g, super::BAND_TARGET);
    let jobs = super::split_bands(out, g, &bands);
    let finite = if threads <= 1 || jobs.len() == 1 {
        jobs.into_iter()
            .fold(true, |ok, (band, head)| band_sum(&contributors, band.blocks(g).start, g, spec, scratch, head) && ok)
    } else {
        crate::parallel::map(jobs, threads, Scratch::default, |(band, head), s| {
            band_sum(&contributors, band.blocks(g).start, g, spec, s, head)
        })
        .into_iter()
        .all(|f| f)
    };
    if finite { Ok(()) } else { Err(AggregateError::NonFinite) }
}

/// One peer's tensor with its clipping factor folded in.
struct Contributor<'a> {
    indices: &'a [u32],
    values: Scaled<'a>,
}

enum Scaled<'a> {
    /// `table[q] = value(q) · factor`, the same two f32 operations per value as the definition,
    /// done once per code instead of once per entry.
    Table {
        table: Vec<f32>,
        codes: &'a [u8],
    },
    Raw {
        values: &'a [f32],
        factor: f32,
    },
}

impl<'a> Contributor<'a> {
    fn new(t: &'a EncodedTensor, factor: f32) -> Self {
        let values = match &t.values {
            super::Values::Quantized(q) => Scaled::Table {
                table: (0..q.table.len()).map(|c| q.value(c as u8) * factor).collect(),
                codes: &q.codes,
            },
            super::Values::Raw(v) => Scaled::Raw { values: v, factor },
        };
        Contributor { indices: &t.indices, values }
    }
}

/// The aggregate of the blocks of one band (`out` holds the band), block by block in a buffer
/// that stays in cache; per coordinate the peers add in uid order, as the definition does.
/// Returns whether every value is finite (checked while the block is in cache).
fn band_sum(
    contributors: &[Contributor],
    first_block: usize,
    g: &Geometry,
    spec: &CodecSpec,
    s: &mut Scratch,
    out: &mut [f32],
) -> bool {
    crate::simd::widest(
        #[inline(always)]
        || band_sum_body(contributors, first_block, g, spec, s, out),
    )
}

#[inline(always)]
fn band_sum_body(
    contributors: &[Contributor],
    first_block: usize,
    g: &Geometry,
    spec: &CodecSpec,
    s: &mut Scratch,
    out: &mut [f32],
) -> bool {
    let (br, bc, len, k) = (g.block_rows, g.block_cols, g.block_len(), g.k);
    let grid = g.cols / bc;
    let mut finite = true;
    let mut count = vec![0u32; len];
    s.block.resize(len, 0.0);
    s.tmp.resize(len, 0.0);
    let (dr, dc) =
        if spec.dct { (s.bases.get(br).to_vec(), s.bases.get(bc).to_vec()) } else { (Vec::new(), Vec::new()) };
    for lb in 0..out.len() / len {
        let b = first_block + lb;
        s.block.fill(0.0);
        count.fill(0);
        for c in contributors {
            let idx = &c.indices[b * k..(b + 1) * k];
            match &c.values {
                Scaled::Table { table, codes } => {
                    for (&i, &q) in idx.iter().zip(&codes[b * k..(b + 1) * k]) {
                        s.block[i as usize] += table[usize::from(q)];
                        count[i as usize] += 1;
                    }
                }
                Scaled::Raw { values, factor } => {
                    for (&i, &v) in idx.iter().zip(&values[b * k..(b + 1) * k]) {
                        s.block[i as usize] += v * factor;
                        count[i as usize] += 1;
                    }
                }
            }
        }
        // Branch-free, so both loops are vector code (`all` would stop at the first failure
        // and stay scalar).
        for (v, &c) in s.block.iter_mut().zip(&count) {
            *v = if c > 1 { *v / c as f32 } else { *v };
        }
        if spec.dct {
            dct::inverse(&mut s.block, br, bc, &dr, &dc, &mut s.tmp);
        }
        finite &= s.block.iter().fold(true, |ok, v| ok & v.is_finite());
        let (lbi, bj) = (lb / grid, lb % grid);
        for ii in 0..br {
            let at = (lbi * br + ii) * g.cols + bj * bc;
            out[at..at + bc].copy_from_slice(&s.block[ii * bc..(ii + 1) * bc]);
        }
    }
    finite
}
