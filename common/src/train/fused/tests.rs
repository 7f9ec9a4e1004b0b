use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Bool, Device, Distribution, Tensor};

use super::*;

fn random<const D: usize>(shape: [usize; D], device: &Device, seed: u64) -> Tensor<D> {
    device.seed(seed);
    Tensor::random(shape, Distribution::Normal(0.0, 2.0), device)
}

/// The largest `|a - b| / (1 + |b|)`: absolute near 0, relative for large values.
fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    let (a, b) = (a.into_data().try_to_vec::<f32>().expect("f32"), b.into_data().try_to_vec::<f32>().expect("f32"));
    assert_eq!(a.len(), b.len());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0, f32::max)
}

/// burn's decomposed causal softmax, as `attention_fallback` computes it.
fn decomposed_causal_softmax(x: Tensor<4>, scale: f32) -> Tensor<4> {
    let [b, h, tq, tk] = x.dims();
    let device = x.device();
    let masked: Vec<bool> = (0..tq * tk).map(|i| i % tk + tq > i / tk + tk).collect();
    let mask = Tensor::<4, Bool>::from_data(burn::tensor::TensorData::new(masked, [1, 1, tq, tk]), &device)
        .expand([b, h, tq, tk]);
    softmax(x.mul_scalar(scale).mask_fill(mask, f32::NEG_INFINITY), 3)
}

#[test]
fn the_fused_causal_softmax_and_its_gradient_match_burns_decomposition() {
    let device = Device::flex().autodiff();
    // Past one task's rows, and a cross-attention shape (t_k > t_q).
    for (shape, seed) in [([2, 3, 70, 70], 1), ([1, 2, 5, 9], 2), ([1, 1, 1, 1], 3)] {
        let x = random(shape, &device, seed);
        let w = random(shape, &device, seed + 10);
        let (a, b) = (x.clone().require_grad(), x.require_grad());
        let fused = causal_softmax(a.clone(), 0.3);
        let plain = decomposed_causal_softmax(b.clone(), 0.3);
        assert!(max_diff(fused.clone(), plain.clone()) < 1e-6, "{shape:?} forward");
        let ga = (fused * w.clone()).sum().backward();
        let gb = (plain * w).sum().backward();
        let (da, db) = (a.grad(&ga).expect("grad"), b.grad(&gb).expect("grad"));
        assert!(max_diff(da, db) < 1e-6, "{shape:?} gradient");
    }
}

#[test]
fn the_fused_swiglu_and_its_gradients_match_burns_decomposition() {
    let device = Device::flex().autodiff();
    let shape = [2, 33, 700]; // several tasks, the last one short
    let (g, u, w) = (random(shape, &device, 4), random(shape, &device, 5), random(shape, &device, 6));
    let (ga, ua) = (g.clone().require_grad(), u.clone().require_grad());
    let (gb, ub) = (g.require_grad(), u.require_grad());
    let fused = swiglu(ga.clone(), ua.clone());
    let plain = silu(gb.clone()) * ub.clone();
    assert!(max_diff(fused.clone(), plain.clone()) < 1e-6, "forward");
    let grads_a = (fused * w.clone()).sum().backward();
    let grads_b = (plain * w).sum().backward();
    assert!(max_diff(ga.grad(&grads_a).expect("g"), gb.grad(&grads_b).expect("g")) < 1e-6, "gate gradient");
    assert!(max_diff(ua.grad(&grads_a).expect("u"), ub.grad(&grads_b).expect("u")) < 1e-6, "up gradient");
}

/// burn's decomposed rotary embedding, as the model writes it for other backends.
fn decomposed_rope(x: Tensor<4>, cos: Tensor<2>, sin: Tensor<2>) -> Tensor<4> {
    let x = x.swap_dims(1, 2);
    let half = x.dims()[3] / 2;
    let (x1, x2) = (x.clone().narrow(3, 0, half), x.clone().narrow(3, half, half));
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.unsqueeze::<4>() + rotated * sin.unsqueeze::<4>()
}

#[test]
fn the_fused_rotary_embedding_and_its_gradient_match_burns_decomposition() {
    let device = Device::flex().autodiff();
    // Several backward tasks with a short last one, and a lone position.
    for ([b, t, h, d], seed) in [([2, 37, 3, 8], 20), ([1, 1, 2, 4], 21)] {
        let x = random([b, t, h, d], &device, seed);
        let (cos, sin) = (random([t, d], &device, seed + 1), random([t, d], &device, seed + 2));
        let w = random([b, h, t, d], &device, seed + 3);
        let (xa, xb) = (x.clone().require_grad(), x.require_grad());
        let fused = rope(xa.clone(), cos.clone(), sin.clone());
        let plain = decomposed_rope(xb.clone(), cos, sin);
        assert_eq!(fused.dims(), [b, h, t, d]);
        assert!(max_diff(fused.clone(), plain.clone()) < 1e-6, "forward");
        let ga = (fused * w.clone()).sum().backward();
        let gb = (plain * w).sum().backward();
        assert!(max_diff(xa.grad(&ga).expect("grad"), xb.grad(&gb).expect("grad")) < 1e-6, "gradient");
    }
}

#[test]
fn the_fused_rms_norm_and_its_gradients_match_burns_decomposition() {
    let device = Device::flex().autodiff();
    // Rows past one task with a short last one, and rows longer than the lane count.
    for ([b, t, d], seed) in [([3, 30, 37], 30), ([1, 1, 5], 31)] {
        let (x, w) = (random([b, t, d], &device, seed), random([d], &device, seed + 1));
        let dy = random([b, t, d], &device, seed + 2);
        let (xa, wa) = (x.clone().require_grad(), w.clone().require_grad());
        let (xb, wb) = (x.require_grad(), w.require_grad());
        let fused = rms_norm(xa.clone(), wa.clone(), 1e-5);
        let rms = (xb.clone().square().mean_dim(2) + 1e-5).sqrt();
        let plain = (xb.clone() / rms) * wb.clone().unsqueeze::<3>();
        assert!(max_diff(fused.clone(), plain.clone()) < 1e-6, "forward");
        let ga = (fused * dy.clone()).sum().backward();
        let gb = (plain * dy).sum().backward();
        assert!(max_diff(xa.grad(&ga).expect("x"), xb.grad(&gb).expect("x")) < 1e-6, "input gradient");
        // A sum over all 90 rows, in another order than flex's reduction.
        assert!(max_diff(wa.grad(&ga).expect("w"), wb.grad(&gb).expect("w")) < 1e-5, "weight gradient");
    }
}

#[test]
fn without_autodiff_the_fused_ops_still_compute() {
    let device = Device::flex();
    let x = random([1, 1, 3, 3], &device, 7);
    let y = causal_softmax(x, 1.0).into_data().try_to_vec::<f32>().expect("f32");
    assert_eq!((y[1], y[2], y[5]), (0.0, 0.0, 0.0), "masked entries are 0");
    assert!((y[0] - 1.0).abs() < 1e-7 && (y[3] + y[4] - 1.0).abs() < 1e-6);
    assert!(available(&device) && available(&device.clone().autodiff()));
}
