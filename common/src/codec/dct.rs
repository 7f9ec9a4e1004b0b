//! Orthonormal DCT-II over blocks, from precomputed basis matrices.
//!
//! The basis is computed with `libm` (a pure-Rust libm, the same code on every platform) and
//! rounded to f32, and the transforms are plain f32 loops in a fixed order with no fused
//! multiply-add, so every machine computes the same bits.

use std::collections::BTreeMap;

/// `n × n` orthonormal DCT-II matrix, row-major: `D[k][i] = s(k)·cos(π(2i+1)k / 2n)` with
/// `s(0) = √(1/n)`, `s(k) = √(2/n)`.
pub fn basis(n: usize) -> Vec<f32> {
    let mut d = vec![0f32; n * n];
    let nf = n as f64;
    for k in 0..n {
        let s = if k == 0 { (1.0 / nf).sqrt() } else { (2.0 / nf).sqrt() };
        for i in 0..n {
            let angle = std::f64::consts::PI * (2 * i + 1) as f64 * k as f64 / (2.0 * nf);
            d[k * n + i] = (s * libm::cos(angle)) as f32;
        }
    }
    d
}

/// Bases by size, built on first use.
#[derive(Default)]
pub struct Bases(BTreeMap<usize, Vec<f32>>);

impl Bases {
    /// The basis of size `n`.
    pub fn get(&mut self, n: usize) -> &[f32] {
        self.0.entry(n).or_insert_with(|| basis(n))
    }
}

/// `Y = Dr · X · Dcᵀ` for one `r × c` block (row-major), using `tmp` (r·c) as scratch.
pub fn forward(x: &mut [f32], r: usize, c: usize, dr: &[f32], dc: &[f32], tmp: &mut [f32]) {
    // tmp = Dr · X
    for k in 0..r {
        for j in 0..c {
            let mut acc = 0f32;
            for i in 0..r {
                acc += dr[k * r + i] * x[i * c + j];
            }
            tmp[k * c + j] = acc;
        }
    }
    // x = tmp · Dcᵀ
    for k in 0..r {
        for l in 0..c {
            let mut acc = 0f32;
            for j in 0..c {
                acc += tmp[k * c + j] * dc[l * c + j];
            }
            x[k * c + l] = acc;
        }
    }
}

/// `X = Drᵀ · Y · Dc`, the inverse of [`forward`].
pub fn inverse(y: &mut [f32], r: usize, c: usize, dr: &[f32], dc: &[f32], tmp: &mut [f32]) {
    // tmp = Drᵀ · Y
    for i in 0..r {
        for l in 0..c {
            let mut acc = 0f32;
            for k in 0..r {
                acc += dr[k * r + i] * y[k * c + l];
            }
            tmp[i * c + l] = acc;
        }
    }
    // y = tmp · Dc
    for i in 0..r {
        for j in 0..c {
            let mut acc = 0f32;
            for l in 0..c {
                acc += tmp[i * c + l] * dc[l * c + j];
            }
            y[i * c + j] = acc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basis_is_orthonormal() {
        for n in [1, 2, 7, 64] {
            let d = basis(n);
            for a in 0..n {
                for b in 0..n {
                    let dot: f64 = (0..n).map(|i| f64::from(d[a * n + i]) * f64::from(d[b * n + i])).sum();
                    let want = if a == b { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-5, "n={n} a={a} b={b} dot={dot}");
                }
            }
        }
    }

    #[test]
    fn inverse_undoes_forward() {
        let (r, c) = (4, 8);
        let (dr, dc) = (basis(r), basis(c));
        let x: Vec<f32> = (0..r * c).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.1).collect();
        let mut y = x.clone();
        let mut tmp = vec![0f32; r * c];
        forward(&mut y, r, c, &dr, &dc, &mut tmp);
        assert!((y[0] - x.iter().sum::<f32>() / ((r * c) as f32).sqrt()).abs() < 1e-5, "DC term");
        inverse(&mut y, r, c, &dr, &dc, &mut tmp);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}
