use proptest::prelude::*;

use super::*;

fn encoded(indices: &[u32], n: usize, k: usize) -> (SlotCode, Vec<u8>) {
    let code = SlotCode::new(n, k);
    let mut out = Vec::new();
    write(indices, n, k, code, &mut out).expect("valid indices");
    assert_eq!(out.len(), packed_len(code, indices.len() / k), "{n} {k}");
    (code, out)
}

fn decoded(bytes: &[u8], n: usize, k: usize, blocks: usize) -> Result<Vec<u32>, BlockError> {
    let mut out = Vec::new();
    read(bytes, blocks, n, k, SlotCode::new(n, k), &mut out).map(|()| out)
}

#[test]
fn the_parameter_minimizes_the_worst_case() {
    // (n, k) → (r, slot bits): 64 of 4096 is 510 bits (63.75 bytes) against 768 at 12 bits each.
    for (n, k, rice, slot) in [
        (4096, 64, 5, 510),
        (4096, 32, 6, 287),
        (64, 64, 0, 64),
        (64, 4, 3, 23),
        (15, 3, 1, 12),
        (15, 15, 0, 15),
        (1, 1, 0, 1),
    ] {
        assert_eq!(SlotCode::new(n, k), SlotCode { rice, slot_bits: slot }, "{k} of {n}");
    }
}

/// Pinned bytes, also produced by the independent implementation in scripts/protocol-vectors.py:
/// two blocks of 64 keeping 4 (r = 3, 23-bit slots). Block 0's gaps 0, 4, 0, 56 take all 23 bits;
/// block 1 (positions 1, 2, 3, 9; gaps 1, 0, 0, 5) takes 16 and 7 zero bits of padding.
#[test]
fn vector() {
    let (code, bytes) = encoded(&[0, 5, 6, 63, 1, 2, 3, 9], 64, 4);
    assert_eq!(code, SlotCode { rice: 3, slot_bits: 23 });
    assert_eq!(hex::encode(&bytes), VECTOR_HEX);
    assert_eq!(decoded(&bytes, 64, 4, 2), Ok(vec![0, 5, 6, 63, 1, 2, 3, 9]));
}
const VECTOR_HEX: &str = "80f007015000";

/// Every index set of every size in blocks of up to 12 positions: each fits its slot, reads back,
/// and has one encoding.
#[test]
fn every_small_block_round_trips() {
    for n in 1..=12usize {
        for mask in 1u32..(1 << n) {
            let set: Vec<u32> = (0..n as u32).filter(|i| mask >> i & 1 == 1).collect();
            let k = set.len();
            let (_, bytes) = encoded(&set, n, k);
            assert_eq!(decoded(&bytes, n, k, 1), Ok(set.clone()), "{set:?} of {n}");
        }
    }
}

#[test]
fn hostile_codes_are_refused_with_their_reason() {
    let (code, good) = encoded(&[0, 5, 6, 63, 1, 2, 3, 9], 64, 4);
    // All ones: the first code never ends inside its slot.
    assert_eq!(decoded(&[0xff; 6], 64, 4, 2), Err(BlockError::Overrun { block: 0 }));
    // Gaps 7, 7, 7, 63 fit the 23 bits but reach position 87 of 64.
    let bits: Vec<u8> = "0111".repeat(3).chars().chain("11111110111".chars()).map(|c| (c == '1') as u8).collect();
    let mut b = vec![0u8; 3];
    bits.iter().enumerate().for_each(|(i, &x)| b[i / 8] |= x << (i % 8));
    assert_eq!(decoded(&b, 64, 4, 1), Err(BlockError::OutOfRange { block: 0, index: 87 }));
    // A one in block 1's padding (bit 23 + 16), and one after the last slot (bit 46).
    for (bit, block) in [(code.slot_bits + 16, 1), (2 * code.slot_bits, 1)] {
        let mut b = good.clone();
        b[bit / 8] |= 1 << (bit % 8);
        assert_eq!(decoded(&b, 64, 4, 2), Err(BlockError::Padding { block }), "bit {bit}");
    }
}

#[test]
fn the_writer_refuses_what_the_reader_would() {
    let code = SlotCode::new(64, 2);
    for bad in [&[3u32, 3][..], &[4, 3], &[1, 64], &[1, 2, 3]] {
        assert!(write(bad, 64, 2, code, &mut Vec::new()).is_err(), "{bad:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random blocks, dense or sparse, gaps spread or all in one place.
    #[test]
    fn random_blocks_round_trip(
        n in 1usize..5000,
        density in 0.0f64..1.0,
        clumped in any::<bool>(),
        seed in any::<u64>(),
        blocks in 1usize..4,
    ) {
        let k = ((n as f64 * density * density) as usize).clamp(1, n);
        let mut s = seed | 1;
        let mut all = Vec::new();
        for _ in 0..blocks {
            let set: Vec<u32> = if clumped {
                // The worst case: everything at the end of the block.
                ((n - k) as u32..n as u32).collect()
            } else {
                let mut picked = std::collections::BTreeSet::new();
                while picked.len() < k {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    picked.insert((s % n as u64) as u32);
                }
                picked.into_iter().collect()
            };
            all.extend(set);
        }
        let (_, bytes) = encoded(&all, n, k);
        prop_assert_eq!(decoded(&bytes, n, k, blocks), Ok(all));
    }

    /// Whatever the bytes, the reader answers without panicking, and what it accepts is the one
    /// encoding of what it returns.
    #[test]
    fn accepted_bytes_are_canonical(bytes in prop::collection::vec(any::<u8>(), 1..64), n in 1usize..300, k in 1usize..20) {
        let k = k.min(n);
        let code = SlotCode::new(n, k);
        let blocks = bytes.len() * 8 / code.slot_bits.max(1);
        let len = packed_len(code, blocks);
        let bytes = &bytes[..len];
        let mut out = Vec::new();
        if read(bytes, blocks, n, k, code, &mut out).is_ok() {
            let mut again = Vec::new();
            write(&out, n, k, code, &mut again).expect("what the reader accepts is valid");
            prop_assert_eq!(&again[..], bytes);
        }
    }
}
