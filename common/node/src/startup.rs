//! What every node does before its loop and around each block: find its uid, publish its
//! bucket commitment, and follow the chain block by block (resubscribing after a dropped
//! connection, tracking the head).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferrum_chain::{BlockInfo, Chain, ChainError, Keypair};
use ferrum_common::gather::{self, CommitmentError};
use ferrum_common::{Dataset, Hotkey, Store, SubnetConfig};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{mpsc, watch};

use crate::events::NodeEvent;
use crate::metrics::Metrics;
use crate::retry::{Backoff, retry};

/// Everything a node runs with, opened and checked by the caller (`main.rs` or a harness).
pub struct NodeSetup {
    pub config: SubnetConfig,
    pub netuid: u16,
    pub keypair: Keypair,
    /// This node's bucket.
    pub store: Store,
    /// The URL of that bucket as other nodes open it (committed on chain).
    pub bucket_url: String,
    pub dataset: Arc<Dataset>,
    /// Where the node keeps what it must not lose (model, progress, ledger).
    pub state_dir: PathBuf,
    /// Model backend: `flex` (CPU), or `wgpu` / `cuda` in builds with them.
    pub backend: String,
    /// Threads for encoding, aggregation and the outer step.
    pub threads: usize,
    pub metrics: Metrics,
    /// Progress reports for a harness (devnet, tests); `None` in production.
    pub events: Option<mpsc::UnboundedSender<NodeEvent>>,
    /// How peers' buckets are opened (URL policy, credentials).
    pub peers: crate::sync::PeerAccess,
    /// Longest wait for the validators' records to decide a window after applying it.
    pub record_wait: std::time::Duration,
}

impl NodeSetup {
    /// Sends a harness event, if anyone listens; the event is only built then (some carry a
    /// copy of the whole model, which a production node must not pay for).
    pub fn emit(&self, event: impl FnOnce() -> NodeEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event());
        }
    }
}

/// Why a node cannot join its subnet.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "hotkey {hotkey} is not registered on netuid {netuid}: register it first (btcli subnets register --netuid {netuid})"
    )]
    NotRegistered { hotkey: Hotkey, netuid: u16 },
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Commitment(#[from] CommitmentError),
}

/// The node's uid, after its bucket commitment is on chain (written only when it changed).
pub async fn join(chain: &impl Chain, setup: &NodeSetup, validator: bool) -> Result<u16, StartError> {
    let hotkey = setup.keypair.hotkey();
    let netuid = setup.netuid;
    let uid = retry("uid lookup", Backoff::default(), || chain.uid_of(netuid, &hotkey))
        .await?
        .ok_or(StartError::NotRegistered { hotkey, netuid })?;
    let want = gather::commitment(&setup.bucket_url, validator)?;
    let have = retry("commitment read", Backoff::default(), || chain.commitment(netuid, &hotkey)).await?;
    if have.map(|c| c.data) != Some(want.clone()) {
        retry("commitment write", Backoff::default(), || chain.set_commitment(&setup.keypair, netuid, &want)).await?;
        tracing::info!(uid, bucket = setup.bucket_url, "bucket commitment published");
    }
    Ok(uid)
}

/// Follows the chain block by block from a given number.
pub struct Follower {
    blocks: BoxStream<'static, Result<BlockInfo, ChainError>>,
    /// The next block number expected.
    next: u64,
    /// The chain's best block, as far as the node knows.
    pub head: u64,
    /// The stream failed while the node was busy: resubscribe before reading on.
    broken: bool,
}

impl Follower {
    /// Starts at block `from`.
    pub async fn new(chain: &impl Chain, from: u64) -> Result<Follower, ChainError> {
        let head = retry("best block", Backoff::default(), || chain.best_block()).await?.number;
        Ok(Follower { blocks: chain.blocks(from), next: from, head, broken: false })
    }

    /// The next block; `None` once `shutdown` turns true or the chain ends the stream. A
    /// dropped stream is resubscribed where it stopped; a final chain error is returned.
    pub async fn next(
        &mut self,
        chain: &impl Chain,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<BlockInfo>, ChainError> {
        loop {
            if self.broken {
                self.blocks = chain.blocks(self.next);
                self.broken = false;
            }
            let item = tokio::select! {
                _ = shutdown.changed() => return Ok(None),
                b = self.blocks.next() => b,
            };
            match item {
                Some(Ok(b)) => {
                    self.next = b.number + 1;
                    if b.number >= self.head {
                        self.head = retry("best block", Backoff::default(), || chain.best_block()).await?.number;
                    }
                    return Ok(Some(b));
                }
                Some(Err(e)) if e.is_transient() => {
                    tracing::warn!(error = %e, "block stream failed; resubscribing");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    self.blocks = chain.blocks(self.next);
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(None),
            }
        }
    }

    /// The next block without refreshing the head, for a node that is busy (training) and only
    /// needs to see time pass; `None` when the stream ends or fails.
    pub async fn next_quick(&mut self) -> Option<BlockInfo> {
        match self.blocks.next().await {
            Some(Ok(b)) => {
                self.next = b.number + 1;
                self.head = self.head.max(b.number);
                Some(b)
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "block stream failed while busy");
                self.broken = true;
                None
            }
            None => {
                self.broken = true;
                None
            }
        }
    }
}
