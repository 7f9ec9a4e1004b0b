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
//! sums): the tests hold values and gradients to the decomposed ops within 1e-6 (1e-5 for
//! RMSNorm's weight gradient, a sum over all rows).
//!
//! `flex` runs each op over plain buffers; this module makes them burn operations, with
//! autodiff records whose backward steps call `flex` again.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, backend_extension};
use burn::tensor::Tensor;

mod flex;

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

impl FusedOps for Flex {
    fn causal_softmax(scores: FloatTensor<Self>, scale: f32) -> FloatTensor<Self> {
        flex::softmax_forward(scores, scale)
    }

    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        flex::swiglu_forward(gate, up)
    }

    fn rope(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> FloatTensor<Self> {
        flex::rope_forward(x, &cos.to_contiguous(), &sin.to_contiguous())
    }

    fn rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f32) -> FloatTensor<Self> {
        flex::rms_norm_forward(&x.to_contiguous(), &w.to_contiguous(), eps)
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
                    grads.register::<Flex>(node.id, flex::softmax_backward(ops.state, grad, self.0));
                }
            }
        }

        match CausalSoftmaxBackward(scale).prepare::<C>([scores.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                // The backward needs only the output, so the scores' buffer can become it.
                let y = flex::softmax_forward(scores.into_primitive(), scale);
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(flex::softmax_forward(scores.into_primitive(), scale)),
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
                let (dg, du) = flex::swiglu_backward(&gate, &up, grad);
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
                let out = flex::swiglu_forward(g.clone(), u.clone());
                prep.finish((g, u), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(flex::swiglu_forward(gate.into_primitive(), up.into_primitive())),
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
                    grads.register::<Flex>(node.id, flex::rope_backward(grad, &cos, &sin));
                }
            }
        }

        // The tables are constants: no gradient flows to them.
        let (cos, sin) = (cos.into_primitive().to_contiguous(), sin.into_primitive().to_contiguous());
        match RopeBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = flex::rope_forward(x.into_primitive(), &cos, &sin);
                prep.finish((cos, sin), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(flex::rope_forward(x.into_primitive(), &cos, &sin)),
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
                let (dx, dw) = flex::rms_norm_backward(&x, &w, self.0, grad);
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
                let y = flex::rms_norm_forward(&xs, &ws, eps);
                prep.finish((xs, ws), y)
            }
            OpsKind::UnTracked(prep) => {
                let (xs, ws) = (x.into_primitive().to_contiguous(), w.into_primitive().to_contiguous());
                prep.finish(flex::rms_norm_forward(&xs, &ws, eps))
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
mod tests;
