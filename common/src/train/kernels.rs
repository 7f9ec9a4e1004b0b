//! The arithmetic inside the fused training ops: one causal-softmax row forward and backward,
//! SwiGLU element by element, the exponential they share, one head vector's rotary embedding
//! and one row's RMSNorm, written so the compiler turns each loop into vector code for the width
//! [`crate::simd::widest`] picks at run time.
//!
//! Every path gives the same bits: the exponential is a polynomial of fused multiply-adds
//! (`mul_add` is one rounding on every CPU; without FMA hardware it is the correctly rounded
//! library call), and row sums run in [`LANES`] partial sums combined in a fixed order, so
//! the result does not depend on the vector width or on the thread that ran the row.

/// Partial sums per row reduction. 16 fills an AVX-512 register; narrower units split it.
pub const LANES: usize = 16;

/// Below this the exponential is under `f32::MIN_POSITIVE` (a subnormal), and returns 0.
const EXP_UNDERFLOW: f32 = -87.336_54;

/// `e^x` for `x ≤ 0` (and NaN, which it returns), within 2 ulp of the exact value; 0 where
/// that is a subnormal. Cody-Waite reduction `x = n·ln 2 + r`, `|r| ≤ ln 2 / 2`, and
/// Cephes' degree-7 polynomial for `e^r`; `2^n` is built in the exponent bits.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    // Adding 1.5 · 2^23 rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    debug_assert!(x <= 0.0 || x.is_nan(), "exp_nonpositive({x})");
    // A comparison with NaN is false, so NaN goes through and comes out NaN.
    let xc = if x < EXP_UNDERFLOW { EXP_UNDERFLOW } else { x };
    let t = xc.mul_add(std::f32::consts::LOG2_E, ROUND);
    let n = t - ROUND;
    let r = n.mul_add(-LN2_HI, xc);
    let r = n.mul_add(-LN2_LO, r);
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5); // Cephes: 5.0000001201e-1, which is 0.5 in f32
    let er = (p * r).mul_add(r, r) + 1.0;
    // n ∈ [-126, 0]: its two's-complement offset from ROUND's bits plus the exponent bias.
    let biased = (t.to_bits().wrapping_sub(ROUND.to_bits()) as i32 + 127) as u32;
    let y = er * f32::from_bits(biased << 23);
    if x < EXP_UNDERFLOW { 0.0 } else { y }
}

/// The logistic function, in burn's two branches (`1 / (1 + e^-x)` for x ≥ 0, `e^x / (1 + e^x)`
/// below), both computed and one selected so the loop stays vector code.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    let e = exp_nonpositive(-x.abs());
    if x >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) }
}

/// The partial sums' total, in a fixed pairwise order.
#[inline(always)]
fn total(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for j in 0..width {
            acc[j] += acc[j + width];
        }
        width /= 2;
    }
    acc[0]
}

/// Replaces each `x` of `v` by `f(x)` and returns the sum of the new values, element `i`
/// going into partial sum `i % LANES`.
#[inline(always)]
fn map_and_sum(v: &mut [f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (blocks, rest) = v.as_chunks_mut::<LANES>();
    for block in blocks {
        for (a, x) in acc.iter_mut().zip(block.iter_mut()) {
            *x = f(*x);
            *a += *x;
        }
    }
    for (a, x) in acc.iter_mut().zip(rest.iter_mut()) {
        *x = f(*x);
        *a += *x;
    }
    total(acc)
}

/// `Σ a_i · b_i`, element `i` into partial sum `i % LANES`.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let ((ab, ar), (bb, br)) = (a.as_chunks::<LANES>(), b.as_chunks::<LANES>());
    for (x, y) in ab.iter().zip(bb) {
        for j in 0..LANES {
            acc[j] += x[j] * y[j];
        }
    }
    for ((s, x), y) in acc.iter_mut().zip(ar).zip(br) {
        *s += x * y;
    }
    total(acc)
}

/// `max_i(v_i · scale)` (−∞ for an empty row); NaNs are skipped, as `f32::max` does.
#[inline(always)]
fn scaled_max(v: &[f32], scale: f32) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let (blocks, rest) = v.as_chunks::<LANES>();
    for block in blocks {
        for (m, &x) in acc.iter_mut().zip(block) {
            *m = m.max(x * scale);
        }
    }
    for (m, &x) in acc.iter_mut().zip(rest) {
        *m = m.max(x * scale);
    }
    acc.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x))
}

/// Softmax of `scale · x` over `row[..visible]` in place; `row[visible..]` (masked) set to 0.
#[inline(always)]
pub fn softmax_row(row: &mut [f32], visible: usize, scale: f32) {
    let (v, masked) = row.split_at_mut(visible);
    let max = scaled_max(v, scale);
    let sum = map_and_sum(v, |x| exp_nonpositive(x * scale - max));
    for x in v.iter_mut() {
        *x /= sum;
    }
    masked.fill(0.0);
}

/// The gradient of [`softmax_row`] for output `y` and output gradient `g`, written over `g`.
#[inline(always)]
pub fn softmax_row_backward(y: &[f32], g: &mut [f32], visible: usize, scale: f32) {
    let dot = dot(&y[..visible], &g[..visible]);
    let (gv, gm) = g.split_at_mut(visible);
    for (d, &a) in gv.iter_mut().zip(&y[..visible]) {
        *d = scale * a * (*d - dot);
    }
    gm.fill(0.0);
}

/// `out = silu(gate) · up`, element-wise, as burn orders it (`(g · σ(g)) · u`).
#[inline(always)]
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g * sigmoid(g) * u;
    }
}

/// SwiGLU's gradients for output gradient `d`, as burn's decomposed ops compute them.
#[inline(always)]
pub fn swiglu_backward(gate: &[f32], up: &[f32], d: &[f32], d_gate: &mut [f32], d_up: &mut [f32]) {
    let inputs = gate.iter().zip(up).zip(d);
    for ((dg, du), ((&g, &u), &d)) in d_gate.iter_mut().zip(d_up.iter_mut()).zip(inputs) {
        let s = sigmoid(g);
        let gs = d * u;
        *dg = gs * s + gs * g * s * (1.0 - s);
        *du = d * (g * s);
    }
}

/// Rotates one head vector by its position's angles: `y = x·cos + rotate_half(x)·sin` with
/// `rotate_half([x₁, x₂]) = [-x₂, x₁]` (Hugging Face's convention), in burn's order.
#[inline(always)]
pub fn rope(x: &[f32], cos: &[f32], sin: &[f32], y: &mut [f32]) {
    let half = x.len() / 2;
    let ((x1, x2), (c1, c2), (s1, s2)) = (x.split_at(half), cos.split_at(half), sin.split_at(half));
    let (y1, y2) = y.split_at_mut(half);
    for ((y, (&a, &b)), (&c, &s)) in y1.iter_mut().zip(x1.iter().zip(x2)).zip(c1.iter().zip(s1)) {
        *y = a * c + (-b) * s;
    }
    for ((y, (&a, &b)), (&c, &s)) in y2.iter_mut().zip(x1.iter().zip(x2)).zip(c2.iter().zip(s2)) {
        *y = b * c + a * s;
    }
}

/// The gradient of [`rope`] for output gradient `dy` (the inverse rotation), summed as
/// burn's decomposed backward sums it.
#[inline(always)]
pub fn rope_backward(dy: &[f32], cos: &[f32], sin: &[f32], dx: &mut [f32]) {
    let half = dy.len() / 2;
    let ((g1, g2), (c1, c2), (s1, s2)) = (dy.split_at(half), cos.split_at(half), sin.split_at(half));
    let (d1, d2) = dx.split_at_mut(half);
    for ((d, (&a, &b)), (&c, &s)) in d1.iter_mut().zip(g1.iter().zip(g2)).zip(c1.iter().zip(s2)) {
        *d = a * c + b * s;
    }
    for ((d, (&a, &b)), (&c, &s)) in d2.iter_mut().zip(g1.iter().zip(g2)).zip(c2.iter().zip(s1)) {
        *d = b * c + -(a * s);
    }
}

/// One row's root mean square, `sqrt(Σx² / n + eps)` (the sum in [`LANES`] partial sums).
#[inline(always)]
pub fn rms(x: &[f32], eps: f32) -> f32 {
    (dot(x, x) / x.len() as f32 + eps).sqrt()
}

/// One row of RMSNorm: `y = (x / rms) · w`, in burn's order of operations.
#[inline(always)]
pub fn rms_norm_row(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    let r = rms(x, eps);
    for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
        *y = (x / r) * w;
    }
}

/// The gradients of one row of [`rms_norm_row`] for output gradient `dy`: `dx` written, the
/// weight's gradient added into `dw`. With `x̂ = x / rms`: `dw += dy · x̂` and
/// `dx = (dy·w − x̂ · Σ(dy·w·x̂) / n) / rms`.
#[inline(always)]
pub fn rms_norm_row_backward(x: &[f32], w: &[f32], eps: f32, dy: &[f32], dx: &mut [f32], dw: &mut [f32]) {
    let r = rms(x, eps);
    for ((((d, g), &x), &w), &dy) in dx.iter_mut().zip(dw.iter_mut()).zip(x).zip(w).zip(dy) {
        let xh = x / r;
        *g += dy * xh;
        *d = dy * w;
    }
    let mut acc = [0.0f32; LANES];
    let ((db, dr), (xb, xr)) = (dx.as_chunks::<LANES>(), x.as_chunks::<LANES>());
    for (d, x) in db.iter().zip(xb) {
        for j in 0..LANES {
            acc[j] += d[j] * (x[j] / r);
        }
    }
    for ((a, d), x) in acc.iter_mut().zip(dr).zip(xr) {
        *a += d * (x / r);
    }
    let mean = total(acc) / x.len() as f32;
    for (d, &x) in dx.iter_mut().zip(x) {
        *d = (*d - (x / r) * mean) / r;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arguments over the whole domain: a dense sweep, the edges, and special values.
    fn arguments() -> Vec<f32> {
        let mut xs: Vec<f32> = (0..=200_000).map(|i| -88.0 * i as f32 / 200_000.0).collect();
        xs.extend([0.0, -0.0, -1e-30, -1e-7, -0.34657, -0.34658, EXP_UNDERFLOW, -87.3365, -87.34, -100.0, -1e30]);
        xs.push(f32::NEG_INFINITY);
        xs
    }

    #[test]
    fn the_exponential_is_within_two_ulp_of_the_exact_value() {
        for x in arguments() {
            let exact = (x as f64).exp();
            let got = exp_nonpositive(x);
            if exact < f32::MIN_POSITIVE as f64 {
                assert_eq!(got, 0.0, "e^{x}: subnormal or zero flushes to 0");
                continue;
            }
            let ulp = (exact as f32).to_bits().abs_diff(got.to_bits());
            assert!(ulp <= 2, "e^{x} = {got}, exact {exact}: {ulp} ulp");
        }
        assert!(exp_nonpositive(f32::NAN).is_nan());
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    #[test]
    fn the_sigmoid_matches_burns_branches_to_two_ulp() {
        for x in arguments().into_iter().flat_map(|x| [x, -x]) {
            let reference = if x >= 0.0 { 1.0 / (1.0 + (-x).exp()) } else { x.exp() / (1.0 + x.exp()) };
            let got = sigmoid(x);
            assert!(reference.to_bits().abs_diff(got.to_bits()) <= 2 || (reference - got).abs() < 1e-37, "σ({x})");
        }
        assert!(sigmoid(f32::NAN).is_nan());
    }

    /// Every kernel over awkward lengths, returning all outputs' bits.
    #[inline(always)]
    fn everything(x: &[f32]) -> Vec<u32> {
        let mut bits = Vec::new();
        for n in [1usize, 15, 16, 17, 100, 257] {
            let mut row: Vec<f32> = x[..n + 3].to_vec();
            softmax_row(&mut row, n, 0.7);
            let mut g: Vec<f32> = x[3..n + 6].to_vec();
            softmax_row_backward(&row, &mut g, n, 0.7);
            bits.extend(row.iter().chain(&g).map(|v| v.to_bits()));
        }
        let (gate, up, d) = (&x[..300], &x[300..600], &x[600..900]);
        let (mut o, mut dg, mut du) = (vec![0.0; 300], vec![0.0; 300], vec![0.0; 300]);
        swiglu(gate, up, &mut o);
        swiglu_backward(gate, up, d, &mut dg, &mut du);
        bits.extend(o.iter().chain(&dg).chain(&du).map(|v| v.to_bits()));
        let (mut y, mut dx) = (vec![0.0; 64], vec![0.0; 64]);
        rope(&x[..64], &x[64..128], &x[128..192], &mut y);
        rope_backward(&x[192..256], &x[64..128], &x[128..192], &mut dx);
        bits.extend(y.iter().chain(&dx).map(|v| v.to_bits()));
        let (mut y, mut dx, mut dw) = (vec![0.0; 70], vec![0.0; 70], vec![0.5; 70]);
        rms_norm_row(&x[..70], &x[70..140], 1e-5, &mut y);
        rms_norm_row_backward(&x[..70], &x[70..140], 1e-5, &x[140..210], &mut dx, &mut dw);
        bits.extend(y.iter().chain(&dx).chain(&dw).map(|v| v.to_bits()));
        bits
    }

    const PINNED: u64 = 0xc187_d8cc_3c87_5ce1;

    #[test]
    fn every_vector_path_gives_the_same_bits() {
        let x: Vec<f32> = (0..900).map(|i| ((i * 7919 % 1013) as f32 - 506.0) * 0.013).collect();
        let plain = everything(&x);
        let wide = crate::simd::widest(
            #[inline(always)]
            || everything(&x),
        );
        assert_eq!(plain, wide, "{}", crate::simd::widest_name());
        // Pinned, so that running this test on CPUs that take other paths (scripts/check-cpu-paths)
        // shows they give these same bits, not only agree with their own plain path.
        let fnv = plain.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        assert_eq!(fnv, PINNED, "kernel outputs changed: {fnv:#x}");
    }

    #[test]
    fn a_softmax_row_sums_to_one_and_masks_the_future() {
        let mut row = vec![3.0, -1.0, 0.5, 9.0, 9.0];
        softmax_row(&mut row, 3, 2.0);
        assert_eq!(&row[3..], &[0.0, 0.0]);
        assert!((row[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[0] > row[2] && row[2] > row[1]);
    }
}
