//! Loss measurements for the Gauntlet, on one evaluation thread (like the trainer, the model
//! code keeps its buffers on the thread that uses them).

use std::collections::BTreeSet;
use std::sync::Arc;

use ferrum_common::SubnetConfig;
use ferrum_common::codec::{CodecSpec, EncodedTensor, dct, decode_into};
use ferrum_common::model::MasterModel;
use ferrum_common::train::{self, Evaluator, TrainError};
use ferrum_gauntlet::rules::{self, Losses, OrderLosses, Reference};
use tokio::sync::oneshot;

/// One miner to measure: its decoded update and a sample of its own assigned data.
pub struct Candidate {
    pub uid: u16,
    pub tensors: Vec<EncodedTensor>,
    pub own: Vec<Vec<u32>>,
    /// The first of `own` with their tokens shuffled, for the order test (empty: not measured).
    pub shuffled: Vec<Vec<u32>>,
    /// Whether its update may serve as another miner's control: in sync, not an identical copy,
    /// not empty.
    pub may_reference: bool,
}

/// One window's measurements.
pub struct EvalJob {
    /// The window's base model.
    pub base: Arc<MasterModel>,
    pub random: Vec<Vec<u32>>,
    pub candidates: Vec<Candidate>,
    /// Reference updates per candidate (`gauntlet.binary_reference_peers`).
    pub reference_peers: usize,
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

/// Losses before and after `θ − step·ĝ` on own and random data, per candidate, then each
/// candidate's own data under its reference peers' updates.
fn measure(e: &Evaluator, spec: &CodecSpec, step: f32, job: &EvalJob) -> Reply {
    let random_before = f64::from(e.mean_loss(&job.base, &job.random)?);
    let mut bases = dct::Bases::default();
    let mut after = (*job.base).clone();
    let mut out: Vec<Losses> = Vec::with_capacity(job.candidates.len());
    for c in &job.candidates {
        apply(&mut after, &job.base, &c.tensors, spec, step, &mut bases);
        // The own samples the order test shuffled are measured apart, so that test compares
        // the same samples in order and shuffled at no extra cost.
        let m = c.shuffled.len().min(c.own.len());
        let (head, tail) = c.own.split_at(m);
        let before = |samples: &[Vec<u32>]| -> Result<f64, TrainError> {
            if samples.is_empty() { Ok(0.0) } else { e.mean_loss(&job.base, samples).map(f64::from) }
        };
        // A wild update can make the loss non-finite; that scores as no improvement.
        let loss = |samples: &[Vec<u32>]| {
            if samples.is_empty() { 0.0 } else { e.mean_loss(&after, samples).map_or(f64::NAN, f64::from) }
        };
        let mean = |h: f64, t: f64| (h * head.len() as f64 + t * tail.len() as f64) / c.own.len().max(1) as f64;
        let (head_before, tail_before) = (before(head)?, before(tail)?);
        let (head_after, tail_after) = (loss(head), loss(tail));
        let order = (m > 0).then(|| -> Result<OrderLosses, TrainError> {
            let shuffled = &c.shuffled[..m];
            Ok(OrderLosses {
                ordered_before: head_before,
                ordered_after: head_after,
                shuffled_before: before(shuffled)?,
                shuffled_after: loss(shuffled),
            })
        });
        out.push(Losses {
            own_before: mean(head_before, tail_before),
            own_after: mean(head_after, tail_after),
            random_before,
            random_after: loss(&job.random),
            references: Vec::new(),
            order: order.transpose()?,
        });
    }

    // Controls are chosen once every update's random-data loss is known: only updates that
    // help.
    let order: Vec<u16> = job.candidates.iter().map(|c| c.uid).collect();
    let eligible: BTreeSet<u16> = job
        .candidates
        .iter()
        .zip(&out)
        .filter(|(c, l)| c.may_reference && l.gradient_score() > 0.0)
        .map(|(c, _)| c.uid)
        .collect();
    let plan = rules::references(&order, &eligible, job.reference_peers);
    for (j, c) in job.candidates.iter().enumerate() {
        let users: Vec<usize> =
            plan.iter().enumerate().filter(|(_, (_, r))| r.contains(&c.uid)).map(|(i, _)| i).collect();
        if users.is_empty() {
            continue;
        }
        apply(&mut after, &job.base, &c.tensors, spec, step, &mut bases);
        let random_after = out[j].random_after;
        for i in users {
            let own_after = e.mean_loss(&after, &job.candidates[i].own).map_or(f64::NAN, f64::from);
            out[i].references.push(Reference { uid: c.uid, own_after, random_after });
        }
    }
    Ok(order.into_iter().zip(out).collect())
}

/// `after = base − step · decode(update)`, in place.
fn apply(
    after: &mut MasterModel,
    base: &MasterModel,
    update: &[EncodedTensor],
    spec: &CodecSpec,
    step: f32,
    bases: &mut dct::Bases,
) {
    let mut decoded = Vec::new();
    for ((t, b), (enc, (_, g))) in after.tensors.iter_mut().zip(&base.tensors).zip(update.iter().zip(&spec.tensors)) {
        decoded.resize(g.numel(), 0.0);
        decode_into(enc, g, spec, bases, &mut decoded);
        for ((x, &x0), &u) in t.iter_mut().zip(b).zip(&decoded) {
            *x = x0 - step * u;
        }
    }
}
