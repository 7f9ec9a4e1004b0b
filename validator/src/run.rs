//! The validator's loop: follow the chain with the window driver (never training), apply each
//! window exactly as miners do, publish a signed gather record and periodic checkpoints, score
//! every miner with the Gauntlet once the window's random data is known, and set weights.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferrum_chain::{Chain, ChainError};
use ferrum_common::assignment::{SampleRequest, assign_samples, random_identity};
use ferrum_common::checkpoint;
use ferrum_common::codec::{self, EncodedTensor};
use ferrum_common::driver::{Action, Block, Done, Driver};
use ferrum_common::gather;
use ferrum_common::model::MasterModel;
use ferrum_common::{Hotkey, PutWindow};
use ferrum_gauntlet::rules::{self, Losses};
use ferrum_gauntlet::{Outcome, WindowInput, WindowReport};
use ferrum_node::retry::{Backoff, retry};
use ferrum_node::{
    Follower, Gathered, NodeEvent, NodeSetup, NodeState, StartError, StateDir, StateError, Sync, WindowPlan,
};
use futures::StreamExt;
use tokio::sync::watch;
use tracing::{Instrument, info, warn};

use crate::eval::{Candidate, EvalJob, EvalThread};
use crate::originality;
use crate::state::{PendingReveal, ValidatorFiles, ValidatorState, ValidatorStateError};

/// Base fingerprints remembered for sync lag.
const RECENT_BASES: usize = 8;

/// Everything a validator runs with: what every node has, and its checkpoint cadence.
pub struct ValidatorSetup {
    pub node: NodeSetup,
    /// A checkpoint every this many windows (0: none).
    pub checkpoint_every: u64,
}

impl std::ops::Deref for ValidatorSetup {
    type Target = NodeSetup;

    fn deref(&self) -> &NodeSetup {
        &self.node
    }
}

/// Why a validator stopped.
#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Files(#[from] ValidatorStateError),
    #[error("cannot start the evaluation thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot replay window {window}: {source} (start from a checkpoint instead)")]
    Replay { window: u64, source: ChainError },
    #[error("device: {0}")]
    Device(#[from] ferrum_common::train::TrainError),
}

/// A window applied and waiting for its random-data seed block to be scored.
struct Pending {
    plan: WindowPlan,
    base: Arc<MasterModel>,
    /// What this validator read in the gather (scored from, not fetched again).
    gathered: Gathered,
    /// Uids this validator accepted that the validators' agreed set left out.
    not_agreed: Vec<u16>,
}

/// Mirrored payloads are kept for this many windows (a node repairs a window at most one
/// window later; the rest is margin for slow nodes).
const MIRROR_WINDOWS: u64 = 16;
/// The longest a second read of a payload's content id may take: a stalling server delays
/// scoring by at most this, and its silence proves nothing.
const RECHECK_SECS: u64 = 5;

/// Runs the validator until `shutdown` turns true.
pub async fn run(
    setup: ValidatorSetup,
    chain: impl Chain,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ValidatorError> {
    // A device that is not there stops the node now, not at its first window.
    ferrum_common::train::device(&setup.backend)?;
    ferrum_node::cli::announce_device(&setup.metrics, &setup.backend);
    let hotkey = setup.keypair.hotkey();
    let uid = ferrum_node::join(&chain, &setup, true).await?;
    let span = tracing::info_span!("validator", uid, hotkey = %hotkey);
    let v = Validator::start(setup, uid, &chain).instrument(span.clone()).await?;
    v.run(&chain, &mut shutdown).instrument(span).await
}

struct Validator {
    setup: ValidatorSetup,
    uid: u16,
    hotkey: Hotkey,
    sync: Sync,
    state_dir: StateDir,
    node: NodeState,
    files: ValidatorFiles,
    state: ValidatorState,
    eval: EvalThread,
    pending: Vec<Pending>,
    /// The last window, when the validators' records had not decided it in time.
    unsettled: Option<ferrum_node::Unsettled>,
    /// Uids the latest Gauntlet report keeps out of the gather set; this validator's records
    /// leave them out, so a stake majority of validators drops them from the agreed set.
    excluded: Vec<u16>,
}

impl Validator {
    async fn start(setup: ValidatorSetup, uid: u16, chain: &impl Chain) -> Result<Validator, ValidatorError> {
        let hotkey = setup.keypair.hotkey();
        let sync =
            Sync::new(&setup.config, setup.netuid, *setup.dataset.id(), setup.dataset.num_samples(), setup.threads)
                .with_access(setup.peers.clone());
        let state_dir = StateDir::open(&setup.state_dir.join("model"), &setup.config, setup.netuid)?;
        let node = match state_dir.load(&setup.config).await? {
            Some(s) => s,
            None => {
                let newest = retry("newest checkpoint", Backoff::default(), || sync.newest_checkpoint(chain)).await?;
                let (base_window, global_step, model) = match newest {
                    Some((model, m)) => (m.window + 1, m.global_step, model),
                    None => (0, 0, MasterModel::genesis(&setup.config)),
                };
                NodeState { base_window, global_step, uploaded: false, model, feedback: None, optimizer: None }
            }
        };
        let files = ValidatorFiles::open(&setup.state_dir, &setup.config)?;
        let state = files.load().await?;
        info!(base_window = node.base_window, miners = state.ledger.records.len(), "validator state loaded");
        let eval = EvalThread::spawn(setup.config.clone(), setup.backend.clone()).map_err(ValidatorError::Thread)?;
        // A restart keeps what the ledger judged: harmful uids stay out of the next gather.
        let excluded = state.ledger.gather_excluded(node.base_window, &setup.config);
        Ok(Validator {
            setup,
            uid,
            hotkey,
            sync,
            state_dir,
            node,
            files,
            state,
            eval,
            pending: Vec::new(),
            unsettled: None,
            excluded,
        })
    }

    async fn run(mut self, chain: &impl Chain, shutdown: &mut watch::Receiver<bool>) -> Result<(), ValidatorError> {
        let cfg = &self.setup.config;
        let mut driver = Driver::new(self.sync.schedule, cfg.windows.put_window_secs, self.node.base_window, false);
        let mut follower = Follower::new(chain, driver.resume_from_block()).await?;
        while let Some(block) = follower.next(chain, shutdown).await? {
            driver.observe(Block { number: block.number, timestamp_ms: block.timestamp_ms }, follower.head);
            // A follower driver only ever applies windows; anything else means wait.
            while let Action::Apply { window, put_opened_ms, put_closed_ms, .. } = driver.next_action() {
                let put = PutWindow { opens_ms: put_opened_ms, closes_ms: put_closed_ms };
                self.apply(chain, window, put).await?;
                driver.done(Done::Applied { window });
            }
            self.score_ready(chain, block.number).await?;
            self.reveal_if_due(chain, block.number).await;
            self.setup
                .emit(|| NodeEvent::Idle { uid: self.uid, block: driver.latest.map_or(block.number, |l| l.number) });
        }
        Ok(())
    }

    /// Applies `window` as every node does, publishes what it accepted (mirrored payloads and
    /// the signed record), settles the window on the validators' agreed set, then checkpoints.
    async fn apply(&mut self, chain: &impl Chain, window: u64, put: PutWindow) -> Result<(), ValidatorError> {
        if let Some(open) = self.unsettled.take() {
            self.sync.settle_again(&mut self.node.model, open, self.setup.record_wait).await;
        }
        let plan = retry("gather plan", Backoff::default(), || self.sync.plan(chain, window, put))
            .await
            .map_err(|source| ValidatorError::Replay { window, source })?;
        let base = Arc::new(self.node.model.clone());
        let excluded: Vec<(u16, ferrum_node::Skip)> =
            self.excluded.iter().map(|u| (*u, ferrum_node::Skip::Excluded)).collect();
        let (own, gathered) = self.sync.apply(&mut self.node.model, &plan, &excluded, Some(base.clone())).await;
        let base_fp = gathered.base_fingerprint.to_string();
        self.sync
            .publish_record(&self.setup.store, &self.setup.keypair, &gathered, &own, &base_fp, MIRROR_WINDOWS)
            .await;
        let applied =
            self.sync.settle(&mut self.node.model, &plan, &gathered, own.clone(), self.setup.record_wait).await;
        let not_agreed = applied
            .skipped
            .iter()
            .filter(|(_, s)| matches!(s, ferrum_node::Skip::NotAgreed))
            .map(|(u, _)| *u)
            .collect();
        self.node.base_window = window + 1;
        if !applied.accepted.is_empty() {
            self.node.global_step += 1;
        }
        self.state_dir.save(&self.node).await?;
        self.state.recent.insert(0, (window, base_fp.clone()));
        self.state.recent.truncate(RECENT_BASES);
        self.files.save(&self.state).await?;
        self.checkpoint(window).await;
        info!(window, agreement = ?applied.agreement, accepted = ?applied.accepted, fingerprint = &applied.fingerprint.to_string()[..16], "window applied");
        self.setup.metrics.set("ferrum_window", "The last window whose outer step this node applied.", window as f64);
        let undecided = applied.agreement == ferrum_node::Agreement::Undecided;
        self.setup.emit(|| NodeEvent::Applied { uid: self.uid, applied, model: Arc::new(self.node.model.clone()) });
        if undecided {
            self.unsettled = Some(ferrum_node::Unsettled { plan: plan.clone(), gathered: gathered.clone(), own });
        }
        self.pending.push(Pending { plan, base, gathered, not_agreed });
        Ok(())
    }

    /// A checkpoint of the model after `window` when one is due (failures are logged: the
    /// network does not depend on them to stay in sync).
    async fn checkpoint(&self, window: u64) {
        let every = self.setup.checkpoint_every;
        if every > 0 && (window + 1).is_multiple_of(every) {
            let saved = checkpoint::save(
                &self.setup.store,
                &self.sync.namespace,
                &self.sync.config_hash,
                window,
                self.node.global_step,
                &self.node.model,
            )
            .await;
            match saved {
                Ok(_) => info!(window, "checkpoint published"),
                Err(e) => warn!(window, error = %e, "cannot publish the checkpoint"),
            }
        }
    }

    /// Scores every applied window whose random-data seed block exists by `block`.
    async fn score_ready(&mut self, chain: &impl Chain, block: u64) -> Result<(), ValidatorError> {
        while let Some(p) = self.pending.first() {
            if self.sync.schedule.random_seed_block(p.plan.window) > block {
                break;
            }
            let p = self.pending.remove(0);
            let report = self.score(chain, p).await?;
            self.files.save_report(&report).await?;
            self.files.save(&self.state).await?;
            for u in &report.uids {
                self.setup.metrics.set(
                    format!("ferrum_miner_final_score{{uid=\"{}\"}}", u.uid),
                    "Gauntlet final score per miner.",
                    u.final_score,
                );
                let verdict = u.verdict.map_or("paid", |r| r.name());
                info!(window = report.window, miner = u.uid, hotkey = %u.hotkey, score = u.final_score, gradient = ?u.gradient_score, sync = u.sync, verdict, why = %u.explain(), "scored");
            }
            self.excluded = report.uids.iter().filter(|u| u.gather_excluded).map(|u| u.uid).collect();
            let report = Arc::new(report);
            self.setup.emit(|| NodeEvent::Scored { uid: self.uid, report: report.clone() });
            self.set_weights_if_due(chain, &report).await?;
        }
        Ok(())
    }

    /// The Gauntlet for one window: fetch and check every miner's payload, measure losses,
    /// find copies, then update the ledger.
    async fn score(&mut self, chain: &impl Chain, mut p: Pending) -> Result<WindowReport, ValidatorError> {
        let w = p.plan.window;
        let g = &self.setup.config.gauntlet;
        let (peers, _) = retry("metagraph", Backoff::default(), || self.sync.peers(chain, w)).await?;
        let seed_block = self.sync.schedule.random_seed_block(w);
        let seed = retry("seed block hash", Backoff::default(), || chain.block_hash(seed_block)).await?;
        let burn = self.setup.config.weights.burn_uid;
        let miners: Vec<_> = peers.into_iter().filter(|p| p.uid != self.uid && p.uid != burn && !p.validator).collect();
        let recent: Vec<[u8; 32]> = self
            .state
            .recent
            .iter()
            .filter(|(win, _)| *win <= w)
            .filter_map(|(_, fp)| hex::decode(fp).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()))
            .collect();

        let mut outcomes: BTreeMap<u16, (String, Outcome)> = BTreeMap::new();
        let mut received = Vec::new();
        for peer in &miners {
            if peer.bucket.is_none() {
                outcomes.insert(
                    peer.uid,
                    (
                        peer.hotkey.to_ss58(),
                        Outcome::Missing { reason: "no bucket commitment".into(), uploaded: false },
                    ),
                );
                continue;
            }
            if p.not_agreed.contains(&peer.uid) {
                let reason = ferrum_node::Skip::NotAgreed.to_string();
                outcomes.insert(peer.uid, (peer.hotkey.to_ss58(), Outcome::Missing { reason, uploaded: true }));
                continue;
            }
            // What the gather read is scored; the miner's server is not asked again.
            let fetched = match p.gathered.fetched.remove(&peer.uid) {
                Some(r) => r,
                None => self.sync.fetch(peer, w, &p.plan.put).await,
            };
            match fetched {
                Ok(f) => received.push((peer.clone(), f.info.last_modified_ms, f.payload)),
                Err(skip) => {
                    let outcome = match skip {
                        ferrum_node::Skip::Invalid(r) => Outcome::Invalid { reason: r.to_string() },
                        other => {
                            let uploaded =
                                matches!(other, ferrum_node::Skip::TooEarly { .. } | ferrum_node::Skip::TooLate { .. });
                            Outcome::Missing { reason: other.to_string(), uploaded }
                        }
                    };
                    outcomes.insert(peer.uid, (peer.hotkey.to_ss58(), outcome));
                }
            }
        }

        // A miner's server must keep serving what it served: read each payload's content id
        // once more, now that the put window is long closed. Other bytes there (an overwrite,
        // noise, a different signed payload) zero the miner; no answer is no evidence.
        let within = std::time::Duration::from_secs(self.setup.config.storage.timeout_secs.min(RECHECK_SECS));
        let rechecks: Vec<_> =
            received.iter().map(|(peer, _, p)| self.sync.recheck(peer, w, &p.hash, within)).collect();
        let rechecks: Vec<ferrum_node::Recheck> = futures::stream::iter(rechecks).buffered(8).collect().await;
        let mut kept = Vec::with_capacity(received.len());
        for ((peer, t, payload), recheck) in received.into_iter().zip(rechecks) {
            match recheck {
                ferrum_node::Recheck::Changed(why) => {
                    let reason = format!("its server changed the payload after serving it ({why})");
                    warn!(window = w, miner = peer.uid, hotkey = %peer.hotkey, %reason, "payload changed");
                    outcomes.insert(peer.uid, (peer.hotkey.to_ss58(), Outcome::Invalid { reason }));
                }
                _ => kept.push((peer, t, payload)),
            }
        }
        let mut received = kept;

        // Originality: uploads that are the same update, or overlap heavily. Which of a pair is
        // the copy is decided once losses are known (`originality::attribute_copies`).
        let ks: Vec<usize> = self.sync.layout.spec.tensors.iter().map(|(_, g)| g.k).collect();
        let uploads: Vec<_> = received.iter().map(|(peer, t, p)| ((peer.uid, *t), p.tensors.as_slice())).collect();
        let alike = ferrum_node::cpu::heavy(|| originality::alike_pairs(&uploads, &ks, &g.copy));
        let in_identical_pair: std::collections::BTreeSet<u16> =
            alike.iter().filter(|p| p.identical).flat_map(|p| [p.a.0, p.b.0]).collect();

        // Losses, in an order miners cannot know before their upload was due.
        let (rand_uid, rand_hotkey) = random_identity(&seed);
        let req = SampleRequest {
            dataset: self.setup.dataset.id(),
            netuid: self.setup.netuid,
            window: w,
            uid: rand_uid,
            hotkey: &rand_hotkey,
        };
        let random_idx = assign_samples(&req, u64::from(g.random_eval_samples), self.setup.dataset.num_samples())
            .unwrap_or_default();
        let random = self.read(&random_idx).await;
        received.sort_by_key(|(peer, _, _)| gather::tie_break(&seed, peer.uid));
        let lags: BTreeMap<u16, Option<u64>> =
            received.iter().map(|(peer, _, p)| (peer.uid, rules::lag(&p.header.base_fingerprint, &recent))).collect();
        // Scored as the aggregate would apply it: clipped, tensor by tensor, to the median norm
        // of the window's in-sync updates (§7.4); an update scaled up earns nothing for it.
        let in_sync: Vec<&[EncodedTensor]> = received
            .iter()
            .filter(|(peer, _, _)| lags[&peer.uid] == Some(0))
            .map(|(_, _, p)| p.tensors.as_slice())
            .collect();
        let medians = median_norms(&in_sync, self.sync.layout.spec.tensors.len());
        // Who is evaluated: those kept waiting first, then the window's order (§14).
        let hotkeys: Vec<(u16, String)> = received.iter().map(|(p, _, _)| (p.uid, p.hotkey.to_ss58())).collect();
        let order: Vec<u16> = hotkeys.iter().map(|(u, _)| *u).collect();
        let history = self.state.ledger.last_evaluated(hotkeys.iter().map(|(u, h)| (*u, h.as_str())));
        let selection = ferrum_gauntlet::selection::for_evaluation(
            &order,
            &history,
            w,
            g.uids_per_window as usize,
            u64::from(g.max_eval_gap),
        );
        if selection.evaluated.len() < order.len() {
            info!(
                window = w,
                evaluated = selection.evaluated.len(),
                received = order.len(),
                due = selection.due,
                "more uploads than uids_per_window: the due first, then the window's order"
            );
        }
        let chosen: std::collections::BTreeSet<u16> = selection.evaluated.into_iter().collect();
        let mut candidates = Vec::new();
        for (peer, _, payload) in received.iter().filter(|(peer, _, _)| chosen.contains(&peer.uid)) {
            let assigned = self.sync.assigned(w, peer.uid, &peer.hotkey);
            let own = self.read(&assigned[..assigned.len().min(g.own_eval_samples as usize)]).await;
            if !own.is_empty() && !random.is_empty() {
                // Not one of two identical updates (a copy would be its own original's control).
                let identical = in_identical_pair.contains(&peer.uid);
                let may_reference =
                    lags[&peer.uid] == Some(0) && !identical && !originality::is_empty_update(&payload.tensors);
                let tensors = clipped(&payload.tensors, &medians);
                let m = (g.order_eval_samples as usize).min(own.len());
                let shuffled = ferrum_gauntlet::order::shuffled(&own[..m], &seed, peer.uid);
                candidates.push(Candidate { uid: peer.uid, tensors, own, shuffled, may_reference });
            }
        }
        let losses: BTreeMap<u16, Losses> = if candidates.is_empty() {
            BTreeMap::new()
        } else {
            match self
                .eval
                .measure(EvalJob {
                    base: p.base.clone(),
                    random,
                    candidates,
                    reference_peers: g.binary_reference_peers as usize,
                })
                .await
            {
                Ok(l) => l.into_iter().collect(),
                Err(e) => {
                    warn!(window = w, error = %e, "loss evaluation failed; scoring without losses");
                    BTreeMap::new()
                }
            }
        };
        let hotkeys: BTreeMap<u16, String> = hotkeys.into_iter().collect();
        let copies = originality::attribute_copies(&mut self.state.copy_evidence, &alike, &losses, &hotkeys);
        for (peer, _, _) in &received {
            let outcome = Outcome::Received {
                losses: losses.get(&peer.uid).cloned(),
                lag: lags[&peer.uid],
                copy_of: copies.get(&peer.uid).copied(),
            };
            outcomes.insert(peer.uid, (peer.hotkey.to_ss58(), outcome));
        }
        let input = WindowInput { window: w, global_step: self.node.global_step, miners: outcomes };
        Ok(self.state.ledger.update(&input, &self.setup.config))
    }

    /// Reads samples; a failure leaves them out (the loss evaluation then skips the miner).
    async fn read(&self, indices: &[u64]) -> Vec<Vec<u32>> {
        match retry("reading samples", Backoff::default(), || self.setup.dataset.samples(indices)).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot read evaluation samples");
                Vec::new()
            }
        }
    }

    /// Sets (or commits) the report's weights when this window ends a weights slot.
    async fn set_weights_if_due(&mut self, chain: &impl Chain, report: &WindowReport) -> Result<(), ValidatorError> {
        let every = u64::from(self.setup.config.weights.windows_per_weights.max(1));
        let w = report.window;
        let slot = w / every;
        if !(w + 1).is_multiple_of(every) || self.state.last_weights_slot.is_some_and(|s| s >= slot) {
            return Ok(());
        }
        // Recorded before submitting: a crash in between skips a slot rather than setting twice.
        self.state.last_weights_slot = Some(slot);
        self.files.save(&self.state).await?;
        let netuid = self.setup.netuid;
        let params = retry("subnet params", Backoff::default(), || chain.subnet_params(netuid)).await?;
        let weights: Vec<(u16, f64)> = report.weights.iter().map(|(u, w)| (*u, *w)).collect();
        let (uids, values) = match ferrum_chain::weights::to_u16(&weights, params.max_weight_limit) {
            Ok(v) => v,
            Err(e) => {
                warn!(window = w, error = %e, "no weights to set");
                return Ok(());
            }
        };
        let version = self.setup.config.weights.version_key;
        let key = &self.setup.keypair;
        let result = if params.commit_reveal && params.timelocked_commits {
            // The chain decrypts these at the drand round and applies them: nothing to reveal.
            chain.commit_timelocked_weights(key, netuid, &uids, &values, version).await.map(|round| {
                info!(window = w, reveal_round = round, "weights committed, timelocked to a drand round");
            })
        } else if params.commit_reveal {
            let salt: Vec<u16> = key.sign(&[b"ferrum weights salt".as_slice(), &w.to_le_bytes()].concat())[..16]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            let hash = ferrum_chain::commit_reveal::commit_hash(&self.hotkey, netuid, &uids, &values, &salt, version);
            let head = retry("best block", Backoff::default(), || chain.best_block()).await?.number;
            let r = chain.commit_weights(key, netuid, hash).await;
            if r.is_ok() {
                // The commit lands in the block after the head.
                let epoch = params.epoch(netuid, head + 1);
                self.state.pending_reveals.push(PendingReveal { uids, values, salt, epoch });
            }
            r
        } else {
            chain.set_weights(key, netuid, &uids, &values, version).await
        };
        match result {
            Ok(()) => {
                info!(window = w, weights = ?report.weights, commit_reveal = params.commit_reveal, "weights submitted");
                self.state.last_weights = weights;
                self.files.save(&self.state).await?;
                for (u, share) in &report.weights {
                    self.setup.metrics.set(
                        format!("ferrum_miner_weight{{uid=\"{u}\"}}"),
                        "Share of the last weights per uid.",
                        *share,
                    );
                }
                self.setup.emit(|| NodeEvent::WeightsSet { uid: self.uid, window: w, weights: report.weights.clone() });
            }
            Err(e) => warn!(window = w, error = %e, "setting weights failed; the next slot tries again"),
        }
        Ok(())
    }

    /// Reveals committed weights in their reveal epoch; a commit whose epoch has passed can no
    /// longer be revealed and is dropped.
    async fn reveal_if_due(&mut self, chain: &impl Chain, block: u64) {
        if self.state.pending_reveals.is_empty() {
            return;
        }
        let netuid = self.setup.netuid;
        let Ok(params) = chain.subnet_params(netuid).await else { return };
        let now = params.epoch(netuid, block);
        let version = self.setup.config.weights.version_key;
        let mut keep = Vec::new();
        for p in std::mem::take(&mut self.state.pending_reveals) {
            let due = p.epoch + params.reveal_period_epochs;
            if now < due {
                keep.push(p);
                continue;
            }
            if now > due {
                warn!(commit_epoch = p.epoch, "a weights commit missed its reveal epoch; dropped");
                continue;
            }
            match chain.reveal_weights(&self.setup.keypair, netuid, &p.uids, &p.values, &p.salt, version).await {
                Ok(()) => info!(commit_epoch = p.epoch, "weights revealed"),
                Err(e) => warn!(error = %e, "revealing weights failed; dropping that commit"),
            }
        }
        self.state.pending_reveals = keep;
        if let Err(e) = self.files.save(&self.state).await {
            warn!(error = %e, "cannot save validator state");
        }
    }
}

/// Per tensor, the median norm of the updates (`codec::median` of `codec::norm`, as §7.4
/// clips); `None` per tensor without updates.
fn median_norms(updates: &[&[EncodedTensor]], tensors: usize) -> Vec<Option<f64>> {
    (0..tensors).map(|i| codec::median(updates.iter().filter_map(|u| u.get(i)).map(codec::norm).collect())).collect()
}

/// An update as the aggregate would apply it: each tensor scaled by its clip factor against
/// the median norm (§7.4 step 3).
fn clipped(update: &[EncodedTensor], medians: &[Option<f64>]) -> Vec<EncodedTensor> {
    update
        .iter()
        .zip(medians)
        .map(|(t, m)| match m.map(|m| codec::clip_factor(codec::norm(t), m)) {
            Some(f) if f < 1.0 => t.scaled(f),
            _ => t.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use ferrum_common::codec::Values;

    fn update(values: &[f32]) -> Vec<EncodedTensor> {
        vec![EncodedTensor { indices: (0..values.len() as u32).collect(), values: Values::Raw(values.to_vec()) }]
    }

    #[test]
    fn an_update_scaled_up_is_scored_at_the_median_norm() {
        let (a, b, big) = (update(&[3.0, 4.0]), update(&[0.0, 6.0]), update(&[30.0, 40.0]));
        let medians = median_norms(&[&a, &b, &big], 1);
        assert_eq!(medians, vec![Some(6.0)]);
        let clipped_big = clipped(&big, &medians);
        assert!((codec::norm(&clipped_big[0]) - 6.0).abs() < 1e-5, "{clipped_big:?}");
        assert_eq!(clipped(&a, &medians), a, "below the median: unchanged");
        assert_eq!(median_norms(&[&a, &big], 1), vec![Some(27.5)], "even count: mean of the middle two");
        assert_eq!(clipped(&big, &median_norms(&[], 1)), big, "no in-sync update: nothing to clip to");
    }
}
