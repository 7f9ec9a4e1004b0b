//! The dataset manifest: tokenizer, sequence length and shards. Its blake3 is the dataset id.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::shard::{HEADER_LEN, SAMPLE_HASH_LEN};

const MANIFEST_ID_CONTEXT: &str = "ferrum 2026-11 dataset manifest v1";

/// Manifest `format` value.
pub const MANIFEST_FORMAT: &str = "ferrum-dataset";
/// Manifest `version` value.
pub const MANIFEST_VERSION: u32 = 1;

/// blake3 (derive-key mode) of the manifest's bytes; names a dataset in the protocol.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DatasetId(pub [u8; 32]);

impl DatasetId {
    /// The id of manifest bytes exactly as stored.
    pub fn of_manifest(bytes: &[u8]) -> DatasetId {
        DatasetId(blake3::derive_key(MANIFEST_ID_CONTEXT, bytes))
    }
}

hex_id!(DatasetId);

impl FromStr for DatasetId {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(DatasetId(out))
    }
}

/// The tokenizer a dataset was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerInfo {
    /// `bytes`, `gpt2`, or `hf:<blake3 of tokenizer.json>`.
    pub id: String,
    /// Number of token ids the tokenizer can emit.
    pub vocab_size: u32,
    /// Token appended after every document.
    pub eos_token: u32,
    /// blake3 (hex) of the tokenizer's vocabulary or file.
    pub hash: String,
}

/// One shard as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    /// Key relative to the dataset location.
    pub key: String,
    pub samples: u64,
    pub bytes: u64,
    /// blake3 (hex) of the shard's 96-byte header.
    pub header_blake3: String,
}

/// A dataset manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub tokenizer: TokenizerInfo,
    pub sequence_length: u32,
    pub token_width: u8,
    pub total_samples: u64,
    pub total_tokens: u64,
    pub shards: Vec<ShardEntry>,
}

impl Manifest {
    /// The exact bytes written to storage (pretty JSON plus a newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serializes");
        v.push(b'\n');
        v
    }

    /// Checks internal consistency; returns the first problem found.
    pub fn check(&self) -> Result<(), String> {
        if self.format != MANIFEST_FORMAT {
            return Err(format!("format is `{}`, expected `{MANIFEST_FORMAT}`", self.format));
        }
        if self.version != MANIFEST_VERSION {
            return Err(format!("version {} is not supported (expected {MANIFEST_VERSION})", self.version));
        }
        if self.token_width != 2 && self.token_width != 4 {
            return Err(format!("token_width {} (must be 2 or 4)", self.token_width));
        }
        if self.token_width == 2 && self.tokenizer.vocab_size > 65_536 {
            return Err(format!("vocab_size {} does not fit 2-byte tokens", self.tokenizer.vocab_size));
        }
        if self.tokenizer.eos_token >= self.tokenizer.vocab_size {
            return Err("tokenizer.eos_token is outside the vocabulary".into());
        }
        if self.sequence_length == 0 {
            return Err("sequence_length is 0".into());
        }
        if self.shards.is_empty() {
            return Err("no shards".into());
        }
        let sample_bytes = u64::from(self.sequence_length) * u64::from(self.token_width);
        let mut total = 0u64;
        for (i, s) in self.shards.iter().enumerate() {
            if s.key.is_empty() || s.key.starts_with('/') || s.key.split('/').any(|p| p.is_empty() || p == "..") {
                return Err(format!("shard {i}: key `{}` is not a relative key", s.key));
            }
            if s.samples == 0 {
                return Err(format!("shard {i} is empty"));
            }
            let expect =
                s.samples.checked_mul(sample_bytes + SAMPLE_HASH_LEN as u64).and_then(|b| b.checked_add(HEADER_LEN));
            if expect != Some(s.bytes) {
                return Err(format!("shard {i}: {} bytes does not match {} samples", s.bytes, s.samples));
            }
            if s.header_blake3.len() != 64 || hex::decode(&s.header_blake3).is_err() {
                return Err(format!("shard {i}: header_blake3 is not 64 hex digits"));
            }
            total = total.checked_add(s.samples).ok_or_else(|| "sample count overflows".to_string())?;
        }
        if total != self.total_samples {
            return Err(format!("total_samples {} but shards hold {total}", self.total_samples));
        }
        if self.total_tokens != total.saturating_mul(u64::from(self.sequence_length)) {
            return Err(format!("total_tokens {} does not match {total} samples", self.total_tokens));
        }
        Ok(())
    }
}
