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

use crate::config::{CompressionConfig, SubnetConfig};
use crate::params::{self, ParamSpec};

pub use aggregate::{AggregateError, aggregate};
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
    /// Bits per in-block index: enough for `block_rows·block_cols − 1` (at least 1).
    pub index_bits: u32,
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
        let index_bits = (usize::BITS - (len.max(2) - 1).leading_zeros()).max(1);
        Geometry { rows, cols, block_rows, block_cols, k: topk.min(len), index_bits }
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
}

/// Encodes one dense tensor (row-major). `dct` holds the bases when the DCT is on.
pub fn encode(x: &[f32], g: &Geometry, spec: &CodecSpec, bases: &mut dct::Bases) -> EncodedTensor {
    assert_eq!(x.len(), g.numel(), "tensor size does not match its geometry");
    let len = g.block_len();
    let mut block = vec![0f32; len];
    let mut tmp = vec![0f32; len];
    let mut order: Vec<u32> = (0..len as u32).collect();
    let mut indices = Vec::with_capacity(g.kept());
    let mut kept = Vec::with_capacity(g.kept());
    let (dr, dc) = if spec.dct {
        (bases.get(g.block_rows).to_vec(), bases.get(g.block_cols).to_vec())
    } else {
        (Vec::new(), Vec::new())
    };
    for b in 0..g.blocks() {
        g.gather(x, b, &mut block);
        if spec.dct {
            dct::forward(&mut block, g.block_rows, g.block_cols, &dr, &dc, &mut tmp);
        }
        // Largest magnitude first, lower index first among equals (NaN-safe total order).
        let by_magnitude = |a: &u32, c: &u32| {
            let (va, vc) = (block[*a as usize].abs(), block[*c as usize].abs());
            vc.total_cmp(&va).then(a.cmp(c))
        };
        if g.k < len {
            order.iter_mut().enumerate().for_each(|(i, o)| *o = i as u32);
            order.select_nth_unstable_by(g.k - 1, by_magnitude);
        }
        let top = &mut order[..g.k];
        top.sort_unstable();
        for &i in top.iter() {
            indices.push(i);
            kept.push(block[i as usize]);
        }
    }
    let values = match spec.quantization_bits {
        Some(bits) => Values::Quantized(quant::quantize(&kept, bits, spec.quantization_range)),
        None => Values::Raw(kept),
    };
    EncodedTensor { indices, values }
}

/// Decodes one tensor back to a dense row-major tensor.
pub fn decode(t: &EncodedTensor, g: &Geometry, spec: &CodecSpec, bases: &mut dct::Bases) -> Vec<f32> {
    let mut blocks = vec![0f32; g.numel()];
    for (j, &i) in t.indices.iter().enumerate() {
        blocks[(j / g.k) * g.block_len() + i as usize] = t.value(j);
    }
    unblock(blocks, g, spec.dct, bases)
}

/// Turns block-major coefficients into a row-major tensor, applying the inverse DCT when on.
pub(crate) fn unblock(mut blocks: Vec<f32>, g: &Geometry, dct_on: bool, bases: &mut dct::Bases) -> Vec<f32> {
    let len = g.block_len();
    if dct_on {
        let dr = bases.get(g.block_rows).to_vec();
        let dc = bases.get(g.block_cols).to_vec();
        let mut tmp = vec![0f32; len];
        for block in blocks.chunks_exact_mut(len) {
            dct::inverse(block, g.block_rows, g.block_cols, &dr, &dc, &mut tmp);
        }
    }
    let mut out = vec![0f32; g.numel()];
    for (b, block) in blocks.chunks_exact(len).enumerate() {
        g.scatter(block, b, &mut out);
    }
    out
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
    for (e, &d) in feedback.iter_mut().zip(delta) {
        *e = beta * *e + d;
    }
    let enc = encode(feedback, g, spec, bases);
    let sent = decode(&enc, g, spec, bases);
    for (e, s) in feedback.iter_mut().zip(sent) {
        *e -= s;
    }
    enc
}

/// The miner's whole-model step: error feedback and encoding of every tensor (see
/// [`encode_with_feedback`]), `threads` tensors at a time.
pub fn encode_model(
    feedback: &mut [Vec<f32>],
    delta: &[Vec<f32>],
    beta: f32,
    spec: &CodecSpec,
    threads: usize,
) -> Vec<EncodedTensor> {
    assert_eq!(feedback.len(), spec.tensors.len(), "one feedback buffer per tensor");
    assert_eq!(delta.len(), spec.tensors.len(), "one delta per tensor");
    let items: Vec<_> = feedback.iter_mut().zip(delta).zip(&spec.tensors).collect();
    crate::parallel::map(items, threads, dct::Bases::default, |((e, d), (_, g)), bases| {
        encode_with_feedback(e, d, beta, g, spec, bases)
    })
}

/// The whole model's aggregate: per tensor the dense update, or `None` where that tensor could
/// not be aggregated (the outer step then leaves it), with the reason kept for the logs.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelUpdate {
    /// One entry per tensor of the layout, in layout order.
    pub tensors: Vec<Option<Vec<f32>>>,
    /// `(tensor path, why)` for every `None` above.
    pub failed: Vec<(String, AggregateError)>,
}

/// Every node's whole-model aggregation: for each tensor, [`aggregate`] over the peers
/// `(uid, tensors)`. A peer that does not hold one tensor per layout entry is refused whole.
pub fn aggregate_model(
    peers: &[(u16, &[EncodedTensor])],
    spec: &CodecSpec,
    threads: usize,
) -> Result<ModelUpdate, AggregateError> {
    if peers.is_empty() {
        return Err(AggregateError::NoPeers);
    }
    if let Some((uid, t)) = peers.iter().find(|(_, t)| t.len() != spec.tensors.len()) {
        return Err(AggregateError::TensorCount { uid: *uid, got: t.len(), expected: spec.tensors.len() });
    }
    let ids: Vec<usize> = (0..spec.tensors.len()).collect();
    let results = crate::parallel::map(ids, threads, dct::Bases::default, |i, bases| {
        let tensor_peers: Vec<(u16, &EncodedTensor)> = peers.iter().map(|(uid, t)| (*uid, &t[i])).collect();
        aggregate(&tensor_peers, &spec.tensors[i].1, spec, bases)
    });
    let mut update = ModelUpdate { tensors: Vec::with_capacity(results.len()), failed: Vec::new() };
    for (r, (p, _)) in results.into_iter().zip(&spec.tensors) {
        match r {
            Ok(t) => update.tensors.push(Some(t)),
            Err(e) => {
                update.failed.push((p.path.clone(), e));
                update.tensors.push(None);
            }
        }
    }
    Ok(update)
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
