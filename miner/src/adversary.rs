//! Cheating miners for the devnet and the tests, so the Gauntlet is held to real attacks. A
//! production miner is always [`Behaviour::Honest`]; the others are reachable only through
//! `ferrum devnet --adversaries` and test harnesses.

use std::str::FromStr;

use ferrum_chain::Keypair;
use ferrum_common::Hotkey;

/// How a miner behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Random values of the right shape, validly signed.
    Noise,
    /// Another miner's payload, re-signed under its own hotkey.
    Copier {
        victim: Victim,
    },
    /// Another miner's payload with each tensor scaled by a random factor within ±0.1 %,
    /// re-signed under its own hotkey: not bit-identical, the same update.
    NearCopy {
        victim: Victim,
    },
    /// A free rider: an all-zero update.
    Zeros,
    /// Trains honestly, on data it was not assigned (and claims its assignment).
    WrongData,
    /// Uploads its own payload of the previous window again.
    Replay,
    /// Its payload signed by another key.
    Forged,
    /// Uploads after the put window closes.
    Late,
    /// Trains from the genesis model every window, never from the network's model.
    Stale,
    /// Its payload with bytes appended.
    Oversized,
    /// Random bytes of a payload's size.
    Malformed,
    /// Uploads a valid payload, then replaces it with another validly signed one after the put
    /// window (its bucket swaps them after the first read).
    LateOverwrite,
    /// Uploads a valid payload, then replaces it with noise after the put window.
    LateGarbage,
    /// Its bucket serves two different validly signed payloads to different readers.
    Equivocate,
    /// Its bucket refuses some readers.
    Selective,
    /// Its bucket answers some readers only after their timeout.
    Slow,
    /// Its bucket deletes the payload during the gather.
    Vanish,
    /// Its honest update with every value negated: gradient ascent on its data.
    SignFlip,
    /// Its honest update ×10, to take a larger share of the aggregate.
    Scaled,
    /// Trains on its assigned samples with each sample's tokens shuffled: the right tokens,
    /// no language.
    Shuffled,
}

/// The miner a copier copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Victim {
    pub uid: u16,
    pub hotkey: Hotkey,
    /// Its bucket URL.
    pub bucket: String,
}

impl Victim {
    /// A victim the devnet fills in once every miner has its key.
    fn unset() -> Victim {
        Victim { uid: 0, hotkey: Hotkey([0; 32]), bucket: String::new() }
    }
}

/// Names accepted by `--adversaries`, in the order the docs list them.
pub const ADVERSARIES: [&str; 20] = [
    "noise",
    "copier",
    "near-copy",
    "zeros",
    "wrong-data",
    "replay",
    "forged",
    "late",
    "stale",
    "oversized",
    "malformed",
    "late-overwrite",
    "late-garbage",
    "equivocate",
    "selective",
    "slow",
    "vanish",
    "sign-flip",
    "scaled",
    "shuffled",
];

/// An adversary name the devnet does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown adversary `{0}`: use any of {list}", list = ADVERSARIES.join(", "))]
pub struct UnknownAdversary(String);

/// The behaviour of an adversary name; `copier` gets its victim from the harness.
impl FromStr for Behaviour {
    type Err = UnknownAdversary;

    fn from_str(s: &str) -> Result<Behaviour, UnknownAdversary> {
        Ok(match s {
            "noise" => Behaviour::Noise,
            "copier" => Behaviour::Copier { victim: Victim::unset() },
            "near-copy" => Behaviour::NearCopy { victim: Victim::unset() },
            "zeros" => Behaviour::Zeros,
            "wrong-data" => Behaviour::WrongData,
            "replay" => Behaviour::Replay,
            "forged" => Behaviour::Forged,
            "late" => Behaviour::Late,
            "stale" => Behaviour::Stale,
            "oversized" => Behaviour::Oversized,
            "malformed" => Behaviour::Malformed,
            "late-overwrite" => Behaviour::LateOverwrite,
            "late-garbage" => Behaviour::LateGarbage,
            "equivocate" => Behaviour::Equivocate,
            "selective" => Behaviour::Selective,
            "slow" => Behaviour::Slow,
            "vanish" => Behaviour::Vanish,
            "sign-flip" => Behaviour::SignFlip,
            "scaled" => Behaviour::Scaled,
            "shuffled" => Behaviour::Shuffled,
            other => return Err(UnknownAdversary(other.to_string())),
        })
    }
}

impl Behaviour {
    /// The name `--adversaries` takes (`honest` for an honest miner).
    pub fn name(&self) -> &'static str {
        match self {
            Behaviour::Honest => "honest",
            Behaviour::Noise => "noise",
            Behaviour::Copier { .. } => "copier",
            Behaviour::NearCopy { .. } => "near-copy",
            Behaviour::Zeros => "zeros",
            Behaviour::WrongData => "wrong-data",
            Behaviour::Replay => "replay",
            Behaviour::Forged => "forged",
            Behaviour::Late => "late",
            Behaviour::Stale => "stale",
            Behaviour::Oversized => "oversized",
            Behaviour::Malformed => "malformed",
            Behaviour::LateOverwrite => "late-overwrite",
            Behaviour::LateGarbage => "late-garbage",
            Behaviour::Equivocate => "equivocate",
            Behaviour::Selective => "selective",
            Behaviour::Slow => "slow",
            Behaviour::Vanish => "vanish",
            Behaviour::SignFlip => "sign-flip",
            Behaviour::Scaled => "scaled",
            Behaviour::Shuffled => "shuffled",
        }
    }

    /// Whether the attack is its bucket's, not its payload's: the devnet serves such a miner's
    /// bucket through a misbehaving wrapper (`devnet::hostile`).
    pub fn attacks_storage(&self) -> bool {
        matches!(
            self,
            Behaviour::LateOverwrite
                | Behaviour::LateGarbage
                | Behaviour::Equivocate
                | Behaviour::Selective
                | Behaviour::Slow
                | Behaviour::Vanish
        )
    }

    /// The key a forger signs with.
    pub fn forger() -> Keypair {
        // A fixed dev URI: always parses.
        Keypair::from_secret("//ferrum-devnet-forger", "forger").unwrap_or_else(|_| unreachable!("dev URI"))
    }
}

/// A seeded xorshift stream: the adversaries' randomness, the same on every machine.
fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

/// Deterministic bytes that look like nothing (xorshift), for the malformed adversary.
pub fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut next = xorshift(seed);
    (0..len).map(|_| (next() >> 32) as u8).collect()
}

/// The shuffled adversary's samples: each one's tokens in a seeded random order (Fisher-Yates):
/// the right tokens, no language.
pub fn shuffle_tokens(samples: &mut [Vec<u32>], seed: u64) {
    let mut next = xorshift(seed);
    for s in samples {
        for i in (1..s.len()).rev() {
            s.swap(i, (next() % (i as u64 + 1)) as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{garbage, shuffle_tokens};

    #[test]
    fn shuffled_samples_keep_their_tokens_in_another_order() {
        let original: Vec<Vec<u32>> = vec![(0..64).collect(), (100..132).collect(), vec![7]];
        let mut shuffled = original.clone();
        shuffle_tokens(&mut shuffled, 42);
        for (a, b) in original.iter().zip(&shuffled) {
            let (mut x, mut y) = (a.clone(), b.clone());
            x.sort_unstable();
            y.sort_unstable();
            assert_eq!(x, y, "the same tokens");
        }
        assert_ne!(original[0], shuffled[0], "in another order");
        assert_ne!(original[1], shuffled[1], "in another order");
        let mut again = original.clone();
        shuffle_tokens(&mut again, 42);
        assert_eq!(again, shuffled, "seeded");
    }

    #[test]
    fn garbage_is_seeded() {
        assert_eq!(garbage(64, 3), garbage(64, 3));
        assert_ne!(garbage(64, 3), garbage(64, 4));
    }
}
