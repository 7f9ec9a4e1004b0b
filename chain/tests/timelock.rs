//! Timelocked weight commits held to `bittensor-drand` (1.2.0 from PyPI, the package the
//! Bittensor SDK encrypts weights with) and to a round drand quicknet has published.
//!
//! Round 657,413 of quicknet was signed by the League of Entropy; its signature (below) is the
//! IBE key of that round, so a ciphertext for it opens with it and with nothing else. The
//! Python side runs where `FERRUM_DRAND_PYTHON` names an interpreter with `bittensor_drand`
//! (`scripts/tools` installs one); without it only the Rust checks run, and say so.

use ferrum_chain::timelock::{self, RevealSchedule, TimelockError};
use ferrum_common::Hotkey;
use rand08::SeedableRng;

const ROUND: u64 = 657_413;
/// drand quicknet's published signature of round 657,413 (G1, compressed).
const ROUND_SIGNATURE: &str =
    "b713718a38ae728dfd477991af2822e08d2f305e47718cef9f7848ce4050e7be41076862b98fad56e91a6b85b89cd97b";

fn signature() -> Vec<u8> {
    hex::decode(ROUND_SIGNATURE).expect("hex")
}

fn payload() -> Vec<u8> {
    timelock::weights_payload(&Hotkey([0x42; 32]), &[0, 3, 7], &[65535, 1200, 7], 11)
}

/// Runs `script` with bittensor_drand's Python; `None` when none is configured.
fn python(script: &str, args: &[&str]) -> Option<String> {
    let Some(py) = std::env::var_os("FERRUM_DRAND_PYTHON") else {
        eprintln!("FERRUM_DRAND_PYTHON unset: bittensor-drand cross-check skipped (scripts/tools installs it)");
        return None;
    };
    let out = std::process::Command::new(py).arg("-c").arg(script).args(args).output().expect("python runs");
    assert!(out.status.success(), "bittensor_drand: {}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8(out.stdout).expect("utf-8").trim().to_string())
}

#[test]
fn a_ciphertext_opens_with_the_rounds_published_signature_only() {
    let mut rng = rand08::rngs::StdRng::seed_from_u64(7);
    let ct = timelock::encrypt(&payload(), ROUND, &mut rng).expect("encrypt");
    assert_eq!(timelock::decrypt(&ct, &signature()).expect("opens"), payload());
    // The same message for the next round does not open with this round's signature.
    let later = timelock::encrypt(&payload(), ROUND + 1, &mut rng).expect("encrypt");
    assert_eq!(timelock::decrypt(&later, &signature()), Err(TimelockError::WrongSignature));
}

#[test]
fn bittensor_drand_opens_ferrums_ciphertexts() {
    let mut rng = rand08::rngs::StdRng::seed_from_u64(8);
    let ct = timelock::encrypt(&payload(), ROUND, &mut rng).expect("encrypt");
    let script = "import sys, bittensor_drand as d\n\
                  print(d.decrypt_with_signature(bytes.fromhex(sys.argv[1]), sys.argv[2]).hex())";
    // Its decrypt_with_signature takes the SCALE `UserData { encrypted_data, reveal_round }`
    // envelope that its encrypt functions return.
    let envelope = [parity_scale_codec::Encode::encode(&(ct, ROUND)), vec![]].concat();
    let Some(out) = python(script, &[&hex::encode(&envelope), ROUND_SIGNATURE]) else { return };
    assert_eq!(out, hex::encode(payload()));
}

#[test]
fn ferrum_opens_bittensor_drands_weight_commits_and_agrees_on_the_round() {
    let schedule = RevealSchedule { netuid: 3, tempo: 99, reveal_period_epochs: 1, block_time_secs: 12.0 };
    let block = 5_000_123u64;
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    let before = timelock::reveal_round(&schedule, block, now());
    // get_encrypted_commit(uids, weights, version_key, tempo, current_block, netuid,
    // reveal_period_epochs, block_time, hotkey) -> (ciphertext, reveal_round)
    let script = "import sys, bittensor_drand as d\n\
                  ct, r = d.get_encrypted_commit([0, 3, 7], [65535, 1200, 7], 11, 99, int(sys.argv[1]), 3, 1, 12.0, \
                  bytes([0x42] * 32))\n\
                  print(ct.hex(), r)";
    let Some(out) = python(script, &[&block.to_string()]) else { return };
    let after = timelock::reveal_round(&schedule, block, now());
    let (ct, round) = out.split_once(' ').expect("ciphertext and round");
    let round: u64 = round.parse().expect("round");
    assert!((before..=after).contains(&round), "bittensor-drand chose round {round}, Ferrum {before}..={after}");
    // Its commit is for a future round, which no key opens yet: it must parse (the same layout)
    // and refuse this round's key; encrypt_at_round below checks a payload end to end.
    let ct = hex::decode(ct).expect("hex");
    assert_eq!(
        timelock::decrypt(&ct, &signature()),
        Err(TimelockError::WrongSignature),
        "a commit for round {round} parses as a timelock ciphertext and does not open with round {ROUND}'s key"
    );
    let script = "import sys, bittensor_drand as d\n\
                  ct, r = d.encrypt_at_round(bytes.fromhex(sys.argv[1]), int(sys.argv[2]))\n\
                  print(ct.hex())";
    let Some(out) = python(script, &[&hex::encode(payload()), &ROUND.to_string()]) else { return };
    let ct = hex::decode(out).expect("hex");
    // encrypt_at_round wraps the ciphertext as SCALE `UserData { encrypted_data, reveal_round }`.
    let (inner, round) = user_data(&ct);
    assert_eq!(round, ROUND);
    assert_eq!(timelock::decrypt(inner, &signature()).expect("opens"), payload());
}

/// Splits SCALE `(Vec<u8>, u64)`.
fn user_data(b: &[u8]) -> (&[u8], u64) {
    use parity_scale_codec::{Compact, Decode};
    let mut input = b;
    let Compact(len) = Compact::<u32>::decode(&mut input).expect("length");
    let (data, rest) = input.split_at(len as usize);
    (data, u64::from_le_bytes(rest.try_into().expect("round")))
}
