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

// Each output element is a sum over one index taken in increasing order, starting from 0. The
// loops below run that sum as axpy updates along contiguous rows (so the compiler vectorizes
// across output elements) without changing any element's order of additions: the bits are those
// of the plain dot products (pinned by `matches_the_plain_formula_bit_for_bit`).

/// `out[a, :] = Σ_b m[a·stride_a + b·stride_b] · rows[b, :]` for an `n × c` block `rows`.
#[inline(always)]
fn left_multiply(m: &[f32], stride_a: usize, stride_b: usize, rows: &[f32], n: usize, c: usize, out: &mut [f32]) {
    if c == 64 {
        for a in 0..n {
            let acc = axpy_rows::<64>((0..n).map(|b| (m[a * stride_a + b * stride_b], &rows[b * c..(b + 1) * c])));
            out[a * c..(a + 1) * c].copy_from_slice(&acc);
        }
        return;
    }
    for a in 0..n {
        let dst = &mut out[a * c..(a + 1) * c];
        dst.fill(0.0);
        for b in 0..n {
            let w = m[a * stride_a + b * stride_b];
            for (o, &x) in dst.iter_mut().zip(&rows[b * c..(b + 1) * c]) {
                *o += w * x;
            }
        }
    }
}

/// `out[:, l] = Σ_j rows[:, j] · m[j·stride_j + l·stride_l]` for an `r × c` block `rows`.
#[inline(always)]
fn right_multiply(rows: &[f32], m: &[f32], stride_j: usize, stride_l: usize, r: usize, c: usize, out: &mut [f32]) {
    // Transposing the basis once makes the inner loop contiguous in `l`; blocks up to 64 wide
    // (the presets' chunk) do it on the stack, not with an allocation per block.
    let mut stack = [0f32; 64 * 64];
    let mut heap = Vec::new();
    let mt: &mut [f32] = if c * c <= stack.len() {
        &mut stack[..c * c]
    } else {
        heap.resize(c * c, 0.0);
        &mut heap
    };
    for j in 0..c {
        for l in 0..c {
            mt[j * c + l] = m[j * stride_j + l * stride_l];
        }
    }
    if c == 64 {
        for i in 0..r {
            let acc = axpy_rows::<64>((0..c).map(|j| (rows[i * c + j], &mt[j * c..(j + 1) * c])));
            out[i * c..(i + 1) * c].copy_from_slice(&acc);
        }
        return;
    }
    for i in 0..r {
        let dst = &mut out[i * c..(i + 1) * c];
        dst.fill(0.0);
        for j in 0..c {
            let w = rows[i * c + j];
            for (o, &t) in dst.iter_mut().zip(&mt[j * c..(j + 1) * c]) {
                *o += w * t;
            }
        }
    }
}

/// `Σ w·row` over the terms in order, starting from 0, for rows of a fixed width: the
/// accumulator stays in registers instead of going back to memory after every term (the
/// presets' 64-wide blocks). Each element's additions are in the same order as the loops above.
#[inline(always)]
fn axpy_rows<'a, const C: usize>(terms: impl Iterator<Item = (f32, &'a [f32])>) -> [f32; C] {
    let mut acc = [0f32; C];
    for (w, row) in terms {
        let row: &[f32; C] = match row.try_into() {
            Ok(r) => r,
            Err(_) => unreachable!("rows are C wide"),
        };
        for l in 0..C {
            acc[l] += w * row[l];
        }
    }
    acc
}

/// `Y = Dr · X · Dcᵀ` for one `r × c` block (row-major), using `tmp` (r·c) as scratch.
#[inline(always)]
pub fn forward(x: &mut [f32], r: usize, c: usize, dr: &[f32], dc: &[f32], tmp: &mut [f32]) {
    // tmp[k, :] = Σ_i Dr[k, i] · X[i, :]
    left_multiply(dr, r, 1, x, r, c, tmp);
    // X[k, l] = Σ_j tmp[k, j] · Dc[l, j]
    right_multiply(tmp, dc, 1, c, r, c, x);
}

/// `X = Drᵀ · Y · Dc`, the inverse of [`forward`].
#[inline(always)]
pub fn inverse(y: &mut [f32], r: usize, c: usize, dr: &[f32], dc: &[f32], tmp: &mut [f32]) {
    // tmp[i, :] = Σ_k Dr[k, i] · Y[k, :]
    left_multiply(dr, 1, r, y, r, c, tmp);
    // Y[i, j] = Σ_l tmp[i, l] · Dc[l, j]
    right_multiply(tmp, dc, c, 1, r, c, y);
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

    /// The plain formulas, one dot product per element, summed in increasing index order.
    fn plain(x: &[f32], r: usize, c: usize, dr: &[f32], dc: &[f32], inverse: bool) -> Vec<f32> {
        let a = |k: usize, i: usize| if inverse { dr[i * r + k] } else { dr[k * r + i] };
        let mut t = vec![0f32; r * c];
        for k in 0..r {
            for j in 0..c {
                let mut acc = 0f32;
                for i in 0..r {
                    acc += a(k, i) * x[i * c + j];
                }
                t[k * c + j] = acc;
            }
        }
        let mut y = vec![0f32; r * c];
        for k in 0..r {
            for l in 0..c {
                let mut acc = 0f32;
                for j in 0..c {
                    acc += t[k * c + j] * if inverse { dc[j * c + l] } else { dc[l * c + j] };
                }
                y[k * c + l] = acc;
            }
        }
        y
    }

    #[test]
    fn matches_the_plain_formula_bit_for_bit() {
        for (r, c) in [(1, 64), (64, 64), (7, 48), (3, 5)] {
            let (dr, dc) = (basis(r), basis(c));
            let x: Vec<f32> = (0..r * c).map(|i| ((i * 7919 % 1013) as f32 - 506.0) * 1e-3).collect();
            let mut tmp = vec![0f32; r * c];
            for inv in [false, true] {
                let mut y = x.clone();
                if inv {
                    inverse(&mut y, r, c, &dr, &dc, &mut tmp);
                } else {
                    forward(&mut y, r, c, &dr, &dc, &mut tmp);
                }
                let want = plain(&x, r, c, &dr, &dc, inv);
                assert!(y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{r}x{c} inverse={inv}");
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
