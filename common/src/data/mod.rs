//! Pre-tokenized datasets: the shard format, the manifest, and a verified reader.

#[cfg(feature = "io")]
mod dataset;
mod manifest;
pub mod shard;

#[cfg(feature = "io")]
pub use dataset::Dataset;
pub use manifest::{DatasetId, MANIFEST_FORMAT, MANIFEST_VERSION, Manifest, ShardEntry, TokenizerInfo};

#[cfg(feature = "io")]
use crate::storage::StorageError;

/// Why a dataset or one of its samples cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[cfg(feature = "io")]
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(
        "no dataset at {store} (no manifest.json there): run `ferrum quickstart` for a local dev dataset, \
         or `ferrum data prepare --out {store}`, or point storage.dataset_url at a prepared dataset"
    )]
    NoDataset { store: String },
    #[error("dataset manifest at {store} is not valid: {reason}")]
    Manifest { store: String, reason: String },
    #[error("dataset at {store} has id {found}, but the config pins {expected}")]
    WrongDataset { store: String, expected: String, found: String },
    #[error("dataset does not match the config: {field} is {found} in the manifest but {expected} in the config")]
    ConfigMismatch { field: &'static str, expected: String, found: String },
    #[error(
        "the dataset holds {total} samples, fewer than a window assigns each node (training.inner_steps × \
         training.batch_size = {needed}): lower one of them or use a larger dataset"
    )]
    TooSmall { needed: u64, total: u64 },
    #[error("shard {shard} ({key}): {reason}")]
    Shard { shard: usize, key: String, reason: String },
    #[error("sample {index} (shard {shard}) does not match its hash: corrupted or altered data")]
    SampleCorrupt { index: u64, shard: usize },
    #[error("sample {index} holds token {token}, outside the vocabulary of {vocab}")]
    TokenOutOfRange { index: u64, token: u32, vocab: u32 },
    #[error("sample index {index} is outside the dataset ({total} samples)")]
    NoSuchSample { index: u64, total: u64 },
}
