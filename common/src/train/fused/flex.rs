//! The fused operations over the CPU backend's buffers: forward and backward of each, in
//! parallel over rows, planes or element chunks on flex's rayon pool, each task on the widest
//! vector unit. A task's share is fixed by the shapes, never by the thread count, so results
//! do not depend on it.

use burn::backend::flex::{FlexTensor, Layout};
use rayon::prelude::*;

use super::super::kernels;

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
    let chunk = ROWS_PER_TASK * t_k;
    data.par_chunks_mut(chunk).enumerate().for_each(|(c, rows)| f(rows, c * ROWS_PER_TASK));
}

pub(super) fn softmax_forward(scores: FlexTensor, scale: f32) -> FlexTensor {
    let mut y = writable(scores);
    let (t_q, t_k) = dims(&y);
    par_rows(y.storage_mut(), t_k, |rows, first| forward_rows(rows, first, t_q, t_k, scale));
    y
}

pub(super) fn softmax_backward(y: FlexTensor, grad: FlexTensor, scale: f32) -> FlexTensor {
    let y = y.to_contiguous();
    let mut g = writable(grad);
    let (t_q, t_k) = dims(&y);
    let yd: &[f32] = y.storage();
    let chunk = ROWS_PER_TASK * t_k;
    {
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

pub(super) fn swiglu_forward(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
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
    like(out, &gate)
}

/// Gradients of `silu(gate) · up` for `grad`, in the order burn's decomposed ops compute them.
pub(super) fn swiglu_backward(gate: &FlexTensor, up: &FlexTensor, grad: FlexTensor) -> (FlexTensor, FlexTensor) {
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
    (like(dg, gate), like(du, gate))
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
pub(super) fn rope_forward(x: FlexTensor, cos: &FlexTensor, sin: &FlexTensor) -> FlexTensor {
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
pub(super) fn rope_backward(grad: FlexTensor, cos: &FlexTensor, sin: &FlexTensor) -> FlexTensor {
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

/// `values` as a contiguous f32 tensor of `t`'s shape.
fn like(values: Vec<f32>, t: &FlexTensor) -> FlexTensor {
    FlexTensor::new(
        burn::tensor::Bytes::from_elems(values),
        Layout::contiguous(t.layout().shape().clone()),
        burn::tensor::DType::F32,
    )
}

pub(super) fn rms_norm_forward(x: &FlexTensor, w: &FlexTensor, eps: f32) -> FlexTensor {
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
pub(super) fn rms_norm_backward(
    x: &FlexTensor,
    w: &FlexTensor,
    eps: f32,
    grad: FlexTensor,
) -> (FlexTensor, FlexTensor) {
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
