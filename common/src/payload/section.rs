//! One tensor's section of a payload: its byte size, writing it, and reading it strictly.

use super::Rejection;
use crate::codec::{EncodedTensor, Geometry, Quantized, Values, bits, rice};

/// Bytes of a tensor's section under the codec settings.
pub fn len(g: &Geometry, quantization_bits: Option<u8>) -> usize {
    around_indices(g, quantization_bits, rice::packed_len(g.index_code, g.blocks()))
}

/// A section's bytes given those of its indices: the quantization header and codes, or the raw
/// values, around them.
fn around_indices(g: &Geometry, quantization_bits: Option<u8>, indices: usize) -> usize {
    match quantization_bits {
        Some(b) => 8 + 4 * (1 << b) + indices + bits::packed_len(g.kept(), u32::from(b)),
        None => indices + 4 * g.kept(),
    }
}

/// Bytes all sections took in format 1, where each index had `⌈log2(block length)⌉` bits
/// (at least 1): only to recognise an old payload by its size.
pub fn v1_len(spec: &crate::codec::CodecSpec) -> usize {
    spec.tensors
        .iter()
        .map(|(_, g)| {
            let index_bits = (usize::BITS - (g.block_len().max(2) - 1).leading_zeros()).max(1);
            around_indices(g, spec.quantization_bits, bits::packed_len(g.kept(), index_bits))
        })
        .sum()
}

/// Appends a tensor's section. The error names what does not match the settings (a bug in the
/// caller, not hostile input).
pub fn write(
    t: &EncodedTensor,
    g: &Geometry,
    quantization_bits: Option<u8>,
    out: &mut Vec<u8>,
) -> Result<(), &'static str> {
    if t.indices.len() != g.kept() {
        return Err("wrong number of kept values");
    }
    match (&t.values, quantization_bits) {
        (Values::Quantized(q), Some(b)) => {
            if q.table.len() != 1 << b || q.codes.len() != g.kept() {
                return Err("quantization does not match the config");
            }
            out.extend_from_slice(&q.shift.to_le_bytes());
            out.extend_from_slice(&q.scale.to_le_bytes());
            q.table.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
            rice::write(&t.indices, g.block_len(), g.k, g.index_code, out)?;
            bits::pack(q.codes.iter().map(|&c| u32::from(c)), u32::from(b), out);
        }
        (Values::Raw(v), None) => {
            if v.len() != g.kept() {
                return Err("wrong number of values");
            }
            rice::write(&t.indices, g.block_len(), g.k, g.index_code, out)?;
            v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
        _ => return Err("quantized values where the config sends raw ones, or the reverse"),
    }
    Ok(())
}

fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_bits(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

/// Reads a section of exactly [`len`] bytes, checking every field (docs/protocol.md §8).
/// `tensor` names it in a rejection.
pub fn read(
    section: &[u8],
    g: &Geometry,
    quantization_bits: Option<u8>,
    tensor: &str,
) -> Result<EncodedTensor, Rejection> {
    // The payload parser cuts sections by the layout; anyone else calling with another length
    // gets a refusal, not a panic.
    let expected = len(g, quantization_bits);
    if section.len() != expected {
        return Err(Rejection::Size { expected, got: section.len() as u64 });
    }
    let tensor = || tensor.to_string();
    let mut pos = 0;
    let mut quant = None;
    if let Some(bits_per) = quantization_bits {
        let levels = 1usize << bits_per;
        let shift = f32_at(section, 0);
        let scale = f32_at(section, 4);
        let table: Vec<f32> = (0..levels).map(|l| f32_at(section, 8 + 4 * l)).collect();
        if !shift.is_finite() {
            return Err(Rejection::NonFinite { tensor: tensor(), field: "shift" });
        }
        if !scale.is_finite() {
            return Err(Rejection::NonFinite { tensor: tensor(), field: "scale" });
        }
        if scale <= 0.0 {
            return Err(Rejection::Scale { tensor: tensor(), scale });
        }
        if table.iter().any(|v| !v.is_finite() || !(v + shift).is_finite()) {
            return Err(Rejection::NonFinite { tensor: tensor(), field: "centroid table" });
        }
        pos = 8 + 4 * levels;
        quant = Some((bits_per, shift, scale, table));
    }
    let idx_len = rice::packed_len(g.index_code, g.blocks());
    let mut indices = Vec::with_capacity(g.kept());
    let block_len = g.block_len();
    rice::read(&section[pos..pos + idx_len], g.blocks(), block_len, g.k, g.index_code, &mut indices).map_err(|e| {
        match e {
            rice::BlockError::OutOfRange { block, index } => {
                Rejection::IndexOutOfRange { tensor: tensor(), block, index, block_len }
            }
            rice::BlockError::Overrun { block } => Rejection::IndexCode { tensor: tensor(), block },
            rice::BlockError::Padding { .. } => Rejection::Padding { tensor: tensor() },
        }
    })?;
    pos += idx_len;
    let values = match quant {
        Some((bits_per, shift, scale, table)) => {
            let mut codes = Vec::with_capacity(g.kept());
            bits::unpack(&section[pos..], g.kept(), u32::from(bits_per), &mut codes)
                .ok_or_else(|| Rejection::Padding { tensor: tensor() })?;
            Values::Quantized(Quantized { shift, scale, table, codes: codes.into_iter().map(|c| c as u8).collect() })
        }
        None => {
            let v: Vec<f32> = (0..g.kept()).map(|j| f32_at(section, pos + 4 * j)).collect();
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Rejection::NonFinite { tensor: tensor(), field: "values" });
            }
            Values::Raw(v)
        }
    };
    Ok(EncodedTensor { indices, values })
}
