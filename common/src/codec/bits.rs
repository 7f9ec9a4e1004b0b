//! Fixed-width bit packing, least significant bit first.

/// Bytes needed for `count` values of `bits` bits.
pub fn packed_len(count: usize, bits: u32) -> usize {
    (count * bits as usize).div_ceil(8)
}

/// Packs values (each below 2^bits) into a bit stream.
pub fn pack(values: impl IntoIterator<Item = u32>, bits: u32, out: &mut Vec<u8>) {
    debug_assert!((1..=32).contains(&bits));
    let mut acc: u64 = 0;
    let mut filled = 0u32;
    for v in values {
        debug_assert!(bits == 32 || v < (1 << bits));
        acc |= u64::from(v) << filled;
        filled += bits;
        while filled >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            filled -= 8;
        }
    }
    if filled > 0 {
        out.push(acc as u8);
    }
}

/// Reads `count` values of `bits` bits; `bytes` must hold exactly [`packed_len`] bytes.
/// Returns `None` if the unused padding bits of the last byte are not zero (a canonical
/// encoding has exactly one byte form).
pub fn unpack(bytes: &[u8], count: usize, bits: u32, out: &mut Vec<u32>) -> Option<()> {
    debug_assert_eq!(bytes.len(), packed_len(count, bits));
    let mask = if bits == 32 { u64::from(u32::MAX) } else { (1u64 << bits) - 1 };
    let mut acc: u64 = 0;
    let mut have = 0u32;
    let mut iter = bytes.iter();
    for _ in 0..count {
        while have < bits {
            acc |= u64::from(*iter.next()?) << have;
            have += 8;
        }
        out.push((acc & mask) as u32);
        acc >>= bits;
        have -= bits;
    }
    (acc == 0 && iter.next().is_none()).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_width() {
        for bits in 1..=32u32 {
            let max = if bits == 32 { u32::MAX } else { (1 << bits) - 1 };
            let values: Vec<u32> = (0..37u32).map(|i| i.wrapping_mul(2_654_435_761) & max).collect();
            let mut buf = Vec::new();
            pack(values.iter().copied(), bits, &mut buf);
            assert_eq!(buf.len(), packed_len(values.len(), bits));
            let mut back = Vec::new();
            unpack(&buf, values.len(), bits, &mut back).expect("unpack");
            assert_eq!(back, values, "bits {bits}");
        }
    }

    #[test]
    fn twelve_bit_indices_take_one_and_a_half_bytes() {
        let mut buf = Vec::new();
        pack([0xabc, 0x123], 12, &mut buf);
        assert_eq!(buf, [0xbc, 0x3a, 0x12]);
        assert_eq!(packed_len(64, 12), 96);
        assert_eq!(packed_len(64, 2), 16);
    }

    #[test]
    fn non_zero_padding_is_refused() {
        let mut buf = Vec::new();
        pack([1, 2, 3], 2, &mut buf);
        let mut out = Vec::new();
        assert!(unpack(&buf, 3, 2, &mut out).is_some());
        buf[0] |= 0x80;
        out.clear();
        assert!(unpack(&buf, 3, 2, &mut out).is_none());
    }
}
