//! What a subnet's epoch reads and wrote, from storage: the inputs of [`crate::yuma`] and the
//! runtime's own results, for a localnet whose runtime stubs the epoch out.

use super::{AtBlock, ChainError, METAGRAPH_CONCURRENCY, MODULE, SubtensorChain, fetch, try_fetch};
use ferrum_common::Hotkey;
use futures::{StreamExt, TryStreamExt};

/// A subnet's epoch inputs and last results as storage holds them at one block.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochState {
    pub block: u64,
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
    /// Each uid's hotkey and its owner coldkey (`Keys`, `Owner`).
    pub hotkeys: Vec<Hotkey>,
    pub coldkeys: Vec<Hotkey>,
    /// Alpha staked on each uid's hotkey (`TotalHotkeyAlpha`).
    pub stake: Vec<u64>,
    /// Shares in each hotkey's stake (`TotalHotkeyShares`) and those its owner coldkey holds
    /// (`Alpha`): what paying a hotkey's owner changes.
    pub shares: Vec<u64>,
    pub owner_shares: Vec<u64>,
    pub permits: Vec<bool>,
    pub last_update: Vec<u64>,
    pub registered_at: Vec<u64>,
    pub weights: Vec<Vec<(u16, u16)>>,
    pub bonds: Vec<Vec<(u16, u16)>>,
    /// What the last epoch stored.
    pub incentive: Vec<u16>,
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

    /// What the last epoch paid each uid, in alpha rao (`Emission`), and the block it is read at.
    pub async fn emission(&self, netuid: u16) -> Result<(u64, Vec<u64>), ChainError> {
        self.timed("emission", async {
            let at = self.at(None).await?;
            Ok((at.block_number(), fetch(&at, MODULE, "Emission", (netuid,)).await?))
        })
        .await
    }

    /// Reads [`EpochState`] at the head.
    pub async fn epoch_state(&self, netuid: u16) -> Result<EpochState, ChainError> {
        self.timed("epoch_state", async {
            let at = self.at(None).await?;
            let index = self.storage_index(&at, netuid)?;
            let n: u16 = fetch(&at, MODULE, "SubnetworkN", (netuid,)).await?;
            let at: &AtBlock = &at;
            let reads: Vec<_> = (0..n)
                .map(|uid| async move {
                    let hotkey: [u8; 32] = fetch(at, MODULE, "Keys", (netuid, uid)).await?;
                    let coldkey: [u8; 32] = fetch(at, MODULE, "Owner", (hotkey,)).await?;
                    let stake: u64 = fetch(at, MODULE, "TotalHotkeyAlpha", (hotkey, netuid)).await?;
                    // Integer shares are spec 218's; later runtimes keep fixed-point ones, and
                    // there the epoch pays by weights, so nothing reads these (0 stands in).
                    let shares: u64 =
                        fetch(at, MODULE, "TotalHotkeyShares", (hotkey, netuid)).await.unwrap_or_default();
                    let owner_shares: u64 =
                        fetch(at, MODULE, "Alpha", (hotkey, coldkey, netuid)).await.unwrap_or_default();
                    let registered_at: u64 = fetch(at, MODULE, "BlockAtRegistration", (netuid, uid)).await?;
                    let weights: Vec<(u16, u16)> = fetch(at, MODULE, "Weights", (index, uid)).await?;
                    let bonds: Vec<(u16, u16)> = fetch(at, MODULE, "Bonds", (index, uid)).await?;
                    let accounts = (Hotkey(hotkey), Hotkey(coldkey), shares, owner_shares);
                    Ok::<_, ChainError>((accounts, stake, registered_at, weights, bonds))
                })
                .collect();
            let rows: Vec<_> = futures::stream::iter(reads).buffered(METAGRAPH_CONCURRENCY).try_collect().await?;
            let mut state = EpochState {
                block: at.block_number(),
                storage_index: index,
                last_epoch: fetch(at, MODULE, "LastMechansimStepBlock", (netuid,)).await?,
                activity_cutoff: fetch(at, MODULE, "ActivityCutoff", (netuid,)).await?,
                kappa: fetch(at, MODULE, "Kappa", (netuid,)).await?,
                bonds_moving_average: fetch(at, MODULE, "BondsMovingAverage", (netuid,)).await?,
                max_validators: fetch(at, MODULE, "MaxAllowedValidators", (netuid,)).await?,
                hotkeys: Vec::new(),
                coldkeys: Vec::new(),
                stake: Vec::new(),
                shares: Vec::new(),
                owner_shares: Vec::new(),
                permits: fetch(at, MODULE, "ValidatorPermit", (netuid,)).await?,
                last_update: fetch(at, MODULE, "LastUpdate", (index,)).await?,
                registered_at: Vec::new(),
                weights: Vec::new(),
                bonds: Vec::new(),
                incentive: fetch(at, MODULE, "Incentive", (netuid,)).await?,
                consensus: fetch(at, MODULE, "Consensus", (netuid,)).await?,
            };
            for ((hotkey, coldkey, shares, owner_shares), stake, registered_at, weights, bonds) in rows {
                state.hotkeys.push(hotkey);
                state.coldkeys.push(coldkey);
                state.shares.push(shares);
                state.owner_shares.push(owner_shares);
                state.stake.push(stake);
                state.registered_at.push(registered_at);
                state.weights.push(weights);
                state.bonds.push(bonds);
            }
            Ok(state)
        })
        .await
    }
}
