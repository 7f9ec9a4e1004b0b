//! The training thread: one OS thread owns the [`Trainer`] for the miner's whole life (moved
//! between threads, glibc spreads its buffers over per-thread arenas and memory grows by
//! hundreds of MB a step; docs/performance.md). The async side sends one job per window and
//! gets the encoded pseudo-gradient back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use ferrum_common::SubnetConfig;
use ferrum_common::codec::{CodecSpec, EncodedTensor, encode_model};
use ferrum_common::model::MasterModel;
use ferrum_common::train::{self, TrainError, Trainer};
use tokio::sync::oneshot;

/// One window's training.
pub struct TrainJob {
    pub window: u64,
    /// The window's base model.
    pub base: Arc<MasterModel>,
    /// One batch of samples per inner step.
    pub batches: Vec<Vec<Vec<u32>>>,
    /// Schedule position of the first inner step.
    pub first_step: u64,
    /// Set when the put window opens: the run stops after the current step.
    pub stop: Arc<AtomicBool>,
    /// The error-feedback buffer, moved in and handed back.
    pub feedback: Vec<Vec<f32>>,
    /// Saved optimizer state to restore when the thread builds its trainer (after a restart).
    pub restore: Option<Vec<u8>>,
}

/// What a window's training produced.
#[derive(Debug)]
pub struct TrainOutcome {
    pub steps: usize,
    pub mean_loss: f32,
    pub tokens: u64,
    pub secs: f64,
    /// The pseudo-gradient after error feedback, compressed.
    pub encoded: Vec<EncodedTensor>,
    /// The optimizer state after the run, to save with the model.
    pub optimizer: Vec<u8>,
}

type Reply = (Vec<Vec<f32>>, Result<TrainOutcome, TrainError>);

/// Handle on the training thread; dropping it ends the thread after its current job.
pub struct TrainerThread {
    jobs: std::sync::mpsc::Sender<(TrainJob, oneshot::Sender<Reply>)>,
}

impl TrainerThread {
    /// Starts the thread; the trainer is built on the first job, on `backend`.
    pub fn spawn(config: SubnetConfig, backend: String, threads: usize) -> std::io::Result<TrainerThread> {
        let (tx, rx) = std::sync::mpsc::channel::<(TrainJob, oneshot::Sender<Reply>)>();
        std::thread::Builder::new().name("ferrum-trainer".into()).spawn(move || {
            let spec = CodecSpec::new(&config);
            let mut trainer: Option<Trainer> = None;
            while let Ok((mut job, reply)) = rx.recv() {
                let result = run_job(&config, &backend, &spec, threads, &mut trainer, &mut job);
                // The receiver is gone only if the miner stopped; nothing to hand back then.
                let _ = reply.send((std::mem::take(&mut job.feedback), result));
            }
        })?;
        Ok(TrainerThread { jobs: tx })
    }

    /// Runs a job; the feedback buffer comes back whatever the outcome.
    pub async fn train(&self, job: TrainJob) -> Reply {
        let (tx, rx) = oneshot::channel();
        if let Err(std::sync::mpsc::SendError((job, _))) = self.jobs.send((job, tx)) {
            return (job.feedback, Err(TrainError::Backend("the training thread has stopped".into())));
        }
        // A panic on the thread loses the buffer; the miner then starts a fresh one.
        rx.await.unwrap_or_else(|_| (Vec::new(), Err(TrainError::Backend("the training thread panicked".into()))))
    }
}

fn run_job(
    config: &SubnetConfig,
    backend: &str,
    spec: &CodecSpec,
    threads: usize,
    trainer: &mut Option<Trainer>,
    job: &mut TrainJob,
) -> Result<TrainOutcome, TrainError> {
    let started = Instant::now();
    let t = match trainer {
        Some(t) => {
            // Keeps the optimizer's moments across windows.
            t.load(&job.base)?;
            t
        }
        None => {
            let t = trainer.insert(Trainer::new(config, &job.base, &train::device(backend)?)?);
            if let Some(saved) = &job.restore
                && let Err(e) = t.restore_optimizer(saved)
            {
                tracing::warn!(error = %e, "cannot restore the optimizer state; starting with fresh moments");
            }
            t
        }
    };
    let mut losses = Vec::with_capacity(job.batches.len());
    let mut tokens = 0u64;
    for (i, batch) in job.batches.iter().enumerate() {
        if job.stop.load(Ordering::Relaxed) {
            tracing::warn!(window = job.window, steps = i, of = job.batches.len(), "put window opened: stopping early");
            break;
        }
        let report = t.step(batch, job.first_step + i as u64)?;
        losses.push(report.loss);
        tokens += batch.iter().map(|s| s.len().saturating_sub(1) as u64).sum::<u64>();
    }
    let delta = t.pseudo_gradient(&job.base)?;
    let beta = config.compression.error_feedback_decay as f32;
    if job.feedback.len() != delta.len() {
        job.feedback = delta.iter().map(|d| vec![0.0; d.len()]).collect();
    }
    let encoded = encode_model(&mut job.feedback, &delta, beta, spec, threads);
    let mean_loss = if losses.is_empty() { f32::NAN } else { losses.iter().sum::<f32>() / losses.len() as f32 };
    let optimizer = t.optimizer_state()?;
    Ok(TrainOutcome {
        steps: losses.len(),
        mean_loss,
        tokens,
        secs: started.elapsed().as_secs_f64(),
        encoded,
        optimizer,
    })
}
