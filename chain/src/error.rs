//! Chain errors as plain messages an operator can act on.

use ferrum_common::Hotkey;

/// Why a chain call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("subnet {netuid} does not exist")]
    NoSubnet { netuid: u16 },
    #[error("hotkey {hotkey} is not registered on netuid {netuid}")]
    NotRegistered { hotkey: Hotkey, netuid: u16 },
    #[error("hotkey {hotkey} is already registered on netuid {netuid}")]
    AlreadyRegistered { hotkey: Hotkey, netuid: u16 },
    #[error("subnet {netuid} is full ({max} uids)")]
    SubnetFull { netuid: u16, max: u16 },
    #[error("setting weights too fast: next allowed at block {next_allowed}")]
    TooFast { next_allowed: u64 },
    #[error("wrong weights version key {got}: the subnet requires at least {required}")]
    VersionKey { required: u64, got: u64 },
    #[error("{got} weights given, the subnet requires at least {min}")]
    TooFewWeights { min: usize, got: usize },
    #[error("uids and weights differ in length ({uids} vs {values})")]
    LengthMismatch { uids: usize, values: usize },
    #[error("uid {uid} appears twice")]
    DuplicateUid { uid: u16 },
    #[error("uid {uid} is not on netuid {netuid} ({n} uids)")]
    UnknownUid { uid: u16, netuid: u16, n: u16 },
    #[error("a weight exceeds the subnet's max weight limit {limit} (of 65535 after normalization)")]
    MaxWeightExceeded { limit: u16 },
    #[error("all weights are zero")]
    AllZero,
    #[error("commit-reveal is on for netuid {netuid}: commit and reveal weights instead")]
    CommitRevealEnabled { netuid: u16 },
    #[error("commit-reveal is off for netuid {netuid}: set weights directly")]
    CommitRevealDisabled { netuid: u16 },
    #[error("no weight commit of {hotkey} on netuid {netuid} matches this reveal")]
    NoMatchingCommit { hotkey: Hotkey, netuid: u16 },
    #[error("reveal too early: the commit can be revealed from block {from}")]
    RevealTooEarly { from: u64 },
    #[error("the weight commit expired at block {expired}")]
    CommitExpired { expired: u64 },
    #[error("too many unrevealed weight commits (at most {max})")]
    TooManyCommits { max: usize },
    #[error("commitment of {got} bytes exceeds the limit of {max}")]
    CommitmentTooLarge { max: usize, got: usize },
    #[error("account {account} cannot pay {needed} rao (balance {balance})")]
    InsufficientBalance { account: Hotkey, needed: u64, balance: u64 },
    #[error("block {number} is not available: {reason}")]
    NoBlock { number: u64, reason: String },
    #[error("chain call timed out after {secs} s: {call}")]
    Timeout { call: String, secs: u64 },
    #[error("chain connection: {0}")]
    Connection(String),
    #[error("chain rejected {call}: {pallet}.{error}")]
    Dispatch { call: String, pallet: String, error: String },
    #[error("unexpected chain data: {0}")]
    Decode(String),
    #[error("cannot encode {0}")]
    Encode(String),
    #[error("unsupported runtime: {0}")]
    UnsupportedRuntime(String),
}

impl ChainError {
    /// Whether trying the same call again later can help: a lost connection or a timeout can
    /// heal. Everything else is a refusal or a mismatch
    /// that needs a person (wrong key, wrong subnet, unregistered, incompatible runtime).
    pub fn is_transient(&self) -> bool {
        matches!(self, ChainError::Timeout { .. } | ChainError::Connection(_))
    }
}
