//! The strict, bounded payload parser. Every way a payload can be wrong has its own
//! [`Rejection`]; nothing here panics or allocates by a count read from the input.

use sp_core::sr25519;

use super::{HEADER_LEN, MAGIC, Payload, PayloadHeader, PayloadLayout, TRAILER_LEN, VERSION, section, signed_message};
use crate::codec::EncodedTensor;
use crate::config::ConfigHash;
use crate::hotkey::Hotkey;

/// What the reader expects a payload to be.
#[derive(Debug, Clone, Copy)]
pub struct Expectation<'a> {
    pub netuid: u16,
    pub window: u64,
    pub uid: u16,
    pub hotkey: &'a Hotkey,
    pub config_hash: &'a ConfigHash,
}

/// Why a payload was refused. Each is logged and scores zero.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("size {got} bytes, a valid payload is exactly {expected}")]
    Size { expected: usize, got: u64 },
    #[error(
        "size {got} bytes is a format-1 payload (fixed-width indices), which this node no longer reads: \
         a format-{VERSION} payload is exactly {expected} (the miner must upgrade)"
    )]
    OldFormat { got: u64, expected: usize },
    #[error("bad magic: not a Ferrum payload")]
    Magic,
    #[error("format version {0} is not supported: this node reads version {VERSION}")]
    Version(u16),
    #[error("reserved header bytes are not zero")]
    Reserved,
    #[error("{got} tensors, the model has {expected}")]
    TensorCount { expected: usize, got: u32 },
    #[error("made for netuid {got}, expected {expected}")]
    Netuid { expected: u16, got: u16 },
    #[error("made for window {got}, expected {expected} (stale or replayed)")]
    Window { expected: u64, got: u64 },
    #[error("made for uid {got}, expected {expected}")]
    Uid { expected: u16, got: u16 },
    #[error("made by hotkey {got}, expected {expected}")]
    Hotkey { expected: Hotkey, got: Hotkey },
    #[error("made under config {got}, expected {expected}")]
    Config { expected: ConfigHash, got: ConfigHash },
    #[error("content hash does not match (corrupted or altered)")]
    Hash,
    #[error("signature is not the hotkey's (forged)")]
    Signature,
    #[error("tensor {tensor}: block {block}: index {index} is outside the block of {block_len}")]
    IndexOutOfRange { tensor: String, block: usize, index: u64, block_len: usize },
    #[error("tensor {tensor}: block {block}: the index codes run past the block's slot")]
    IndexCode { tensor: String, block: usize },
    #[error("tensor {tensor}: unused padding bits are set")]
    Padding { tensor: String },
    #[error("tensor {tensor}: {field} is not finite")]
    NonFinite { tensor: String, field: &'static str },
    #[error("tensor {tensor}: scale {scale} is not positive")]
    Scale { tensor: String, scale: f32 },
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn array32(b: &[u8], at: usize) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&b[at..at + 32]);
    out
}

/// Parses and fully verifies a payload: size, header, identity, hash, signature, then every
/// tensor section.
pub fn parse(bytes: &[u8], layout: &PayloadLayout, expect: &Expectation<'_>) -> Result<Payload, Rejection> {
    let header = parse_header(bytes, layout)?;
    if header.netuid != expect.netuid {
        return Err(Rejection::Netuid { expected: expect.netuid, got: header.netuid });
    }
    if header.window != expect.window {
        return Err(Rejection::Window { expected: expect.window, got: header.window });
    }
    if header.uid != expect.uid {
        return Err(Rejection::Uid { expected: expect.uid, got: header.uid });
    }
    if header.hotkey != *expect.hotkey {
        return Err(Rejection::Hotkey { expected: *expect.hotkey, got: header.hotkey });
    }
    if header.config_hash != *expect.config_hash {
        return Err(Rejection::Config { expected: *expect.config_hash, got: header.config_hash });
    }
    let body_end = bytes.len() - TRAILER_LEN;
    let hash = &bytes[body_end..body_end + 32];
    if blake3::hash(&bytes[..body_end]).as_bytes() != hash {
        return Err(Rejection::Hash);
    }
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&bytes[body_end + 32..]);
    let message = signed_message(&bytes[..HEADER_LEN], hash);
    let public = sr25519::Public::from_raw(header.hotkey.0);
    if !<sr25519::Pair as sp_core::Pair>::verify(&sr25519::Signature::from_raw(sig), &message, &public) {
        return Err(Rejection::Signature);
    }
    let tensors = parse_body(bytes, layout)?;
    Ok(Payload { header, tensors, hash: array32(bytes, body_end) })
}

/// Parses the structure without checking identity, hash or signature: for tools and fuzzing
/// only. Nodes use [`parse`].
pub fn parse_unverified(bytes: &[u8], layout: &PayloadLayout) -> Result<Payload, Rejection> {
    let header = parse_header(bytes, layout)?;
    let tensors = parse_body(bytes, layout)?;
    Ok(Payload { header, tensors, hash: array32(bytes, bytes.len() - TRAILER_LEN) })
}

fn parse_header(b: &[u8], layout: &PayloadLayout) -> Result<PayloadHeader, Rejection> {
    if b.len() != layout.size() {
        return Err(layout.size_rejection(b.len() as u64));
    }
    if &b[0..8] != MAGIC {
        return Err(Rejection::Magic);
    }
    let version = u16_at(b, 8);
    if version != VERSION {
        return Err(Rejection::Version(version));
    }
    if u16_at(b, 14) != 0 || u32_at(b, 156) != 0 {
        return Err(Rejection::Reserved);
    }
    let count = u32_at(b, 152);
    if count as usize != layout.spec.tensors.len() {
        return Err(Rejection::TensorCount { expected: layout.spec.tensors.len(), got: count });
    }
    let mut window = [0u8; 8];
    window.copy_from_slice(&b[16..24]);
    Ok(PayloadHeader {
        netuid: u16_at(b, 10),
        uid: u16_at(b, 12),
        window: u64::from_le_bytes(window),
        hotkey: Hotkey(array32(b, 24)),
        config_hash: ConfigHash(array32(b, 56)),
        base_fingerprint: array32(b, 88),
        samples_digest: array32(b, 120),
    })
}

fn parse_body(b: &[u8], layout: &PayloadLayout) -> Result<Vec<EncodedTensor>, Rejection> {
    let mut at = HEADER_LEN;
    let mut out = Vec::with_capacity(layout.spec.tensors.len());
    for (i, (p, g)) in layout.spec.tensors.iter().enumerate() {
        let section = &b[at..at + layout.section(i)];
        at += layout.section(i);
        out.push(section::read(section, g, layout.spec.quantization_bits, &p.path)?);
    }
    Ok(out)
}
