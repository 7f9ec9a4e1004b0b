//! Chain access for Ferrum nodes: the [`Chain`] trait (what miners and validators need from a
//! subtensor chain), wallets, the weights rules and commit-reveal hash, and [`LocalChain`], an
//! in-process dev chain for the quick start. The protocol core in `ferrum-common` takes block
//! numbers, timestamps and block hashes as plain inputs; this crate supplies them.

pub mod calls;
pub mod commit_reveal;
pub mod error;
pub mod extrinsic;
pub mod local;
pub mod runtime;
pub mod subtensor;
pub mod timelock;
pub mod types;
pub mod wallet;
pub mod weights;
pub mod yuma;

use std::future::Future;

use ferrum_common::Hotkey;
use futures::stream::BoxStream;

pub use error::ChainError;
pub use local::LocalChain;
pub use subtensor::{EpochState, SubtensorChain};
pub use types::{BlockInfo, Commitment, MAX_COMMITMENT_BYTES, Metagraph, Neuron, SubnetParams};
pub use wallet::{Keypair, WalletError};

/// What nodes need from the chain. Calls that write are signed by `signer` and return once the
/// extrinsic is in a block; a rejection comes back as a [`ChainError`] with a plain message.
pub trait Chain: Send + Sync {
    /// The latest block.
    fn best_block(&self) -> impl Future<Output = Result<BlockInfo, ChainError>> + Send;

    /// The hash of block `number` (for the random-data seed block).
    fn block_hash(&self, number: u64) -> impl Future<Output = Result<[u8; 32], ChainError>> + Send;

    /// Every block from number `from` on, in order, waiting for new ones as they are produced.
    /// Starting from a number, not "now", lets a node resume exactly where it stopped.
    fn blocks(&self, from: u64) -> BoxStream<'static, Result<BlockInfo, ChainError>>;

    /// A subnet's hyperparameters that govern weights.
    fn subnet_params(&self, netuid: u16) -> impl Future<Output = Result<SubnetParams, ChainError>> + Send;

    /// A subnet's metagraph at block `at` (latest when `None`).
    fn metagraph(&self, netuid: u16, at: Option<u64>) -> impl Future<Output = Result<Metagraph, ChainError>> + Send;

    /// The uid of a hotkey on a subnet, if registered.
    fn uid_of(&self, netuid: u16, hotkey: &Hotkey) -> impl Future<Output = Result<Option<u16>, ChainError>> + Send;

    /// Registers `hotkey` on `netuid`, paying the burn from `coldkey`.
    fn register(
        &self,
        coldkey: &Keypair,
        netuid: u16,
        hotkey: &Hotkey,
    ) -> impl Future<Output = Result<u16, ChainError>> + Send;

    /// Writes the signer's commitment on `netuid` (at most [`MAX_COMMITMENT_BYTES`]).
    fn set_commitment(
        &self,
        signer: &Keypair,
        netuid: u16,
        data: &[u8],
    ) -> impl Future<Output = Result<(), ChainError>> + Send;

    /// A hotkey's commitment on `netuid`.
    fn commitment(
        &self,
        netuid: u16,
        hotkey: &Hotkey,
    ) -> impl Future<Output = Result<Option<Commitment>, ChainError>> + Send;

    /// Sets weights (already u16, see [`weights::to_u16`]).
    fn set_weights(
        &self,
        signer: &Keypair,
        netuid: u16,
        uids: &[u16],
        values: &[u16],
        version_key: u64,
    ) -> impl Future<Output = Result<(), ChainError>> + Send;

    /// Commits the hash of weights to reveal later ([`commit_reveal::commit_hash`]).
    fn commit_weights(
        &self,
        signer: &Keypair,
        netuid: u16,
        hash: [u8; 32],
    ) -> impl Future<Output = Result<(), ChainError>> + Send;

    /// Commits weights encrypted to a future drand round ([`timelock`]); the chain decrypts and
    /// applies them itself, so there is nothing to reveal. Returns the round. Runtimes without
    /// timelocked commits ([`SubnetParams::timelocked_commits`]) refuse it plainly.
    fn commit_timelocked_weights(
        &self,
        signer: &Keypair,
        netuid: u16,
        uids: &[u16],
        values: &[u16],
        version_key: u64,
    ) -> impl Future<Output = Result<u64, ChainError>> + Send;

    /// Reveals committed weights.
    fn reveal_weights(
        &self,
        signer: &Keypair,
        netuid: u16,
        uids: &[u16],
        values: &[u16],
        salt: &[u16],
        version_key: u64,
    ) -> impl Future<Output = Result<(), ChainError>> + Send;

    /// The weights a uid has set, as stored on chain (max-upscaled u16).
    fn weights(&self, netuid: u16, uid: u16) -> impl Future<Output = Result<Vec<(u16, u16)>, ChainError>> + Send;
}
