//! What a subtensor runtime offers, read from its metadata rather than from a spec-version
//! switch: the calls and storage items that changed between spec 218 (February 2025, the
//! newest that runs here) and today's mainnet (spec 393 in `finney.scale`, April 2026).

use subxt::metadata::Metadata;

use crate::error::ChainError;

const MODULE: &str = "SubtensorModule";

/// Subnets per mechanism in subtensor's storage index: mechanism `m` of subnet `n` is stored
/// under `m * 4096 + n` (`NetUidStorageIndex`), so mechanism 0 keeps the plain netuid.
pub const GLOBAL_MAX_SUBNET_COUNT: u32 = 4096;

/// The runtime features a node's calls and reads depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeProfile {
    /// `Weights`, `LastUpdate` and `WeightCommits` are keyed by netuid and mechanism, and the
    /// `*_mechanism_*` weight calls exist.
    pub mechanisms: bool,
    /// The storage item holding the stake needed to set weights: `StakeThreshold` (current)
    /// or `WeightsMinStake` (spec 218).
    pub stake_threshold_item: Option<&'static str>,
    /// `register_network` takes a `mechid` after the hotkey (spec 218) or only the hotkey.
    pub register_network_takes_mechid: bool,
    /// A new subnet's owner calls `start_call` before emissions start.
    pub start_call: bool,
    /// Weights can be committed timelocked to a drand round (`commit_timelocked_weights`):
    /// the chain decrypts and applies them itself.
    pub timelocked_commits: bool,
    /// The chain keeps the commit-reveal version it accepts (`CommitRevealWeightsVersion`).
    pub commit_reveal_version_item: bool,
    /// Epochs run on a stateful counter (`SubnetEpochIndex`, subtensor sources from May 2026),
    /// not on `(block + netuid + 1) / (tempo + 1)`: reveal rounds computed for the stateless
    /// schedule (spec 393 and before) would not match, so timelocked commits are refused there.
    pub stateful_epochs: bool,
    /// The sudo call that sets the stake threshold.
    pub sudo_stake_threshold_call: Option<&'static str>,
}

impl RuntimeProfile {
    /// Reads the features from metadata; a runtime without the subtensor pallet is an error.
    pub fn from_metadata(metadata: &Metadata) -> Result<RuntimeProfile, ChainError> {
        let pallet = metadata
            .pallet_by_name(MODULE)
            .ok_or_else(|| ChainError::UnsupportedRuntime(format!("no {MODULE} pallet in the metadata")))?;
        let has_call = |name: &str| pallet.call_variant_by_name(name).is_some();
        let has_item = |name: &str| pallet.storage().is_some_and(|s| s.entry_by_name(name).is_some());
        let stake_threshold_item = ["StakeThreshold", "WeightsMinStake"].into_iter().find(|n| has_item(n));
        let register_network_takes_mechid =
            pallet.call_variant_by_name("register_network").is_some_and(|v| v.fields.len() >= 2);
        let admin_call =
            |name: &str| metadata.pallet_by_name("AdminUtils").is_some_and(|p| p.call_variant_by_name(name).is_some());
        let sudo_stake_threshold_call =
            ["sudo_set_stake_threshold", "sudo_set_weights_min_stake"].into_iter().find(|n| admin_call(n));
        Ok(RuntimeProfile {
            mechanisms: has_call("set_mechanism_weights") || has_item("MechanismCountCurrent"),
            stake_threshold_item,
            register_network_takes_mechid,
            start_call: has_call("start_call"),
            timelocked_commits: has_call("commit_timelocked_weights"),
            commit_reveal_version_item: has_item("CommitRevealWeightsVersion"),
            stateful_epochs: has_item("SubnetEpochIndex"),
            sudo_stake_threshold_call,
        })
    }

    /// The key of per-mechanism storage (`Weights`, `LastUpdate`, `WeightCommits`): the
    /// netuid itself for mechanism 0 and on runtimes without mechanisms.
    pub fn storage_index(&self, netuid: u16, mechanism: u8) -> Result<u16, ChainError> {
        if mechanism == 0 {
            return Ok(netuid);
        }
        if !self.mechanisms {
            return Err(ChainError::UnsupportedRuntime(format!(
                "mechanism {mechanism} requested, but this runtime has one mechanism per subnet"
            )));
        }
        u16::try_from(u32::from(mechanism) * GLOBAL_MAX_SUBNET_COUNT + u32::from(netuid))
            .map_err(|_| ChainError::Encode(format!("mechanism {mechanism} of netuid {netuid} has no storage index")))
    }
}

/// Seconds per block: the Aura slot, twice `Timestamp.MinimumPeriod` (12 s on finney).
pub fn block_time_secs(metadata: &Metadata) -> Result<f64, ChainError> {
    let raw = metadata
        .pallet_by_name("Timestamp")
        .and_then(|p| p.constant_by_name("MinimumPeriod"))
        .map(|c| c.value())
        .ok_or_else(|| ChainError::Decode("no Timestamp.MinimumPeriod constant".into()))?;
    let ms = <[u8; 8]>::try_from(raw)
        .map(u64::from_le_bytes)
        .map_err(|_| ChainError::Decode("Timestamp.MinimumPeriod is not a u64".into()))?;
    Ok((2 * ms) as f64 / 1000.0)
}
