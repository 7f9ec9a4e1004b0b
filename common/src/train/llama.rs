//! The LLaMA-style decoder as a burn module: token embedding, RMSNorm, rotary position
//! embedding (Hugging Face "rotate half" convention), causal attention with grouped KV heads,
//! SwiGLU MLP, optional tied output head.
//!
//! Weights are held in the Hugging Face layout (`[out, in]`), the same as the master copy, so
//! moving parameters in and out is a plain copy in `params::layout` order; projections multiply
//! by a transposed view, which the CPU backend's strided GEMM reads without copying.

use burn::module::{Module, Param, ParamId};
use burn::tensor::activation::{log_softmax, silu};
use burn::tensor::module::{attention, embedding, linear};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::TrainError;
use crate::config::ModelConfig;

/// One decoder layer.
#[derive(Module, Debug)]
pub struct Block {
    pub input_norm: Param<Tensor<1>>,
    pub q_proj: Param<Tensor<2>>,
    pub k_proj: Param<Tensor<2>>,
    pub v_proj: Param<Tensor<2>>,
    pub o_proj: Param<Tensor<2>>,
    pub post_norm: Param<Tensor<1>>,
    pub gate_proj: Param<Tensor<2>>,
    pub up_proj: Param<Tensor<2>>,
    pub down_proj: Param<Tensor<2>>,
}

/// The decoder's parameters. Shape constants live in [`Shape`], outside the module, so the
/// module is nothing but parameters.
#[derive(Module, Debug)]
pub struct Llama {
    pub embed: Param<Tensor<2>>,
    pub layers: Vec<Block>,
    pub norm: Param<Tensor<1>>,
    /// `None` when the output head is tied to the embedding.
    pub lm_head: Option<Param<Tensor<2>>>,
}

/// A borrowed parameter of either rank, for walking the model in protocol order.
pub enum Slot<'a> {
    Vector(&'a Param<Tensor<1>>),
    Matrix(&'a Param<Tensor<2>>),
}

impl Slot<'_> {
    /// The parameter's process-local id (for the optimizer and gradients only).
    pub fn id(&self) -> ParamId {
        match self {
            Slot::Vector(p) => p.id,
            Slot::Matrix(p) => p.id,
        }
    }

    /// The values as a flat row-major f32 buffer.
    pub fn values(&self) -> Result<Vec<f32>, TrainError> {
        let data = match self {
            Slot::Vector(p) => p.val().into_data(),
            Slot::Matrix(p) => p.val().into_data(),
        };
        data.convert::<f32>().try_into_vec::<f32>().map_err(|e| TrainError::Backend(format!("{e:?}")))
    }
}

/// Shape constants of a model, taken from the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub norm_eps: f64,
    pub rope_theta: f64,
}

impl Shape {
    /// The shape of a model config.
    pub fn of(m: &ModelConfig) -> Shape {
        let heads = m.num_heads.max(1) as usize;
        Shape {
            heads,
            kv_heads: m.num_kv_heads.max(1) as usize,
            head_dim: m.hidden_size as usize / heads,
            norm_eps: m.norm_eps,
            rope_theta: m.rope_theta,
        }
    }
}

/// Rotary tables for one sequence length, `[1, 1, t, head_dim]`, computed in f64 on the host so
/// every backend starts from the same numbers.
#[derive(Debug, Clone)]
pub struct Rope {
    cos: Tensor<4>,
    sin: Tensor<4>,
}

impl Rope {
    /// Tables for positions `0..len`.
    pub fn new(shape: &Shape, len: usize, device: &Device) -> Rope {
        let d = shape.head_dim;
        let half = d / 2;
        let mut cos = Vec::with_capacity(len * d);
        let mut sin = Vec::with_capacity(len * d);
        for pos in 0..len {
            let angles: Vec<f64> =
                (0..half).map(|i| pos as f64 / shape.rope_theta.powf((2 * i) as f64 / d as f64)).collect();
            // HF layout: the first and second halves share frequencies (rotate_half pairing).
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos() as f32));
                sin.extend(angles.iter().map(|a| a.sin() as f32));
            }
        }
        let table = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [1, 1, len, d]), device);
        Rope { cos: table(cos), sin: table(sin) }
    }

    /// The rotary embedding of `x` `[b, t, heads, head_dim]` (t ≤ len), returned as
    /// `[b, heads, t, head_dim]`: one fused pass on the CPU backend, burn's ops elsewhere.
    fn rotate(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, t, _, d] = x.dims();
        if super::fused::available(&x.device()) {
            let table = |tab: &Tensor<4>| tab.clone().narrow(2, 0, t).reshape([t, d]);
            super::fused::rope(x, table(&self.cos), table(&self.sin))
        } else {
            self.apply(x.swap_dims(1, 2))
        }
    }

    /// x·cos + rotate_half(x)·sin over `[b, heads, t, head_dim]`, t ≤ len.
    fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, t, d] = x.dims();
        let half = d / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        let cos = self.cos.clone().narrow(2, 0, t);
        let sin = self.sin.clone().narrow(2, 0, t);
        x * cos + rotated * sin
    }
}

fn rms_norm(x: Tensor<3>, weight: &Param<Tensor<1>>, eps: f64) -> Tensor<3> {
    if super::fused::available(&x.device()) {
        return super::fused::rms_norm(x, weight.val(), eps as f32);
    }
    let rms = (x.clone().square().mean_dim(2) + eps).sqrt();
    (x / rms) * weight.val().unsqueeze::<3>()
}

fn project(x: Tensor<3>, weight: &Param<Tensor<2>>) -> Tensor<3> {
    let [b, t, d] = x.dims();
    let y = linear(x.reshape([b * t, d]), weight.val().transpose(), None);
    let out = y.dims()[1];
    y.reshape([b, t, out])
}

impl Block {
    fn forward(&self, x: Tensor<3>, shape: &Shape, rope: &Rope) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let (heads, kv_heads, hd) = (shape.heads, shape.kv_heads, shape.head_dim);
        let h = rms_norm(x.clone(), &self.input_norm, shape.norm_eps);
        let split = |y: Tensor<3>, n: usize| y.reshape([b, t, n, hd]);
        let q = rope.rotate(split(project(h.clone(), &self.q_proj), heads));
        let mut k = rope.rotate(split(project(h.clone(), &self.k_proj), kv_heads));
        let mut v = split(project(h, &self.v_proj), kv_heads).swap_dims(1, 2);
        if kv_heads < heads {
            let rep = heads / kv_heads;
            let widen =
                |y: Tensor<4>| y.unsqueeze_dim::<5>(2).expand([b, kv_heads, rep, t, hd]).reshape([b, heads, t, hd]);
            k = widen(k);
            v = widen(v);
        }
        let a = if super::fused::available(&q.device()) {
            let scale = 1.0 / (hd as f32).sqrt();
            super::fused::causal_softmax(q.matmul(k.swap_dims(2, 3)), scale).matmul(v)
        } else {
            let options = AttentionModuleOptions { is_causal: true, ..Default::default() };
            attention(q, k, v, None, None, options)
        };
        let a = a.swap_dims(1, 2).reshape([b, t, heads * hd]);
        let x = x + project(a, &self.o_proj);
        let h = rms_norm(x.clone(), &self.post_norm, shape.norm_eps);
        let (gate, up) = (project(h.clone(), &self.gate_proj), project(h, &self.up_proj));
        let gated =
            if super::fused::available(&gate.device()) { super::fused::swiglu(gate, up) } else { silu(gate) * up };
        x + project(gated, &self.down_proj)
    }
}

impl Llama {
    /// A model holding `values` (in `params::layout` order and shapes) on `device`. With `ids`,
    /// each parameter keeps the id it had, so optimizer state carries over a reload.
    ///
    /// The caller guarantees the values match the config's layout (the master copy does).
    pub fn from_values(model: &ModelConfig, values: &[Vec<f32>], ids: Option<&[ParamId]>, device: &Device) -> Llama {
        let specs = crate::params::layout(model);
        debug_assert_eq!(specs.len(), values.len());
        let mut next = 0usize;
        let mut take = || {
            let i = next;
            next += 1;
            (i, ids.and_then(|ids| ids.get(i).copied()).unwrap_or_default())
        };
        let vector = |(i, id): (usize, ParamId)| {
            let t = Tensor::<1>::from_data(TensorData::new(values[i].clone(), [specs[i].shape[0]]), device);
            Param::initialized(id, trainable(t))
        };
        let matrix = |(i, id): (usize, ParamId)| {
            let s = &specs[i].shape;
            let t = Tensor::<2>::from_data(TensorData::new(values[i].clone(), [s[0], s[1]]), device);
            Param::initialized(id, trainable(t))
        };
        let embed = matrix(take());
        let layers = (0..model.num_layers)
            .map(|_| Block {
                input_norm: vector(take()),
                q_proj: matrix(take()),
                k_proj: matrix(take()),
                v_proj: matrix(take()),
                o_proj: matrix(take()),
                post_norm: vector(take()),
                gate_proj: matrix(take()),
                up_proj: matrix(take()),
                down_proj: matrix(take()),
            })
            .collect();
        let norm = vector(take());
        let lm_head = (!model.tie_embeddings).then(|| matrix(take()));
        Llama { embed, layers, norm, lm_head }
    }

    /// Every parameter in `params::layout` order.
    pub fn slots(&self) -> Vec<Slot<'_>> {
        let mut out = vec![Slot::Matrix(&self.embed)];
        for l in &self.layers {
            out.extend([
                Slot::Vector(&l.input_norm),
                Slot::Matrix(&l.q_proj),
                Slot::Matrix(&l.k_proj),
                Slot::Matrix(&l.v_proj),
                Slot::Matrix(&l.o_proj),
                Slot::Vector(&l.post_norm),
                Slot::Matrix(&l.gate_proj),
                Slot::Matrix(&l.up_proj),
                Slot::Matrix(&l.down_proj),
            ]);
        }
        out.push(Slot::Vector(&self.norm));
        if let Some(h) = &self.lm_head {
            out.push(Slot::Matrix(h));
        }
        out
    }

    /// Every parameter's values, flat, in `params::layout` order.
    pub fn export(&self) -> Result<Vec<Vec<f32>>, TrainError> {
        self.slots().iter().map(Slot::values).collect()
    }

    /// Logits `[b, t, vocab]` for tokens `[b, t]`.
    pub fn forward(&self, tokens: Tensor<2, Int>, shape: &Shape, rope: &Rope) -> Tensor<3> {
        let mut x = embedding(self.embed.val(), tokens);
        for layer in &self.layers {
            x = layer.forward(x, shape, rope);
        }
        let x = rms_norm(x, &self.norm, shape.norm_eps);
        project(x, self.lm_head.as_ref().unwrap_or(&self.embed))
    }

    /// Mean next-token cross-entropy over a batch of samples `[b, t]`: position i predicts
    /// token i+1 of the same sample, so each sample gives t−1 predictions.
    pub fn loss(&self, tokens: Tensor<2, Int>, shape: &Shape, rope: &Rope) -> Tensor<1> {
        let [b, t] = tokens.dims();
        let n = t - 1;
        let inputs = tokens.clone().narrow(1, 0, n);
        let targets = tokens.narrow(1, 1, n).reshape([b * n, 1]);
        let logits = self.forward(inputs, shape, rope);
        let vocab = logits.dims()[2];
        let logp = log_softmax(logits.reshape([b * n, vocab]), 1);
        logp.gather(1, targets).mean().neg()
    }
}

/// On an autodiff device, a parameter that records gradients; elsewhere, the plain tensor.
fn trainable<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    if t.is_autodiff() { t.require_grad() } else { t }
}

/// Samples `[b, t]` as an int tensor.
pub fn token_batch(samples: &[&[u32]], device: &Device) -> Tensor<2, Int> {
    let t = samples.first().map_or(0, |s| s.len());
    let flat: Vec<i32> = samples.iter().flat_map(|s| s.iter().map(|&x| x as i32)).collect();
    Tensor::<2, Int>::from_data(TensorData::new(flat, [samples.len(), t]), device)
}
