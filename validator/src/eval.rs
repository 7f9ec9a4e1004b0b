//! Loss measurements for the Gauntlet, on one evaluation thread (like the trainer, the model
//! code keeps its buffers on the thread that uses them).

use std::sync::Arc;

use ferrum_common::SubnetConfig;
use ferrum_common::codec::{CodecSpec, EncodedTensor, dct, decode};
use ferrum_common::model::MasterModel;
use ferrum_common::train::{self, Evaluator, TrainError};
use ferrum_gauntlet::rules::Losses;
use tokio::sync::oneshot;

/// One miner to measure: its decoded update and a sample of its own assigned data.
pub struct Candidate {
    pub uid: u16,
    pub tensors: Vec<EncodedTensor>,
    pub own: Vec<Vec<u32>>,
}

/// One window's measurements.
pub struct EvalJob {
    /// The window's base model.
    pub base: Arc<MasterModel>,
    pub random: Vec<Vec<u32>>,
    pub candidates: Vec<Candidate>,
}

type Reply = Result<Vec<(u16, Losses)>, TrainError>;

/// Handle on the evaluation thread.
pub struct EvalThread {
    jobs: std::sync::mpsc::Sender<(EvalJob, oneshot::Sender<Reply>)>,
}

impl EvalThread {
    /// Starts the thread on `backend`.
    pub fn spawn(config: SubnetConfig, backend: String) -> std::io::Result<EvalThread> {
        let (tx, rx) = std::sync::mpsc::channel::<(EvalJob, oneshot::Sender<Reply>)>();
        std::thread::Builder::new().name("ferrum-eval".into()).spawn(move || {
            let evaluator = train::device(&backend).map(|d| Evaluator::new(&config, &d));
            let spec = CodecSpec::new(&config);
            let step = (config.training.outer_learning_rate * config.gauntlet.eval_lr_factor) as f32;
            while let Ok((job, reply)) = rx.recv() {
                let result = match &evaluator {
                    Ok(e) => measure(e, &spec, step, &job),
                    Err(err) => Err(err.clone()),
                };
                let _ = reply.send(result);
            }
        })?;
        Ok(EvalThread { jobs: tx })
    }

    /// Measures every candidate of a window.
    pub async fn measure(&self, job: EvalJob) -> Reply {
        let (tx, rx) = oneshot::channel();
        self.jobs.send((job, tx)).map_err(|_| TrainError::Backend("the evaluation thread has stopped".into()))?;
        rx.await.map_err(|_| TrainError::Backend("the evaluation thread panicked".into()))?
    }
}

/// Losses before and after `θ − step·ĝ` on own and random data, per candidate.
fn measure(e: &Evaluator, spec: &CodecSpec, step: f32, job: &EvalJob) -> Reply {
    let random_before = f64::from(e.mean_loss(&job.base, &job.random)?);
    let mut bases = dct::Bases::default();
    let mut out = Vec::with_capacity(job.candidates.len());
    let mut after = (*job.base).clone();
    for c in &job.candidates {
        for ((t, b), (enc, (_, g))) in
            after.tensors.iter_mut().zip(&job.base.tensors).zip(c.tensors.iter().zip(&spec.tensors))
        {
            let update = decode(enc, g, spec, &mut bases);
            for ((x, &x0), u) in t.iter_mut().zip(b).zip(update) {
                *x = x0 - step * u;
            }
        }
        let own_before = f64::from(e.mean_loss(&job.base, &c.own)?);
        // A wild update can make the loss non-finite; that scores as no improvement.
        let loss = |samples| e.mean_loss(&after, samples).map_or(f64::NAN, f64::from);
        let (own_after, random_after) = (loss(&c.own), loss(&job.random));
        out.push((c.uid, Losses { own_before, own_after, random_before, random_after }));
    }
    Ok(out)
}
