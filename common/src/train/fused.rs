//! Four fused operations with their own backward passes, for the CPU backend, where burn 0.22
//! differentiates by decomposing: the causal softmax of attention scores (scale, mask, max,
//! subtract, exp, sum, divide: each a pass over the `t × t` scores forward and again backward,
//! on one core), SwiGLU's `silu(gate) · up`, the rotary embedding (two slices, a negation, a
//! concatenation, two products and a sum, after a transposing copy) and RMSNorm (square, mean,
//! add, root, divide, multiply). Here each is one parallel pass forward and one backward, in
//! vector code (`train::kernels`).
//!
//! The decomposed forms' arithmetic in their order (`exp(s·x - max)` over the row's unmasked
//! prefix divided by its sum, masked entries exactly 0; burn's two-branch sigmoid), except the
//! exponential (a polynomial within 2 ulp of libm's) and the order of a row's sums (16 partial
//! sums): the tests below hold values and gradients to the decomposed ops within 1e-6.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, backend_extension};
use burn::tensor::Tensor;

use super::kernels;

/// The fused operations, on the backends that have them.
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// Softmax over the last dimension of `scores · scale`, where in each `[t_q, t_k]` matrix
    /// row `r` sees columns `0..=r + t_k - t_q` (the rest are 0).
    fn causal_softmax(scores: FloatTensor<Self>, scale: f32) -> FloatTensor<Self>;

    /// `silu(gate) · up`, element-wise (SwiGLU's gate).
    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;

    /// The rotary embedding of `x` `[b, t, heads, d]` with tables `cos`, `sin` `[t, d]`,
    /// returned as `[b, heads, t, d]`, the layout attention multiplies.
    fn rope(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> FloatTensor<Self>;

    /// RMSNorm over the last dimension of `x` with weight `w` (that dimension's length).
    fn rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f32) -> FloatTensor<Self>;
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

/// Softmax of each row of `rows` in place, on the widest vector unit.
fn forward_rows(rows: &mut [f32], first_row: usize, t_q: usize, t_k: usize, scale: f32) {
    crate::simd::widest(
        #[inline(always)]
        || {
            for (i, row) in rows.chunks_exact_mut(t_k).enumerate() {
                kernels::softmax_row(row, visible((first_row + i) % t_q, t_q, t_k), scale);
            }
        },
    )
}

/// The input gradient of each row, written over the output gradient `g`.
fn backward_rows(y: &[f32], g: &mut [f32], first_row: usize, t_q: usize, t_k: usize, scale: f32) {
    crate::simd::widest(
        #[inline(always)]
        || {
            for (i, (yr, gr)) in y.chunks_exact(t_k).zip(g.chunks_exact_mut(t_k)).enumerate() {
                kernels::softmax_row_backward(yr, gr, visible((first_row + i) % t_q, t_q, t_k), scale);
            }
        },
    )
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

/// Element chunk of one task for the element-wise kernels.
const ELEMS_PER_TASK: usize = 16 * 1024;

fn swiglu_forward(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
    use rayon::prelude::*;
    let (gate, up) = (gate.to_contiguous(), up.to_contiguous());
    let (g, u): (&[f32], &[f32]) = (gate.storage(), up.storage());
    let mut out = vec![0.0f32; g.len()];
    out.par_chunks_mut(ELEMS_PER_TASK).zip(g.par_chunks(ELEMS_PER_TASK)).zip(u.par_chunks(ELEMS_PER_TASK)).for_each(
        |((o, g), u)| {
            crate::simd::widest(
                #[inline(always)]
                || kernels::swiglu(g, u, o),
            )
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
            crate::simd::widest(
                #[inline(always)]
                || kernels::swiglu_backward(g, u, d, dg, du),
            )
        });
    let shape = gate.layout().shape().clone();
    let make = |v: Vec<f32>| {
        FlexTensor::new(burn::tensor::Bytes::from_elems(v), Layout::contiguous(shape.clone()), burn::tensor::DType::F32)
    };
    (make(dg), make(du))
}

/// Positions of one task in the rotary embedding's backward pass.
const POSITIONS_PER_TASK: usize = 32;

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let shape = t.layout().shape();
    [shape[0], shape[1], shape[2], shape[3]]
}

fn f32_tensor(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::new(
        burn::tensor::Bytes::from_elems(values),
        Layout::contiguous(burn::tensor::Shape::from(shape.to_vec())),
        burn::tensor::DType::F32,
    )
}

/// `[b, t, h, d]` in, `[b, h, t, d]` out: one task per `(b, h)` plane of the output.
fn rope_forward(x: FlexTensor, cos: &FlexTensor, sin: &FlexTensor) -> FlexTensor {
    use rayon::prelude::*;
    let x = x.to_contiguous();
    let [b, t, h, d] = dims4(&x);
    let (xs, cs, ss): (&[f32], &[f32], &[f32]) = (x.storage(), cos.storage(), sin.storage());
    let mut out = vec![0.0f32; b * h * t * d];
    out.par_chunks_mut(t * d).enumerate().for_each(|(plane, y)| {
        let (bi, hi) = (plane / h, plane % h);
        crate::simd::widest(
            #[inline(always)]
            || {
                for (ti, y) in y.chunks_exact_mut(d).enumerate() {
                    let at = ((bi * t + ti) * h + hi) * d;
                    let row = ti * d..(ti + 1) * d;
                    kernels::rope(&xs[at..at + d], &cs[row.clone()], &ss[row], y);
                }
            },
        )
    });
    f32_tensor(out, [b, h, t, d])
}

/// `[b, h, t, d]` gradient in, `[b, t, h, d]` gradient out, by runs of whole positions.
fn rope_backward(grad: FlexTensor, cos: &FlexTensor, sin: &FlexTensor) -> FlexTensor {
    use rayon::prelude::*;
    let grad = grad.to_contiguous();
    let [b, h, t, d] = dims4(&grad);
    let (gs, cs, ss): (&[f32], &[f32], &[f32]) = (grad.storage(), cos.storage(), sin.storage());
    let mut out = vec![0.0f32; b * t * h * d];
    out.par_chunks_mut(POSITIONS_PER_TASK * h * d).enumerate().for_each(|(task, rows)| {
        crate::simd::widest(
            #[inline(always)]
            || {
                for (k, heads) in rows.chunks_exact_mut(h * d).enumerate() {
                    let position = task * POSITIONS_PER_TASK + k;
                    let (bi, ti) = (position / t, position % t);
                    let row = ti * d..(ti + 1) * d;
                    for (hi, dx) in heads.chunks_exact_mut(d).enumerate() {
                        let at = ((bi * h + hi) * t + ti) * d;
                        kernels::rope_backward(&gs[at..at + d], &cs[row.clone()], &ss[row.clone()], dx);
                    }
                }
            },
        )
    });
    f32_tensor(out, [b, t, h, d])
}

fn last_dim(t: &FlexTensor) -> usize {
    let shape = t.layout().shape();
    shape[shape.num_dims() - 1]
}

fn like(values: Vec<f32>, t: &FlexTensor) -> FlexTensor {
    FlexTensor::new(
        burn::tensor::Bytes::from_elems(values),
        Layout::contiguous(t.layout().shape().clone()),
        burn::tensor::DType::F32,
    )
}

fn rms_norm_forward(x: &FlexTensor, w: &FlexTensor, eps: f32) -> FlexTensor {
    use rayon::prelude::*;
    let d = last_dim(x);
    let (xs, ws): (&[f32], &[f32]) = (x.storage(), w.storage());
    let mut out = vec![0.0f32; xs.len()];
    out.par_chunks_mut(ROWS_PER_TASK * d).zip(xs.par_chunks(ROWS_PER_TASK * d)).for_each(|(y, x)| {
        crate::simd::widest(
            #[inline(always)]
            || {
                for (y, x) in y.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                    kernels::rms_norm_row(x, ws, eps, y);
                }
            },
        )
    });
    like(out, x)
}

/// The input's and the weight's gradients. Each task sums its rows' weight terms, and the
/// tasks' sums are added in task order: the same bits on any thread count.
fn rms_norm_backward(x: &FlexTensor, w: &FlexTensor, eps: f32, grad: FlexTensor) -> (FlexTensor, FlexTensor) {
    use rayon::prelude::*;
    let grad = grad.to_contiguous();
    let d = last_dim(x);
    let (xs, ws, gs): (&[f32], &[f32], &[f32]) = (x.storage(), w.storage(), grad.storage());
    let mut dx = vec![0.0f32; xs.len()];
    let chunk = ROWS_PER_TASK * d;
    let partial: Vec<Vec<f32>> = dx
        .par_chunks_mut(chunk)
        .zip(xs.par_chunks(chunk).zip(gs.par_chunks(chunk)))
        .map(|(dx, (x, g))| {
            let mut dw = vec![0.0f32; d];
            crate::simd::widest(
                #[inline(always)]
                || {
                    for ((dx, x), g) in dx.chunks_exact_mut(d).zip(x.chunks_exact(d)).zip(g.chunks_exact(d)) {
                        kernels::rms_norm_row_backward(x, ws, eps, g, dx, &mut dw);
                    }
                },
            );
            dw
        })
        .collect();
    let mut dw = vec![0.0f32; d];
    for p in &partial {
        for (a, &b) in dw.iter_mut().zip(p) {
            *a += b;
        }
    }
    (like(dx, x), like(dw, w))
}

impl FusedOps for Flex {
    fn causal_softmax(scores: FloatTensor<Self>, scale: f32) -> FloatTensor<Self> {
        flex_forward(scores, scale)
    }

    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        swiglu_forward(gate, up)
    }

    fn rope(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> FloatTensor<Self> {
        rope_forward(x, &cos.to_contiguous(), &sin.to_contiguous())
    }

    fn rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f32) -> FloatTensor<Self> {
        rms_norm_forward(&x.to_contiguous(), &w.to_contiguous(), eps)
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
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

    fn rope(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct RopeBackward;

        impl Backward<Flex, 1> for RopeBackward {
            type State = (FlexTensor, FlexTensor);

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let [parent] = ops.parents;
                let grad = grads.consume::<Flex>(&ops.node);
                if let Some(node) = parent {
                    let (cos, sin) = ops.state;
                    grads.register::<Flex>(node.id, rope_backward(grad, &cos, &sin));
                }
            }
        }

        // The tables are constants: no gradient flows to them.
        let (cos, sin) = (cos.into_primitive().to_contiguous(), sin.into_primitive().to_contiguous());
        match RopeBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = rope_forward(x.into_primitive(), &cos, &sin);
                prep.finish((cos, sin), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(rope_forward(x.into_primitive(), &cos, &sin)),
        }
    }

    fn rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f32) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct RmsNormBackward(f32);

        impl Backward<Flex, 2> for RmsNormBackward {
            type State = (FlexTensor, FlexTensor);

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let [node_x, node_w] = ops.parents;
                let grad = grads.consume::<Flex>(&ops.node);
                let (x, w) = ops.state;
                let (dx, dw) = rms_norm_backward(&x, &w, self.0, grad);
                if let Some(node) = node_x {
                    grads.register::<Flex>(node.id, dx);
                }
                if let Some(node) = node_w {
                    grads.register::<Flex>(node.id, dw);
                }
            }
        }

        match RmsNormBackward(eps).prepare::<C>([x.node(), w.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let xs = x.primitive().clone().to_contiguous();
                let ws = w.primitive().clone().to_contiguous();
                let y = rms_norm_forward(&xs, &ws, eps);
                prep.finish((xs, ws), y)
            }
            OpsKind::UnTracked(prep) => {
                let (xs, ws) = (x.into_primitive().to_contiguous(), w.into_primitive().to_contiguous());
                prep.finish(rms_norm_forward(&xs, &ws, eps))
            }
        }
    }
}

/// Whether `device` runs the fused op (the CPU backend, with or without autodiff).
pub fn available(device: &burn::tensor::Device) -> bool {
    matches!(device.clone().inner().as_dispatch(), burn::backend::DispatchDevice::Flex(_))
}

/// `silu(gate) · up`, fused.
pub fn swiglu(gate: Tensor<3>, up: Tensor<3>) -> Tensor<3> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::swiglu(gate.into_dispatch(), up.into_dispatch()))
}

/// RMSNorm of `x` over its last dimension with weight `w`, fused.
pub fn rms_norm(x: Tensor<3>, w: Tensor<1>, eps: f32) -> Tensor<3> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::rms_norm(x.into_dispatch(), w.into_dispatch(), eps))
}

/// The rotary embedding of `x` `[b, t, heads, d]` with tables `[t, d]`, as `[b, heads, t, d]`.
pub fn rope(x: Tensor<4>, cos: Tensor<2>, sin: Tensor<2>) -> Tensor<4> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::rope(
        x.into_dispatch(),
        cos.into_dispatch(),
        sin.into_dispatch(),
    ))
}

/// The fused causal softmax of a `[b, heads, t_q, t_k]` score tensor.
pub fn causal_softmax(scores: Tensor<4>, scale: f32) -> Tensor<4> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::causal_softmax(scores.into_dispatch(), scale))
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
}
