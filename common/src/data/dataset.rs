//! Reading samples from a dataset in any store, each one verified.

use std::collections::HashMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::Mutex;

use super::DataError;
use super::manifest::{DatasetId, Manifest};
use super::shard::{HEADER_LEN, SAMPLE_HASH_LEN, ShardHeader, decode_tokens, sample_hash};
use crate::config::{StorageConfig, SubnetConfig};
use crate::keys::DATASET_MANIFEST;
use crate::storage::{Location, StorageError, StorageLimits, Store};

/// Manifests larger than this are refused before download (a million shards' worth).
const MANIFEST_CAP: u64 = 256 << 20;
/// Concurrent range reads in [`Dataset::samples`].
const READ_CONCURRENCY: usize = 16;

/// An opened dataset. Cheap to share; shard headers and sample tables are fetched once, on
/// first use, and verified against the manifest.
pub struct Dataset {
    store: Store,
    manifest: Manifest,
    id: DatasetId,
    /// First global sample index of each shard, plus the total at the end.
    starts: Vec<u64>,
    tables: Mutex<HashMap<usize, Arc<ShardIndex>>>,
}

/// A shard's verified header and sample table.
struct ShardIndex {
    header: ShardHeader,
    table: Vec<u8>,
}

impl Dataset {
    /// Opens the dataset at a URL or path without creating anything there: a local directory
    /// that does not exist is [`DataError::NoDataset`], not a new empty folder.
    pub async fn open_url(url: &str, storage: &StorageConfig) -> Result<Dataset, DataError> {
        let location = Location::parse(url).map_err(StorageError::from)?;
        if let Location::Local { root } = &location
            && !root.is_dir()
        {
            return Err(DataError::NoDataset { store: location.to_string() });
        }
        Dataset::open(Store::open_location(&location, StorageLimits::from(storage))?, None).await
    }

    /// Downloads and checks the manifest. With `expected`, a different dataset is refused.
    pub async fn open(store: Store, expected: Option<&DatasetId>) -> Result<Dataset, DataError> {
        let bytes = match store.get(DATASET_MANIFEST, Some(MANIFEST_CAP)).await {
            Err(e) if e.is_not_found() => return Err(DataError::NoDataset { store: store.location().to_string() }),
            other => other?,
        };
        let id = DatasetId::of_manifest(&bytes);
        let bad = |reason: String| DataError::Manifest { store: store.location().to_string(), reason };
        if let Some(want) = expected
            && *want != id
        {
            return Err(DataError::WrongDataset {
                store: store.location().to_string(),
                expected: want.to_string(),
                found: id.to_string(),
            });
        }
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        manifest.check().map_err(bad)?;
        let mut starts = Vec::with_capacity(manifest.shards.len() + 1);
        let mut acc = 0u64;
        for s in &manifest.shards {
            starts.push(acc);
            acc += s.samples;
        }
        starts.push(acc);
        Ok(Dataset { store, manifest, id, starts, tables: Mutex::new(HashMap::new()) })
    }

    /// The dataset id (blake3 of the manifest).
    pub fn id(&self) -> &DatasetId {
        &self.id
    }

    /// The parsed manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Number of samples.
    pub fn num_samples(&self) -> u64 {
        self.manifest.total_samples
    }

    /// Checks that this dataset is the one a config expects: tokenizer, sequence length,
    /// vocabulary size and (when pinned) the dataset id.
    pub fn check_config(&self, config: &SubnetConfig) -> Result<(), DataError> {
        let m = &self.manifest;
        let mismatch = |field, expected: String, found: String| DataError::ConfigMismatch { field, expected, found };
        if m.tokenizer.id != config.data.tokenizer {
            return Err(mismatch("data.tokenizer", config.data.tokenizer.clone(), m.tokenizer.id.clone()));
        }
        if m.sequence_length != config.data.sequence_length {
            return Err(mismatch(
                "data.sequence_length",
                config.data.sequence_length.to_string(),
                m.sequence_length.to_string(),
            ));
        }
        if m.tokenizer.vocab_size > config.model.vocab_size {
            return Err(mismatch(
                "model.vocab_size",
                format!("at least {}", m.tokenizer.vocab_size),
                config.model.vocab_size.to_string(),
            ));
        }
        if let Some(pin) = &config.data.dataset_id
            && !pin.eq_ignore_ascii_case(&self.id.to_string())
        {
            return Err(DataError::WrongDataset {
                store: self.store.location().to_string(),
                expected: pin.clone(),
                found: self.id.to_string(),
            });
        }
        // A node is assigned this many distinct samples a window: with fewer it trains nothing.
        if config.samples_per_window() > self.num_samples() {
            return Err(DataError::TooSmall { needed: config.samples_per_window(), total: self.num_samples() });
        }
        Ok(())
    }

    /// Shard holding global sample `index`, and the index inside it.
    fn locate(&self, index: u64) -> Result<(usize, u64), DataError> {
        if index >= self.num_samples() {
            return Err(DataError::NoSuchSample { index, total: self.num_samples() });
        }
        // starts[i] <= index < starts[i+1]
        let shard = self.starts.partition_point(|&s| s <= index) - 1;
        Ok((shard, index - self.starts[shard]))
    }

    async fn shard_index(&self, shard: usize) -> Result<Arc<ShardIndex>, DataError> {
        if let Some(ix) = self.tables.lock().await.get(&shard) {
            return Ok(ix.clone());
        }
        let entry = &self.manifest.shards[shard];
        let fail = |reason: String| DataError::Shard { shard, key: entry.key.clone(), reason };
        let info = self.store.head(&entry.key).await?;
        if info.size != entry.bytes {
            return Err(fail(format!(
                "is {} bytes, the manifest says {} (truncated or replaced)",
                info.size, entry.bytes
            )));
        }
        let raw = self.store.get_range(&entry.key, 0..HEADER_LEN).await?;
        if hex::encode(blake3::hash(&raw).as_bytes()) != entry.header_blake3 {
            return Err(fail("header does not match the manifest".into()));
        }
        let header = ShardHeader::parse(&raw).map_err(|e| fail(e.to_string()))?;
        if header.token_width != self.manifest.token_width
            || header.sequence_length != self.manifest.sequence_length
            || header.samples() != entry.samples
        {
            return Err(fail("header disagrees with the manifest".into()));
        }
        let table = self.store.get_range(&entry.key, header.table_offset()..header.file_len()).await?;
        if blake3::hash(&table).as_bytes() != &header.table_blake3 {
            return Err(fail("sample table does not match its hash".into()));
        }
        let ix = Arc::new(ShardIndex { header, table: table.to_vec() });
        self.tables.lock().await.insert(shard, ix.clone());
        Ok(ix)
    }

    /// Reads one sample with one range read (after the shard's first use) and verifies it.
    pub async fn sample(&self, index: u64) -> Result<Vec<u32>, DataError> {
        let (shard, local) = self.locate(index)?;
        let ix = self.shard_index(shard).await?;
        let len = ix.header.sample_bytes();
        let start = HEADER_LEN + local * len;
        let bytes = self.store.get_range(&self.manifest.shards[shard].key, start..start + len).await?;
        let at = local as usize * SAMPLE_HASH_LEN;
        if sample_hash(&bytes) != ix.table[at..at + SAMPLE_HASH_LEN] {
            return Err(DataError::SampleCorrupt { index, shard });
        }
        let tokens = decode_tokens(&bytes, ix.header.token_width);
        let vocab = self.manifest.tokenizer.vocab_size;
        if let Some(&token) = tokens.iter().find(|&&t| t >= vocab) {
            return Err(DataError::TokenOutOfRange { index, token, vocab });
        }
        Ok(tokens)
    }

    /// Reads several samples concurrently, in the order given.
    pub async fn samples(&self, indices: &[u64]) -> Result<Vec<Vec<u32>>, DataError> {
        // Collected first so the future is `Send` inside spawned tasks.
        let reads: Vec<_> = indices.iter().map(|&i| self.sample(i)).collect();
        futures::stream::iter(reads).buffered(READ_CONCURRENCY).try_collect().await
    }

    /// Downloads every shard whole and checks every hash. Returns the bytes checked.
    pub async fn verify(&self) -> Result<u64, DataError> {
        let mut total = 0;
        for (shard, entry) in self.manifest.shards.iter().enumerate() {
            let ix = self.shard_index(shard).await?;
            let bytes = self.store.get(&entry.key, Some(entry.bytes)).await?;
            // The cap bounds the download from above only: a shard shortened since its size was
            // checked arrives short, and slicing it by the header's offsets would panic.
            if bytes.len() as u64 != entry.bytes {
                return Err(DataError::Shard {
                    shard,
                    key: entry.key.clone(),
                    reason: format!("truncated: {} bytes, the manifest says {}", bytes.len(), entry.bytes),
                });
            }
            let tokens = &bytes[HEADER_LEN as usize..ix.header.table_offset() as usize];
            if blake3::hash(tokens).as_bytes() != &ix.header.tokens_blake3 {
                return Err(DataError::Shard {
                    shard,
                    key: entry.key.clone(),
                    reason: "token section does not match its hash (corrupted)".into(),
                });
            }
            for (i, sample) in tokens.chunks_exact(ix.header.sample_bytes() as usize).enumerate() {
                if sample_hash(sample) != ix.table[i * SAMPLE_HASH_LEN..(i + 1) * SAMPLE_HASH_LEN] {
                    return Err(DataError::SampleCorrupt { index: self.starts[shard] + i as u64, shard });
                }
            }
            total += bytes.len() as u64;
        }
        Ok(total)
    }
}
