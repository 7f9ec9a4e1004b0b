//! The codec as first written, kept as the definition the fast paths are held to bit for bit
//! (tests only).

use super::aggregate::{AggregateError, median, norm};
use super::{CodecSpec, EncodedTensor, Geometry, Values, dct, quant};

const NORM_EPS: f64 = 1e-8;

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
pub fn unblock(mut blocks: Vec<f32>, g: &Geometry, dct_on: bool, bases: &mut dct::Bases) -> Vec<f32> {
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
            Values::Quantized(q) => q.codes.len(),
            Values::Raw(v) => v.len(),
        };
        if values != g.kept() {
            return Err(AggregateError::ValueCount { uid: *uid, got: values, expected: g.kept() });
        }
        if let Values::Quantized(q) = &t.values
            && q.codes.iter().any(|&c| usize::from(c) >= q.table.len())
        {
            return Err(AggregateError::CodeRange { uid: *uid, levels: q.table.len() });
        }
    }
    let norms: Vec<f64> = ordered.iter().map(|(_, t)| norm(t)).collect();
    let m = median(norms.clone()).ok_or(AggregateError::NoPeers)?;
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
