//! What nodes read from the chain, as plain data.

use ferrum_common::Hotkey;

/// A block as nodes see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    pub number: u64,
    pub hash: [u8; 32],
    /// `Timestamp.Now` in milliseconds.
    pub timestamp_ms: u64,
}

/// One neuron of a subnet's metagraph.
#[derive(Debug, Clone, PartialEq)]
pub struct Neuron {
    pub uid: u16,
    pub hotkey: Hotkey,
    pub coldkey: Hotkey,
    /// Stake on this subnet, in rao (alpha on dynamic-TAO runtimes).
    pub stake: u64,
    pub validator_permit: bool,
    /// Share of the subnet's incentive, of 65535.
    pub incentive: u16,
    /// Share of the subnet's dividends, of 65535 (validators' pay for their bonds).
    pub dividends: u16,
    pub active: bool,
    /// Block of the neuron's last weights.
    pub last_update: u64,
    pub registered_at: u64,
}

/// A subnet's neurons at one block, in uid order.
#[derive(Debug, Clone, PartialEq)]
pub struct Metagraph {
    pub netuid: u16,
    pub block: u64,
    pub neurons: Vec<Neuron>,
}

impl Metagraph {
    /// The neuron of a hotkey, if registered.
    pub fn by_hotkey(&self, hotkey: &Hotkey) -> Option<&Neuron> {
        self.neurons.iter().find(|n| &n.hotkey == hotkey)
    }
}

/// The subnet hyperparameters that govern weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetParams {
    /// Blocks per epoch minus one (subtensor's convention).
    pub tempo: u16,
    /// Blocks between two weight settings of one neuron.
    pub weights_rate_limit: u64,
    /// Minimum version key of weights (0: any).
    pub weights_version_key: u64,
    pub min_allowed_weights: u16,
    /// Largest share one weight may take, of 65535 (65535: no limit).
    pub max_weight_limit: u16,
    pub commit_reveal: bool,
    /// Epochs between a commit and its reveal.
    pub reveal_period_epochs: u64,
    pub max_uids: u16,
    pub max_validators: u16,
    /// The runtime takes weight commits timelocked to a drand round and reveals them itself
    /// (`commit_timelocked_weights`); hash commits with a later reveal otherwise.
    pub timelocked_commits: bool,
}

impl SubnetParams {
    /// subtensor's epoch index of a block ([`epoch_of`]).
    pub fn epoch(&self, netuid: u16, block: u64) -> u64 {
        epoch_of(self.tempo, netuid, block)
    }

    /// First block of an epoch ([`epoch_start_of`]).
    pub fn epoch_start(&self, netuid: u16, epoch: u64) -> u64 {
        epoch_start_of(self.tempo, netuid, epoch)
    }
}

/// subtensor's (stateless) epoch index of a block: `(block + netuid + 1) / (tempo + 1)`.
pub fn epoch_of(tempo: u16, netuid: u16, block: u64) -> u64 {
    (block + u64::from(netuid) + 1) / (u64::from(tempo) + 1)
}

/// First block of epoch `epoch` of a subnet.
pub fn epoch_start_of(tempo: u16, netuid: u16, epoch: u64) -> u64 {
    (epoch * (u64::from(tempo) + 1)).saturating_sub(u64::from(netuid) + 1)
}

/// A node's commitment: where its bucket is and how to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commitment {
    /// Block at which it was last written.
    pub block: u64,
    pub data: Vec<u8>,
}

/// The largest commitment, in bytes (one `Raw128` field of the Commitments pallet).
pub const MAX_COMMITMENT_BYTES: usize = 128;
