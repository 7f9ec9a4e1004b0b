//! The order test's samples: a miner's own samples with their tokens shuffled. An update
//! learned from text helps the text in its order more than the same tokens in a random order;
//! one learned from token counts alone (shuffled training data, a unigram model) helps both
//! alike, or the shuffled more (docs/protocol.md §14).

/// Domain of the permutation stream, so no other BLAKE3 use in the protocol can collide with it.
const CONTEXT: &str = "ferrum 2026-12 order test shuffle v1";

/// Each sample's tokens in a random order: a Fisher–Yates shuffle driven by the BLAKE3 stream
/// of `(seed, uid, sample index)`, drawing `u64 mod (i + 1)` for position `i` from the end.
/// Validators need not agree on it bit for bit; it is pinned so a run can be reproduced.
pub fn shuffled(samples: &[Vec<u32>], seed: &[u8; 32], uid: u16) -> Vec<Vec<u32>> {
    samples
        .iter()
        .enumerate()
        .map(|(n, sample)| {
            let mut h = blake3::Hasher::new_derive_key(CONTEXT);
            h.update(seed);
            h.update(&uid.to_le_bytes());
            h.update(&(n as u64).to_le_bytes());
            let mut stream = h.finalize_xof();
            let mut out = sample.clone();
            for i in (1..out.len()).rev() {
                let mut b = [0u8; 8];
                stream.fill(&mut b);
                out.swap(i, (u64::from_le_bytes(b) % (i as u64 + 1)) as usize);
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shuffle_keeps_the_tokens_and_depends_on_seed_uid_and_sample() {
        let samples: Vec<Vec<u32>> = (0..3).map(|s| (0..64).map(|t| t * 3 + s).collect()).collect();
        let a = shuffled(&samples, &[1; 32], 7);
        for (x, y) in samples.iter().zip(&a) {
            let (mut x, mut y) = (x.clone(), y.clone());
            assert_ne!(x, y, "another order");
            x.sort_unstable();
            y.sort_unstable();
            assert_eq!(x, y, "the same tokens");
        }
        assert_eq!(a, shuffled(&samples, &[1; 32], 7), "pinned");
        assert_ne!(a, shuffled(&samples, &[2; 32], 7), "by seed");
        assert_ne!(a, shuffled(&samples, &[1; 32], 8), "by uid");
        let same_twice = vec![samples[0].clone(), samples[0].clone()];
        let b = shuffled(&same_twice, &[1; 32], 7);
        assert_ne!(b[0], b[1], "by sample index");
    }

    #[test]
    fn the_permutation_is_pinned() {
        // docs/protocol.md §14 vector.
        let sample: Vec<u32> = (0..8).collect();
        assert_eq!(shuffled(&[sample], &[0; 32], 0)[0], PINNED);
    }

    // Cross-checked with @noble/hashes blake3 (derive-key mode, XOF) in JavaScript.
    const PINNED: [u32; 8] = [0, 7, 1, 2, 5, 4, 3, 6];
}
