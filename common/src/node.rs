//! What every node opens at startup, checked before it does any work.

use bytes::Bytes;

use crate::config::{ConfigHash, SubnetConfig};
use crate::data::{DataError, Dataset};
use crate::hotkey::Hotkey;
use crate::keys::Namespace;
use crate::storage::{StorageError, Store};

/// A node's config, its own bucket, and the dataset, opened and cross-checked.
pub struct NodeContext {
    pub config: SubnetConfig,
    pub config_hash: ConfigHash,
    pub namespace: Namespace,
    /// This node's bucket (uploads go here).
    pub store: Store,
    pub dataset: Dataset,
}

/// A node that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("storage: wrote a probe to {store} but read back different bytes")]
    ProbeMismatch { store: String },
}

impl NodeContext {
    /// Opens the node's bucket and the dataset and checks the dataset against the config.
    pub async fn open(config: SubnetConfig, netuid: u16) -> Result<NodeContext, NodeError> {
        let config_hash = config.hash();
        if config.data.dataset_id.is_none() {
            tracing::warn!("data.dataset_id is not pinned: accepting whatever dataset the manifest names");
        }
        // The dataset first, so a node pointed at nothing stops before it creates its bucket.
        // check_config refuses a dataset other than the pinned one.
        let dataset = Dataset::open_url(&config.storage.dataset_url, &config.storage).await?;
        dataset.check_config(&config)?;
        let store = Store::open(&config.storage.url, &config.storage)?;
        Ok(NodeContext { namespace: Namespace::new(netuid, &config_hash), config, config_hash, store, dataset })
    }

    /// What every node does first: [`open`](Self::open), then [`probe_store`](Self::probe_store),
    /// logging each result.
    pub async fn preflight(config: SubnetConfig, netuid: u16, hotkey: &Hotkey) -> Result<NodeContext, NodeError> {
        let ctx = NodeContext::open(config, netuid).await?;
        tracing::info!(config_hash = %ctx.config_hash, namespace = ctx.namespace.as_str(), "config loaded");
        ctx.probe_store(hotkey).await?;
        tracing::info!(store = ctx.store.location(), "bucket is writable");
        Ok(ctx)
    }

    /// Writes, reads back and deletes a small object under the namespace, proving the node can
    /// write its bucket before it spends a window training.
    pub async fn probe_store(&self, hotkey: &Hotkey) -> Result<(), NodeError> {
        let key = format!("{}/probes/{hotkey}", self.namespace.as_str());
        let body = Bytes::from(format!("ferrum probe {}", self.config_hash));
        self.store.put(&key, body.clone()).await?;
        let back = self.store.get(&key, Some(1024)).await?;
        self.store.delete(&key).await?;
        if back != body {
            return Err(NodeError::ProbeMismatch { store: self.store.location().to_string() });
        }
        Ok(())
    }
}
