//! The pseudo-gradient codec (SparseLoCo / DeMo family): chunk each tensor into blocks, optional
//! orthonormal DCT-II per block, keep the top-k of each block by magnitude, quantize the kept
//! values per tensor, and aggregate peers' contributions deterministically.
//!
//! Geometry is a pure function of the config and the tensor shape (docs/protocol.md §7), so a
//! payload carries no shapes and its exact size is known before download.

pub mod aggregate;
pub mod bits;
pub mod dct;
pub mod quant;
#[cfg(test)]
mod reference;
pub mod rice;
pub mod select;
pub mod similar;

use crate::config::{CompressionConfig, SubnetConfig};
use crate::params::{self, ParamSpec};

pub use aggregate::{AggregateError, aggregate, aggregate_into, clip_factor, median, norm};
pub use quant::Quantized;

/// How one tensor is cut into blocks. A 1-D tensor is one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub rows: usize,
    pub cols: usize,
    /// Block height and width.
    pub block_rows: usize,
    pub block_cols: usize,
    /// Values kept per block: `min(topk, block_rows·block_cols)`.
    pub k: usize,
    /// How each block's kept positions are coded in a payload.
    pub index_code: rice::SlotCode,
}

impl Geometry {
    /// Geometry of a tensor of `shape` (1-D or 2-D) under a compression config.
    pub fn new(shape: &[usize], chunk: usize, topk: usize) -> Geometry {
        let (rows, cols) = match shape {
            [n] => (1, *n),
            [r, c] => (*r, *c),
            other => (1, other.iter().product()),
        };
        let block_rows = params::block_side(rows, chunk);
        let block_cols = params::block_side(cols, chunk);
        let len = block_rows * block_cols;
        let k = topk.min(len);
        Geometry { rows, cols, block_rows, block_cols, k, index_code: rice::SlotCode::new(len, k) }
    }

    /// Values per block.
    pub fn block_len(&self) -> usize {
        self.block_rows * self.block_cols
    }

    /// Number of blocks.
    pub fn blocks(&self) -> usize {
        (self.rows / self.block_rows) * (self.cols / self.block_cols)
    }

    /// Values kept in the whole tensor.
    pub fn kept(&self) -> usize {
        self.blocks() * self.k
    }

    /// Elements of the tensor.
    pub fn numel(&self) -> usize {
        self.rows * self.cols
    }

    /// Copies block `b` of a row-major tensor into `out` (row-major inside the block).
    #[inline]
    pub fn gather(&self, x: &[f32], b: usize, out: &mut [f32]) {
        let start = self.offset(b, 0);
        for (ii, row) in out.chunks_exact_mut(self.block_cols).enumerate() {
            let at = start + ii * self.cols;
            row.copy_from_slice(&x[at..at + self.block_cols]);
        }
    }

    /// Writes block `b` back into a row-major tensor; the inverse of [`gather`](Self::gather).
    #[inline]
    pub fn scatter(&self, block: &[f32], b: usize, x: &mut [f32]) {
        let start = self.offset(b, 0);
        for (ii, row) in block.chunks_exact(self.block_cols).enumerate() {
            let at = start + ii * self.cols;
            x[at..at + self.block_cols].copy_from_slice(row);
        }
    }

    /// Row-major offset of in-block position `i` of block `b`.
    #[inline]
    pub fn offset(&self, b: usize, i: usize) -> usize {
        let grid_cols = self.cols / self.block_cols;
        let (bi, bj) = (b / grid_cols, b % grid_cols);
        let (ii, jj) = (i / self.block_cols, i % self.block_cols);
        (bi * self.block_rows + ii) * self.cols + bj * self.block_cols + jj
    }
}

/// Codec settings for a whole model.
#[derive(Debug, Clone, PartialEq)]
pub struct CodecSpec {
    pub tensors: Vec<(ParamSpec, Geometry)>,
    pub quantization_bits: Option<u8>,
    pub quantization_range: f64,
    pub dct: bool,
}

impl CodecSpec {
    /// The model layout and compression settings of a config.
    pub fn new(config: &SubnetConfig) -> CodecSpec {
        Self::for_layout(params::layout(&config.model), &config.compression)
    }

    /// As [`new`](Self::new), for an explicit list of tensors.
    pub fn for_layout(layout: Vec<ParamSpec>, c: &CompressionConfig) -> CodecSpec {
        let tensors = layout
            .into_iter()
            .map(|p| {
                let g = Geometry::new(&p.shape, c.chunk as usize, c.topk as usize);
                (p, g)
            })
            .collect();
        CodecSpec {
            tensors,
            quantization_bits: c.quantization_bits,
            quantization_range: c.quantization_range,
            dct: c.dct,
        }
    }
}

/// Transmitted values of one tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Quantized(Quantized),
    Raw(Vec<f32>),
}

/// One compressed tensor: per block, `k` strictly increasing in-block indices and their values.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedTensor {
    /// `blocks × k` indices, block by block.
    pub indices: Vec<u32>,
    pub values: Values,
}

impl EncodedTensor {
    /// The decoded value of kept entry `j`.
    #[inline]
    pub fn value(&self, j: usize) -> f32 {
        match &self.values {
            Values::Quantized(q) => q.value(q.codes[j]),
            Values::Raw(v) => v[j],
        }
    }

    /// The same update with every value multiplied by `f` as the aggregate does it (§7.4: the
    /// decoded value times `f`, one f32 product): a quantized tensor's table becomes
    /// `value(q)·f` with a zero shift, so its codes stay and it decodes to those very bits.
    pub fn scaled(&self, f: f32) -> EncodedTensor {
        let values = match &self.values {
            Values::Quantized(q) => Values::Quantized(quant::Quantized {
                shift: 0.0,
                // A bin width stays positive whatever the sign (payloads with another are refused).
                scale: q.scale * f.abs(),
                table: (0..q.table.len()).map(|c| q.value(c as u8) * f).collect(),
                codes: q.codes.clone(),
            }),
            Values::Raw(v) => Values::Raw(v.iter().map(|x| x * f).collect()),
        };
        EncodedTensor { indices: self.indices.clone(), values }
    }
}

/// Per-thread buffers for one block at a time, and the DCT bases.
#[derive(Default)]
pub struct Scratch {
    pub bases: dct::Bases,
    block: Vec<f32>,
    tmp: Vec<f32>,
    select: select::Selector,
}

/// Whole block-rows of a tensor: the unit of parallel work, a contiguous slice of its
/// row-major data.
#[derive(Clone, Copy)]
struct Rows {
    /// First block-row.
    first: usize,
    /// Block-rows in the band.
    count: usize,
}

impl Rows {
    fn range(&self, g: &Geometry) -> std::ops::Range<usize> {
        let stride = g.block_rows * g.cols;
        self.first * stride..(self.first + self.count) * stride
    }

    fn blocks(&self, g: &Geometry) -> std::ops::Range<usize> {
        let grid = g.cols / g.block_cols;
        self.first * grid..(self.first + self.count) * grid
    }
}

/// Splits a tensor into bands of about `target` elements (at least one block-row each).
fn bands(g: &Geometry, target: usize) -> Vec<Rows> {
    let total = g.rows / g.block_rows;
    let per = (target / (g.block_rows * g.cols).max(1)).clamp(1, total.max(1));
    (0..total).step_by(per).map(|first| Rows { first, count: per.min(total - first) }).collect()
}

/// `x` (a whole tensor) cut into the slices of `bands`, in order.
fn split_bands<'a>(x: &'a mut [f32], g: &Geometry, bands: &[Rows]) -> Vec<(Rows, &'a mut [f32])> {
    let mut rest = x;
    bands
        .iter()
        .map(|band| {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(band.range(g).len());
            rest = tail;
            (*band, head)
        })
        .collect()
}

/// Elements per unit of parallel work: large tensors split into bands this size so both cores
/// stay busy whatever the mix of tensor sizes (small in tests, so small tensors split too).
const BAND_TARGET: usize = if cfg!(test) { 1 << 13 } else { 1 << 20 };

/// The input of [`select_band`]: a band to read, or error feedback to update first.
enum Band<'a> {
    Read(&'a [f32]),
    /// `e ← β·e + Δ` in place, then select from `e`.
    Feedback {
        e: &'a mut [f32],
        delta: &'a [f32],
        beta: f32,
    },
}

impl Band<'_> {
    fn len(&self) -> usize {
        match self {
            Band::Read(x) => x.len(),
            Band::Feedback { e, .. } => e.len(),
        }
    }
}

/// Selects the top-k of every block of a band (the input holds just the band), after the
/// forward DCT when on, appending indices and values.
fn select_band(
    x: Band<'_>,
    g: &Geometry,
    spec: &CodecSpec,
    s: &mut Scratch,
    indices: &mut Vec<u32>,
    kept: &mut Vec<f32>,
) {
    crate::simd::widest(
        #[inline(always)]
        || select_band_body(x, g, spec, s, indices, kept),
    )
}

#[inline(always)]
fn select_band_body(
    mut x: Band<'_>,
    g: &Geometry,
    spec: &CodecSpec,
    s: &mut Scratch,
    indices: &mut Vec<u32>,
    kept: &mut Vec<f32>,
) {
    let (br, bc, len) = (g.block_rows, g.block_cols, g.block_len());
    let grid = g.cols / bc;
    s.block.resize(len, 0.0);
    s.tmp.resize(len, 0.0);
    let (dr, dc) =
        if spec.dct { (s.bases.get(br).to_vec(), s.bases.get(bc).to_vec()) } else { (Vec::new(), Vec::new()) };
    let band_rows = x.len() / g.cols / br;
    for lbi in 0..band_rows {
        for bj in 0..grid {
            for ii in 0..br {
                let at = (lbi * br + ii) * g.cols + bj * bc;
                let dst = &mut s.block[ii * bc..(ii + 1) * bc];
                match &mut x {
                    Band::Read(x) => dst.copy_from_slice(&x[at..at + bc]),
                    Band::Feedback { e, delta, beta } => {
                        for ((e, &d), o) in e[at..at + bc].iter_mut().zip(&delta[at..at + bc]).zip(dst) {
                            *e = *beta * *e + d;
                            *o = *e;
                        }
                    }
                }
            }
            if spec.dct {
                dct::forward(&mut s.block, br, bc, &dr, &dc, &mut s.tmp);
            }
            let start = indices.len();
            s.select.top_k(&s.block, g.k, indices);
            kept.extend(indices[start..].iter().map(|&i| s.block[i as usize]));
        }
    }
}

/// `e ← e − decode(sent)` over one band: the sent values only, or with the DCT on, each block's
/// inverse transform. `j0` is the band's first kept entry in `enc`.
fn subtract_band(e: &mut [f32], enc: &EncodedTensor, j0: usize, g: &Geometry, spec: &CodecSpec, s: &mut Scratch) {
    crate::simd::widest(
        #[inline(always)]
        || subtract_band_body(e, enc, j0, g, spec, s),
    )
}

#[inline(always)]
fn subtract_band_body(e: &mut [f32], enc: &EncodedTensor, j0: usize, g: &Geometry, spec: &CodecSpec, s: &mut Scratch) {
    let (br, bc, len, k) = (g.block_rows, g.block_cols, g.block_len(), g.k);
    let grid = g.cols / bc;
    let band_blocks = e.len() / len;
    if !spec.dct {
        // Where nothing was sent the decoded value is +0, and e − 0 = e bit for bit.
        for lb in 0..band_blocks {
            let (lbi, bj) = (lb / grid, lb % grid);
            for j in j0 + lb * k..j0 + (lb + 1) * k {
                let i = enc.indices[j] as usize;
                e[(lbi * br + i / bc) * g.cols + bj * bc + i % bc] -= enc.value(j);
            }
        }
        return;
    }
    s.block.resize(len, 0.0);
    s.tmp.resize(len, 0.0);
    let (dr, dc) = (s.bases.get(br).to_vec(), s.bases.get(bc).to_vec());
    for lb in 0..band_blocks {
        let (lbi, bj) = (lb / grid, lb % grid);
        s.block.fill(0.0);
        for j in j0 + lb * k..j0 + (lb + 1) * k {
            s.block[enc.indices[j] as usize] = enc.value(j);
        }
        dct::inverse(&mut s.block, br, bc, &dr, &dc, &mut s.tmp);
        for ii in 0..br {
            let at = (lbi * br + ii) * g.cols + bj * bc;
            for (x, &v) in e[at..at + bc].iter_mut().zip(&s.block[ii * bc..(ii + 1) * bc]) {
                *x -= v;
            }
        }
    }
}

fn finish(indices: Vec<u32>, kept: Vec<f32>, spec: &CodecSpec) -> EncodedTensor {
    let values = match spec.quantization_bits {
        Some(bits) => Values::Quantized(quant::quantize(&kept, bits, spec.quantization_range)),
        None => Values::Raw(kept),
    };
    EncodedTensor { indices, values }
}

/// Encodes one dense tensor (row-major). `dct` holds the bases when the DCT is on.
pub fn encode(x: &[f32], g: &Geometry, spec: &CodecSpec, bases: &mut dct::Bases) -> EncodedTensor {
    assert_eq!(x.len(), g.numel(), "tensor size does not match its geometry");
    let mut s = Scratch { bases: std::mem::take(bases), ..Scratch::default() };
    let (mut indices, mut kept) = (Vec::with_capacity(g.kept()), Vec::with_capacity(g.kept()));
    select_band(Band::Read(x), g, spec, &mut s, &mut indices, &mut kept);
    *bases = s.bases;
    finish(indices, kept, spec)
}

/// Decodes one tensor back to a dense row-major tensor.
pub fn decode(t: &EncodedTensor, g: &Geometry, spec: &CodecSpec, bases: &mut dct::Bases) -> Vec<f32> {
    let mut out = vec![0f32; g.numel()];
    decode_into(t, g, spec, bases, &mut out);
    out
}

/// [`decode`] into `out` (`g.numel()` values, overwritten), so a caller can reuse the buffer.
pub fn decode_into(t: &EncodedTensor, g: &Geometry, spec: &CodecSpec, bases: &mut dct::Bases, out: &mut [f32]) {
    assert_eq!(out.len(), g.numel(), "output size does not match the geometry");
    crate::simd::widest(
        #[inline(always)]
        || decode_body(t, g, spec, bases, out),
    )
}

#[inline(always)]
fn decode_body(t: &EncodedTensor, g: &Geometry, spec: &CodecSpec, bases: &mut dct::Bases, out: &mut [f32]) {
    let (br, bc, len, k) = (g.block_rows, g.block_cols, g.block_len(), g.k);
    let grid = g.cols / bc;
    if !spec.dct {
        out.fill(0.0);
        for (j, &i) in t.indices.iter().enumerate() {
            let (lb, i) = (j / k, i as usize);
            out[((lb / grid) * br + i / bc) * g.cols + (lb % grid) * bc + i % bc] = t.value(j);
        }
        return;
    }
    let (dr, dc) = (bases.get(br).to_vec(), bases.get(bc).to_vec());
    let (mut block, mut tmp) = (vec![0f32; len], vec![0f32; len]);
    for b in 0..g.blocks() {
        block.fill(0.0);
        for j in b * k..(b + 1) * k {
            block[t.indices[j] as usize] = t.value(j);
        }
        dct::inverse(&mut block, br, bc, &dr, &dc, &mut tmp);
        g.scatter(&block, b, out);
    }
}

/// The miner's error-feedback step for one tensor: `e ← β·e + Δ`, transmit `encode(e)`,
/// `e ← e − decode(encode(e))` (so quantization error is fed back too).
pub fn encode_with_feedback(
    feedback: &mut [f32],
    delta: &[f32],
    beta: f32,
    g: &Geometry,
    spec: &CodecSpec,
    bases: &mut dct::Bases,
) -> EncodedTensor {
    assert_eq!(feedback.len(), g.numel(), "feedback size does not match its geometry");
    assert_eq!(delta.len(), g.numel(), "delta size does not match its geometry");
    let mut s = Scratch { bases: std::mem::take(bases), ..Scratch::default() };
    let (mut indices, mut kept) = (Vec::with_capacity(g.kept()), Vec::with_capacity(g.kept()));
    select_band(Band::Feedback { e: feedback, delta, beta }, g, spec, &mut s, &mut indices, &mut kept);
    let enc = finish(indices, kept, spec);
    subtract_band(feedback, &enc, 0, g, spec, &mut s);
    *bases = s.bases;
    enc
}

/// The miner's whole-model step: error feedback and encoding of every tensor (see
/// [`encode_with_feedback`]) on `threads` threads. Large tensors are split into bands of
/// whole block-rows, so the work divides by size, not by tensor count; results do not depend
/// on the split.
pub fn encode_model(
    feedback: &mut [Vec<f32>],
    delta: &[Vec<f32>],
    beta: f32,
    spec: &CodecSpec,
    threads: usize,
) -> Vec<EncodedTensor> {
    assert_eq!(feedback.len(), spec.tensors.len(), "one feedback buffer per tensor");
    assert_eq!(delta.len(), spec.tensors.len(), "one delta per tensor");
    for ((e, d), (_, g)) in feedback.iter().zip(delta).zip(&spec.tensors) {
        assert!(e.len() == g.numel() && d.len() == g.numel(), "a buffer does not match its geometry");
    }
    let plan: Vec<Vec<Rows>> = spec.tensors.iter().map(|(_, g)| bands(g, BAND_TARGET)).collect();
    // Selection, band by band.
    let mut jobs = Vec::new();
    for (t, ((e, d), bs)) in feedback.iter_mut().zip(delta).zip(&plan).enumerate() {
        let g = &spec.tensors[t].1;
        jobs.extend(split_bands(e, g, bs).into_iter().map(|(band, head)| (t, head, &d[band.range(g)])));
    }
    let picked = crate::parallel::map(jobs, threads, Scratch::default, |(t, e, d), s| {
        let g = &spec.tensors[t].1;
        let blocks = e.len() / g.block_len();
        let (mut indices, mut kept) = (Vec::with_capacity(blocks * g.k), Vec::with_capacity(blocks * g.k));
        select_band(Band::Feedback { e, delta: d, beta }, g, spec, s, &mut indices, &mut kept);
        (t, indices, kept)
    });
    let mut per_tensor: Vec<(Vec<u32>, Vec<f32>)> =
        spec.tensors.iter().map(|(_, g)| (Vec::with_capacity(g.kept()), Vec::with_capacity(g.kept()))).collect();
    for (t, indices, kept) in picked {
        per_tensor[t].0.extend(indices);
        per_tensor[t].1.extend(kept);
    }
    let encoded: Vec<EncodedTensor> = per_tensor.into_iter().map(|(i, k)| finish(i, k, spec)).collect();
    // The local decode, subtracted band by band.
    let mut jobs = Vec::new();
    for (t, (e, bs)) in feedback.iter_mut().zip(&plan).enumerate() {
        let g = &spec.tensors[t].1;
        jobs.extend(split_bands(e, g, bs).into_iter().map(|(band, head)| (t, head, band.blocks(g).start * g.k)));
    }
    crate::parallel::map(jobs, threads, Scratch::default, |(t, e, j0), s| {
        subtract_band(e, &encoded[t], j0, &spec.tensors[t].1, spec, s);
    });
    encoded
}

/// Every node's window step: for each tensor, [`aggregate`] over the peers `(uid, tensors)`,
/// applied at once as `θ ← θ − lr·Δ` ([`step_tensor`](crate::model::step_tensor)) through one
/// reused buffer, so the dense update of the whole model never exists (4.4 GB for the 1B
/// preset). A peer that does not hold one tensor per layout entry is refused whole; a tensor
/// that cannot be aggregated is left as it is and listed with the reason.
pub fn aggregate_and_step(
    peers: &[(u16, &[EncodedTensor])],
    spec: &CodecSpec,
    tensors: &mut [Vec<f32>],
    lr: f32,
    threads: usize,
) -> Result<Vec<(String, AggregateError)>, AggregateError> {
    if peers.is_empty() {
        return Err(AggregateError::NoPeers);
    }
    if let Some((uid, t)) = peers.iter().find(|(_, t)| t.len() != spec.tensors.len()) {
        return Err(AggregateError::TensorCount { uid: *uid, got: t.len(), expected: spec.tensors.len() });
    }
    assert_eq!(tensors.len(), spec.tensors.len(), "one model tensor per layout entry");
    let mut failed = Vec::new();
    let mut scratch = Scratch::default();
    let mut update = Vec::new();
    for (i, (theta, (p, g))) in tensors.iter_mut().zip(&spec.tensors).enumerate() {
        assert_eq!(theta.len(), g.numel(), "model tensor {} does not match its geometry", p.path);
        update.resize(g.numel(), 0.0);
        let tensor_peers: Vec<(u16, &EncodedTensor)> = peers.iter().map(|(uid, t)| (*uid, &t[i])).collect();
        match aggregate_into(&tensor_peers, g, spec, threads, &mut scratch, &mut update) {
            Ok(()) => crate::model::step_tensor(theta, &update, lr),
            Err(e) => failed.push((p.path.clone(), e)),
        }
    }
    Ok(failed)
}

/// Deterministic heavy-tailed values shaped like a pseudo-gradient (cubed uniform noise, scale
/// 1e-2), for benchmarks and tests: the same `(n, seed)` gives the same values everywhere.
pub fn synthetic_delta(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            u * u * u * 1e-2
        })
        .collect()
}

#[cfg(test)]
mod tests;
