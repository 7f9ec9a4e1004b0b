//! `LocalChain`: an in-process dev chain for the quick start and fast tests. It keeps the rules
//! nodes depend on (registration with a burn, stake, validator permits, weights with subtensor's
//! validation, commit-reveal, commitments) and pays a Yuma-style incentive each epoch. Like
//! chopsticks in instant mode, every accepted call is included in a block of its own; a timer
//! can add empty blocks, and [`LocalChain::advance`] produces them on demand.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ferrum_common::Hotkey;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::watch;

use crate::commit_reveal::commit_hash;
use crate::error::ChainError;
use crate::types::{BlockInfo, Commitment, MAX_COMMITMENT_BYTES, Metagraph, Neuron, SubnetParams};
use crate::wallet::Keypair;
use crate::{Chain, weights};

/// Blocks of metagraph history kept for `metagraph(.., Some(block))`.
const HISTORY_BLOCKS: u64 = 512;
/// Unrevealed commits one hotkey may hold per subnet (subtensor's limit).
const MAX_UNREVEALED_COMMITS: usize = 10;
/// Blocks without weights after which a neuron counts as inactive (subtensor's default cutoff).
const ACTIVITY_CUTOFF: u64 = 5000;

#[derive(Debug, Clone)]
struct NeuronState {
    hotkey: Hotkey,
    coldkey: Hotkey,
    stake: u64,
    permit: bool,
    incentive: u16,
    dividends: u16,
    /// Bonds row as subtensor stores it (column-max scaled to 65535).
    bonds: Vec<(u16, u16)>,
    last_update: u64,
    registered_at: u64,
    weights: Vec<(u16, u16)>,
}

#[derive(Debug, Clone)]
struct Subnet {
    params: SubnetParams,
    burn: u64,
    neurons: Vec<NeuronState>,
    commitments: HashMap<Hotkey, Commitment>,
    /// Unrevealed weight commits per hotkey: (hash, epoch of the commit).
    commits: HashMap<Hotkey, Vec<([u8; 32], u64)>>,
    /// Timelocked commits waiting for their reveal epoch, in commit order.
    timelocked: Vec<TimelockedCommit>,
    /// Weight commits accepted per hotkey, ever: (hash commits, timelocked commits).
    commits_made: HashMap<Hotkey, (u32, u32)>,
}

/// A timelocked weights commit as the dev chain keeps it: in the clear, since it has no drand
/// beacon to decrypt with; it applies the weights when the reveal epoch begins, as subtensor
/// does once the round's pulse arrives.
#[derive(Debug, Clone)]
struct TimelockedCommit {
    hotkey: Hotkey,
    reveal_epoch: u64,
    uids: Vec<u16>,
    values: Vec<u16>,
    version_key: u64,
}

impl Subnet {
    fn uid(&self, hotkey: &Hotkey) -> Option<u16> {
        self.neurons.iter().position(|n| &n.hotkey == hotkey).map(|i| i as u16)
    }

    fn metagraph(&self, netuid: u16, block: u64) -> Metagraph {
        let neurons = self
            .neurons
            .iter()
            .enumerate()
            .map(|(uid, n)| Neuron {
                uid: uid as u16,
                hotkey: n.hotkey,
                coldkey: n.coldkey,
                stake: n.stake,
                validator_permit: n.permit,
                incentive: n.incentive,
                dividends: n.dividends,
                active: block.saturating_sub(n.last_update.max(n.registered_at)) < ACTIVITY_CUTOFF,
                last_update: n.last_update,
                registered_at: n.registered_at,
            })
            .collect();
        Metagraph { netuid, block, neurons }
    }

    /// Yuma consensus ([`crate::yuma`]) with the dev chain's permit rule: permits go to the
    /// `max_validators` largest non-zero stakes, and their weights (clipped at the stake
    /// majority's consensus) give miners incentive and validators dividends through bonds.
    fn epoch(&mut self, block: u64) {
        let mut by_stake: Vec<usize> = (0..self.neurons.len()).filter(|&i| self.neurons[i].stake > 0).collect();
        by_stake.sort_by(|&a, &b| self.neurons[b].stake.cmp(&self.neurons[a].stake).then(a.cmp(&b)));
        by_stake.truncate(usize::from(self.params.max_validators));
        for (i, n) in self.neurons.iter_mut().enumerate() {
            n.permit = by_stake.contains(&i);
        }
        let column = |f: &dyn Fn(&NeuronState) -> u64| self.neurons.iter().map(f).collect::<Vec<u64>>();
        let stake: Vec<f64> = self.neurons.iter().map(|n| n.stake as f64).collect();
        let permits: Vec<bool> = self.neurons.iter().map(|n| n.permit).collect();
        let weights: Vec<Vec<(u16, u16)>> = self.neurons.iter().map(|n| n.weights.clone()).collect();
        let bonds: Vec<Vec<(u16, u16)>> = self.neurons.iter().map(|n| n.bonds.clone()).collect();
        let (last_update, registered_at) = (column(&|n| n.last_update), column(&|n| n.registered_at));
        let out = crate::yuma::epoch(&crate::yuma::EpochInput {
            block,
            activity_cutoff: ACTIVITY_CUTOFF,
            kappa: 0.5,
            bonds_moving_average: 0.9,
            max_validators: self.params.max_validators,
            stake: &stake,
            permits: &permits,
            last_update: &last_update,
            registered_at: &registered_at,
            weights: &weights,
            bonds: &bonds,
        });
        let (incentive, dividends) = (crate::yuma::to_u16(&out.incentive), crate::yuma::to_u16(&out.dividends));
        for (i, n) in self.neurons.iter_mut().enumerate() {
            n.incentive = incentive[i];
            n.dividends = dividends[i];
            if let Some(row) = &out.bonds[i] {
                n.bonds.clone_from(row);
            }
        }
    }
}

#[derive(Debug)]
struct State {
    block: u64,
    hashes: Vec<[u8; 32]>,
    timestamps: Vec<u64>,
    balances: HashMap<Hotkey, u64>,
    subnets: BTreeMap<u16, Subnet>,
    history: BTreeMap<u64, BTreeMap<u16, Metagraph>>,
    /// Extrinsics wait for the next produced block instead of producing one each.
    pooled: bool,
}

/// The in-process dev chain. Cloning gives another handle to the same chain.
#[derive(Clone)]
pub struct LocalChain {
    state: Arc<Mutex<State>>,
    /// The latest block number, for block streams to wait on.
    head: Arc<watch::Sender<u64>>,
}

impl Default for LocalChain {
    fn default() -> Self {
        LocalChain::new()
    }
}

impl LocalChain {
    /// A chain at its genesis block, no subnets, no balances.
    pub fn new() -> LocalChain {
        let genesis = sp_crypto_hashing::blake2_256(b"ferrum local chain genesis");
        let state = State {
            block: 0,
            hashes: vec![genesis],
            timestamps: vec![now_ms()],
            balances: HashMap::new(),
            subnets: BTreeMap::new(),
            history: BTreeMap::new(),
            pooled: false,
        };
        LocalChain { state: Arc::new(Mutex::new(state)), head: Arc::new(watch::channel(0).0) }
    }

    /// Produces an empty block every `interval` until the last handle is dropped (needs a
    /// tokio runtime).
    pub fn start_timer(&self, interval: Duration) {
        let weak = Arc::downgrade(&self.state);
        let head = self.head.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(state) = weak.upgrade() else { return };
                LocalChain { state, head: head.clone() }.advance(1);
            }
        });
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every mutation completes before
        // anything can panic), so a poisoned lock is still safe to use.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Produces `n` empty blocks (chopsticks' `dev_newBlock`).
    pub fn advance(&self, n: u64) {
        for _ in 0..n {
            let info = {
                let mut s = self.lock();
                produce(&mut s, None)
            };
            self.head.send_replace(info.number);
        }
    }

    /// Produces one empty block whose `Timestamp.Now` is `timestamp_ms`, for harnesses that
    /// control time (early, late and missing uploads without sleeping). Time never runs
    /// backwards: an earlier timestamp is raised to the previous block's.
    pub fn advance_at(&self, timestamp_ms: u64) -> BlockInfo {
        let info = {
            let mut s = self.lock();
            produce(&mut s, Some(timestamp_ms))
        };
        self.head.send_replace(info.number);
        info
    }

    /// Credits an account (dev faucet).
    pub fn fund(&self, account: &Hotkey, rao: u64) {
        *self.lock().balances.entry(*account).or_default() += rao;
    }

    /// Creates a subnet (the owner's sudo setup), with `burn` rao per registration.
    pub fn create_subnet(&self, netuid: u16, params: SubnetParams, burn: u64) {
        let subnet = Subnet {
            params,
            burn,
            neurons: Vec::new(),
            commitments: HashMap::new(),
            commits: HashMap::new(),
            timelocked: Vec::new(),
            commits_made: HashMap::new(),
        };
        self.lock().subnets.insert(netuid, subnet);
        self.advance(1);
    }

    /// Changes a subnet's hyperparameters (sudo).
    pub fn set_subnet_params(&self, netuid: u16, params: SubnetParams) -> Result<(), ChainError> {
        self.lock().subnets.get_mut(&netuid).ok_or(ChainError::NoSubnet { netuid })?.params = params;
        self.advance(1);
        Ok(())
    }

    /// How many weight commits a hotkey has made on a subnet, ever: (hash commits, timelocked
    /// commits). Dev introspection, for tests of which path a validator takes.
    pub fn commits_made(&self, netuid: u16, hotkey: &Hotkey) -> (u32, u32) {
        let s = self.lock();
        s.subnets.get(&netuid).and_then(|sn| sn.commits_made.get(hotkey).copied()).unwrap_or((0, 0))
    }

    /// Sets a hotkey's stake on a subnet (dev shortcut for staking).
    pub fn set_stake(&self, netuid: u16, hotkey: &Hotkey, rao: u64) -> Result<(), ChainError> {
        {
            let mut s = self.lock();
            let subnet = s.subnets.get_mut(&netuid).ok_or(ChainError::NoSubnet { netuid })?;
            let uid = subnet.uid(hotkey).ok_or(ChainError::NotRegistered { hotkey: *hotkey, netuid })?;
            subnet.neurons[usize::from(uid)].stake = rao;
        }
        self.advance(1);
        Ok(())
    }

    /// From now on, extrinsics join the next block [`advance`](Self::advance) produces, as
    /// on a chain with a block time, instead of producing a block each (a harness that
    /// conducts blocks must not have its windows cut short by nodes' transactions).
    pub fn pool_extrinsics(&self) {
        self.lock().pooled = true;
    }

    /// Runs `f` on the state and, if it succeeds, includes it in a new block (or, pooled, in
    /// the next one produced).
    fn extrinsic<T>(&self, f: impl FnOnce(&mut State, u64) -> Result<T, ChainError>) -> Result<T, ChainError> {
        let (out, info) = {
            let mut s = self.lock();
            // The call executes in the block being built.
            let block = s.block + 1;
            let out = f(&mut s, block)?;
            if s.pooled {
                return Ok(out);
            }
            (out, produce(&mut s, None))
        };
        self.head.send_replace(info.number);
        Ok(out)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Seals the next block: epochs of subnets whose epoch turns over, history, hash.
fn produce(s: &mut State, timestamp_ms: Option<u64>) -> BlockInfo {
    s.block += 1;
    let block = s.block;
    for (&netuid, subnet) in s.subnets.iter_mut() {
        let epoch = subnet.params.epoch(netuid, block);
        if epoch != subnet.params.epoch(netuid, block - 1) {
            reveal_timelocked(subnet, netuid, epoch, block);
            subnet.epoch(block);
        }
    }
    let snapshot = s.subnets.iter().map(|(&id, sn)| (id, sn.metagraph(id, block))).collect();
    s.history.insert(block, snapshot);
    s.history.retain(|&b, _| b + HISTORY_BLOCKS > block);
    let parent = s.hashes.last().copied().unwrap_or_default();
    let mut preimage = parent.to_vec();
    preimage.extend(block.to_le_bytes());
    let hash = sp_crypto_hashing::blake2_256(&preimage);
    s.hashes.push(hash);
    let previous = s.timestamps.last().copied().unwrap_or(0);
    let timestamp_ms = timestamp_ms.unwrap_or_else(now_ms).max(previous);
    s.timestamps.push(timestamp_ms);
    BlockInfo { number: block, hash, timestamp_ms }
}

fn subnet_mut(s: &mut State, netuid: u16) -> Result<&mut Subnet, ChainError> {
    s.subnets.get_mut(&netuid).ok_or(ChainError::NoSubnet { netuid })
}

fn registered(subnet: &Subnet, netuid: u16, hotkey: &Hotkey) -> Result<u16, ChainError> {
    subnet.uid(hotkey).ok_or(ChainError::NotRegistered { hotkey: *hotkey, netuid })
}

/// The subnet and the caller's uid for a weights call, after the checks every weights call
/// shares: the caller is registered and the commit-reveal setting matches the call.
fn weights_caller<'a>(
    s: &'a mut State,
    netuid: u16,
    hotkey: &Hotkey,
    commit_reveal_call: bool,
) -> Result<(&'a mut Subnet, u16), ChainError> {
    let subnet = subnet_mut(s, netuid)?;
    let uid = registered(subnet, netuid, hotkey)?;
    weights::check_mode(&subnet.params, netuid, commit_reveal_call)?;
    Ok((subnet, uid))
}

/// Applies the timelocked commits due in `epoch`; one that no longer passes the weights rules
/// (the caller deregistered, the version key raised) is dropped, as the chain drops it.
fn reveal_timelocked(subnet: &mut Subnet, netuid: u16, epoch: u64, block: u64) {
    let (due, later): (Vec<_>, Vec<_>) =
        std::mem::take(&mut subnet.timelocked).into_iter().partition(|c| c.reveal_epoch <= epoch);
    subnet.timelocked = later;
    for c in due {
        // Revealed weights are not rate limited (the commit was), but the rules still apply.
        let Some(uid) = subnet.uid(&c.hotkey) else { continue };
        if check_rules(subnet, netuid, uid, &c.uids, &c.values, c.version_key).is_ok() {
            store_weights(subnet, uid, &c.uids, &c.values, block);
        }
    }
}

/// The weights rules every weights call is held to: version key, lengths, uids, limits.
fn check_rules(
    subnet: &Subnet,
    netuid: u16,
    uid: u16,
    uids: &[u16],
    values: &[u16],
    version_key: u64,
) -> Result<(), ChainError> {
    weights::check_version(&subnet.params, version_key)?;
    weights::check(&subnet.params, netuid, subnet.neurons.len() as u16, uid, uids, values)
}

/// The rules and the rate limit, then the weights stored: `set_weights` and `reveal_weights`.
fn apply_weights(
    subnet: &mut Subnet,
    netuid: u16,
    uid: u16,
    uids: &[u16],
    values: &[u16],
    version_key: u64,
    block: u64,
) -> Result<(), ChainError> {
    check_rules(subnet, netuid, uid, uids, values, version_key)?;
    weights::check_rate(&subnet.params, subnet.neurons[usize::from(uid)].last_update, block)?;
    store_weights(subnet, uid, uids, values, block);
    Ok(())
}

/// Stores weights max-upscaled, as subtensor stores them, and records the update block.
fn store_weights(subnet: &mut Subnet, uid: u16, uids: &[u16], values: &[u16], block: u64) {
    let neuron = &mut subnet.neurons[usize::from(uid)];
    let max = values.iter().copied().max().unwrap_or(0);
    neuron.weights = uids
        .iter()
        .zip(values)
        .filter(|(_, v)| **v > 0)
        .map(|(&u, &v)| (u, (u64::from(v) * u64::from(u16::MAX) / u64::from(max.max(1))) as u16))
        .collect();
    neuron.weights.sort_by_key(|(u, _)| *u);
    neuron.last_update = block;
}

impl Chain for LocalChain {
    async fn best_block(&self) -> Result<BlockInfo, ChainError> {
        let s = self.lock();
        let i = s.block as usize;
        Ok(BlockInfo { number: s.block, hash: s.hashes[i], timestamp_ms: s.timestamps[i] })
    }

    async fn block_hash(&self, number: u64) -> Result<[u8; 32], ChainError> {
        let s = self.lock();
        s.hashes
            .get(number as usize)
            .copied()
            .ok_or_else(|| ChainError::NoBlock { number, reason: "not produced yet".into() })
    }

    fn blocks(&self, from: u64) -> BoxStream<'static, Result<BlockInfo, ChainError>> {
        let chain = self.clone();
        let rx = self.head.subscribe();
        futures::stream::unfold((chain, rx, from), |(chain, mut rx, next)| async move {
            loop {
                let info = {
                    let s = chain.lock();
                    let i = next as usize;
                    (next <= s.block).then(|| BlockInfo {
                        number: next,
                        hash: s.hashes[i],
                        timestamp_ms: s.timestamps[i],
                    })
                };
                if let Some(info) = info {
                    return Some((Ok(info), (chain, rx, next + 1)));
                }
                // The sender lives in `chain`, so it cannot close while we wait.
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
        .boxed()
    }

    async fn subnet_params(&self, netuid: u16) -> Result<SubnetParams, ChainError> {
        Ok(self.lock().subnets.get(&netuid).ok_or(ChainError::NoSubnet { netuid })?.params.clone())
    }

    async fn metagraph(&self, netuid: u16, at: Option<u64>) -> Result<Metagraph, ChainError> {
        let s = self.lock();
        let subnet = s.subnets.get(&netuid).ok_or(ChainError::NoSubnet { netuid })?;
        match at {
            None => Ok(subnet.metagraph(netuid, s.block)),
            Some(b) => s.history.get(&b).and_then(|m| m.get(&netuid)).cloned().ok_or_else(|| {
                let reason = if b > s.block {
                    "not produced yet".to_string()
                } else {
                    format!("the dev chain keeps the last {HISTORY_BLOCKS} blocks")
                };
                ChainError::NoBlock { number: b, reason }
            }),
        }
    }

    async fn uid_of(&self, netuid: u16, hotkey: &Hotkey) -> Result<Option<u16>, ChainError> {
        Ok(self.lock().subnets.get(&netuid).ok_or(ChainError::NoSubnet { netuid })?.uid(hotkey))
    }

    async fn register(&self, coldkey: &Keypair, netuid: u16, hotkey: &Hotkey) -> Result<u16, ChainError> {
        let payer = coldkey.hotkey();
        self.extrinsic(|s, block| {
            let subnet = s.subnets.get(&netuid).ok_or(ChainError::NoSubnet { netuid })?;
            if subnet.uid(hotkey).is_some() {
                return Err(ChainError::AlreadyRegistered { hotkey: *hotkey, netuid });
            }
            if subnet.neurons.len() >= usize::from(subnet.params.max_uids) {
                return Err(ChainError::SubnetFull { netuid, max: subnet.params.max_uids });
            }
            let burn = subnet.burn;
            let balance = s.balances.get(&payer).copied().unwrap_or(0);
            if balance < burn {
                return Err(ChainError::InsufficientBalance { account: payer, needed: burn, balance });
            }
            s.balances.insert(payer, balance - burn);
            let subnet = subnet_mut(s, netuid)?;
            subnet.neurons.push(NeuronState {
                hotkey: *hotkey,
                coldkey: payer,
                stake: 0,
                permit: false,
                incentive: 0,
                dividends: 0,
                bonds: Vec::new(),
                // As subtensor does: the weights rate limit runs from registration.
                last_update: block,
                registered_at: block,
                weights: Vec::new(),
            });
            Ok(subnet.neurons.len() as u16 - 1)
        })
    }

    async fn set_commitment(&self, signer: &Keypair, netuid: u16, data: &[u8]) -> Result<(), ChainError> {
        if data.len() > MAX_COMMITMENT_BYTES {
            return Err(ChainError::CommitmentTooLarge { max: MAX_COMMITMENT_BYTES, got: data.len() });
        }
        let hotkey = signer.hotkey();
        self.extrinsic(|s, block| {
            let subnet = subnet_mut(s, netuid)?;
            registered(subnet, netuid, &hotkey)?;
            subnet.commitments.insert(hotkey, Commitment { block, data: data.to_vec() });
            Ok(())
        })
    }

    async fn commitment(&self, netuid: u16, hotkey: &Hotkey) -> Result<Option<Commitment>, ChainError> {
        Ok(self.lock().subnets.get(&netuid).ok_or(ChainError::NoSubnet { netuid })?.commitments.get(hotkey).cloned())
    }

    async fn set_weights(
        &self,
        signer: &Keypair,
        netuid: u16,
        uids: &[u16],
        values: &[u16],
        version_key: u64,
    ) -> Result<(), ChainError> {
        let hotkey = signer.hotkey();
        self.extrinsic(|s, block| {
            let (subnet, uid) = weights_caller(s, netuid, &hotkey, false)?;
            apply_weights(subnet, netuid, uid, uids, values, version_key, block)
        })
    }

    async fn commit_weights(&self, signer: &Keypair, netuid: u16, hash: [u8; 32]) -> Result<(), ChainError> {
        let hotkey = signer.hotkey();
        self.extrinsic(|s, block| {
            let (subnet, _) = weights_caller(s, netuid, &hotkey, true)?;
            let epoch = subnet.params.epoch(netuid, block);
            let commits = subnet.commits.entry(hotkey).or_default();
            if commits.len() >= MAX_UNREVEALED_COMMITS {
                return Err(ChainError::TooManyCommits { max: MAX_UNREVEALED_COMMITS });
            }
            commits.push((hash, epoch));
            subnet.commits_made.entry(hotkey).or_default().0 += 1;
            Ok(())
        })
    }

    /// On a subnet made with `timelocked_commits`, keeps the weights until the reveal epoch
    /// and applies them then. The dev chain has no drand beacon: the number returned is the
    /// first block of the reveal epoch, where subtensor returns the drand round.
    async fn commit_timelocked_weights(
        &self,
        signer: &Keypair,
        netuid: u16,
        uids: &[u16],
        values: &[u16],
        version_key: u64,
    ) -> Result<u64, ChainError> {
        let hotkey = signer.hotkey();
        self.extrinsic(|s, block| {
            let (subnet, uid) = weights_caller(s, netuid, &hotkey, true)?;
            if !subnet.params.timelocked_commits {
                return Err(ChainError::UnsupportedRuntime(format!(
                    "netuid {netuid} of the dev chain was made without timelocked commits"
                )));
            }
            check_rules(subnet, netuid, uid, uids, values, version_key)?;
            let p = &subnet.params;
            weights::check_rate(p, subnet.neurons[usize::from(uid)].last_update, block)?;
            if subnet.timelocked.iter().filter(|c| c.hotkey == hotkey).count() >= MAX_UNREVEALED_COMMITS {
                return Err(ChainError::TooManyCommits { max: MAX_UNREVEALED_COMMITS });
            }
            let reveal_epoch = p.epoch(netuid, block) + p.reveal_period_epochs;
            let reveal_block = p.epoch_start(netuid, reveal_epoch);
            subnet.neurons[usize::from(uid)].last_update = block;
            let commit =
                TimelockedCommit { hotkey, reveal_epoch, uids: uids.to_vec(), values: values.to_vec(), version_key };
            subnet.timelocked.push(commit);
            subnet.commits_made.entry(hotkey).or_default().1 += 1;
            Ok(reveal_block)
        })
    }

    async fn reveal_weights(
        &self,
        signer: &Keypair,
        netuid: u16,
        uids: &[u16],
        values: &[u16],
        salt: &[u16],
        version_key: u64,
    ) -> Result<(), ChainError> {
        let hotkey = signer.hotkey();
        self.extrinsic(|s, block| {
            let (subnet, uid) = weights_caller(s, netuid, &hotkey, true)?;
            let hash = commit_hash(&hotkey, netuid, uids, values, salt, version_key);
            let p = subnet.params.clone();
            let now = p.epoch(netuid, block);
            let commits = subnet.commits.entry(hotkey).or_default();
            let i =
                commits.iter().position(|(h, _)| *h == hash).ok_or(ChainError::NoMatchingCommit { hotkey, netuid })?;
            let reveal_epoch = commits[i].1 + p.reveal_period_epochs;
            if now < reveal_epoch {
                return Err(ChainError::RevealTooEarly { from: p.epoch_start(netuid, reveal_epoch) });
            }
            if now > reveal_epoch {
                commits.remove(i);
                return Err(ChainError::CommitExpired { expired: p.epoch_start(netuid, reveal_epoch + 1) });
            }
            commits.remove(i);
            apply_weights(subnet, netuid, uid, uids, values, version_key, block)
        })
    }

    async fn weights(&self, netuid: u16, uid: u16) -> Result<Vec<(u16, u16)>, ChainError> {
        let s = self.lock();
        let subnet = s.subnets.get(&netuid).ok_or(ChainError::NoSubnet { netuid })?;
        Ok(subnet.neurons.get(usize::from(uid)).map(|n| n.weights.clone()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small subnet: epochs of 5 blocks, two validator permits; commit-reveal with timelocked
    /// commits when `timelocked`.
    fn params(timelocked: bool) -> SubnetParams {
        SubnetParams {
            tempo: 4,
            weights_rate_limit: 0,
            weights_version_key: 0,
            min_allowed_weights: 1,
            max_weight_limit: u16::MAX,
            commit_reveal: timelocked,
            reveal_period_epochs: 1,
            max_uids: 8,
            max_validators: 2,
            timelocked_commits: timelocked,
        }
    }

    #[tokio::test]
    async fn blocks_at_chosen_times() {
        let chain = LocalChain::new();
        let start = chain.best_block().await.expect("head").timestamp_ms;
        let a = chain.advance_at(start + 60_000);
        assert_eq!((a.number, a.timestamp_ms), (1, start + 60_000));
        let b = chain.advance_at(start);
        assert_eq!(b.timestamp_ms, start + 60_000, "time does not run backwards");
        let mut stream = chain.blocks(1);
        assert_eq!(stream.next().await.expect("block").expect("ok"), a);
        assert_eq!(chain.best_block().await.expect("head"), b);
    }

    #[tokio::test]
    async fn epochs_give_permits_by_stake_and_incentive_by_consensus() {
        let chain = LocalChain::new();
        let alice = Keypair::from_secret("//Alice", "test").expect("key");
        chain.fund(&alice.hotkey(), 100);
        chain.create_subnet(1, params(false), 1);
        let keys: Vec<Keypair> = ["//Bob", "//Charlie", "//Dave", "//Eve"]
            .iter()
            .map(|u| Keypair::from_secret(u, "test").expect("key"))
            .collect();
        for k in &keys {
            chain.register(&alice, 1, &k.hotkey()).await.expect("register");
        }
        chain.set_stake(1, &keys[0].hotkey(), 3_000).expect("stake");
        chain.set_stake(1, &keys[1].hotkey(), 1_000).expect("stake");
        chain.set_stake(1, &keys[2].hotkey(), 10).expect("stake");
        // The majority validator backs uid 2, the minority one uid 3.
        chain.set_weights(&keys[0], 1, &[2], &[1], 0).await.expect("weights");
        chain.set_weights(&keys[1], 1, &[3], &[1], 0).await.expect("weights");
        chain.advance(5);
        let m = chain.metagraph(1, None).await.expect("metagraph");
        let permits: Vec<bool> = m.neurons.iter().map(|n| n.validator_permit).collect();
        assert_eq!(permits, vec![true, true, false, false], "the two largest stakes");
        let incentive: Vec<u16> = m.neurons.iter().map(|n| n.incentive).collect();
        assert_eq!(incentive, vec![0, 0, 65535, 0], "weights without stake-majority backing are clipped");
    }

    #[tokio::test]
    async fn timelocked_commits_apply_themselves_in_the_reveal_epoch() {
        let chain = LocalChain::new();
        let alice = Keypair::from_secret("//Alice", "test").expect("key");
        chain.fund(&alice.hotkey(), 100);
        let p = SubnetParams { weights_version_key: 3, ..params(true) };
        chain.create_subnet(1, p.clone(), 1);
        let v = Keypair::from_secret("//Bob", "test").expect("key");
        chain.register(&alice, 1, &v.hotkey()).await.expect("register");
        chain.register(&alice, 1, &alice.hotkey()).await.expect("register");
        assert_eq!(
            chain.set_weights(&v, 1, &[1], &[1], 3).await,
            Err(ChainError::CommitRevealEnabled { netuid: 1 }),
            "plain weights are refused while commit-reveal is on"
        );
        // The weights rules apply at commit time, as subtensor checks them before encrypting.
        assert_eq!(
            chain.commit_timelocked_weights(&v, 1, &[1], &[1], 2).await,
            Err(ChainError::VersionKey { required: 3, got: 2 })
        );
        let reveal = chain.commit_timelocked_weights(&v, 1, &[1], &[7], 3).await.expect("commit");
        let head = chain.best_block().await.expect("head").number;
        assert_eq!(p.epoch(1, reveal), p.epoch(1, head) + 1, "revealed in the next epoch");
        chain.advance(reveal - head - 1);
        assert!(chain.weights(1, 0).await.expect("weights").is_empty(), "hidden until the reveal epoch");
        chain.advance(1);
        assert_eq!(chain.weights(1, 0).await.expect("weights"), vec![(1, u16::MAX)]);
        assert_eq!(chain.commits_made(1, &v.hotkey()), (0, 1));

        // A subnet made without them refuses them plainly.
        chain.create_subnet(2, SubnetParams { timelocked_commits: false, ..p }, 1);
        chain.register(&alice, 2, &v.hotkey()).await.expect("register");
        let err = chain.commit_timelocked_weights(&v, 2, &[0], &[1], 3).await.expect_err("no timelock");
        assert!(matches!(err, ChainError::UnsupportedRuntime(_)), "{err}");
    }
}
