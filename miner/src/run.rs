//! The miner's window loop: an executor of the window driver's actions
//! (`ferrum_common::driver`). Train on the assigned samples, upload the signed payload in the
//! put window, gather and apply the window like every other node, and persist all of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use ferrum_chain::{BlockInfo, Chain, ChainError};
use ferrum_common::assignment::samples_digest;
use ferrum_common::codec::{EncodedTensor, dct, encode, synthetic_delta};
use ferrum_common::driver::{Action, Block, Done, Driver, Phase};
use ferrum_common::model::MasterModel;
use ferrum_common::payload::{self, PayloadHeader, PayloadLayout};
use ferrum_common::{Hotkey, PutWindow, Store};
use ferrum_node::retry::{Backoff, retry};
use ferrum_node::{Follower, NodeEvent, NodeSetup, NodeState, StartError, StateDir, StateError, Sync};
use tokio::sync::watch;
use tracing::{Instrument, info, warn};

use crate::adversary::{Behaviour, garbage, shuffle_tokens};
use crate::trainer::{TrainJob, TrainerThread};

/// Everything a miner runs with: what every node has, and how it behaves.
pub struct MinerSetup {
    pub node: NodeSetup,
    /// Always `Honest` in production; the devnet's adversaries cheat (`adversary`).
    pub behaviour: Behaviour,
}

impl std::ops::Deref for MinerSetup {
    type Target = NodeSetup;

    fn deref(&self) -> &NodeSetup {
        &self.node
    }
}

/// Why a miner stopped.
#[derive(Debug, thiserror::Error)]
pub enum MinerError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot start the training thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot replay window {window}: {source} (start from a checkpoint instead)")]
    Replay { window: u64, source: ChainError },
    #[error("device: {0}")]
    Device(#[from] ferrum_common::train::TrainError),
    #[error("dataset: {0}")]
    Data(#[from] ferrum_common::data::DataError),
}

/// A window's trained, encoded update, waiting for the put window.
struct Pending {
    window: u64,
    encoded: Vec<EncodedTensor>,
    samples: Vec<u64>,
}

/// Runs the miner until `shutdown` turns true (or the chain's block stream ends).
pub async fn run(setup: MinerSetup, chain: impl Chain, mut shutdown: watch::Receiver<bool>) -> Result<(), MinerError> {
    // A device that is not there stops the node now, not at its first window.
    ferrum_common::train::device(&setup.backend)?;
    ferrum_node::cli::announce_device(&setup.metrics, &setup.backend);
    let hotkey = setup.keypair.hotkey();
    let uid = ferrum_node::join(&chain, &setup, false).await?;
    let span = tracing::info_span!("miner", uid, hotkey = %hotkey);
    Miner::start(setup, uid, &chain).instrument(span.clone()).await?.run(&chain, &mut shutdown).instrument(span).await
}

struct Miner {
    setup: MinerSetup,
    uid: u16,
    hotkey: Hotkey,
    sync: Sync,
    state_dir: StateDir,
    state: NodeState,
    trainer: TrainerThread,
    pending: Option<Pending>,
    /// Saved optimizer state for the training thread's first job.
    restore: Option<Vec<u8>>,
    /// The previous payload (kept by the replay adversary only).
    last_payload: Option<Vec<u8>>,
    /// The last window, when the validators' records had not decided it in time.
    unsettled: Option<ferrum_node::Unsettled>,
    /// Uids the last decided window's agreed set left out, left out of the next gather in
    /// advance (`ferrum_node::left_out`).
    left_out: Vec<(u16, ferrum_node::Skip)>,
}

impl Miner {
    async fn start(setup: MinerSetup, uid: u16, chain: &impl Chain) -> Result<Miner, MinerError> {
        let hotkey = setup.keypair.hotkey();
        let netuid = setup.netuid;
        let sync = Sync::new(&setup.config, netuid, *setup.dataset.id(), setup.dataset.num_samples(), setup.threads)
            .with_access(setup.peers.clone());
        let state_dir = StateDir::open(&setup.state_dir, &setup.config, netuid)?;
        let state = match state_dir.load(&setup.config).await? {
            Some(s) => {
                info!(base_window = s.base_window, fingerprint = %short(&s.model), "resuming from saved state");
                s
            }
            None => match retry("newest checkpoint", Backoff::default(), || sync.newest_checkpoint(chain)).await? {
                Some((model, manifest)) => {
                    info!(window = manifest.window, "no saved state: starting from the newest validator checkpoint");
                    NodeState {
                        base_window: manifest.window + 1,
                        global_step: manifest.global_step,
                        uploaded: false,
                        model,
                        feedback: None,
                        optimizer: None,
                    }
                }
                None => {
                    info!("no saved state and no checkpoint: starting from the genesis model at window 0");
                    NodeState {
                        base_window: 0,
                        global_step: 0,
                        uploaded: false,
                        model: MasterModel::genesis(&setup.config),
                        feedback: None,
                        optimizer: None,
                    }
                }
            },
        };
        let trainer = TrainerThread::spawn(setup.config.clone(), setup.backend.clone(), setup.threads)
            .map_err(MinerError::Thread)?;
        let restore = state.optimizer.clone();
        Ok(Miner {
            setup,
            uid,
            hotkey,
            sync,
            state_dir,
            state,
            trainer,
            pending: None,
            restore,
            last_payload: None,
            unsettled: None,
            left_out: Vec::new(),
        })
    }

    async fn run(mut self, chain: &impl Chain, shutdown: &mut watch::Receiver<bool>) -> Result<(), MinerError> {
        let cfg = &self.setup.config;
        let mut driver = Driver::new(self.sync.schedule, cfg.windows.put_window_secs, self.state.base_window, true);
        if self.state.uploaded {
            driver.phase = Phase::Uploaded;
        }
        let mut follower = Follower::new(chain, driver.resume_from_block()).await?;
        while let Some(block) = follower.next(chain, shutdown).await? {
            driver.observe(to_block(&block), follower.head);
            self.setup.metrics.set(
                "ferrum_windows_behind",
                "Windows between the chain's head and this node's model.",
                self.sync.schedule.window_of(follower.head).saturating_sub(driver.base_window) as f64,
            );
            loop {
                match driver.next_action() {
                    Action::Wait => {
                        let latest = driver.latest.map_or(block.number, |l| l.number);
                        self.setup.emit(|| NodeEvent::Idle { uid: self.uid, block: latest });
                        break;
                    }
                    Action::Train { window, stop_at_block } => {
                        let done = self.train(window, stop_at_block, &mut follower, &mut driver).await?;
                        driver.done(done);
                    }
                    Action::Upload { window } => {
                        let done = self.upload(window).await;
                        driver.done(done);
                    }
                    Action::Apply { window, put_opened_ms, put_closed_ms, replay } => {
                        let put = PutWindow { opens_ms: put_opened_ms, closes_ms: put_closed_ms };
                        self.apply(chain, window, put, replay).await?;
                        driver.done(Done::Applied { window });
                    }
                }
            }
        }
        Ok(())
    }

    /// Trains `window` on the training thread while following the chain, stopping the run once
    /// the chain reaches `stop_at_block`.
    async fn train(
        &mut self,
        window: u64,
        stop_at_block: u64,
        follower: &mut Follower,
        driver: &mut Driver,
    ) -> Result<Done, MinerError> {
        let samples = self.sync.assigned(window, self.uid, &self.hotkey);
        // A wrong-data adversary trains on another window's samples and claims its own.
        let trained_on = match self.setup.behaviour {
            Behaviour::WrongData => self.sync.assigned(window + 1_000_003, self.uid, &self.hotkey),
            _ => samples.clone(),
        };
        let mut tokens =
            retry("reading assigned samples", Backoff::default(), || self.setup.dataset.samples(&trained_on)).await?;
        if self.setup.behaviour == Behaviour::Shuffled {
            shuffle_tokens(&mut tokens, window ^ (u64::from(self.uid) << 48));
        }
        let batch = self.setup.config.training.batch_size.max(1) as usize;
        let batches: Vec<Vec<Vec<u32>>> = tokens.chunks(batch).map(<[Vec<u32>]>::to_vec).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let job = TrainJob {
            window,
            base: Arc::new(match self.setup.behaviour {
                Behaviour::Stale => MasterModel::genesis(&self.setup.config),
                _ => self.state.model.clone(),
            }),
            first_step: window * u64::from(self.setup.config.training.inner_steps),
            batches,
            stop: stop.clone(),
            feedback: self.state.feedback.take().unwrap_or_default(),
            restore: self.restore.take(),
        };
        let training = self.trainer.train(job);
        tokio::pin!(training);
        let (feedback, result) = loop {
            tokio::select! {
                r = &mut training => break r,
                b = follower.next_quick() => match b {
                    Some(b) => {
                        driver.observe(to_block(&b), follower.head);
                        if b.number >= stop_at_block {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    // Without blocks the put window cannot be seen coming: stop in time.
                    None => stop.store(true, Ordering::Relaxed),
                },
            }
        };
        self.state.feedback = (!feedback.is_empty()).then_some(feedback);
        match result {
            Ok(o) if o.steps == 0 => {
                // Nothing trained: an empty update helps nobody and would look like everyone
                // else's empty update. Sit the window out.
                warn!(window, "no inner step finished before the put window; not uploading");
                self.state.optimizer = Some(o.optimizer);
                Ok(Done::UploadFailed { window })
            }
            Ok(o) => {
                let m = &self.setup.metrics;
                m.set(
                    "ferrum_inner_loss",
                    "Mean training loss of the last window's inner steps.",
                    f64::from(o.mean_loss),
                );
                m.set(
                    "ferrum_tokens_per_second",
                    "Training throughput of the last window.",
                    o.tokens as f64 / o.secs.max(1e-9),
                );
                m.set("ferrum_inner_steps", "Inner steps run in the last window.", o.steps as f64);
                info!(window, steps = o.steps, loss = o.mean_loss, secs = o.secs, "trained");
                self.state.optimizer = Some(o.optimizer);
                self.pending = Some(Pending { window, encoded: o.encoded, samples });
                Ok(Done::Trained { window })
            }
            Err(e) => {
                warn!(window, error = %e, "training failed; skipping this window's upload");
                Ok(Done::UploadFailed { window })
            }
        }
    }

    /// Builds, signs and uploads the pending payload of `window`, then saves the state.
    async fn upload(&mut self, window: u64) -> Done {
        let Some(p) = self.pending.take().filter(|p| p.window == window) else {
            return Done::UploadFailed { window };
        };
        let base = match self.setup.behaviour {
            Behaviour::Stale => MasterModel::genesis(&self.setup.config).fingerprint(),
            _ => ferrum_node::cpu::heavy(|| self.state.model.fingerprint()),
        };
        let header = PayloadHeader {
            netuid: self.setup.netuid,
            uid: self.uid,
            window,
            hotkey: self.hotkey,
            config_hash: self.sync.config_hash,
            base_fingerprint: base.0,
            samples_digest: samples_digest(&p.samples),
        };
        let built = if self.setup.behaviour == Behaviour::Honest {
            payload::build(&header, &p.encoded, &self.sync.layout, self.setup.keypair.pair()).map_err(|e| e.to_string())
        } else {
            self.cheat(&header, p.encoded).await
        };
        let bytes = match built {
            Ok(b) => b,
            Err(e) => {
                warn!(window, error = %e, "cannot build the payload");
                return Done::UploadFailed { window };
            }
        };
        if self.setup.behaviour == Behaviour::Late {
            tokio::time::sleep(std::time::Duration::from_millis(
                self.setup.config.windows.put_window_secs * 1000 + 1500,
            ))
            .await;
        }

        let size = bytes.len();
        let key = self.sync.namespace.payload(window, self.uid, &self.hotkey);
        let started = Instant::now();
        let body = bytes::Bytes::from(bytes);
        let quick = Backoff { attempts: 4, ..Backoff::default() };
        // The second payload a storage adversary's bucket serves in place of the first.
        let alternate = match self.setup.behaviour {
            Behaviour::LateOverwrite | Behaviour::Equivocate => {
                let layout = &self.sync.layout;
                payload::build(&header, &noise(layout, window), layout, self.setup.keypair.pair()).ok()
            }
            Behaviour::LateGarbage => Some(garbage(self.sync.layout.size(), window)),
            _ => None,
        };
        if let Some(alt) = alternate
            && let Err(e) = self.setup.store.put(&format!("{key}.alt"), alt.into()).await
        {
            warn!(window, error = %e, "cannot stage the alternate payload");
        }
        match retry("payload upload", quick, || self.setup.store.put(&key, body.clone())).await {
            Ok(()) => {
                let m = &self.setup.metrics;
                m.set("ferrum_payload_bytes", "Size of the last uploaded payload.", size as f64);
                m.set("ferrum_upload_seconds", "Time the last upload took.", started.elapsed().as_secs_f64());
                info!(window, bytes = size, key, "payload uploaded");
                self.state.uploaded = true;
                if let Err(e) = self.state_dir.save(&self.state).await {
                    warn!(window, error = %e, "cannot save state after the upload");
                }
                self.setup.emit(|| NodeEvent::Uploaded { uid: self.uid, window, bytes: size });
                Done::Uploaded { window }
            }
            Err(e) => {
                warn!(window, error = %e, "upload failed");
                Done::UploadFailed { window }
            }
        }
    }

    /// The payload bytes an adversary uploads instead of its honest one.
    async fn cheat(&mut self, header: &PayloadHeader, honest: Vec<EncodedTensor>) -> Result<Vec<u8>, String> {
        let layout = &self.sync.layout;
        let key = self.setup.keypair.pair();
        let build = |tensors: &[EncodedTensor]| payload::build(header, tensors, layout, key).map_err(|e| e.to_string());
        match &self.setup.behaviour {
            Behaviour::Honest
            | Behaviour::WrongData
            | Behaviour::Stale
            | Behaviour::Late
            | Behaviour::LateOverwrite
            | Behaviour::LateGarbage
            | Behaviour::Equivocate
            | Behaviour::Selective
            | Behaviour::Slow
            | Behaviour::Vanish
            | Behaviour::Shuffled => build(&honest),
            Behaviour::SignFlip => build(&honest.iter().map(|t| t.scaled(-1.0)).collect::<Vec<_>>()),
            Behaviour::Scaled => build(&honest.iter().map(|t| t.scaled(10.0)).collect::<Vec<_>>()),
            Behaviour::Noise => build(&noise(layout, header.window)),
            Behaviour::Zeros => build(&encoded(layout, &|_, n| vec![0.0; n])),
            Behaviour::Oversized => build(&honest).map(|mut b| {
                b.extend(std::iter::repeat_n(0u8, 4096));
                b
            }),
            Behaviour::Malformed => Ok(garbage(layout.size(), header.window)),
            Behaviour::Forged => {
                let forger = Behaviour::forger();
                let forged = PayloadHeader { hotkey: forger.hotkey(), ..header.clone() };
                let mut b = payload::build(&forged, &honest, layout, forger.pair()).map_err(|e| e.to_string())?;
                b[24..56].copy_from_slice(self.hotkey.as_bytes());
                Ok(b)
            }
            Behaviour::Replay => {
                // Uploads last window's payload, and keeps this one for next time.
                let current = build(&honest)?;
                Ok(self.last_payload.replace(current.clone()).unwrap_or(current))
            }
            Behaviour::Copier { victim } | Behaviour::NearCopy { victim } => {
                let store = Store::open(&victim.bucket, &self.setup.config.storage).map_err(|e| e.to_string())?;
                let key = self.sync.namespace.payload(header.window, victim.uid, &victim.hotkey);
                // The victim uploads when the put window opens; wait for it.
                for _ in 0..100 {
                    if let Ok(bytes) = store.get(&key, Some(layout.size() as u64)).await {
                        let copied = payload::parse_unverified(&bytes, layout).map_err(|r| r.to_string())?;
                        if matches!(self.setup.behaviour, Behaviour::NearCopy { .. }) {
                            return build(&perturbed(&copied.tensors, header.window));
                        }
                        return build(&copied.tensors);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(format!("nothing to copy from uid {}", victim.uid))
            }
        }
    }

    /// Gathers and applies `window`, then saves the new base.
    async fn apply(&mut self, chain: &impl Chain, window: u64, put: PutWindow, replay: bool) -> Result<(), MinerError> {
        // A window the records left open last time is settled first: they have had a window
        // to appear, and this one must be gathered on the agreed base.
        if let Some(open) = self.unsettled.take() {
            self.sync.settle_again(&mut self.state.model, open, self.setup.record_wait).await;
        }
        let plan = retry("gather plan", Backoff::default(), || self.sync.plan(chain, window, put))
            .await
            .map_err(|source| MinerError::Replay { window, source })?;
        let (own, gathered) = self.sync.apply(&mut self.state.model, &plan, &self.left_out, None).await;
        let applied =
            self.sync.settle(&mut self.state.model, &plan, &gathered, own.clone(), self.setup.record_wait).await;
        self.left_out = ferrum_node::left_out(&applied);
        if applied.agreement == ferrum_node::Agreement::Undecided {
            self.unsettled = Some(ferrum_node::Unsettled { plan, gathered, own });
        }
        self.state.base_window = window + 1;
        self.state.uploaded = false;
        if !applied.accepted.is_empty() {
            self.state.global_step += 1;
        }
        self.pending = None;
        self.state_dir.save(&self.state).await?;
        let m = &self.setup.metrics;
        m.set("ferrum_window", "The last window whose outer step this node applied.", window as f64);
        m.set("ferrum_peers_gathered", "Payloads aggregated in the last window.", applied.accepted.len() as f64);
        m.set(
            "ferrum_agreement_seconds",
            "Time the last window took to settle on the validators' agreed set.",
            applied.settle_secs,
        );
        if matches!(applied.agreement, ferrum_node::Agreement::Repaired { .. }) {
            m.add("ferrum_windows_repaired_total", "Windows re-applied with the validators' agreed set.", 1.0);
        }
        m.set("ferrum_payload_bytes_gathered", "Payload bytes downloaded in the last window.", applied.bytes as f64);
        for (peer, why) in &applied.skipped {
            m.add(
                format!("ferrum_peers_skipped_total{{reason=\"{}\"}}", why.kind()),
                "Payloads skipped, by reason.",
                1.0,
            );
            info!(window, peer, reason = %why, "payload skipped");
        }
        let fp = applied.fingerprint.to_string();
        m.set(
            "ferrum_model_fingerprint_prefix",
            "First 6 hex digits of the model fingerprint, as a number.",
            u32::from_str_radix(&fp[..6], 16).map_or(0.0, f64::from),
        );
        info!(
            window,
            replay,
            agreement = ?applied.agreement,
            accepted = ?applied.accepted,
            skipped = applied.skipped.len(),
            fingerprint = &fp[..16],
            "window applied"
        );
        self.setup.emit(|| NodeEvent::Applied { uid: self.uid, applied, model: Arc::new(self.state.model.clone()) });
        Ok(())
    }
}

/// `update` with each tensor scaled by its own factor in [0.999, 1.001], seeded by the window.
fn perturbed(update: &[EncodedTensor], window: u64) -> Vec<EncodedTensor> {
    let bytes = garbage(update.len() * 2, window);
    update
        .iter()
        .zip(bytes.chunks_exact(2))
        .map(|(t, b)| t.scaled(1.0 + 1e-3 * (f32::from(u16::from_le_bytes([b[0], b[1]])) / 32_767.5 - 1.0)))
        .collect()
}

/// Each tensor of the layout encoded from `values(tensor index, element count)`.
fn encoded(layout: &PayloadLayout, values: &dyn Fn(usize, usize) -> Vec<f32>) -> Vec<EncodedTensor> {
    let mut bases = dct::Bases::default();
    layout
        .spec
        .tensors
        .iter()
        .enumerate()
        .map(|(i, (_, g))| encode(&values(i, g.numel()), g, &layout.spec, &mut bases))
        .collect()
}

/// The noise adversary's update for a window: random values of the right shapes, ×100.
fn noise(layout: &PayloadLayout, window: u64) -> Vec<EncodedTensor> {
    let seed = window.wrapping_mul(7919);
    encoded(layout, &|i, n| synthetic_delta(n, seed + i as u64).into_iter().map(|v| v * 100.0).collect())
}

fn to_block(b: &BlockInfo) -> Block {
    Block { number: b.number, timestamp_ms: b.timestamp_ms }
}

fn short(m: &MasterModel) -> String {
    m.fingerprint().to_string()[..16].to_string()
}
