//! The localnet's stand-in for Yuma consensus. The runtime it runs (the raonet genesis at
//! spec 218, subtensor commit c39109d3) calls `epoch_mock` instead of `epoch` when a subnet's
//! tempo turns over: it stores zeros for Rank, Trust, Consensus, Incentive, Dividends and
//! ValidatorTrust and pays the epoch's emission to hotkeys by stake, whatever weights say. On
//! it no miner could ever show incentive, and nodes' gather ranking by incentive would never
//! run on real values.
//!
//! That stub also runs every block (the tempo check is commented out in that commit's
//! `run_coinbase`). So at each block where subtensor's schedule runs an epoch, the localnet
//! reads what the real epoch reads (stake, permits, weights, bonds, registration and update
//! blocks) and, when the runtime ignored weights that would
//! have paid someone, stores what [`ferrum_chain::yuma`] computes from them, and moves alpha
//! so that what the stub paid since the last epoch (by stake, every block: `Emission`) becomes
//! what the real epoch pays: each uid `E · (incentive + dividends) / Σ(incentive + dividends)`
//! of the same total `E`. Miners are paid as subtensor pays them (shares bought for the
//! hotkey's owner); overpaid hotkeys give back alpha. Where a runtime's epoch pays by weights
//! itself, nothing is written.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::Result;
use ferrum_chain::yuma::{self, EpochInput, EpochOutput};
use ferrum_chain::{EpochState, SubtensorChain};
use serde_json::{Value, json};

use super::chopsticks::Chopsticks;

/// What the stand-in decided about one epoch.
#[derive(Debug, Clone, PartialEq)]
pub enum EpochOutcome {
    /// The runtime's epoch paid by weights (or nothing could be paid yet): left as it is.
    LeftToRuntime,
    /// The runtime stored zeros where weights would pay: Yuma's results written instead, and
    /// `moved` alpha rao per uid (what the real epoch pays less what the stub paid since the
    /// last epoch).
    Written { block: u64, incentive: Vec<u16>, dividends: Vec<u16>, moved: Vec<i128> },
}

impl fmt::Display for EpochOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let EpochOutcome::Written { block, incentive, dividends, moved } = self else {
            return write!(f, "the runtime's epoch pays by weights; nothing written");
        };
        let shares = |v: &[u16]| {
            let parts: Vec<String> = v
                .iter()
                .enumerate()
                .filter(|(_, x)| **x > 0)
                .map(|(uid, x)| format!("{uid}:{:.3}", f64::from(*x) / f64::from(u16::MAX)))
                .collect();
            parts.join(" ")
        };
        let moved: Vec<String> = moved
            .iter()
            .enumerate()
            .filter(|(_, d)| **d != 0)
            .map(|(uid, d)| format!("{uid}:{:+.3}", *d as f64 / 1e9))
            .collect();
        write!(
            f,
            "epoch at block {block} by Yuma (this runtime's own epoch is a stub that ignores weights): incentive {} \
             dividends {}; alpha moved to pay by them: {}",
            shares(incentive),
            shares(dividends),
            moved.join(" ")
        )
    }
}

/// Follows one subnet's epochs across blocks.
pub struct EpochStandIn {
    netuid: u16,
    tempo: u16,
    seen: Option<u64>,
    /// Whether this runtime's epoch ignores weights; known from the first epoch where weights
    /// would pay someone.
    mocked: Option<bool>,
    /// The last vectors written, restored after each block: the stub runs every block (its
    /// tempo check is commented out) and zeroes them each time (it leaves bonds alone).
    current: Option<Value>,
    /// Alpha rao the stub paid each uid since the last epoch.
    paid: Vec<u64>,
}

impl EpochStandIn {
    pub fn new(netuid: u16, tempo: u16) -> EpochStandIn {
        EpochStandIn { netuid, tempo, seen: None, mocked: None, current: None, paid: Vec::new() }
    }

    /// Call right after each block. Restores the last results where the stub zeroed them,
    /// and at the blocks where subtensor runs a real epoch (every `tempo + 1` blocks)
    /// computes new ones.
    pub async fn after_block(&mut self, client: &SubtensorChain, chain: &Chopsticks) -> Result<Option<EpochOutcome>> {
        let Some(last) = client.last_epoch_block(self.netuid).await? else { return Ok(None) };
        if self.seen.replace(last) == Some(last) {
            return Ok(None);
        }
        // First, so that readers of this block see the zeros for as short a time as can be.
        if let (Some(true), Some(vectors)) = (self.mocked, &self.current) {
            chain.set_storage(vectors.clone()).await?;
        }
        let emission = client.emission(self.netuid).await?;
        if self.paid.len() < emission.len() {
            self.paid.resize(emission.len(), 0);
        }
        for (paid, e) in self.paid.iter_mut().zip(&emission) {
            *paid += e;
        }
        if !is_epoch_block(self.netuid, self.tempo, last) {
            return Ok(None);
        }
        let paid = std::mem::take(&mut self.paid);
        let state = client.epoch_state(self.netuid).await?;
        let out = run(&state);
        let incentive = yuma::to_u16(&out.incentive);
        self.mocked = self.mocked.or_else(|| judge(&state, &incentive));
        if self.mocked != Some(true) {
            return Ok(Some(EpochOutcome::LeftToRuntime));
        }
        let moved = corrections(&out, &paid);
        let mut shares = BTreeMap::new();
        for (n, _) in state.metagraph.neurons.iter().zip(&moved).filter(|(_, d)| **d > 0) {
            shares.insert(n.uid, client.hotkey_shares(self.netuid, &n.hotkey, &n.coldkey).await?);
        }
        let vectors = vector_writes(&out, self.netuid);
        let mut writes = vectors.clone();
        if let Some(module) = writes["SubtensorModule"].as_object_mut() {
            module.insert("Bonds".into(), bond_writes(&out, state.storage_index));
            module.extend(payouts(&state, &moved, &shares, self.netuid));
        }
        chain.set_storage(writes).await?;
        self.current = Some(vectors);
        Ok(Some(EpochOutcome::Written { block: last, incentive, dividends: yuma::to_u16(&out.dividends), moved }))
    }
}

/// Subtensor's epoch schedule: a subnet's epoch runs where `(block + netuid + 1) % (tempo + 1)`
/// is 0 (`blocks_until_next_epoch`).
pub fn is_epoch_block(netuid: u16, tempo: u16, block: u64) -> bool {
    tempo > 0 && (block + u64::from(netuid) + 1).is_multiple_of(u64::from(tempo) + 1)
}

/// Yuma over the state the epoch saw. Weights set after the epoch's block are not yet in
/// what it saw: they count as set at the epoch (the next epoch counts them in any case).
fn run(state: &EpochState) -> EpochOutput {
    let neurons = &state.metagraph.neurons;
    let stake: Vec<f64> = neurons.iter().map(|n| n.stake as f64).collect();
    let permits: Vec<bool> = neurons.iter().map(|n| n.validator_permit).collect();
    let last_update: Vec<u64> = neurons.iter().map(|n| n.last_update).collect();
    let registered_at: Vec<u64> = neurons.iter().map(|n| n.registered_at).collect();
    yuma::epoch(&EpochInput {
        block: state.last_epoch,
        activity_cutoff: u64::from(state.activity_cutoff),
        kappa: f64::from(state.kappa) / f64::from(u16::MAX),
        bonds_moving_average: state.bonds_moving_average as f64 / 1e6,
        max_validators: state.max_validators,
        stake: &stake,
        permits: &permits,
        last_update: &last_update,
        registered_at: &registered_at,
        weights: &state.weights,
        bonds: &state.bonds,
    })
}

/// `Some(true)` when the runtime stored no incentive and no consensus although the weights
/// pay someone; `Some(false)` when it stored some; `None` while the weights pay no one.
fn judge(state: &EpochState, computed_incentive: &[u16]) -> Option<bool> {
    if computed_incentive.iter().all(|&x| x == 0) {
        return None;
    }
    let stored_incentive = state.metagraph.neurons.iter().all(|n| n.incentive == 0);
    Some(stored_incentive && state.consensus.iter().all(|&x| x == 0))
}

/// `dev_setStorage` entries for the epoch's vectors (what the stub overwrites each block:
/// zeros, and every uid permitted and active).
fn vector_writes(out: &EpochOutput, netuid: u16) -> Value {
    let vector = |v: &[f64]| json!([[[netuid], yuma::to_u16(v)]]);
    json!({ "SubtensorModule": {
        "Rank": vector(&out.incentive),
        "Trust": vector(&out.trust),
        "Consensus": vector(&out.consensus),
        "Incentive": vector(&out.incentive),
        "Dividends": vector(&out.dividends),
        "ValidatorTrust": vector(&out.validator_trust),
        "ValidatorPermit": [[[netuid], out.permits]],
        "Active": [[[netuid], out.active]],
    }})
}

/// `Bonds` entries for the rows the epoch changes, keyed by storage index and uid.
fn bond_writes(out: &EpochOutput, storage_index: u16) -> Value {
    let rows = out.bonds.iter().enumerate();
    rows.filter_map(|(uid, row)| row.as_ref().map(|row| json!([[storage_index, uid], row]))).collect()
}

/// Per uid, what the real epoch pays of the total the stub paid, less what the stub paid:
/// `E · c_i / Σc − paid_i` with `c = incentive + dividends` (subtensor's split: servers get
/// incentive, validators dividends, normalized on their sum). All zeros when nothing would
/// be paid by weights (then the real epoch also pays by stake).
fn corrections(out: &EpochOutput, paid: &[u64]) -> Vec<i128> {
    let n = out.incentive.len();
    let combined: Vec<f64> = (0..n).map(|i| out.incentive[i] + out.dividends[i]).collect();
    let sum: f64 = combined.iter().sum();
    let total: u64 = paid.iter().sum();
    if sum <= 0.0 || total == 0 {
        return vec![0; n];
    }
    (0..n)
        .map(|i| {
            let real = (total as f64 * combined[i] / sum).floor() as i128;
            real - i128::from(paid.get(i).copied().unwrap_or(0))
        })
        .collect()
}

/// `dev_setStorage` entries that move `moved` alpha: a gain buys shares for the hotkey's
/// owner coldkey at the hotkey's share price (`increase_stake_for_hotkey_and_coldkey_on_subnet`;
/// `shares` holds each gaining uid's total shares and its owner's), a loss lowers the hotkey's
/// alpha (every share of it loses value alike).
fn payouts(
    state: &EpochState,
    moved: &[i128],
    shares: &BTreeMap<u16, (u64, u64)>,
    netuid: u16,
) -> serde_json::Map<String, Value> {
    let (mut alpha, mut total_shares, mut owned) = (Vec::new(), Vec::new(), Vec::new());
    for (n, &delta) in state.metagraph.neurons.iter().zip(moved) {
        let (hot, cold) = (n.hotkey.to_ss58(), n.coldkey.to_ss58());
        if delta > 0 {
            let Some(&(total, held)) = shares.get(&n.uid) else { continue };
            let delta = u64::try_from(delta).unwrap_or(u64::MAX);
            let bought = if total == 0 || n.stake == 0 {
                delta
            } else {
                (delta as f64 / n.stake as f64 * total as f64).floor() as u64
            };
            alpha.push(json!([[&hot, netuid], n.stake.saturating_add(delta).to_string()]));
            total_shares.push(json!([[&hot, netuid], total.saturating_add(bought).to_string()]));
            owned.push(json!([[&hot, &cold, netuid], held.saturating_add(bought).to_string()]));
        } else if delta < 0 {
            let loss = u64::try_from(-delta).unwrap_or(u64::MAX);
            alpha.push(json!([[&hot, netuid], n.stake.saturating_sub(loss).to_string()]));
        }
    }
    let mut m = serde_json::Map::new();
    m.insert("TotalHotkeyAlpha".into(), alpha.into());
    m.insert("TotalHotkeyShares".into(), total_shares.into());
    m.insert("Alpha".into(), owned.into());
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrum_chain::{Metagraph, Neuron};
    use ferrum_common::Hotkey;

    /// A localnet after its validator's weights: owner uid 0, validator uid 1, miners 2-3.
    fn state() -> EpochState {
        let stake = [9_887_257_534, 998_190_184_033, 0, 0];
        let (last_update, registered_at) = ([3, 110, 15, 16], [3, 13, 15, 16]);
        let neurons = (0..4u16)
            .map(|uid| {
                let i = usize::from(uid);
                Neuron {
                    uid,
                    hotkey: Hotkey([uid as u8 + 1; 32]),
                    coldkey: Hotkey([9; 32]),
                    stake: stake[i],
                    validator_permit: true,
                    incentive: 0,
                    dividends: 0,
                    active: true,
                    last_update: last_update[i],
                    registered_at: registered_at[i],
                }
            })
            .collect();
        EpochState {
            metagraph: Metagraph { netuid: 2, block: 120, neurons },
            storage_index: 2,
            last_epoch: 119,
            activity_cutoff: 5000,
            kappa: 32767,
            bonds_moving_average: 900_000,
            max_validators: 64,
            weights: vec![vec![], vec![(0, 65535), (2, 43690), (3, 21845)], vec![], vec![]],
            bonds: vec![vec![]; 4],
            consensus: vec![0; 4],
        }
    }

    #[test]
    fn a_stubbed_epoch_is_recognised_and_replaced() {
        let s = state();
        let out = run(&s);
        let incentive = yuma::to_u16(&out.incentive);
        assert_eq!(judge(&s, &incentive), Some(true));
        assert!(incentive[2] > incentive[3] && incentive[3] > 0, "{incentive:?}");
        let writes = vector_writes(&out, 2);
        let m = &writes["SubtensorModule"];
        assert_eq!(m["Incentive"][0][0], json!([2]));
        assert_eq!(m["Incentive"][0][1], json!(incentive));
        assert_eq!(m["Dividends"][0][1], json!([0, 65535, 0, 0]));
        assert_eq!(m["ValidatorPermit"][0][1], json!([true, true, true, true]), "4 uids, up to 64 permits");
        // Bonds rows keyed by the storage index and uid, the validator's holding its bonds.
        assert_eq!(bond_writes(&out, 2)[1], json!([[2, 1], [[0, 65535], [2, 65535], [3, 65535]]]));
    }

    #[test]
    fn a_runtime_that_pays_by_weights_is_left_alone() {
        let mut s = state();
        let incentive = yuma::to_u16(&run(&s).incentive);
        for (n, i) in s.metagraph.neurons.iter_mut().zip(&incentive) {
            n.incentive = *i;
        }
        s.consensus = vec![65535, 0, 43690, 21845];
        assert_eq!(judge(&s, &incentive), Some(false));
        // No weights yet that would pay anyone: nothing to judge by.
        s.weights = vec![vec![]; 4];
        assert_eq!(judge(&s, &yuma::to_u16(&run(&s).incentive)), None);
    }

    #[test]
    fn what_the_stub_paid_by_stake_is_moved_to_pay_by_weights() {
        let s = state();
        let out = run(&s);
        // The stub paid 1 % to the owner and 99 % to the validator over the tempo.
        let paid = [10_000_000, 990_000_000, 0, 0];
        let moved = corrections(&out, &paid);
        // Real: half by incentive (owner's burn uid 1/2 of it, miners 1/3 and 1/6), half by
        // dividends (all the validator's).
        let real = [250_000_000i128, 500_000_000, 166_666_666, 83_333_333];
        for uid in 0..4 {
            assert!((moved[uid] + paid[uid] as i128 - real[uid]).abs() <= 1, "uid {uid}: {moved:?}");
        }
        assert!(moved.iter().sum::<i128>().abs() <= 4, "alpha is moved, not made: {moved:?}");
        let shares = BTreeMap::from([(0, (9_000_000_000, 9_000_000_000)), (2, (0, 0)), (3, (0, 0))]);
        let w = payouts(&s, &moved, &shares, 2);
        // A miner without shares gets shares one for one, held by its owner coldkey.
        let miner = Hotkey([3; 32]).to_ss58();
        assert_eq!(w["TotalHotkeyAlpha"][2], json!([[&miner, 2], (moved[2] as u64).to_string()]));
        assert_eq!(w["Alpha"][1], json!([[&miner, Hotkey([9; 32]).to_ss58(), 2], (moved[2] as u64).to_string()]));
        // The overpaid validator gives back alpha; its holders' shares stay as they are.
        let validator = Hotkey([2; 32]).to_ss58();
        let back = (998_190_184_033i128 + moved[1]).to_string();
        assert!(w["TotalHotkeyAlpha"].as_array().expect("list").contains(&json!([[&validator, 2], back])));
        // The owner gains: shares bought at its price (9e9 shares for 9.887e9 alpha).
        let owner = Hotkey([1; 32]).to_ss58();
        let bought = (moved[0] as f64 / 9_887_257_534.0 * 9e9).floor() as u64;
        assert_eq!(w["TotalHotkeyShares"][0], json!([[&owner, 2], (9_000_000_000 + bought).to_string()]));
        // A gain whose shares were not read is not paid (never a guess at the share price).
        assert!(payouts(&s, &moved, &BTreeMap::new(), 2)["Alpha"].as_array().expect("list").is_empty());
        // Nothing paid by weights: nothing moves.
        assert_eq!(corrections(&run(&EpochState { weights: vec![vec![]; 4], ..state() }), &paid), vec![0; 4]);
    }

    #[test]
    fn epochs_follow_subtensors_schedule() {
        // tempo 10 on netuid 2: blocks 8, 19, 30, ...
        let blocks: Vec<u64> = (0..40).filter(|&b| is_epoch_block(2, 10, b)).collect();
        assert_eq!(blocks, vec![8, 19, 30]);
        assert!(!is_epoch_block(2, 0, 8), "tempo 0 runs no epoch");
    }

    #[test]
    fn an_epoch_reads_as_one_line() {
        let o = EpochOutcome::Written {
            block: 30,
            incentive: vec![32767, 0],
            dividends: vec![0, 65535],
            moved: vec![48_000_000, -48_000_000],
        };
        let line = o.to_string();
        assert!(line.contains("incentive 0:0.500 dividends 1:1.000") && line.ends_with("0:+0.048 1:-0.048"), "{line}");
    }
}
