//! The calls Ferrum submits, as [`CallSpec`]s for the runtime described by a
//! [`RuntimeProfile`]. The chain client submits exactly these; the tests encode the same ones
//! from `finney.scale` and hold them to an independent encoder.

use subxt::dynamic::Value;

use crate::error::ChainError;
use crate::extrinsic::CallSpec;
use crate::runtime::RuntimeProfile;

const MODULE: &str = "SubtensorModule";

fn u(n: impl Into<u128>) -> Value {
    Value::u128(n.into())
}

fn u16s(v: &[u16]) -> Value {
    Value::unnamed_composite(v.iter().map(|&x| u(x)))
}

fn call(pallet: &'static str, call: &'static str, args: Vec<Value>) -> CallSpec {
    CallSpec { pallet, call, args }
}

/// The weight calls of mechanism 0 keep their old names and arguments; other mechanisms take
/// the `*_mechanism_*` call with the mechanism after the netuid.
fn weights_call(
    p: &RuntimeProfile,
    plain: &'static str,
    per_mechanism: &'static str,
    netuid: u16,
    mechanism: u8,
    rest: Vec<Value>,
) -> Result<CallSpec, ChainError> {
    p.storage_index(netuid, mechanism)?;
    let mut args = vec![u(netuid)];
    let name = if mechanism == 0 {
        plain
    } else {
        args.push(u(mechanism));
        per_mechanism
    };
    args.extend(rest);
    Ok(call(MODULE, name, args))
}

/// `set_weights` / `set_mechanism_weights`.
pub fn set_weights(
    p: &RuntimeProfile,
    netuid: u16,
    mechanism: u8,
    uids: &[u16],
    values: &[u16],
    version_key: u64,
) -> Result<CallSpec, ChainError> {
    let rest = vec![u16s(uids), u16s(values), u(version_key)];
    weights_call(p, "set_weights", "set_mechanism_weights", netuid, mechanism, rest)
}

/// `commit_weights` / `commit_mechanism_weights`: the hash of weights to reveal later.
pub fn commit_weights(p: &RuntimeProfile, netuid: u16, mechanism: u8, hash: [u8; 32]) -> Result<CallSpec, ChainError> {
    weights_call(p, "commit_weights", "commit_mechanism_weights", netuid, mechanism, vec![Value::from_bytes(hash)])
}

/// `reveal_weights` / `reveal_mechanism_weights`.
pub fn reveal_weights(
    p: &RuntimeProfile,
    netuid: u16,
    mechanism: u8,
    uids: &[u16],
    values: &[u16],
    salt: &[u16],
    version_key: u64,
) -> Result<CallSpec, ChainError> {
    let rest = vec![u16s(uids), u16s(values), u16s(salt), u(version_key)];
    weights_call(p, "reveal_weights", "reveal_mechanism_weights", netuid, mechanism, rest)
}

/// `commit_timelocked_weights` / `commit_timelocked_mechanism_weights`: weights encrypted to a
/// drand round, which the chain decrypts and applies when that round's pulse arrives.
pub fn commit_timelocked_weights(
    p: &RuntimeProfile,
    netuid: u16,
    mechanism: u8,
    ciphertext: &[u8],
    reveal_round: u64,
    commit_reveal_version: u16,
) -> Result<CallSpec, ChainError> {
    if !p.timelocked_commits {
        return Err(ChainError::UnsupportedRuntime("this runtime has no timelocked weight commits".into()));
    }
    let rest = vec![Value::from_bytes(ciphertext), u(reveal_round), u(commit_reveal_version)];
    weights_call(p, "commit_timelocked_weights", "commit_timelocked_mechanism_weights", netuid, mechanism, rest)
}

/// `Commitments.set_commitment` with one raw field (`Data::Raw{len}`).
pub fn set_commitment(netuid: u16, data: &[u8]) -> CallSpec {
    // `Data` is encoded by hand in the pallet; its type info names one variant per length.
    let field = Value::unnamed_variant(format!("Raw{}", data.len()), [Value::from_bytes(data)]);
    let info = Value::named_composite([("fields", Value::unnamed_composite([field]))]);
    call("Commitments", "set_commitment", vec![u(netuid), info])
}

/// `burned_register`: registers `hotkey` on `netuid`, paying the burn from the signer.
pub fn burned_register(netuid: u16, hotkey: [u8; 32]) -> CallSpec {
    call(MODULE, "burned_register", vec![u(netuid), Value::from_bytes(hotkey)])
}

/// `register_network`, with the `mechid` argument (1) where the runtime still takes it.
pub fn register_network(p: &RuntimeProfile, hotkey: [u8; 32]) -> CallSpec {
    let mut args = vec![Value::from_bytes(hotkey)];
    if p.register_network_takes_mechid {
        args.push(u(1u16));
    }
    call(MODULE, "register_network", args)
}

/// `start_call`: the owner starts a new subnet's emissions (after the runtime's delay).
pub fn start_call(p: &RuntimeProfile, netuid: u16) -> Result<CallSpec, ChainError> {
    if !p.start_call {
        return Err(ChainError::UnsupportedRuntime("this runtime has no start_call".into()));
    }
    Ok(call(MODULE, "start_call", vec![u(netuid)]))
}

/// `add_stake` of `amount` rao from the signer's coldkey to `hotkey` on `netuid`.
pub fn add_stake(hotkey: [u8; 32], netuid: u16, amount: u64) -> CallSpec {
    call(MODULE, "add_stake", vec![Value::from_bytes(hotkey), u(netuid), u(amount)])
}

/// `Sudo.sudo` around an `AdminUtils` call (dev chains only: the signer must be the sudo key).
pub fn sudo_admin(admin_call: &str, args: Vec<Value>) -> CallSpec {
    let inner = Value::unnamed_variant("AdminUtils", [Value::unnamed_variant(admin_call, args)]);
    call("Sudo", "sudo", vec![inner])
}
