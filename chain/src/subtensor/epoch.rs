//! What a subnet's epoch reads, from storage: the inputs of [`crate::yuma`] beside the
//! metagraph, for a localnet whose runtime stubs the epoch out.

use super::{ChainError, METAGRAPH_CONCURRENCY, MODULE, SubtensorChain, fetch, try_fetch};
use crate::Chain;
use crate::types::Metagraph;
use ferrum_common::Hotkey;
use futures::{StreamExt, TryStreamExt};

/// A sparse storage row: `(uid, value of 65535)`.
type Row = Vec<(u16, u16)>;

/// A subnet's epoch inputs and last results as storage holds them at one block
/// (`metagraph.block`): stake, permits, update and registration blocks and the stored
/// incentive are the metagraph's.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochState {
    pub metagraph: Metagraph,
    /// The first key of per-mechanism maps (`Weights`, `Bonds`, `LastUpdate`): the netuid on
    /// runtimes without mechanisms.
    pub storage_index: u16,
    /// The block the last epoch ran in (`LastMechansimStepBlock`, sic).
    pub last_epoch: u64,
    pub activity_cutoff: u16,
    /// `Kappa`, of 65535.
    pub kappa: u16,
    /// `BondsMovingAverage`, of 1,000,000.
    pub bonds_moving_average: u64,
    pub max_validators: u16,
    /// Each uid's weights and bonds rows.
    pub weights: Vec<Row>,
    pub bonds: Vec<Row>,
    /// What the last epoch stored as consensus.
    pub consensus: Vec<u16>,
}

impl SubtensorChain {
    /// The block of the subnet's last epoch, where the runtime records it (`None` where it
    /// does not: then no epoch can be followed).
    pub async fn last_epoch_block(&self, netuid: u16) -> Result<Option<u64>, ChainError> {
        self.timed("last_epoch_block", async {
            let at = self.at(None).await?;
            try_fetch(&at, MODULE, "LastMechansimStepBlock", (netuid,)).await
        })
        .await
    }

    /// What the last epoch paid each uid, in alpha rao (`Emission`), at the head.
    pub async fn emission(&self, netuid: u16) -> Result<Vec<u64>, ChainError> {
        self.timed("emission", async { fetch(&self.at(None).await?, MODULE, "Emission", (netuid,)).await }).await
    }

    /// Shares in `hotkey`'s stake on the subnet (`TotalHotkeyShares`) and those `coldkey`
    /// holds (`Alpha`), at the head: what paying the hotkey's owner changes. Spec 218's
    /// integer shares (later runtimes keep fixed-point ones).
    pub async fn hotkey_shares(
        &self,
        netuid: u16,
        hotkey: &Hotkey,
        coldkey: &Hotkey,
    ) -> Result<(u64, u64), ChainError> {
        self.timed("hotkey_shares", async {
            let at = self.at(None).await?;
            let total: u64 = fetch(&at, MODULE, "TotalHotkeyShares", (hotkey.0, netuid)).await?;
            let held: u64 = fetch(&at, MODULE, "Alpha", (hotkey.0, coldkey.0, netuid)).await?;
            Ok((total, held))
        })
        .await
    }

    /// Reads [`EpochState`] at the head.
    pub async fn epoch_state(&self, netuid: u16) -> Result<EpochState, ChainError> {
        let at = self.at(None).await?;
        let metagraph = self.metagraph(netuid, Some(at.block_number())).await?;
        self.timed("epoch_state", async {
            let index = self.storage_index(&at, netuid)?;
            let at = &at;
            let rows: Vec<(Row, Row)> = futures::stream::iter(&metagraph.neurons)
                .map(|n| async move {
                    let weights = fetch(at, MODULE, "Weights", (index, n.uid)).await?;
                    let bonds = fetch(at, MODULE, "Bonds", (index, n.uid)).await?;
                    Ok::<_, ChainError>((weights, bonds))
                })
                .buffered(METAGRAPH_CONCURRENCY)
                .try_collect()
                .await?;
            let (weights, bonds) = rows.into_iter().unzip();
            Ok(EpochState {
                storage_index: index,
                last_epoch: fetch(at, MODULE, "LastMechansimStepBlock", (netuid,)).await?,
                activity_cutoff: fetch(at, MODULE, "ActivityCutoff", (netuid,)).await?,
                kappa: fetch(at, MODULE, "Kappa", (netuid,)).await?,
                bonds_moving_average: fetch(at, MODULE, "BondsMovingAverage", (netuid,)).await?,
                max_validators: fetch(at, MODULE, "MaxAllowedValidators", (netuid,)).await?,
                weights,
                bonds,
                consensus: fetch(at, MODULE, "Consensus", (netuid,)).await?,
                metagraph,
            })
        })
        .await
    }
}
