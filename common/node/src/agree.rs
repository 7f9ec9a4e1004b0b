//! Settling a window on the validators' agreed set (docs/protocol.md §16): read the witnesses'
//! signed gather records, decide, and when the agreed set is not the one this node applied,
//! re-apply the window from its base with the agreed payloads, taking any it lacks by content
//! id from the validators' mirrors, never again from the miner's server. Also what validators
//! publish for it (mirrors and records), and checkpoints taken only when a stake majority's
//! records vouch for them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrum_chain::{Chain, ChainError};
use ferrum_common::Store;
use ferrum_common::agreement::{self, Decision, PayloadId};
use ferrum_common::checkpoint::{self, CheckpointManifest};
use ferrum_common::gather::Peer;
use ferrum_common::model::MasterModel;
use ferrum_common::payload::{self, Expectation};

use crate::record::{AcceptedPayload, GatherRecord};
use crate::retry::{Backoff, retry};
use crate::sync::{Agreement, Applied, Fetched, Gathered, Sync, WindowPlan};

/// Largest gather record read.
const RECORD_CAP: u64 = 1 << 20;
/// The first pause before records are read again while a window is undecided; it doubles up
/// to [`RECORD_POLL_MAX`] (every node polls every witness, so a long wait must not hammer
/// validators' buckets).
const RECORD_POLL: Duration = Duration::from_millis(250);
const RECORD_POLL_MAX: Duration = Duration::from_secs(4);

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
    /// `wait` has passed; returns the decision and the records read (by witness uid).
    pub async fn decide(&self, plan: &WindowPlan, wait: Duration) -> (Decision, BTreeMap<u16, GatherRecord>) {
        let witnesses = plan.witness_stakes();
        let gather_peers = self.config.weights.tiers.gather_peers as usize;
        let deadline = Instant::now() + wait;
        let mut records: BTreeMap<u16, GatherRecord> = BTreeMap::new();
        let mut pause = RECORD_POLL;
        loop {
            for v in &plan.witnesses {
                if !records.contains_key(&v.uid)
                    && let Some(r) = self.gather_record(v, plan.window).await
                {
                    records.insert(v.uid, r);
                }
            }
            let entries: BTreeMap<u16, Vec<(u16, PayloadId)>> =
                records.iter().filter_map(|(v, r)| Some((*v, r.entries()?))).collect();
            let decision = agreement::decide(&witnesses, &entries, &plan.order(), gather_peers);
            if !matches!(decision, Decision::Undecided { .. }) || Instant::now() >= deadline {
                return (decision, records);
            }
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(RECORD_POLL_MAX);
        }
    }

    /// Settles a window this node has applied (`model` holds its own result, `applied` says
    /// what it did): decides the agreed set, waiting at most `wait` for records, and re-applies
    /// the window from its base when the agreed set is not this node's own.
    pub async fn settle(
        &self,
        model: &mut MasterModel,
        plan: &WindowPlan,
        gathered: &Gathered,
        applied: Applied,
        wait: Duration,
    ) -> Applied {
        let started = Instant::now();
        let mut settled = self.settle_inner(model, plan, gathered, applied, wait).await;
        settled.settle_secs = started.elapsed().as_secs_f64();
        settled
    }

    async fn settle_inner(
        &self,
        model: &mut MasterModel,
        plan: &WindowPlan,
        gathered: &Gathered,
        applied: Applied,
        wait: Duration,
    ) -> Applied {
        if plan.witnesses.is_empty() {
            return Applied { agreement: Agreement::Unwitnessed, ..applied };
        }
        let (decision, records) = self.decide(plan, wait).await;
        let agreed = match decision {
            Decision::NoWitnesses => return Applied { agreement: Agreement::Unwitnessed, ..applied },
            Decision::Undecided { read_stake, total_stake } => {
                tracing::warn!(
                    window = plan.window,
                    read_stake,
                    total_stake,
                    "the validators' records do not decide the window yet; keeping this node's own set for now"
                );
                return Applied { agreement: Agreement::Undecided, ..applied };
            }
            Decision::Decided(set) => set,
        };
        if agreed == gathered.own {
            return Applied { agreement: Agreement::Confirmed, ..applied };
        }
        let Some(base) = &gathered.base else {
            return Applied { agreement: Agreement::Unrepairable("the window's base was not kept".into()), ..applied };
        };
        let mut extra = Vec::new();
        for (uid, id) in &agreed {
            if gathered.payload(*uid, id).is_some() {
                continue;
            }
            match self.mirrored(plan, &records, *uid, id).await {
                Ok(f) => extra.push(f),
                Err(e) => {
                    tracing::warn!(window = plan.window, miner = uid, error = %e, "an agreed payload cannot be had");
                    return Applied { agreement: Agreement::Unrepairable(e), ..applied };
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
        Applied { bytes: applied.bytes + repaired.bytes, ..repaired }
    }

    /// An agreed payload this node does not have, from the mirror of a witness whose record
    /// lists it (largest stake first), checked in full and against its content id.
    async fn mirrored(
        &self,
        plan: &WindowPlan,
        records: &BTreeMap<u16, GatherRecord>,
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
        let mut holders: Vec<&Peer> = plan
            .witnesses
            .iter()
            .filter(|v| records.get(&v.uid).and_then(GatherRecord::entries).is_some_and(|e| e.contains(&(uid, *id))))
            .collect();
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
        let plan = self.plan(chain, window, ferrum_common::PutWindow { opens_ms: 0, closes_ms: 0 }).await?;
        let mut found: Vec<(u64, Arc<Peer>)> = Vec::new();
        for v in &plan.witnesses {
            let Ok(store) = self.peer_store(v) else { continue };
            let v = Arc::new(v.clone());
            match checkpoint::windows(&store, &self.namespace).await {
                Ok(ws) => found.extend(ws.into_iter().filter(|w| *w < current).map(|w| (w, v.clone()))),
                Err(e) => tracing::warn!(validator = v.uid, error = %e, "cannot list checkpoints"),
            }
        }
        found.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.stake.cmp(&a.1.stake)));
        for (w, v) in found {
            let Ok(store) = self.peer_store(&v) else { continue };
            let (model, manifest) = match checkpoint::load(&store, &self.namespace, &self.config, w).await {
                Ok(loaded) => loaded,
                Err(e) => {
                    tracing::warn!(window = w, validator = v.uid, error = %e, "checkpoint refused");
                    continue;
                }
            };
            if self.vouched(chain, head, w, &manifest.fingerprint).await? {
                return Ok(Some((model, manifest)));
            }
            tracing::warn!(
                window = w,
                validator = v.uid,
                "checkpoint refused: no stake majority of validators built on its model"
            );
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
        let plan = retry("gather plan", Backoff::default(), || {
            self.plan(chain, next, ferrum_common::PutWindow { opens_ms: 0, closes_ms: 0 })
        })
        .await?;
        let total: u128 = plan.witnesses.iter().map(|v| u128::from(v.stake)).sum();
        let mut support = 0u128;
        for v in &plan.witnesses {
            if let Some(r) = self.gather_record(v, next).await
                && r.base_fingerprint == fingerprint
            {
                support += u128::from(v.stake);
            }
        }
        Ok(total > 0 && 2 * support > total)
    }
}
