//! `ferrum bench train`: tokens per second for forward + backward + optimizer step on a preset,
//! peak memory, and how the loss moves, on a prepared dataset (the real corpus) or on
//! synthetic text made on the spot.
//!
//! Samples are read in order (step s takes samples s·B … s·B+B−1, wrapping); the last
//! `eval_samples` of the dataset are held out for the evaluation loss before and after.

use ferrum_common::outln;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use ferrum_common::model::MasterModel;
use ferrum_common::train::Trainer;
use ferrum_common::{Dataset, SubnetConfig};
use serde::Serialize;

/// What to run.
#[derive(Debug, Clone)]
pub struct TrainBench {
    pub steps: u64,
    pub eval_samples: usize,
    pub backend: String,
}

/// The report (`--json` prints it as is).
#[derive(Debug, Serialize)]
pub struct TrainReport {
    pub preset: String,
    pub backend: String,
    /// The CPU model, and the compute paths taken on it when training runs on the CPU.
    pub cpu: String,
    pub kernels: Option<ferrum_common::train::KernelPath>,
    pub dataset: String,
    pub params: u64,
    pub steps: u64,
    pub batch_size: u32,
    pub micro_batch_size: u32,
    pub sequence_length: u32,
    /// Predicted tokens (sequence length − 1 per sample) per second, over all steps but the
    /// first (which includes one-time setup).
    pub tokens_per_sec: f64,
    pub mean_step_ms: f64,
    /// Peak resident memory of the process (CPU backends).
    pub peak_rss_bytes: Option<u64>,
    /// Held-out loss before the first and after the last step.
    pub eval_loss_start: f32,
    pub eval_loss_end: f32,
    /// Training loss of the first and last (up to) ten steps.
    pub loss_head: Vec<f32>,
    pub loss_tail: Vec<f32>,
    /// (step, loss) at about fifty evenly spaced steps.
    pub curve: Vec<(u64, f32)>,
}

/// Trains `config`'s model from genesis for `bench.steps` steps on `dataset`.
pub async fn train(config: &SubnetConfig, dataset: &Dataset, name: &str, bench: &TrainBench) -> Result<TrainReport> {
    let t = &config.training;
    let batch = t.batch_size as u64;
    let total = dataset.num_samples();
    let eval_n = bench.eval_samples as u64;
    if total < eval_n + batch {
        bail!("the dataset has {total} samples: too few for a batch of {batch} plus {eval_n} held out");
    }
    let train_n = total - eval_n;
    let eval_idx: Vec<u64> = (train_n..total).collect();
    let heldout = dataset.samples(&eval_idx).await.context("reading held-out samples")?;

    // All samples are read first so that training runs start to finish on one thread (see
    // `Trainer`).
    let idx: Vec<u64> = (0..bench.steps * batch).map(|i| i % train_n).collect();
    let samples = dataset.samples(&idx).await.context("reading training samples")?;
    let device = ferrum_common::train::device(&bench.backend)?;
    let c = config.clone();
    let (bench_steps, t_batch) = (bench.steps as usize, batch as usize);
    let (eval_loss_start, eval_loss_end, losses, timed) =
        tokio::task::spawn_blocking(move || -> Result<(f32, f32, Vec<f32>, f64)> {
            let mut trainer = Trainer::new(&c, &MasterModel::genesis(&c), &device)?;
            let start = trainer.evaluate(&heldout)?;
            let mut losses = Vec::with_capacity(bench_steps);
            let mut timed = 0.0f64;
            for (step, batch) in samples.chunks(t_batch).enumerate() {
                let started = Instant::now();
                let report = trainer.step(batch, step as u64)?;
                // The first step includes one-time setup (allocations, thread pool start).
                if step > 0 {
                    timed += started.elapsed().as_secs_f64();
                }
                losses.push(report.loss);
                tracing::debug!(
                    step,
                    loss = report.loss,
                    grad_norm = report.grad_norm,
                    lr = report.learning_rate,
                    "step"
                );
            }
            Ok((start, trainer.evaluate(&heldout)?, losses, timed))
        })
        .await??;

    let timed_steps = bench.steps.saturating_sub(1).max(1) as f64;
    // Tokens the model predicts: each sample of t tokens gives t − 1 next-token targets.
    let tokens = (batch * u64::from(config.data.sequence_length.saturating_sub(1))) as f64 * timed_steps;
    let every = (bench.steps / 50).max(1);
    let ten = losses.len().min(10);
    Ok(TrainReport {
        preset: name.to_string(),
        backend: bench.backend.clone(),
        cpu: super::cpu_model(),
        kernels: ferrum_common::train::is_cpu(&bench.backend).then(ferrum_common::train::kernel_path),
        dataset: dataset.id().to_string(),
        params: ferrum_common::params::count(&config.model),
        steps: bench.steps,
        batch_size: t.batch_size,
        micro_batch_size: t.micro_batch_size,
        sequence_length: config.data.sequence_length,
        tokens_per_sec: if timed > 0.0 { tokens / timed } else { 0.0 },
        mean_step_ms: timed * 1000.0 / timed_steps,
        peak_rss_bytes: super::peak_rss_bytes(),
        eval_loss_start,
        eval_loss_end,
        loss_head: losses[..ten].to_vec(),
        loss_tail: losses[losses.len() - ten..].to_vec(),
        curve: losses
            .iter()
            .enumerate()
            .filter(|(i, _)| (*i as u64).is_multiple_of(every))
            .map(|(i, &l)| (i as u64, l))
            .collect(),
    })
}

impl TrainReport {
    /// A short human-readable summary.
    pub fn print(&self) -> std::io::Result<()> {
        outln!(
            "preset {} on {}: {} parameters, batch {}×{} tokens (micro-batch {})",
            self.preset,
            self.backend,
            self.params,
            self.batch_size,
            self.sequence_length,
            self.micro_batch_size
        )?;
        if let Some(k) = &self.kernels {
            outln!("{} ({} threads): gemm {}, fused kernels {}", self.cpu, k.threads, k.gemm, k.fused)?;
        }
        outln!("{:.0} tokens/s, {:.0} ms per step over {} steps", self.tokens_per_sec, self.mean_step_ms, self.steps)?;
        if let Some(b) = self.peak_rss_bytes {
            outln!("peak memory {:.0} MiB", b as f64 / (1 << 20) as f64)?;
        }
        outln!("held-out loss {:.3} -> {:.3}", self.eval_loss_start, self.eval_loss_end)?;
        outln!("training loss, first steps {:?}", self.loss_head)?;
        outln!("training loss, last steps  {:?}", self.loss_tail)?;
        Ok(())
    }
}
