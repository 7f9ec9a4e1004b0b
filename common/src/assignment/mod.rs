//! Deterministic sample assignment: which dataset samples a miner trains on in a window.
//!
//! A pure function of (dataset id, netuid, window, uid, hotkey); every validator reproduces it.
//! The random stream is BLAKE3 in extendable-output mode, so the algorithm needs nothing beyond
//! BLAKE3 to reimplement (docs/protocol.md §Assignment, with test vectors).

use std::collections::HashSet;

use crate::data::DatasetId;
use crate::hotkey::Hotkey;

const ASSIGNMENT_CONTEXT: &str = "ferrum 2026-11 sample assignment v1";
const RANDOM_IDENTITY_CONTEXT: &str = "ferrum 2026-11 random data identity v1";
const SAMPLES_DIGEST_CONTEXT: &str = "ferrum 2026-11 samples digest v1";

/// The uid of the pseudo-identity whose assignment is a window's random data. Subtensor uids stay
/// below 4096, so no miner has it.
pub const RANDOM_UID: u16 = u16::MAX;

/// Who asks for samples, and when.
#[derive(Debug, Clone, Copy)]
pub struct SampleRequest<'a> {
    pub dataset: &'a DatasetId,
    pub netuid: u16,
    pub window: u64,
    pub uid: u16,
    pub hotkey: &'a Hotkey,
}

/// Why no assignment can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    #[error("cannot draw {count} distinct samples from a dataset of {population}")]
    CountExceedsPopulation { count: u64, population: u64 },
}

/// A uniform stream of integers from BLAKE3's output.
struct Stream(blake3::OutputReader);

impl Stream {
    fn new(req: &SampleRequest<'_>) -> Self {
        let mut h = blake3::Hasher::new_derive_key(ASSIGNMENT_CONTEXT);
        h.update(&req.dataset.0);
        h.update(&req.netuid.to_le_bytes());
        h.update(&req.window.to_le_bytes());
        h.update(&req.uid.to_le_bytes());
        h.update(req.hotkey.as_bytes());
        Stream(h.finalize_xof())
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        u64::from_le_bytes(b)
    }

    /// Uniform in `[0, n)` by rejection: draws at or above the largest multiple of `n` that fits
    /// in 2^64 are discarded, so every residue is equally likely.
    fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let zone = (1u128 << 64) - ((1u128 << 64) % u128::from(n));
        loop {
            let r = self.next_u64();
            if u128::from(r) < zone {
                return r % n;
            }
        }
    }
}

/// `count` distinct sample indices in `[0, population)`, in training order.
///
/// Floyd's algorithm picks the set (one draw per element, no rejection of duplicates), then a
/// Fisher–Yates pass over the same stream fixes the order, so batches mix the whole dataset.
pub fn assign_samples(req: &SampleRequest<'_>, count: u64, population: u64) -> Result<Vec<u64>, AssignmentError> {
    if count > population {
        return Err(AssignmentError::CountExceedsPopulation { count, population });
    }
    let mut stream = Stream::new(req);
    let capacity = usize::try_from(count).unwrap_or(usize::MAX);
    let mut chosen = HashSet::with_capacity(capacity);
    let mut out = Vec::with_capacity(capacity);
    for j in (population - count)..population {
        let t = stream.below(j + 1);
        let pick = if chosen.contains(&t) { j } else { t };
        chosen.insert(pick);
        out.push(pick);
    }
    for i in (1..out.len()).rev() {
        let k = stream.below(i as u64 + 1) as usize;
        out.swap(i, k);
    }
    Ok(out)
}

/// The pseudo-identity whose assignment is a window's random data, from the hash of the window's
/// random-seed block (see `WindowSchedule::random_seed_block`).
pub fn random_identity(seed_block_hash: &[u8; 32]) -> (u16, Hotkey) {
    let key = blake3::derive_key(RANDOM_IDENTITY_CONTEXT, seed_block_hash);
    (RANDOM_UID, Hotkey(key))
}

/// Digest of the samples a miner trained on, in training order (carried in its payload).
pub fn samples_digest(samples: &[u64]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(SAMPLES_DIGEST_CONTEXT);
    for s in samples {
        h.update(&s.to_le_bytes());
    }
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests;
