//! The model's parameters as plain data: stable paths (Hugging Face Llama names) and shapes, in
//! the fixed order that every export, payload and fingerprint uses.

use crate::config::ModelConfig;

/// One parameter tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// Stable path, e.g. `model.layers.3.self_attn.q_proj.weight`.
    pub path: String,
    /// Row-major shape: `[out, in]` for projections, `[n]` for norms.
    pub shape: Vec<usize>,
}

impl ParamSpec {
    fn new(path: String, shape: &[usize]) -> Self {
        ParamSpec { path, shape: shape.to_vec() }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// All parameters of a model, in protocol order.
pub fn layout(model: &ModelConfig) -> Vec<ParamSpec> {
    let h = model.hidden_size as usize;
    let v = model.vocab_size as usize;
    let f = model.intermediate_size as usize;
    let head_dim = h / (model.num_heads.max(1) as usize);
    let q = model.num_heads as usize * head_dim;
    let kv = model.num_kv_heads as usize * head_dim;

    let mut out = vec![ParamSpec::new("model.embed_tokens.weight".into(), &[v, h])];
    for i in 0..model.num_layers {
        let p = |name: &str| format!("model.layers.{i}.{name}");
        out.push(ParamSpec::new(p("input_layernorm.weight"), &[h]));
        out.push(ParamSpec::new(p("self_attn.q_proj.weight"), &[q, h]));
        out.push(ParamSpec::new(p("self_attn.k_proj.weight"), &[kv, h]));
        out.push(ParamSpec::new(p("self_attn.v_proj.weight"), &[kv, h]));
        out.push(ParamSpec::new(p("self_attn.o_proj.weight"), &[h, q]));
        out.push(ParamSpec::new(p("post_attention_layernorm.weight"), &[h]));
        out.push(ParamSpec::new(p("mlp.gate_proj.weight"), &[f, h]));
        out.push(ParamSpec::new(p("mlp.up_proj.weight"), &[f, h]));
        out.push(ParamSpec::new(p("mlp.down_proj.weight"), &[h, f]));
    }
    out.push(ParamSpec::new("model.norm.weight".into(), &[h]));
    if !model.tie_embeddings {
        out.push(ParamSpec::new("lm_head.weight".into(), &[v, h]));
    }
    out
}

/// Total parameter count.
pub fn count(model: &ModelConfig) -> u64 {
    layout(model).iter().map(|p| p.numel() as u64).sum()
}

/// Block side for one dimension: its largest divisor not above `chunk`.
pub fn block_side(dim: usize, chunk: usize) -> usize {
    (1..=chunk.min(dim).max(1)).rev().find(|d| dim.is_multiple_of(*d)).unwrap_or(1)
}

/// Elements per compression block of a tensor of this shape.
pub fn block_elements(shape: &[usize], chunk: usize) -> usize {
    shape.iter().map(|&d| block_side(d, chunk)).product()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;

    #[test]
    fn block_side_is_largest_divisor_not_above_chunk() {
        assert_eq!(block_side(4096, 64), 64);
        assert_eq!(block_side(320, 64), 64);
        assert_eq!(block_side(2688, 64), 64);
        assert_eq!(block_side(688, 64), 43);
        assert_eq!(block_side(257, 64), 1);
        assert_eq!(block_side(48, 64), 48);
        assert_eq!(block_side(7, 4), 1);
        assert_eq!(block_side(1, 64), 1);
    }

    #[test]
    fn preset_sizes_match_their_names() {
        let count_of = |p: Preset| count(&p.config().model);
        assert!(count_of(Preset::Test) < 1_000_000, "{}", count_of(Preset::Test));
        assert!((2_000_000..10_000_000).contains(&count_of(Preset::Small)));
        assert!((150_000_000..250_000_000).contains(&count_of(Preset::Base150m)));
        assert!((1_000_000_000..1_300_000_000).contains(&count_of(Preset::Large1b)));
    }

    #[test]
    fn layout_order_and_names_follow_hf_llama() {
        let mut m = Preset::Test.config().model;
        m.tie_embeddings = false;
        let l = layout(&m);
        assert_eq!(l[0].path, "model.embed_tokens.weight");
        assert_eq!(l[1].path, "model.layers.0.input_layernorm.weight");
        assert_eq!(l[3].shape, vec![32, 64], "k_proj is [kv_heads*head_dim, hidden]");
        assert_eq!(l.last().map(|p| p.path.as_str()), Some("lm_head.weight"));
        assert_eq!(l.len(), 1 + 9 * m.num_layers as usize + 2);
    }
}
