//! The global model's master copy: every parameter as a flat f32 buffer, in the protocol order
//! of `params::layout`, addressed by its stable path (never by a framework's process-local id).
//!
//! The outer step θ ← θ − η·aggregate is plain f32 arithmetic, element by element, so every node
//! that applies the same aggregates to the same parameters holds bit-identical parameters,
//! whatever its thread count, backend or hardware; the fingerprint proves it.

use crate::config::SubnetConfig;
use crate::params::{self, ParamSpec};

const FINGERPRINT_CONTEXT: &str = "ferrum 2026-11 model fingerprint v1";
const GENESIS_CONTEXT: &str = "ferrum 2026-11 genesis parameters v1";

/// Standard deviation of the genesis weights (GPT-2 / LLaMA convention).
const INIT_STD: f64 = 0.02;

/// blake3 over the parameters in protocol order (docs/protocol.md §9).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

hex_id!(Fingerprint);

/// Why an outer step cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("{got} updates for a model of {expected} tensors")]
    TensorCount { expected: usize, got: usize },
    #[error("update for {path} has {got} values, the tensor has {expected}")]
    TensorSize { path: String, expected: usize, got: usize },
}

/// The outer step on one tensor, `θ ← θ − lr·Δ` in plain f32 (docs/protocol.md §9): the one
/// place every node's step is computed.
pub fn step_tensor(theta: &mut [f32], update: &[f32], lr: f32) {
    for (p, &g) in theta.iter_mut().zip(update) {
        *p -= lr * g;
    }
}

/// The master copy of the model parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterModel {
    pub specs: Vec<ParamSpec>,
    pub tensors: Vec<Vec<f32>>,
}

/// Gaussian draws from a BLAKE3 stream (Box–Muller over 53-bit uniforms, portable `libm`).
struct Normal(blake3::OutputReader);

impl Normal {
    fn uniform(&mut self) -> f64 {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        // In (0, 1]: never 0, so the logarithm is finite.
        ((u64::from_le_bytes(b) >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    fn sample(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * libm::log(u1)).sqrt() * libm::cos(2.0 * std::f64::consts::PI * u2)
    }
}

impl MasterModel {
    /// The genesis model of a config: a pure function of the config hash, so every node can
    /// start from it without downloading anything. Norm weights are 1; projections and
    /// embeddings are N(0, 0.02²), output projections (`o_proj`, `down_proj`) scaled by
    /// 1/√(2·layers) as in GPT-2.
    pub fn genesis(config: &SubnetConfig) -> MasterModel {
        let hash = config.hash();
        let specs = params::layout(&config.model);
        let residual_scale = 1.0 / (2.0 * f64::from(config.model.num_layers.max(1))).sqrt();
        let tensors = specs
            .iter()
            .map(|p| {
                if p.shape.len() == 1 {
                    return vec![1.0; p.numel()];
                }
                let mut h = blake3::Hasher::new_derive_key(GENESIS_CONTEXT);
                h.update(&hash.0);
                h.update(p.path.as_bytes());
                let mut normal = Normal(h.finalize_xof());
                let std = if p.path.ends_with("o_proj.weight") || p.path.ends_with("down_proj.weight") {
                    INIT_STD * residual_scale
                } else {
                    INIT_STD
                };
                (0..p.numel()).map(|_| (normal.sample() * std) as f32).collect()
            })
            .collect();
        MasterModel { specs, tensors }
    }

    /// Number of parameters.
    pub fn numel(&self) -> usize {
        self.tensors.iter().map(Vec::len).sum()
    }

    /// The fingerprint: BLAKE3-derive over, per tensor in order, le32(path length) ‖ path ‖
    /// le32(rank) ‖ le64 of each dimension ‖ the f32 values little-endian.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut h = blake3::Hasher::new_derive_key(FINGERPRINT_CONTEXT);
        for (p, t) in self.specs.iter().zip(&self.tensors) {
            h.update(&(p.path.len() as u32).to_le_bytes());
            h.update(p.path.as_bytes());
            h.update(&(p.shape.len() as u32).to_le_bytes());
            for d in &p.shape {
                h.update(&(*d as u64).to_le_bytes());
            }
            let mut buf = Vec::with_capacity(t.len() * 4);
            for v in t {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            h.update(&buf);
        }
        Fingerprint(*h.finalize().as_bytes())
    }

    /// θ ← θ − lr·update, element by element in f32 (`θ - (lr * u)`), for every tensor whose
    /// update is present (a tensor whose aggregate failed is left as it is). Tensors are spread
    /// over `threads` threads; each element's arithmetic is the same whatever the split.
    pub fn outer_step(&mut self, updates: &[Option<Vec<f32>>], lr: f32, threads: usize) -> Result<(), StepError> {
        if updates.len() != self.tensors.len() {
            return Err(StepError::TensorCount { expected: self.tensors.len(), got: updates.len() });
        }
        for ((p, t), u) in self.specs.iter().zip(&self.tensors).zip(updates) {
            if let Some(u) = u
                && u.len() != t.len()
            {
                return Err(StepError::TensorSize { path: p.path.clone(), expected: t.len(), got: u.len() });
            }
        }
        let work: Vec<(&mut Vec<f32>, &Vec<f32>)> =
            self.tensors.iter_mut().zip(updates).filter_map(|(t, u)| u.as_ref().map(|u| (t, u))).collect();
        crate::parallel::map(work, threads, || (), |(t, u), _| step_tensor(t, u, lr));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;

    #[test]
    fn genesis_is_a_pure_function_of_the_config() {
        let c = Preset::Test.config();
        let a = MasterModel::genesis(&c);
        assert_eq!(a, MasterModel::genesis(&c));
        assert_eq!(a.numel() as u64, params::count(&c.model));
        let mut other = c.clone();
        other.training.learning_rate *= 2.0;
        assert_ne!(MasterModel::genesis(&other).fingerprint(), a.fingerprint());
        // Norms start at one; weights have the configured spread.
        assert!(a.tensors[1].iter().all(|&v| v == 1.0));
        let emb = &a.tensors[0];
        let std = (emb.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / emb.len() as f64).sqrt();
        assert!((std - 0.02).abs() < 0.001, "embedding std {std}");
    }

    #[test]
    fn outer_step_is_independent_of_thread_count() {
        let c = Preset::Test.config();
        let base = MasterModel::genesis(&c);
        let updates: Vec<Option<Vec<f32>>> = base
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (i % 5 != 3).then(|| crate::codec::synthetic_delta(t.len(), i as u64)))
            .collect();
        let mut fingerprints = Vec::new();
        for threads in [1, 2, 3, 8, 64] {
            let mut m = base.clone();
            m.outer_step(&updates, 0.7, threads).expect("step");
            fingerprints.push(m.fingerprint());
        }
        assert!(fingerprints.windows(2).all(|w| w[0] == w[1]), "{fingerprints:?}");
        let mut m = base.clone();
        m.outer_step(&updates, 0.7, 4).expect("step");
        assert_ne!(m.fingerprint(), base.fingerprint());
        let u = updates[0].as_ref().expect("present");
        assert_eq!(m.tensors[0][5].to_bits(), (base.tensors[0][5] - 0.7 * u[5]).to_bits());
        assert_eq!(m.tensors[3], base.tensors[3], "a skipped tensor is unchanged");
    }

    #[test]
    fn mismatched_updates_are_refused() {
        let mut m = MasterModel::genesis(&Preset::Test.config());
        assert!(matches!(m.outer_step(&[], 1.0, 1), Err(StepError::TensorCount { .. })));
        let mut u: Vec<Option<Vec<f32>>> = vec![None; m.tensors.len()];
        u[2] = Some(vec![0.0; 3]);
        assert!(matches!(m.outer_step(&u, 1.0, 1), Err(StepError::TensorSize { .. })));
    }
}
