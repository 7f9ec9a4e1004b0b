//! Two fused operations with their own backward passes, for the CPU backend, where burn 0.22
//! differentiates by decomposing: the causal softmax of attention scores (scale, mask, max,
//! subtract, exp, sum, divide: each a pass over the `t × t` scores forward and again backward,
//! on one core) and SwiGLU's `silu(gate) · up`. Here each is one parallel pass forward and one
//! backward.
//!
//! Same arithmetic, in the same order, as the decomposed forms (`exp(s·x - max)` over the row's
//! unmasked prefix divided by its sum, masked entries exactly 0; burn's two-branch sigmoid), so
//! the forward values are the same; `train::tests` holds both to the decomposed ops.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, backend_extension};
use burn::tensor::Tensor;

/// The fused causal softmax, on the backends that have it.
#[backend_extension(Flex, Autodiff)]
pub trait CausalSoftmax: Backend {
    /// Softmax over the last dimension of `scores · scale`, where in each `[t_q, t_k]` matrix
    /// row `r` sees columns `0..=r + t_k - t_q` (the rest are 0).
    fn causal_softmax(scores: FloatTensor<Self>, scale: f32) -> FloatTensor<Self>;

    /// `silu(gate) · up`, element-wise (SwiGLU's gate).
    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// Rows of one task: enough to amortize a thread hand-off.
const ROWS_PER_TASK: usize = 64;

fn dims(t: &FlexTensor) -> (usize, usize) {
    let shape = t.layout().shape();
    let n = shape.num_dims();
    (shape[n - 2], shape[n - 1])
}

/// Columns row `row` (of a `[t_q, t_k]` matrix) may see.
fn visible(row: usize, t_q: usize, t_k: usize) -> usize {
    (row + 1 + t_k.saturating_sub(t_q)).min(t_k)
}

/// Softmax of each row of `rows` in place (`x` read before its `y` is written).
fn forward_rows(rows: &mut [f32], first_row: usize, t_q: usize, t_k: usize, scale: f32) {
    for (i, row) in rows.chunks_exact_mut(t_k).enumerate() {
        let n = visible((first_row + i) % t_q, t_q, t_k);
        let (v, masked) = row.split_at_mut(n);
        let max = v.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x * scale));
        let mut sum = 0.0f32;
        for x in v.iter_mut() {
            *x = (*x * scale - max).exp();
            sum += *x;
        }
        for x in v.iter_mut() {
            *x /= sum;
        }
        masked.fill(0.0);
    }
}

/// The input gradient of each row, written over the output gradient `g`.
fn backward_rows(y: &[f32], g: &mut [f32], first_row: usize, t_q: usize, t_k: usize, scale: f32) {
    for (i, (yr, gr)) in y.chunks_exact(t_k).zip(g.chunks_exact_mut(t_k)).enumerate() {
        let n = visible((first_row + i) % t_q, t_q, t_k);
        let dot: f32 = yr[..n].iter().zip(&gr[..n]).map(|(a, b)| a * b).sum();
        let (gv, gm) = gr.split_at_mut(n);
        for (d, &a) in gv.iter_mut().zip(&yr[..n]) {
            *d = scale * a * (*d - dot);
        }
        gm.fill(0.0);
    }
}

/// A contiguous f32 tensor whose buffer this code may write: the tensor's own when nothing
/// else holds it (the usual case: a matmul's fresh output, a gradient consumed once), else a
/// copy.
fn writable(t: FlexTensor) -> FlexTensor {
    let t = t.to_contiguous();
    let n = t.layout().num_elements();
    if t.layout().start_offset() == 0 && t.storage::<f32>().len() == n {
        return t;
    }
    let shape = t.layout().shape().clone();
    let data = t.into_data();
    FlexTensor::new(data.into_parts().0, Layout::contiguous(shape), burn::tensor::DType::F32)
}

/// Runs `f(rows, first_row)` over chunks of whole rows of `data`, in parallel.
fn par_rows(data: &mut [f32], t_k: usize, f: impl Fn(&mut [f32], usize) + Sync) {
    use rayon::prelude::*;
    let chunk = ROWS_PER_TASK * t_k;
    data.par_chunks_mut(chunk).enumerate().for_each(|(c, rows)| f(rows, c * ROWS_PER_TASK));
}

fn flex_forward(scores: FlexTensor, scale: f32) -> FlexTensor {
    let mut y = writable(scores);
    let (t_q, t_k) = dims(&y);
    par_rows(y.storage_mut(), t_k, |rows, first| forward_rows(rows, first, t_q, t_k, scale));
    y
}

fn flex_backward(y: FlexTensor, grad: FlexTensor, scale: f32) -> FlexTensor {
    let y = y.to_contiguous();
    let mut g = writable(grad);
    let (t_q, t_k) = dims(&y);
    let yd: &[f32] = y.storage();
    let chunk = ROWS_PER_TASK * t_k;
    {
        use rayon::prelude::*;
        g.storage_mut::<f32>()
            .par_chunks_mut(chunk)
            .zip(yd.par_chunks(chunk))
            .enumerate()
            .for_each(|(c, (g, y))| backward_rows(y, g, c * ROWS_PER_TASK, t_q, t_k, scale));
    }
    g
}

/// burn's sigmoid, branch for branch.
#[inline]
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Element chunk of one task for the element-wise kernels.
const ELEMS_PER_TASK: usize = 16 * 1024;

fn swiglu_forward(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
    use rayon::prelude::*;
    let (gate, up) = (gate.to_contiguous(), up.to_contiguous());
    let (g, u): (&[f32], &[f32]) = (gate.storage(), up.storage());
    let mut out = vec![0.0f32; g.len()];
    out.par_chunks_mut(ELEMS_PER_TASK).zip(g.par_chunks(ELEMS_PER_TASK)).zip(u.par_chunks(ELEMS_PER_TASK)).for_each(
        |((o, g), u)| {
            for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                *o = g * sigmoid(g) * u;
            }
        },
    );
    let shape = gate.layout().shape().clone();
    FlexTensor::new(burn::tensor::Bytes::from_elems(out), Layout::contiguous(shape), burn::tensor::DType::F32)
}

/// Gradients of `silu(gate) · up` for `grad`, in the order burn's decomposed ops compute them.
fn swiglu_backward(gate: &FlexTensor, up: &FlexTensor, grad: FlexTensor) -> (FlexTensor, FlexTensor) {
    use rayon::prelude::*;
    let grad = grad.to_contiguous();
    let (g, u, d): (&[f32], &[f32], &[f32]) = (gate.storage(), up.storage(), grad.storage());
    let mut dg = vec![0.0f32; g.len()];
    let mut du = vec![0.0f32; g.len()];
    dg.par_chunks_mut(ELEMS_PER_TASK)
        .zip(du.par_chunks_mut(ELEMS_PER_TASK))
        .zip(g.par_chunks(ELEMS_PER_TASK).zip(u.par_chunks(ELEMS_PER_TASK)).zip(d.par_chunks(ELEMS_PER_TASK)))
        .for_each(|((dg, du), ((g, u), d))| {
            for i in 0..g.len() {
                let s = sigmoid(g[i]);
                let gs = d[i] * u[i];
                dg[i] = gs * s + gs * g[i] * s * (1.0 - s);
                du[i] = d[i] * (g[i] * s);
            }
        });
    let shape = gate.layout().shape().clone();
    let make = |v: Vec<f32>| {
        FlexTensor::new(burn::tensor::Bytes::from_elems(v), Layout::contiguous(shape.clone()), burn::tensor::DType::F32)
    };
    (make(dg), make(du))
}

impl CausalSoftmax for Flex {
    fn causal_softmax(scores: FloatTensor<Self>, scale: f32) -> FloatTensor<Self> {
        flex_forward(scores, scale)
    }

    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        swiglu_forward(gate, up)
    }
}

impl<C: CheckpointStrategy> CausalSoftmax for Autodiff<Flex, C> {
    fn causal_softmax(scores: FloatTensor<Self>, scale: f32) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct CausalSoftmaxBackward(f32);

        impl Backward<Flex, 1> for CausalSoftmaxBackward {
            type State = FlexTensor;

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let [parent] = ops.parents;
                let grad = grads.consume::<Flex>(&ops.node);
                if let Some(node) = parent {
                    grads.register::<Flex>(node.id, flex_backward(ops.state, grad, self.0));
                }
            }
        }

        match CausalSoftmaxBackward(scale).prepare::<C>([scores.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                // The backward needs only the output, so the scores' buffer can become it.
                let y = flex_forward(scores.into_primitive(), scale);
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(flex_forward(scores.into_primitive(), scale)),
        }
    }

    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SwigluBackward;

        impl Backward<Flex, 2> for SwigluBackward {
            type State = (FlexTensor, FlexTensor);

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let [node_gate, node_up] = ops.parents;
                let grad = grads.consume::<Flex>(&ops.node);
                let (gate, up) = ops.state;
                let (dg, du) = swiglu_backward(&gate, &up, grad);
                if let Some(node) = node_gate {
                    grads.register::<Flex>(node.id, dg);
                }
                if let Some(node) = node_up {
                    grads.register::<Flex>(node.id, du);
                }
            }
        }

        match SwigluBackward.prepare::<C>([gate.node(), up.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let g = gate.primitive().clone().to_contiguous();
                let u = up.primitive().clone().to_contiguous();
                let out = swiglu_forward(g.clone(), u.clone());
                prep.finish((g, u), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(swiglu_forward(gate.into_primitive(), up.into_primitive())),
        }
    }
}

/// Whether `device` runs the fused op (the CPU backend, with or without autodiff).
pub fn available(device: &burn::tensor::Device) -> bool {
    matches!(device.clone().inner().as_dispatch(), burn::backend::DispatchDevice::Flex(_))
}

/// `silu(gate) · up`, fused.
pub fn swiglu(gate: Tensor<3>, up: Tensor<3>) -> Tensor<3> {
    Tensor::from_dispatch(<burn::backend::Dispatch as CausalSoftmax>::swiglu(gate.into_dispatch(), up.into_dispatch()))
}

/// The fused causal softmax of a `[b, heads, t_q, t_k]` score tensor.
pub fn causal_softmax(scores: Tensor<4>, scale: f32) -> Tensor<4> {
    Tensor::from_dispatch(<burn::backend::Dispatch as CausalSoftmax>::causal_softmax(scores.into_dispatch(), scale))
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::{silu, softmax};
    use burn::tensor::{Bool, Device, Distribution, Tensor};

    use super::*;

    fn random<const D: usize>(shape: [usize; D], device: &Device, seed: u64) -> Tensor<D> {
        device.seed(seed);
        Tensor::random(shape, Distribution::Normal(0.0, 2.0), device)
    }

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        let (a, b) = (a.into_data().try_to_vec::<f32>().expect("f32"), b.into_data().try_to_vec::<f32>().expect("f32"));
        assert_eq!(a.len(), b.len());
        a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
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
            assert!(max_diff(fused.clone(), plain.clone()) <= 1e-7, "{shape:?} forward");
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
        assert_eq!(max_diff(fused.clone(), plain.clone()), 0.0, "same operations in the same order");
        let grads_a = (fused * w.clone()).sum().backward();
        let grads_b = (plain * w).sum().backward();
        assert_eq!(max_diff(ga.grad(&grads_a).expect("g"), gb.grad(&grads_b).expect("g")), 0.0);
        assert_eq!(max_diff(ua.grad(&grads_a).expect("u"), ub.grad(&grads_b).expect("u")), 0.0);
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
}
