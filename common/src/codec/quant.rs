//! Per-tensor quantization of the kept values to 2^b levels with a centroid table.
//!
//! `shift` = mean, `c = v − shift`, `σ` = sample standard deviation of `c`,
//! `scale = range·σ / 2^b`, code `q = clamp(floor(c/scale) + 2^(b−1), 0, 2^b − 1)` (bins
//! symmetric about zero), and `table[q]` = mean of the `c` that fell in bin `q` (0 when empty).
//! Decoding is `table[q] + shift` in f32: a table lookup and one addition, identical everywhere.

/// Quantized values of one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantized {
    pub shift: f32,
    /// Bin width; informational (decoding needs only `shift` and `table`).
    pub scale: f32,
    /// Centroid of each bin, relative to `shift`; `2^bits` entries.
    pub table: Vec<f32>,
    /// One code per value, each below `2^bits`.
    pub codes: Vec<u8>,
}

/// Quantizes `values` to `bits` bits.
pub fn quantize(values: &[f32], bits: u8, range: f64) -> Quantized {
    let levels = 1usize << bits;
    let half = (levels / 2) as i64;
    let n = values.len();
    let shift = if n == 0 { 0.0 } else { values.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64 };
    let centered: Vec<f64> = values.iter().map(|&v| f64::from(v) - shift).collect();
    let sigma = if n > 1 { (centered.iter().map(|c| c * c).sum::<f64>() / (n - 1) as f64).sqrt() } else { 0.0 };
    let mut scale = range * sigma / levels as f64;
    if !scale.is_finite() || scale <= 0.0 {
        scale = 1.0;
    }
    let mut sums = vec![0f64; levels];
    let mut counts = vec![0u64; levels];
    let codes: Vec<u8> = centered
        .iter()
        .map(|&c| {
            let q = ((c / scale).floor() as i64 + half).clamp(0, levels as i64 - 1) as usize;
            sums[q] += c;
            counts[q] += 1;
            q as u8
        })
        .collect();
    let table = sums.iter().zip(&counts).map(|(&s, &k)| if k == 0 { 0.0 } else { (s / k as f64) as f32 }).collect();
    Quantized { shift: shift as f32, scale: scale as f32, table, codes }
}

impl Quantized {
    /// The decoded value of code `q`.
    #[inline]
    pub fn value(&self, q: u8) -> f32 {
        self.table[q as usize] + self.shift
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_fit_and_centroids_reduce_error() {
        let values: Vec<f32> = (0..1000).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 100.0).collect();
        for bits in 1..=8u8 {
            let q = quantize(&values, bits, 6.0);
            assert_eq!(q.table.len(), 1 << bits);
            assert!(q.codes.iter().all(|&c| (c as usize) < (1 << bits)));
            let err: f64 = values.iter().zip(&q.codes).map(|(&v, &c)| f64::from(v - q.value(c)).powi(2)).sum();
            let var: f64 = values.iter().map(|&v| f64::from(v).powi(2)).sum();
            // More bits, less error; even one bit (sign with centroids) halves the energy.
            assert!(err < var * 0.5f64.powi(i32::from(bits)), "bits {bits}: err {err} var {var}");
        }
    }

    #[test]
    fn constant_and_empty_inputs() {
        let q = quantize(&[2.5; 10], 2, 6.0);
        assert!(q.codes.iter().all(|&c| q.value(c) == 2.5));
        let q = quantize(&[], 2, 6.0);
        assert!(q.codes.is_empty() && q.shift == 0.0 && q.scale == 1.0);
    }
}
