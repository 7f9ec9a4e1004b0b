//! Top-k selection inside one block, by radix refinement on the values' magnitude bits.
//!
//! The order is the codec's (docs/protocol.md §7.2): larger magnitude first, lower index first
//! among equal magnitudes, NaN above infinity (IEEE total order of `|v|`). For a non-negative
//! float that order is the order of its bits as an unsigned integer, so the k-th largest key is
//! found with a few 256-bucket histograms instead of a comparison sort, and the kept indices come
//! out in increasing order from one last scan.

/// Reusable buffers for [`top_k`], sized for one block.
#[derive(Debug, Default)]
pub struct Selector {
    keys: Vec<u32>,
    candidates: Vec<u32>,
    next: Vec<u32>,
    /// `key << 32 | !index` of the entries at or above a guessed threshold.
    packed: Vec<u64>,
    /// The last block's k-th largest key: neighbouring blocks of a tensor have similar
    /// magnitudes, so a little below it is a good first guess at this block's.
    last: Option<u32>,
}

/// `|v|` as an integer key in the codec's magnitude order.
#[inline]
fn key(v: f32) -> u32 {
    v.to_bits() & 0x7FFF_FFFF
}

/// Bit fields refined in turn, most significant first: (shift, mask).
const LEVELS: [(u32, u32); 4] = [(23, 0xFF), (15, 0xFF), (7, 0xFF), (0, 0x7F)];

impl Selector {
    /// Appends to `out` the in-block indices of the `k` largest entries of `block` in the codec's
    /// order, increasing. `k` must not exceed the block's length.
    #[inline(always)]
    pub fn top_k(&mut self, block: &[f32], k: usize, out: &mut Vec<u32>) {
        let n = block.len();
        debug_assert!(k <= n);
        if k == n {
            out.extend(0..n as u32);
            return;
        }
        if k == 0 {
            return;
        }
        if let Some(last) = self.last
            && self.guessed(block, k, last.saturating_sub(GUESS_MARGIN), out)
        {
            return;
        }
        self.keys.clear();
        self.keys.extend(block.iter().map(|&v| key(v)));
        // Find the k-th largest key `threshold` and how many entries equal to it are kept.
        let mut need = k;
        let mut prefix = 0u32;
        let mut hist = [0u32; 256];
        for &k in &self.keys {
            hist[(k >> 23) as usize] += 1;
        }
        let (bucket, above) = boundary(&hist, need);
        need -= above;
        prefix |= (bucket as u32) << 23;
        self.candidates.clear();
        self.candidates.extend(self.keys.iter().copied().filter(|&k| k >> 23 == bucket as u32));
        for &(shift, mask) in &LEVELS[1..] {
            if self.candidates.len() == need {
                break;
            }
            let mut hist = [0u32; 256];
            for &k in &self.candidates {
                hist[((k >> shift) & mask) as usize] += 1;
            }
            let (bucket, above) = boundary(&hist, need);
            need -= above;
            prefix |= (bucket as u32) << shift;
            self.next.clear();
            self.next.extend(self.candidates.iter().copied().filter(|&k| (k >> shift) & mask == bucket as u32));
            std::mem::swap(&mut self.candidates, &mut self.next);
        }
        if self.candidates.len() == need {
            // Every candidate is kept: the threshold is the smallest of them.
            let threshold = self.candidates.iter().copied().min().unwrap_or(prefix);
            self.last = Some(threshold);
            out.extend(self.keys.iter().enumerate().filter(|(_, k)| **k >= threshold).map(|(i, _)| i as u32));
        } else {
            // All candidates equal `prefix` (every bit refined); the lowest indices win.
            self.last = Some(prefix);
            let mut ties = need;
            for (i, &k) in self.keys.iter().enumerate() {
                if k > prefix {
                    out.push(i as u32);
                } else if k == prefix && ties > 0 {
                    ties -= 1;
                    out.push(i as u32);
                }
            }
        }
    }

    /// The top `k` among the entries whose key is at least `floor`, when there are `k` of them
    /// (then every entry of the true top `k` is among them); `false` otherwise, having written
    /// nothing.
    #[inline(always)]
    fn guessed(&mut self, block: &[f32], k: usize, floor: u32, out: &mut Vec<u32>) -> bool {
        self.packed.clear();
        self.packed.reserve(block.len());
        let pack = |i: usize| (u64::from(key(block[i])) << 32) | u64::from(!(i as u32));
        // A bit mask of the admitted entries per 64 (a vector compare), then only the admitted
        // ones visited: one to two times k of the block's entries.
        let (chunks, rest) = block.as_chunks::<64>();
        for (c, chunk) in chunks.iter().enumerate() {
            let mut mask = 0u64;
            for (j, &v) in chunk.iter().enumerate() {
                mask |= u64::from(key(v) >= floor) << j;
            }
            while mask != 0 {
                self.packed.push(pack(c * 64 + mask.trailing_zeros() as usize));
                mask &= mask - 1;
            }
        }
        let base = chunks.len() * 64;
        for (j, &v) in rest.iter().enumerate() {
            if key(v) >= floor {
                self.packed.push(pack(base + j));
            }
        }
        let n = self.packed.len();
        if n < k {
            return false;
        }
        let top = &mut self.packed[..n];
        // Ascending order of (key, !index): the last k are the largest keys, lower index first.
        top.select_nth_unstable(n - k);
        let top = &top[n - k..];
        self.last = top.iter().map(|p| (p >> 32) as u32).min();
        let start = out.len();
        out.extend(top.iter().map(|&p| !(p as u32)));
        out[start..].sort_unstable();
        true
    }
}

/// How far below the last block's threshold the guess starts: 2^21 in key space is a factor
/// of about 0.84 in magnitude, which for gradient-like blocks leaves one to two times `k`
/// entries to sort.
const GUESS_MARGIN: u32 = 1 << 21;

/// The bucket holding the `need`-th largest entry, scanning from the top, and how many entries
/// lie in higher buckets.
#[inline]
fn boundary(hist: &[u32; 256], need: usize) -> (usize, usize) {
    let mut above = 0usize;
    for b in (0..256).rev() {
        let c = hist[b] as usize;
        if above + c >= need {
            return (b, above);
        }
        above += c;
    }
    // Unreachable for need ≤ total; keep the last bucket rather than panic.
    (0, above)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codec's definition, by comparison sort.
    fn reference(block: &[f32], k: usize) -> Vec<u32> {
        let mut order: Vec<u32> = (0..block.len() as u32).collect();
        order.sort_by(|&a, &c| {
            let (va, vc) = (block[a as usize].abs(), block[c as usize].abs());
            vc.total_cmp(&va).then(a.cmp(&c))
        });
        let mut top = order[..k].to_vec();
        top.sort_unstable();
        top
    }

    fn xorshift(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    #[test]
    fn matches_the_comparison_sort_on_hard_blocks() {
        let mut s = 0x1234_5678_9abc_def1u64;
        let mut sel = Selector::default();
        for case in 0..400 {
            let n: usize = [1, 2, 7, 64, 100, 4096][case % 6];
            let block: Vec<f32> = (0..n)
                .map(|_| {
                    let r = xorshift(&mut s);
                    match r % 11 {
                        // Ties, signed zeros, extremes and NaNs of both signs.
                        0 => 0.5,
                        1 => -0.5,
                        2 => 0.0,
                        3 => -0.0,
                        4 if case % 5 == 0 => f32::NAN,
                        5 if case % 7 == 0 => -f32::INFINITY,
                        6 => f32::from_bits((r >> 16) as u32 & 0x7FFF_FFFF),
                        _ => ((r >> 40) as f32 / (1u64 << 24) as f32 - 0.5).powi(3),
                    }
                })
                .collect();
            for k in [0, 1, n / 64, n / 2, n.saturating_sub(1), n] {
                let want = reference(&block, k);
                let mut got = Vec::new();
                sel.top_k(&block, k, &mut got);
                assert_eq!(got, want, "case {case}, n {n}, k {k}");
                // Each path on its own: the histograms, a guess that admits everything, and a
                // guess that admits too few (falls back).
                for last in [None, Some(0), Some(u32::MAX)] {
                    let mut got = Vec::new();
                    Selector { last, ..Selector::default() }.top_k(&block, k, &mut got);
                    assert_eq!(got, want, "case {case}, n {n}, k {k}, last {last:?}");
                }
            }
        }
    }

    #[test]
    fn all_equal_magnitudes_keep_the_lowest_indices() {
        let block = vec![1.0f32, -1.0, 1.0, -1.0, 1.0, -1.0];
        let mut got = Vec::new();
        Selector::default().top_k(&block, 4, &mut got);
        assert_eq!(got, vec![0, 1, 2, 3]);
    }
}
