//! Settling a window on the validators' agreed set (docs/protocol.md §16): read the witnesses'
//! signed gather records, decide, and when the agreed set is not the one this node applied,
//! re-apply the window from its base with the agreed payloads, taking any it lacks by content
//! id from the validators' mirrors, never again from the miner's server. Also what validators
//! publish for it (mirrors and records), and checkpoints taken only when a stake majority's
//! records vouch for them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferrum_chain::{Chain, ChainError};
use ferrum_common::agreement::{self, Decision, PayloadId};
use ferrum_common::checkpoint::{self, CheckpointManifest};
use ferrum_common::gather::Peer;
use ferrum_common::model::MasterModel;
use ferrum_common::payload::{self, Expectation};
use ferrum_common::{PutWindow, Store};

use crate::record::{AcceptedPayload, GatherRecord};
use crate::retry::{Backoff, retry};
use crate::sync::{Agreement, Applied, Fetched, Gathered, Sync, WindowPlan};

/// Largest gather record read.
const RECORD_CAP: u64 = 1 << 20;
/// The first pause before records are read again while a window is undecided; it doubles up
/// to [`RECORD_POLL_MAX`] (every node polls every witness, so a long wait must not hammer
/// validators' buckets).
const RECORD_POLL: Duration = Duration::from_millis(250);
const RECORD_POLL_MAX: Duration = Duration::from_secs(1);
/// Checkpoints tried, newest first, before a node starts from genesis instead.
const CHECKPOINT_TRIES: usize = 16;

/// Each witness's record entries, `(uid, content id)`, by witness uid.
pub type Entries = BTreeMap<u16, Vec<(u16, PayloadId)>>;

/// What reconciling a window did: kept the node's own result, or re-applied the window.
enum Reconciled {
    Kept(Agreement),
    Reapplied(Applied),
}

/// A window a node applied with its own set while the validators' records left it open: what
/// it takes to settle it again before the next window ([`Sync::settle_again`]).
#[derive(Debug, Clone)]
pub struct Unsettled {
    pub plan: WindowPlan,
    pub gathered: Gathered,
    /// What the node's own gather did.
    pub own: Applied,
}

impl Sync {
    /// A witness's signed gather record of `window`, if it has one that checks out: signature,
    /// netuid, window, config, the signer is the validator whose bucket holds it, and its
    /// entries are well formed. Anything else is refused with a warning.
    pub async fn gather_record(&self, validator: &Peer, window: u64) -> Option<GatherRecord> {
        let store = self.peer_store(validator).ok()?;
        let bytes = store.get(&self.namespace.gather_record(window, &validator.hotkey), Some(RECORD_CAP)).await.ok()?;
        let record = match serde_json::from_slice::<GatherRecord>(&bytes) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(window, validator = validator.uid, error = %e, "gather record refused: not a v2 record");
                return None;
            }
        };
        let ours = record.netuid == self.netuid
            && record.window == window
            && record.config_hash == self.config_hash.to_string()
            && record.validator == validator.hotkey.to_ss58();
        if ours && record.verify() && record.entries().is_some() {
            return Some(record);
        }
        tracing::warn!(
            window,
            validator = validator.uid,
            "gather record refused: not signed by its validator, not for this window, or malformed"
        );
        None
    }

    /// Reads the witnesses' records of the plan's window until the agreed set is decided or
    /// `wait` has passed; returns the decision and the entries of each record read (by
    /// witness uid).
    pub async fn decide(&self, plan: &WindowPlan, wait: Duration) -> (Decision, Entries) {
        let witnesses = plan.witness_stakes();
        let gather_peers = self.config.weights.tiers.gather_peers as usize;
        let deadline = Instant::now() + wait;
        let mut entries = Entries::new();
        let mut pause = RECORD_POLL;
        loop {
            for v in &plan.witnesses {
                if !entries.contains_key(&v.uid)
                    && let Some(e) = self.gather_record(v, plan.window).await.and_then(|r| r.entries())
                {
                    entries.insert(v.uid, e);
                }
            }
            let decision = agreement::decide(&witnesses, &entries, &plan.order(), gather_peers);
            if !matches!(decision, Decision::Undecided { .. }) || Instant::now() >= deadline {
                return (decision, entries);
            }
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(RECORD_POLL_MAX);
        }
    }

    /// Settles a window this node has applied (`model` holds its own result, `own` says what
    /// it did): decides the agreed set, waiting at most `wait` for records, and re-applies the
    /// window from its base when the agreed set is not this node's own.
    pub async fn settle(
        &self,
        model: &mut MasterModel,
        plan: &WindowPlan,
        gathered: &Gathered,
        own: Applied,
        wait: Duration,
    ) -> Applied {
        let started = Instant::now();
        let settled = match self.reconcile(model, plan, gathered, wait).await {
            Reconciled::Kept(agreement) => Applied { agreement, ..own },
            Reconciled::Reapplied(applied) => applied,
        };
        Applied { settle_secs: started.elapsed().as_secs_f64(), ..settled }
    }

    /// Settles again a window the records had left open, before the next window is applied
    /// (`model` still holds this node's own result of it).
    pub async fn settle_again(&self, model: &mut MasterModel, open: Unsettled, wait: Duration) -> Applied {
        let settled = self.settle(model, &open.plan, &open.gathered, open.own, wait).await;
        tracing::info!(window = open.plan.window, agreement = ?settled.agreement, "earlier window settled");
        settled
    }

    async fn reconcile(
        &self,
        model: &mut MasterModel,
        plan: &WindowPlan,
        gathered: &Gathered,
        wait: Duration,
    ) -> Reconciled {
        if plan.witnesses.is_empty() {
            return Reconciled::Kept(Agreement::Unwitnessed);
        }
        let (decision, entries) = self.decide(plan, wait).await;
        let agreed = match decision {
            Decision::NoWitnesses => return Reconciled::Kept(Agreement::Unwitnessed),
            Decision::Undecided { read_stake, total_stake } => {
                tracing::warn!(
                    window = plan.window,
                    read_stake,
                    total_stake,
                    "the validators' records do not decide the window yet; keeping this node's own set for now"
                );
                return Reconciled::Kept(Agreement::Undecided);
            }
            Decision::Decided(set) => set,
        };
        if agreed == gathered.own {
            return Reconciled::Kept(Agreement::Confirmed);
        }
        let Some(base) = &gathered.base else {
            return Reconciled::Kept(Agreement::Unrepairable("the window's base was not kept".into()));
        };
        let mut extra = Vec::new();
        for (uid, id) in &agreed {
            if gathered.payload(*uid, id).is_some() {
                continue;
            }
            match self.mirrored(plan, &entries, *uid, id).await {
                Ok(f) => extra.push(f),
                Err(e) => {
                    tracing::warn!(window = plan.window, miner = uid, error = %e, "an agreed payload cannot be had");
                    return Reconciled::Kept(Agreement::Unrepairable(e));
                }
            }
        }
        *model = MasterModel::clone(base);
        let fetched = extra.len();
        let repaired = self.aggregate(model, plan, gathered, &agreed, &extra, Agreement::Repaired { fetched });
        tracing::info!(
            window = plan.window,
            own = ?gathered.own.iter().map(|(u, _)| *u).collect::<Vec<_>>(),
            agreed = ?repaired.accepted,
            fetched,
            "re-applied the window with the validators' agreed set"
        );
        Reconciled::Reapplied(repaired)
    }

    /// An agreed payload this node does not have, from the mirror of a witness whose record
    /// lists it (largest stake first), checked in full and against its content id.
    async fn mirrored(
        &self,
        plan: &WindowPlan,
        entries: &Entries,
        uid: u16,
        id: &PayloadId,
    ) -> Result<Fetched, String> {
        let peer = plan.candidate(uid).ok_or_else(|| format!("uid {uid} is not a candidate"))?;
        let expect = Expectation {
            netuid: self.netuid,
            window: plan.window,
            uid,
            hotkey: &peer.hotkey,
            config_hash: &self.config_hash,
        };
        let mut holders: Vec<&Peer> =
            plan.witnesses.iter().filter(|v| entries.get(&v.uid).is_some_and(|e| e.contains(&(uid, *id)))).collect();
        holders.sort_by_key(|v| std::cmp::Reverse(v.stake));
        let key = self.namespace.mirror(plan.window, id);
        let mut last = String::from("no witness lists it");
        for v in holders {
            let Ok(store) = self.peer_store(v) else { continue };
            let quick = Backoff { first: Duration::from_millis(250), max: Duration::from_secs(2), attempts: 3 };
            match retry("mirrored payload", quick, || payload::fetch(&store, &key, &self.layout, &expect)).await {
                Ok((info, payload, bytes)) if payload.hash == *id => return Ok(Fetched { info, payload, bytes }),
                Ok(_) => last = format!("validator {}'s mirror holds other content", v.uid),
                Err(e) => last = format!("validator {}'s mirror: {e}", v.uid),
            }
        }
        Err(last)
    }

    /// A validator's part: copies every payload it accepted into its own bucket under its
    /// content id, then publishes its signed record naming them (mirrors first, so every entry
    /// of a record can be fetched). Drops its mirrors of `window − keep` and older.
    pub async fn publish_record(
        &self,
        store: &Store,
        key: &ferrum_chain::Keypair,
        gathered: &Gathered,
        applied: &Applied,
        base_fingerprint: &str,
        keep: u64,
    ) {
        let window = gathered.window;
        for (uid, id) in &gathered.own {
            if let Some(f) = gathered.payload(*uid, id)
                && let Err(e) = store.put(&self.namespace.mirror(window, id), f.bytes.clone()).await
            {
                tracing::warn!(window, miner = uid, error = %e, "cannot mirror an accepted payload");
            }
        }
        let record = GatherRecord {
            netuid: self.netuid,
            window,
            config_hash: self.config_hash.to_string(),
            validator: key.hotkey().to_ss58(),
            base_fingerprint: base_fingerprint.to_string(),
            accepted: gathered
                .own
                .iter()
                .map(|(uid, id)| AcceptedPayload { uid: *uid, payload: hex::encode(id) })
                .collect(),
            skipped: gathered.skipped.iter().map(|(u, s)| (*u, s.to_string())).collect(),
            fingerprint: applied.fingerprint.to_string(),
            signature: String::new(),
        }
        .sign(key);
        match serde_json::to_vec_pretty(&record) {
            Ok(json) => {
                if let Err(e) = store.put(&self.namespace.gather_record(window, &key.hotkey()), json.into()).await {
                    tracing::warn!(window, error = %e, "cannot publish the gather record");
                }
            }
            Err(e) => tracing::warn!(window, error = %e, "cannot serialize the gather record"),
        }
        if let Some(old) = window.checked_sub(keep)
            && let Ok(objects) = store.list(&self.namespace.mirrors_of(old)).await
        {
            for o in objects {
                let _ = store.delete(&o.key).await;
            }
        }
    }

    /// The newest checkpoint a node with no state can start from: published by a witness of
    /// the last window, not after the current window, fully verified, and vouched for by the
    /// records of the window after it (witnesses holding more than half the stake name its
    /// fingerprint as their base). `Ok(None)` when there is none; chain errors are returned (a
    /// transient one must be retried, not read as "no checkpoint").
    pub async fn newest_checkpoint(
        &self,
        chain: &impl Chain,
    ) -> Result<Option<(MasterModel, CheckpointManifest)>, ChainError> {
        let head = chain.best_block().await?.number;
        let current = self.schedule.window_of(head);
        // The last window whose boundary block exists.
        let Some(window) = current.checked_sub(1) else { return Ok(None) };
        let plan = self.plan(chain, window, PutWindow { opens_ms: 0, closes_ms: 0 }).await?;
        let mut found: Vec<(u64, &Peer, Store)> = Vec::new();
        for v in &plan.witnesses {
            let Ok(store) = self.peer_store(v) else { continue };
            match checkpoint::windows(&store, &self.namespace).await {
                Ok(ws) => found.extend(ws.into_iter().filter(|w| *w < current).map(|w| (w, v, store.clone()))),
                Err(e) => tracing::warn!(validator = v.uid, error = %e, "cannot list checkpoints"),
            }
        }
        found.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.stake.cmp(&a.1.stake)));
        // A witness can list any number of checkpoints; each costs a manifest and the next
        // window's records to check, so only the newest few are tried.
        for (w, v, store) in found.into_iter().take(CHECKPOINT_TRIES) {
            // The small manifest first: its fingerprint must be vouched for before gigabytes of
            // tensors are fetched (loading then checks the tensors give that fingerprint).
            let refused = |e: &dyn std::fmt::Display| {
                tracing::warn!(window = w, validator = v.uid, error = %e, "checkpoint refused");
            };
            let manifest = match checkpoint::load_manifest(&store, &self.namespace, &self.config, w).await {
                Ok(m) => m,
                Err(e) => {
                    refused(&e);
                    continue;
                }
            };
            if !self.vouched(chain, head, w, &manifest.fingerprint).await? {
                refused(&"no stake majority of validators built on its model");
                continue;
            }
            match checkpoint::load_tensors(&store, &manifest.tensors_key, &manifest, &self.config).await {
                Ok(model) => return Ok(Some((model, manifest))),
                Err(e) => refused(&e),
            }
        }
        Ok(None)
    }

    /// Whether witnesses of `window + 1` holding more than half its witnesses' stake published
    /// records of it whose base is `fingerprint` (the model after `window`).
    async fn vouched(&self, chain: &impl Chain, head: u64, window: u64, fingerprint: &str) -> Result<bool, ChainError> {
        let next = window.saturating_add(1);
        if self.schedule.put_window_block(next) > head {
            return Ok(false);
        }
        let plan = self.plan(chain, next, PutWindow { opens_ms: 0, closes_ms: 0 }).await?;
        let total: u128 = plan.witnesses.iter().map(|v| u128::from(v.stake)).sum();
        let mut support = 0u128;
        for v in &plan.witnesses {
            if let Some(r) = self.gather_record(v, next).await
                && r.base_fingerprint == fingerprint
            {
                support += u128::from(v.stake);
            }
        }
        Ok(agreement::majority(support, total))
    }
}
