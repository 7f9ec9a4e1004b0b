//! The miner's inner loop: AdamW over micro-batches with gradient accumulation, a global
//! gradient-norm clip and the warm-up/cosine schedule; and batched evaluation without autodiff.

use burn::module::{Module, ParamId};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};

use super::TrainError;
use super::llama::{Llama, Rope, Shape, Slot, token_batch};
use crate::config::SubnetConfig;
use crate::model::MasterModel;

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// Mean loss over the step's batch.
    pub loss: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    pub learning_rate: f64,
}

/// A trainable copy of the model with its optimizer state.
///
/// Keep a trainer on one OS thread for its whole life (a dedicated thread fed by a channel, not
/// a fresh `spawn_blocking` per step): moved between threads, glibc spreads its buffers over
/// per-thread malloc arenas and resident memory grows by hundreds of MB per step
/// (docs/performance.md).
pub struct Trainer {
    config: SubnetConfig,
    shape: Shape,
    device: Device,
    rope: Rope,
    model: Llama,
    optim: ModuleOptimizer,
    /// Evaluation of the current parameters, on the non-autodiff device.
    evaluator: Evaluator,
}

impl Trainer {
    /// A trainer on `device` (made an autodiff device here) starting from `master`.
    pub fn new(config: &SubnetConfig, master: &MasterModel, device: &Device) -> Result<Trainer, TrainError> {
        check_layout(config, master)?;
        let device = device.clone().autodiff();
        let shape = Shape::of(&config.model);
        let t = &config.training;
        let optim = AdamWConfig::new()
            .with_beta_1(t.adam_beta1 as f32)
            .with_beta_2(t.adam_beta2 as f32)
            .with_epsilon(t.adam_eps as f32)
            .with_weight_decay(t.weight_decay as f32)
            .init();
        Ok(Trainer {
            rope: Rope::new(&shape, config.data.sequence_length as usize, &device),
            model: Llama::from_values(&config.model, &master.tensors, None, &device),
            evaluator: Evaluator::new(config, &device),
            config: config.clone(),
            shape,
            device,
            optim,
        })
    }

    /// Replace the parameters with `master`'s (a new window's global model), keeping the
    /// optimizer's moments, as a miner does between windows.
    pub fn load(&mut self, master: &MasterModel) -> Result<(), TrainError> {
        check_layout(&self.config, master)?;
        let ids: Vec<ParamId> = self.model.slots().iter().map(Slot::id).collect();
        self.model = Llama::from_values(&self.config.model, &master.tensors, Some(&ids), &self.device);
        Ok(())
    }

    /// The optimizer's moments, to save with the model so a restarted miner keeps them: the
    /// ids its parameters had (optimizer state is keyed by them, in protocol order), then
    /// burn's own serialization of the state.
    pub fn optimizer_state(&self) -> Result<Vec<u8>, TrainError> {
        let ids: Vec<u64> = self.model.slots().iter().map(|s| s.id().val()).collect();
        let bytes = self.optim.into_bytes().map_err(|e| TrainError::Backend(format!("optimizer state: {e}")))?;
        let mut out = Vec::with_capacity(8 + 8 * ids.len() + bytes.len());
        out.extend_from_slice(&(ids.len() as u64).to_le_bytes());
        ids.iter().for_each(|id| out.extend_from_slice(&id.to_le_bytes()));
        out.extend_from_slice(&bytes);
        Ok(out)
    }

    /// Restores moments saved by [`optimizer_state`](Self::optimizer_state): the parameters
    /// take the saved ids, so the state applies to them again.
    pub fn restore_optimizer(&mut self, state: &[u8]) -> Result<(), TrainError> {
        let bad = |why: &str| TrainError::Backend(format!("saved optimizer state: {why}"));
        let word = |i: usize| -> Option<u64> {
            state.get(8 * i..8 * i + 8).map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        };
        let n = word(0).ok_or_else(|| bad("truncated"))? as usize;
        let slots = self.model.slots().len();
        if n != slots {
            return Err(bad("written for another model layout"));
        }
        let ids: Vec<ParamId> =
            (1..=n).map(|i| word(i).map(ParamId::from)).collect::<Option<_>>().ok_or_else(|| bad("truncated"))?;
        let values = self.export()?;
        let record = burn::tensor::Bytes::from_bytes_vec(state[8 * (n + 1)..].to_vec());
        self.optim = self.optim.clone().from_bytes(record).map_err(|e| bad(&e.to_string()))?;
        self.model = Llama::from_values(&self.config.model, &values, Some(&ids), &self.device);
        Ok(())
    }

    /// The current parameters, flat, in protocol order.
    pub fn export(&self) -> Result<Vec<Vec<f32>>, TrainError> {
        self.model.export()
    }

    /// Pseudo-gradient: `start − current`, per tensor, in protocol order.
    pub fn pseudo_gradient(&self, start: &MasterModel) -> Result<Vec<Vec<f32>>, TrainError> {
        check_layout(&self.config, start)?;
        let now = self.export()?;
        Ok(start.tensors.iter().zip(now).map(|(a, b)| a.iter().zip(b).map(|(x, y)| x - y).collect()).collect())
    }

    /// One optimizer step over `batch` (`training.batch_size` samples or any multiple of the
    /// micro-batch), at schedule position `step`.
    pub fn step(&mut self, batch: &[Vec<u32>], step: u64) -> Result<StepReport, TrainError> {
        let (mut grads, loss) = self.gradients(batch)?;
        let grad_norm = self.clip(&mut grads);
        if !loss.is_finite() || !grad_norm.is_finite() {
            return Err(TrainError::NonFinite { step, loss, grad_norm });
        }
        let lr = super::schedule::learning_rate(&self.config.training, step);
        // Cloning a module clones tensor handles, not data.
        self.model = self.optim.step(lr, self.model.clone(), grads);
        Ok(StepReport { loss, grad_norm, learning_rate: lr })
    }

    /// Gradients of the batch's mean loss, accumulated over micro-batches, and that loss.
    fn gradients(&self, batch: &[Vec<u32>]) -> Result<(GradientsParams, f32), TrainError> {
        check_batch(batch, self.config.data.sequence_length as usize, self.config.model.vocab_size)?;
        let micro = self.config.training.micro_batch_size.max(1) as usize;
        let weight = 1.0 / batch.len() as f32;
        let mut acc = GradientsAccumulator::<Llama>::new();
        let mut loss_sum = 0.0f32;
        for chunk in batch.chunks(micro) {
            let tokens = token_batch(&chunk.iter().map(Vec::as_slice).collect::<Vec<_>>(), &self.device);
            // Each micro-batch's mean loss weighted by its share, so the accumulated gradient is
            // the gradient of the whole batch's mean.
            let loss = self.model.loss(tokens, &self.shape, &self.rope).mul_scalar(chunk.len() as f32 * weight);
            loss_sum += loss.clone().into_scalar::<f32>();
            acc.accumulate(&self.model, GradientsParams::from_grads(loss.backward(), &self.model));
        }
        Ok((acc.grads(), loss_sum))
    }

    /// Global L2 norm of the gradients, accumulated in f64.
    fn global_norm(&self, grads: &GradientsParams) -> f32 {
        let mut sq = 0.0f64;
        for s in &self.model.slots() {
            let part = match s {
                Slot::Vector(p) => grads.get::<1>(p.id).map(|g| g.square().sum()),
                Slot::Matrix(p) => grads.get::<2>(p.id).map(|g| g.square().sum()),
            };
            sq += part.map_or(0.0, |t| f64::from(t.into_scalar::<f32>()));
        }
        sq.sqrt() as f32
    }

    /// Scale all gradients together so their global norm is at most `training.grad_clip`
    /// (burn's own clipping works per tensor); returns the norm before clipping.
    fn clip(&self, grads: &mut GradientsParams) -> f32 {
        let norm = self.global_norm(grads);
        let Some(max) = self.config.training.grad_clip else { return norm };
        if f64::from(norm) <= max || !norm.is_finite() {
            return norm;
        }
        let scale = (max / f64::from(norm)) as f32;
        for s in &self.model.slots() {
            match s {
                Slot::Vector(p) => rescale::<1>(grads, p.id, scale),
                Slot::Matrix(p) => rescale::<2>(grads, p.id, scale),
            }
        }
        norm
    }

    /// Gradient norm of a batch before and after clipping, without stepping.
    #[cfg(test)]
    pub(super) fn clipped_norms(&mut self, batch: &[Vec<u32>]) -> Result<(f32, f32), TrainError> {
        let (mut grads, _) = self.gradients(batch)?;
        let before = self.clip(&mut grads);
        Ok((before, self.global_norm(&grads)))
    }

    /// Mean loss of the current parameters over `samples` (no autodiff).
    pub fn evaluate(&self, samples: &[Vec<u32>]) -> Result<f32, TrainError> {
        self.evaluator.module_loss(&self.model.valid(), samples)
    }
}

fn rescale<const D: usize>(grads: &mut GradientsParams, id: ParamId, scale: f32) {
    if let Some(g) = grads.remove::<D>(id) {
        grads.register::<D>(id, g.mul_scalar(scale));
    }
}

/// Evaluates master models without autodiff: what validators run.
pub struct Evaluator {
    config: SubnetConfig,
    shape: Shape,
    device: Device,
    rope: Rope,
}

impl Evaluator {
    /// An evaluator on `device` (its inner, non-autodiff device is used).
    pub fn new(config: &SubnetConfig, device: &Device) -> Evaluator {
        let device = device.clone().inner();
        let shape = Shape::of(&config.model);
        Evaluator {
            rope: Rope::new(&shape, config.data.sequence_length as usize, &device),
            config: config.clone(),
            shape,
            device,
        }
    }

    /// Mean next-token loss of `model` over `samples`, in micro-batches.
    pub fn mean_loss(&self, model: &MasterModel, samples: &[Vec<u32>]) -> Result<f32, TrainError> {
        check_layout(&self.config, model)?;
        self.module_loss(&Llama::from_values(&self.config.model, &model.tensors, None, &self.device), samples)
    }

    /// The same for a model already on this evaluator's device.
    fn module_loss(&self, model: &Llama, samples: &[Vec<u32>]) -> Result<f32, TrainError> {
        check_batch(samples, self.config.data.sequence_length as usize, self.config.model.vocab_size)?;
        let micro = self.config.training.micro_batch_size.max(1) as usize;
        let mut total = 0.0f64;
        for chunk in samples.chunks(micro) {
            let tokens = token_batch(&chunk.iter().map(Vec::as_slice).collect::<Vec<_>>(), &self.device);
            let loss: Tensor<1> = model.loss(tokens, &self.shape, &self.rope);
            total += f64::from(loss.into_scalar::<f32>()) * chunk.len() as f64;
        }
        Ok((total / samples.len() as f64) as f32)
    }
}

fn check_layout(config: &SubnetConfig, master: &MasterModel) -> Result<(), TrainError> {
    let specs = crate::params::layout(&config.model);
    if specs != master.specs || master.tensors.iter().zip(&specs).any(|(t, s)| t.len() != s.numel()) {
        return Err(TrainError::Layout);
    }
    Ok(())
}

fn check_batch(batch: &[Vec<u32>], len: usize, vocab: u32) -> Result<(), TrainError> {
    if batch.is_empty() {
        return Err(TrainError::EmptyBatch);
    }
    for (i, s) in batch.iter().enumerate() {
        if s.len() != len {
            return Err(TrainError::SampleLength { index: i, expected: len, got: s.len() });
        }
        if let Some(&token) = s.iter().find(|&&t| t >= vocab) {
            return Err(TrainError::Token { index: i, token, vocab });
        }
    }
    Ok(())
}
