//! The kept positions of each block as Golomb-Rice codes of their gaps, in a slot of fixed width
//! (docs/protocol.md §7.1 and §8).
//!
//! Why: 64 positions out of 4 096 carry log2 C(4096, 64) / 64 ≈ 7.4 bits each, and fixed-width
//! indices spend 12. A Rice code with parameter `r` spends `1 + r + ⌊gap / 2^r⌋` bits on a gap,
//! and one block's gaps sum to at most `n − k`, so no block ever needs more than
//! `k·(1 + r) + ⌊(n − k) / 2^r⌋` bits (510 for 64 of 4 096: 8 bits a position). Every block gets
//! a slot of exactly that width, zero-padded: a payload's size still follows from the config
//! alone (a reader refuses any other size before downloading), each block starts at a known bit,
//! and every index set has exactly one encoding. A variable-length stream would save about 6 %
//! on positions spread at random and give up all three.
//!
//! Bits are written least significant first, as in [`bits`](super::bits). A gap `d` is `⌊d/2^r⌋`
//! one-bits, a zero-bit, then `d mod 2^r` in `r` bits. The first gap is the first index; each
//! later one is the index minus the previous index minus one.

/// A block's code: its Rice parameter and slot width in bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotCode {
    pub rice: u32,
    pub slot_bits: usize,
}

impl SlotCode {
    /// The code for `k` kept positions of a block of `n`: the parameter whose worst case is
    /// smallest (the smaller parameter on a tie), and that worst case as the slot width.
    pub fn new(n: usize, k: usize) -> SlotCode {
        if k == 0 {
            return SlotCode { rice: 0, slot_bits: 0 };
        }
        let worst = |r: u32| k * (1 + r as usize) + ((n - k.min(n)) >> r);
        let rice =
            (0..usize::BITS - 1).take_while(|&r| r == 0 || 1usize << r <= n).min_by_key(|&r| worst(r)).unwrap_or(0);
        SlotCode { rice, slot_bits: worst(rice) }
    }
}

/// Bytes of the index part of a tensor of `blocks` blocks.
pub fn packed_len(code: SlotCode, blocks: usize) -> usize {
    (blocks * code.slot_bits).div_ceil(8)
}

/// A bit stream being written, least significant bit first.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    filled: u32,
}

impl Writer<'_> {
    /// Appends the low `bits` bits of `value` (`bits` ≤ 32), four bytes at a time.
    #[inline]
    fn put(&mut self, value: u64, bits: u32) {
        debug_assert!(bits <= 32 && (bits == 0 || value >> bits == 0));
        self.acc |= value << self.filled;
        self.filled += bits;
        if self.filled >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.filled -= 32;
        }
    }

    /// Appends `count` copies of one bit.
    fn repeat(&mut self, bit: bool, mut count: usize) {
        while count > 0 {
            let n = count.min(32);
            self.put(if bit { (1u64 << n) - 1 } else { 0 }, n as u32);
            count -= n;
        }
    }

    fn finish(self) {
        let bytes = self.acc.to_le_bytes();
        self.out.extend_from_slice(&bytes[..self.filled.div_ceil(8) as usize]);
    }
}

/// Appends the index part of a tensor: `indices` holds `k` positions per block, block after
/// block, each block's strictly increasing and below `n`. The error says which rule a block
/// breaks (a bug in the caller, never hostile input: the encoder makes these).
pub fn write(indices: &[u32], n: usize, k: usize, code: SlotCode, out: &mut Vec<u8>) -> Result<(), &'static str> {
    if k == 0 {
        return if indices.is_empty() { Ok(()) } else { Err("indices where the block keeps none") };
    }
    if !indices.len().is_multiple_of(k) {
        return Err("not k indices per block");
    }
    let r = code.rice;
    out.reserve(packed_len(code, indices.len() / k));
    let mut w = Writer { out, acc: 0, filled: 0 };
    for block in indices.chunks_exact(k) {
        let mut next = 0u64;
        let mut used = 0usize;
        for &i in block {
            let i = u64::from(i);
            if i < next || i >= n as u64 {
                return Err("a block's indices are not strictly increasing and inside the block");
            }
            let d = i - next;
            let (q, rem) = ((d >> r) as usize, d & ((1u64 << r) - 1));
            let len = q + 1 + r as usize;
            if len <= 32 {
                // q ones, the terminating zero, the remainder: one write.
                w.put(((1u64 << q) - 1) | rem << (q + 1), len as u32);
            } else {
                w.repeat(true, q);
                w.put(rem << 1, r + 1);
            }
            used += len;
            next = i + 1;
        }
        debug_assert!(used <= code.slot_bits, "a block over its worst case");
        w.repeat(false, code.slot_bits - used);
    }
    w.finish();
    Ok(())
}

/// Why a block's code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockError {
    /// A position at or past the end of the block.
    OutOfRange { block: usize, index: u64 },
    /// The codes run past the block's slot.
    Overrun { block: usize },
    /// Bits after the last code (in the slot, or after the last slot) are not zero.
    Padding { block: usize },
}

/// The 64 bits from bit `pos` on (at least 57 of them from `bytes`; past the end, zeros).
#[inline]
fn peek(bytes: &[u8], pos: usize) -> u64 {
    let at = pos >> 3;
    let word = match bytes.get(at..at + 8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
        Some(b) => u64::from_le_bytes(b),
        None => {
            let mut b = [0u8; 8];
            let tail = bytes.get(at..).unwrap_or(&[]);
            b[..tail.len()].copy_from_slice(tail);
            u64::from_le_bytes(b)
        }
    };
    word >> (pos & 7)
}

/// Whether bits `from..to` are all zero.
fn zero(bytes: &[u8], mut from: usize, to: usize) -> bool {
    while from < to {
        let n = (to - from).min(56);
        if peek(bytes, from) & ((1u64 << n) - 1) != 0 {
            return false;
        }
        from += n;
    }
    true
}

/// One gap's code from bit `pos` on, however long its unary part: the gap and where the next
/// code starts, or `None` when the unary part runs past `end`.
fn long_code(bytes: &[u8], mut pos: usize, end: usize, r: u32) -> Option<(u64, usize)> {
    let mut q = 0u64;
    let mut ones = peek(bytes, pos).trailing_ones();
    while ones >= 57 {
        q += 57;
        pos += 57;
        if pos > end {
            return None;
        }
        ones = peek(bytes, pos).trailing_ones();
    }
    q += u64::from(ones);
    pos += ones as usize + 1;
    let rem = peek(bytes, pos) & ((1u64 << r) - 1);
    Some((q << r | rem, pos + r as usize))
}

/// Reads the index part of a tensor of `blocks` blocks (exactly [`packed_len`] bytes), appending
/// `k` strictly increasing positions below `n` per block. Strict: any encoding but the one
/// [`write`] makes is refused, so equal index sets always have equal bytes.
pub fn read(
    bytes: &[u8],
    blocks: usize,
    n: usize,
    k: usize,
    code: SlotCode,
    out: &mut Vec<u32>,
) -> Result<(), BlockError> {
    debug_assert_eq!(bytes.len(), packed_len(code, blocks));
    let r = code.rice;
    let mask = (1u64 << r) - 1;
    for block in 0..blocks {
        let end = (block + 1) * code.slot_bits;
        let mut pos = block * code.slot_bits;
        // The stream from `pos` on; its low `avail` bits are known to be the stream's.
        let mut word = peek(bytes, pos);
        let mut avail = 57;
        let mut next = 0u64;
        for _ in 0..k {
            let ones = word.trailing_ones();
            let len = ones + 1 + r;
            let d = if len <= avail {
                // The usual case: the whole code is in the word at hand.
                let d = u64::from(ones) << r | (word >> (ones + 1)) & mask;
                word >>= len;
                avail -= len;
                pos += len as usize;
                d
            } else {
                let (d, to) = long_code(bytes, pos, end, r).ok_or(BlockError::Overrun { block })?;
                pos = to;
                word = peek(bytes, pos);
                avail = 57;
                d
            };
            next += d;
            out.push(next as u32);
            next += 1;
        }
        // Checked once per block: positions only grow, and reading on past the slot is harmless.
        if pos > end {
            return Err(BlockError::Overrun { block });
        }
        if k > 0 && next > n as u64 {
            return Err(BlockError::OutOfRange { block, index: next - 1 });
        }
        if !zero(bytes, pos, end) {
            return Err(BlockError::Padding { block });
        }
    }
    if !zero(bytes, blocks * code.slot_bits, bytes.len() * 8) {
        return Err(BlockError::Padding { block: blocks.saturating_sub(1) });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
