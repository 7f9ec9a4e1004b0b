//! Timelocked weight commits: the weights are encrypted to a future drand quicknet round
//! (Boneh-Franklin identity-based encryption on BLS12-381, the identity being the round), the
//! ciphertext goes on chain with `commit_timelocked_weights`, and subtensor decrypts and
//! applies them itself once that round's signature reaches its drand pallet. Nobody, the
//! validator included, can read them earlier, and no reveal transaction is needed.
//!
//! The bytes are the ones `bittensor-drand` writes and subtensor reads: a compressed
//! `TLECiphertext` of the SCALE-encoded `WeightsTlockPayload { hotkey, uids, values,
//! version_key }`, laid out as
//!
//! `U` (G2, 96 bytes) | `V` | `W` | body | suite, each of the last four a `u64` little-endian
//! length and its bytes; `V` and `W` are 32 bytes, the body is the AES-GCM output (ciphertext
//! and 12-byte nonce, each length-prefixed the same way), the suite is `AES_GCM_`.
//!
//! The `timelock` crate (0.3) does the cryptography; its own serialization writes `V` and `W`
//! without their lengths, which the chain would not read, so the layout above is written and
//! parsed here. Parsing checks every length against the input before anything is allocated:
//! arkworks would trust a length and abort the process on an absurd one.
//! `chain/tests/timelock.rs` opens ciphertexts of either side with the other.

use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use parity_scale_codec::Encode;
use rand08::{CryptoRng, RngCore};
use sha2::Digest;
use timelock::block_ciphers::{AESGCMBlockCipherProvider, BlockCipherProvider};
use timelock::engines::EngineBLS;
use timelock::engines::drand::TinyBLS381;
use timelock::ibe::fullident::Identity;
use timelock::tlock::{TLECiphertext, tld, tle};

use ferrum_common::Hotkey;

use crate::types::{epoch_of, epoch_start_of};

/// drand quicknet's group public key (G2, compressed), chain hash
/// `52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971`.
pub const QUICKNET_PUBLIC_KEY: &str = "83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a";
/// Unix time of quicknet round 1.
pub const QUICKNET_GENESIS_SECS: u64 = 1_692_803_367;
/// Seconds between quicknet rounds.
pub const QUICKNET_PERIOD_SECS: u64 = 3;
/// Blocks after the first block of the reveal epoch at which the round's pulse should have
/// arrived on chain (what the Bittensor SDK aims for).
pub const SECURITY_BLOCK_OFFSET: u64 = 3;

/// Why a timelock operation failed; none of these heal by retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimelockError {
    #[error("timelock encryption failed: {0}")]
    Encrypt(String),
    #[error("not a timelock ciphertext: {0}")]
    Malformed(String),
    #[error("not a BLS signature of this round (or the ciphertext is for another round)")]
    WrongSignature,
}

/// The plaintext subtensor expects inside a timelocked weights commit.
pub fn weights_payload(hotkey: &Hotkey, uids: &[u16], values: &[u16], version_key: u64) -> Vec<u8> {
    // A struct's SCALE encoding is its fields' in order.
    (hotkey.0.to_vec(), uids.to_vec(), values.to_vec(), version_key).encode()
}

/// The IBE identity of a round: sha256 of its number, big-endian (what quicknet signs).
fn identity(round: u64) -> Identity {
    let digest: [u8; 32] = sha2::Sha256::digest(round.to_be_bytes()).into();
    Identity::new(b"", &digest)
}

/// Encrypts `message` so it can be read once quicknet publishes `round`.
pub fn encrypt<R: RngCore + CryptoRng>(message: &[u8], round: u64, rng: &mut R) -> Result<Vec<u8>, TimelockError> {
    let enc = |e: &dyn std::fmt::Debug| TimelockError::Encrypt(format!("{e:?}"));
    let key_bytes = hex::decode(QUICKNET_PUBLIC_KEY).map_err(|e| enc(&e))?;
    let public =
        <TinyBLS381 as EngineBLS>::PublicKeyGroup::deserialize_compressed(key_bytes.as_slice()).map_err(|e| enc(&e))?;
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let ct = tle::<TinyBLS381, AESGCMBlockCipherProvider, _>(public, secret, message, identity(round), rng)
        .map_err(|e| enc(&e))?;
    let mut out = Vec::new();
    ct.header.u.serialize_compressed(&mut out).map_err(|e| enc(&e))?;
    for part in [&ct.header.v[..], &ct.header.w[..], &ct.body, &ct.cipher_suite] {
        out.extend_from_slice(&(part.len() as u64).to_le_bytes());
        out.extend_from_slice(part);
    }
    Ok(out)
}

/// Compressed G2 point size.
const G2_COMPRESSED: usize = 96;
const AES_GCM_NONCE: usize = 12;

/// Splits a `u64`-length-prefixed part off `input`, checking it fits.
fn take_part<'a>(input: &mut &'a [u8], what: &str) -> Result<&'a [u8], TimelockError> {
    let bad = |why: String| TimelockError::Malformed(format!("{what}: {why}"));
    let (len, rest) = input.split_at_checked(8).ok_or_else(|| bad("truncated length".into()))?;
    let len = u64::from_le_bytes(len.try_into().map_err(|_| bad("length".into()))?);
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= rest.len())
        .ok_or_else(|| bad(format!("length {len} exceeds the {} bytes left", rest.len())))?;
    let (part, rest) = rest.split_at(len);
    *input = rest;
    Ok(part)
}

/// Parses the wire layout (module docs) into the crate's ciphertext, lengths checked first.
fn parse(bytes: &[u8]) -> Result<TLECiphertext<TinyBLS381>, TimelockError> {
    let bad = |why: &str| TimelockError::Malformed(why.to_string());
    let (u, mut rest) = bytes.split_at_checked(G2_COMPRESSED).ok_or_else(|| bad("shorter than its header"))?;
    let u = <TinyBLS381 as EngineBLS>::PublicKeyGroup::deserialize_compressed(u)
        .map_err(|e| TimelockError::Malformed(format!("header point: {e:?}")))?;
    let v: [u8; 32] = take_part(&mut rest, "V")?.try_into().map_err(|_| bad("V is not 32 bytes"))?;
    let w: [u8; 32] = take_part(&mut rest, "W")?.try_into().map_err(|_| bad("W is not 32 bytes"))?;
    let body = take_part(&mut rest, "body")?;
    let suite = take_part(&mut rest, "cipher suite")?;
    if !rest.is_empty() {
        return Err(bad("bytes after the cipher suite"));
    }
    if suite != AESGCMBlockCipherProvider::CIPHER_SUITE {
        return Err(bad("cipher suite is not AES_GCM_"));
    }
    // The body is parsed again by the crate: check its two lengths here.
    let mut b = body;
    take_part(&mut b, "AES ciphertext")?;
    let nonce = take_part(&mut b, "AES nonce")?;
    if nonce.len() != AES_GCM_NONCE || !b.is_empty() {
        return Err(bad("AES body is not a ciphertext and a 12-byte nonce"));
    }
    let header = timelock::ibe::fullident::Ciphertext { u, v, w };
    Ok(TLECiphertext { header, body: body.to_vec(), cipher_suite: suite.to_vec() })
}

/// Decrypts a ciphertext with a round's signature (48 bytes, G1 compressed, as drand's API
/// serves it in hex). What the chain does at reveal time; here for tests and audits.
pub fn decrypt(ciphertext: &[u8], signature: &[u8]) -> Result<Vec<u8>, TimelockError> {
    let ct = parse(ciphertext)?;
    let sig = <TinyBLS381 as EngineBLS>::SignatureGroup::deserialize_compressed(signature)
        .map_err(|e| TimelockError::Malformed(format!("signature: {e:?}")))?;
    tld::<TinyBLS381, AESGCMBlockCipherProvider>(ct, sig).map_err(|_| TimelockError::WrongSignature)
}

/// The chain-side inputs of a reveal round: the subnet's epoch schedule and block time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RevealSchedule {
    pub netuid: u16,
    /// Blocks per epoch minus one.
    pub tempo: u16,
    pub reveal_period_epochs: u64,
    /// Seconds per block on this chain (12 on finney).
    pub block_time_secs: f64,
}

/// The drand round whose pulse should land just after the reveal epoch starts, for a commit
/// made at `current_block` when the wall clock reads `now_secs` (Unix seconds).
///
/// Epochs follow subtensor's schedule, `(block + netuid + 1) / (tempo + 1)`; the commit is
/// revealed `reveal_period_epochs` after the current one, in its first block plus
/// [`SECURITY_BLOCK_OFFSET`]. Rounding down keeps the round published by then. The same
/// arithmetic as `bittensor-drand`'s `generate_commit` (checked in `chain/tests/timelock.rs`).
pub fn reveal_round(s: &RevealSchedule, current_block: u64, now_secs: f64) -> u64 {
    let reveal_epoch = epoch_of(s.tempo, s.netuid, current_block) + s.reveal_period_epochs;
    let target_block = epoch_start_of(s.tempo, s.netuid, reveal_epoch) + SECURITY_BLOCK_OFFSET;
    let secs_until = target_block.saturating_sub(current_block) as f64 * s.block_time_secs;
    let target_secs = now_secs + secs_until;
    let round = ((target_secs - QUICKNET_GENESIS_SECS as f64) / QUICKNET_PERIOD_SECS as f64).floor();
    if round < 1.0 { 1 } else { round as u64 }
}

#[cfg(test)]
mod tests {
    use rand08::SeedableRng;

    use super::*;

    #[test]
    fn the_payload_is_the_scale_encoding_of_its_fields() {
        let p = weights_payload(&Hotkey([9; 32]), &[1, 2], &[3, 4], 5);
        let mut expected = vec![128u8]; // compact 32
        expected.extend([9u8; 32]);
        expected.extend([8, 1, 0, 2, 0, 8, 3, 0, 4, 0]);
        expected.extend(5u64.to_le_bytes());
        assert_eq!(p, expected);
    }

    #[test]
    fn a_ciphertext_does_not_open_with_garbage() {
        let mut rng = rand08::rngs::StdRng::seed_from_u64(1);
        let ct = encrypt(b"weights", 1000, &mut rng).expect("encrypt");
        assert!(matches!(decrypt(&ct, &[1u8; 48]), Err(TimelockError::Malformed(_))));
        assert!(matches!(decrypt(&ct[..10], &[1u8; 48]), Err(TimelockError::Malformed(_))));
    }

    #[test]
    fn absurd_lengths_and_truncations_are_rejected_without_allocating() {
        let mut rng = rand08::rngs::StdRng::seed_from_u64(2);
        let ct = encrypt(b"weights", 1000, &mut rng).expect("encrypt");
        assert!(parse(&ct).is_ok());
        // Every truncation, and a huge length in every prefix, is a plain rejection.
        for cut in 0..ct.len() {
            assert!(matches!(parse(&ct[..cut]), Err(TimelockError::Malformed(_))), "cut at {cut}");
        }
        let prefixes = [96, 96 + 40, 96 + 80];
        for at in prefixes {
            let mut bad = ct.clone();
            bad[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
            assert!(matches!(parse(&bad), Err(TimelockError::Malformed(_))), "length at {at}");
        }
        // Inside the body: the AES ciphertext's own length.
        let mut bad = ct.clone();
        bad[96 + 80 + 8..96 + 80 + 16].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        assert!(matches!(parse(&bad), Err(TimelockError::Malformed(_))));
        let mut longer = ct.clone();
        longer.push(0);
        assert!(matches!(parse(&longer), Err(TimelockError::Malformed(_))));
    }

    #[test]
    fn reveal_rounds_follow_the_epoch_schedule() {
        let s = RevealSchedule { netuid: 3, tempo: 99, reveal_period_epochs: 1, block_time_secs: 12.0 };
        // Block 196: epoch (196 + 4) / 100 = 2; reveal epoch 3 starts at 300 - 4 = 296; target 299.
        let now = QUICKNET_GENESIS_SECS as f64 + 3000.0;
        assert_eq!(reveal_round(&s, 196, now), ((3000.0 + 103.0 * 12.0) / 3.0) as u64);
        // Later in the same epoch, the same target block: the round stays put as time passes.
        assert_eq!(reveal_round(&s, 250, now + 54.0 * 12.0), reveal_round(&s, 196, now));
        // Never round 0, even with a clock before quicknet's genesis.
        assert_eq!(reveal_round(&s, 0, 0.0), 1);
    }
}
