//! The signed pseudo-gradient payload (docs/protocol.md §8).
//!
//! ```text
//! header (160 bytes, little-endian)
//!   0 magic "FRMPAYLD"   8 version u16 = 2   10 netuid u16   12 uid u16   14 reserved u16 = 0
//!   16 window u64        24 hotkey [32]      56 config hash [32]
//!   88 fingerprint of the model trained from [32]   120 digest of the samples trained on [32]
//!   152 tensor count u32  156 reserved u32 = 0
//! body: one section per tensor, in parameter-layout order
//!   quantized: shift f32, scale f32, table 2^b × f32, indices (per block, Rice codes of the
//!              gaps in a fixed-width slot: `codec::rice`), codes (b bits each, bit-packed)
//!   raw:       indices (as above), values k per block × f32
//! hash: blake3(header ‖ body) [32]
//! signature: sr25519 by the hotkey over "ferrum 2026-11 payload v1" ‖ header ‖ hash [64]
//! ```
//! Every size follows from the config, so a reader knows the exact byte size of a valid
//! payload before downloading it and never allocates by a count read from the payload.

mod parse;
pub mod section;

use sp_core::Pair;
use sp_core::sr25519;

use crate::codec::{CodecSpec, EncodedTensor};
use crate::config::{ConfigHash, SubnetConfig};
use crate::hotkey::Hotkey;
#[cfg(feature = "io")]
use crate::storage::{ObjectInfo, StorageError, Store};

pub use parse::{Expectation, Rejection, parse, parse_unverified};

/// File magic.
pub const MAGIC: &[u8; 8] = b"FRMPAYLD";
/// Format version: 2 since the indices are Rice-coded (1 had fixed-width indices).
pub const VERSION: u16 = 2;
/// Header bytes.
pub const HEADER_LEN: usize = 160;
/// Hash and signature bytes at the end.
pub const TRAILER_LEN: usize = 32 + 64;
/// Prefix of the signed message: a signature for anything else cannot be replayed here.
pub const SIGNING_CONTEXT: &[u8] = b"ferrum 2026-11 payload v1";

/// Who made a payload, for what, and from what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadHeader {
    pub netuid: u16,
    pub uid: u16,
    pub window: u64,
    pub hotkey: Hotkey,
    pub config_hash: ConfigHash,
    /// Fingerprint of the global model the miner trained from.
    pub base_fingerprint: [u8; 32],
    /// `assignment::samples_digest` of the samples it trained on.
    pub samples_digest: [u8; 32],
}

/// A parsed, verified payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub header: PayloadHeader,
    pub tensors: Vec<EncodedTensor>,
    /// The payload's content id: BLAKE3 of header and body, as stored in it (the signature,
    /// which sr25519 randomizes, is not part of it). Gather records name payloads by it.
    pub hash: [u8; 32],
}

/// Byte layout of valid payloads under one config.
#[derive(Debug, Clone)]
pub struct PayloadLayout {
    pub spec: CodecSpec,
    sections: Vec<usize>,
    size: usize,
    /// What a format-1 payload (fixed-width indices) weighed under the same settings, so a node
    /// can say that an object is an old miner's rather than just the wrong size.
    v1_size: usize,
}

impl PayloadLayout {
    /// The layout for a config's model and compression settings.
    pub fn new(config: &SubnetConfig) -> PayloadLayout {
        Self::for_spec(CodecSpec::new(config))
    }

    /// The layout for an explicit codec spec.
    pub fn for_spec(spec: CodecSpec) -> PayloadLayout {
        let sections: Vec<usize> = spec.tensors.iter().map(|(_, g)| section::len(g, spec.quantization_bits)).collect();
        let size = HEADER_LEN + sections.iter().sum::<usize>() + TRAILER_LEN;
        let v1_size = HEADER_LEN + section::v1_len(&spec) + TRAILER_LEN;
        PayloadLayout { spec, sections, size, v1_size }
    }

    /// The rejection of an object of `got` bytes, when that is not [`size`](Self::size).
    pub fn size_rejection(&self, got: u64) -> Rejection {
        if got == self.v1_size as u64 && self.v1_size != self.size {
            Rejection::OldFormat { got, expected: self.size }
        } else {
            Rejection::Size { expected: self.size, got }
        }
    }

    /// Exact size in bytes of every valid payload.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Bytes of tensor `i`'s section.
    pub fn section(&self, i: usize) -> usize {
        self.sections[i]
    }
}

/// Bytes the same compressed content takes in the reference (Templar) layout, for comparison:
/// 12-bit packed indices, one byte per quantized value, and per tensor a shift, a scale, an
/// offset and a 4-entry f32 centroid table (4 + 4 + 4 + 16 bytes).
pub fn reference_layout_bytes(spec: &CodecSpec) -> usize {
    spec.tensors.iter().map(|(_, g)| g.kept() * 3 / 2 + g.kept() + 28).sum()
}

/// A payload that cannot be built from these tensors (a bug in the caller, not hostile input).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{got} tensors, the layout has {expected}")]
    TensorCount { expected: usize, got: usize },
    #[error("tensor {path}: {reason}")]
    Tensor { path: String, reason: String },
    #[error("the signing key is not the header's hotkey")]
    WrongKey,
}

fn encode_header(h: &PayloadHeader, tensors: u32) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[0..8].copy_from_slice(MAGIC);
    b[8..10].copy_from_slice(&VERSION.to_le_bytes());
    b[10..12].copy_from_slice(&h.netuid.to_le_bytes());
    b[12..14].copy_from_slice(&h.uid.to_le_bytes());
    b[16..24].copy_from_slice(&h.window.to_le_bytes());
    b[24..56].copy_from_slice(h.hotkey.as_bytes());
    b[56..88].copy_from_slice(&h.config_hash.0);
    b[88..120].copy_from_slice(&h.base_fingerprint);
    b[120..152].copy_from_slice(&h.samples_digest);
    b[152..156].copy_from_slice(&tensors.to_le_bytes());
    b
}

/// The message a payload's signature covers.
fn signed_message(header: &[u8], hash: &[u8]) -> Vec<u8> {
    [SIGNING_CONTEXT, header, hash].concat()
}

/// Serializes and signs a payload. The key must be the header's hotkey.
pub fn build(
    header: &PayloadHeader,
    tensors: &[EncodedTensor],
    layout: &PayloadLayout,
    key: &sr25519::Pair,
) -> Result<Vec<u8>, BuildError> {
    if key.public().0 != header.hotkey.0 {
        return Err(BuildError::WrongKey);
    }
    if tensors.len() != layout.spec.tensors.len() {
        return Err(BuildError::TensorCount { expected: layout.spec.tensors.len(), got: tensors.len() });
    }
    let mut out = Vec::with_capacity(layout.size());
    out.extend_from_slice(&encode_header(header, tensors.len() as u32));
    for (i, (t, (p, g))) in tensors.iter().zip(&layout.spec.tensors).enumerate() {
        let start = out.len();
        section::write(t, g, layout.spec.quantization_bits, &mut out)
            .map_err(|reason| BuildError::Tensor { path: p.path.clone(), reason: reason.to_string() })?;
        debug_assert_eq!(out.len() - start, layout.section(i));
    }
    let hash = blake3::hash(&out);
    let signature = key.sign(&signed_message(&out[..HEADER_LEN], hash.as_bytes()));
    out.extend_from_slice(hash.as_bytes());
    out.extend_from_slice(&signature.0);
    debug_assert_eq!(out.len(), layout.size());
    Ok(out)
}

#[cfg(feature = "io")]
/// Why a payload could not be had from storage.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("rejected: {0}")]
    Rejected(Rejection),
}

#[cfg(feature = "io")]
// By hand rather than `#[from]`, which would also expose the rejection as the error's source
// and print it twice in a cause chain.
impl From<Rejection> for FetchError {
    fn from(r: Rejection) -> Self {
        FetchError::Rejected(r)
    }
}

#[cfg(feature = "io")]
/// Fetches and verifies a payload, returning its bytes too (validators mirror them). An object
/// of any size but the exact one a valid payload has is refused before its body is read.
pub async fn fetch(
    store: &Store,
    key: &str,
    layout: &PayloadLayout,
    expect: &Expectation<'_>,
) -> Result<(ObjectInfo, Payload, bytes::Bytes), FetchError> {
    let (info, bytes) = store.get_exact(key, layout.size() as u64).await.map_err(|e| match e {
        StorageError::WrongSize { size, .. } => FetchError::Rejected(layout.size_rejection(size)),
        other => FetchError::Storage(other),
    })?;
    let payload = parse(&bytes, layout, expect)?;
    Ok((info, payload, bytes))
}

#[cfg(test)]
mod tests;
