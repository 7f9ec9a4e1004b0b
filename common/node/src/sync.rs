//! Gathering and applying one window's payloads: what every honest node does identically, so
//! that all of them hold the same model afterwards (docs/protocol.md §13).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use ferrum_chain::{Chain, ChainError};
use ferrum_common::assignment::{SampleRequest, assign_samples, samples_digest};
use ferrum_common::codec::{AggregateError, EncodedTensor, aggregate_and_step};
use ferrum_common::gather::{self, GatherRules, Peer, Verdict};
use ferrum_common::keys::Namespace;
use ferrum_common::model::{Fingerprint, MasterModel};
use ferrum_common::payload::{self, Expectation, FetchError, Payload, PayloadLayout, Rejection};
use ferrum_common::{ConfigHash, DatasetId, Freshness, ObjectInfo, PutWindow, Store, SubnetConfig, WindowSchedule};
use futures::StreamExt;

use crate::record::GatherRecord;
use crate::retry::{Backoff, retry};

/// Peers' payloads fetched at once.
const FETCH_CONCURRENCY: usize = 8;

/// Why a candidate's payload was not aggregated. Every node that sees the same objects gives
/// the same reason, except [`Unreachable`](Skip::Unreachable), which is about this node's view.
#[derive(Debug, Clone, PartialEq)]
pub enum Skip {
    /// No object at the payload's key.
    Missing,
    /// The bucket could not be read (network, credentials); a retry may help.
    Unreachable(String),
    /// The bytes were refused by the parser: size, signature, header, body.
    Invalid(Rejection),
    /// Uploaded before the put window opened.
    TooEarly { by_ms: u64 },
    /// Uploaded after the put window closed.
    TooLate { by_ms: u64 },
    /// Trained from another model than the window's base.
    StaleBase { claimed: Fingerprint },
    /// Claims other samples than the miner was assigned.
    WrongSamples,
    /// The same update as an earlier candidate's (a copy re-signed under another hotkey): one
    /// update counts once in the aggregate.
    Duplicate { of: u16 },
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::Missing => write!(f, "missing: no payload uploaded"),
            Skip::Unreachable(e) => write!(f, "unreachable: {e}"),
            Skip::Invalid(r) => write!(f, "invalid: {r}"),
            Skip::TooEarly { by_ms } => write!(f, "early: uploaded {by_ms} ms before the put window opened"),
            Skip::TooLate { by_ms } => write!(f, "late: uploaded {by_ms} ms after the put window closed"),
            Skip::StaleBase { claimed } => write!(f, "stale: trained from model {}", &claimed.to_string()[..16]),
            Skip::WrongSamples => write!(f, "wrong samples: the digest is not of its assigned samples"),
            Skip::Duplicate { of } => write!(f, "duplicate: the same update as uid {of}, earlier in the gather order"),
        }
    }
}

impl Skip {
    /// A short name for metrics and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Skip::Missing => "missing",
            Skip::Unreachable(_) => "unreachable",
            Skip::Invalid(_) => "invalid",
            Skip::TooEarly { .. } => "early",
            Skip::TooLate { .. } => "late",
            Skip::StaleBase { .. } => "stale",
            Skip::WrongSamples => "wrong_samples",
            Skip::Duplicate { .. } => "duplicate",
        }
    }
}

/// Who is tried for a window, in order, and when its put window was.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowPlan {
    pub window: u64,
    pub put: PutWindow,
    pub candidates: Vec<Peer>,
}

/// What applying a window did.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub window: u64,
    /// Uids aggregated, in candidate order.
    pub accepted: Vec<u16>,
    pub skipped: Vec<(u16, Skip)>,
    /// Tensors left unchanged because their aggregate failed, with why.
    pub failed_tensors: Vec<(String, AggregateError)>,
    /// The model's fingerprint after the outer step.
    pub fingerprint: Fingerprint,
    /// Payload bytes downloaded.
    pub bytes: u64,
}

/// What a node needs to gather and apply windows.
pub struct Sync {
    pub config: SubnetConfig,
    pub config_hash: ConfigHash,
    pub netuid: u16,
    pub namespace: Namespace,
    pub layout: PayloadLayout,
    pub dataset: DatasetId,
    pub dataset_samples: u64,
    pub schedule: WindowSchedule,
    /// Threads for aggregation and the outer step.
    pub threads: usize,
    stores: Mutex<HashMap<String, Store>>,
}

impl Sync {
    /// Everything derived from the config, the subnet and the dataset.
    pub fn new(config: &SubnetConfig, netuid: u16, dataset: DatasetId, dataset_samples: u64, threads: usize) -> Sync {
        let config_hash = config.hash();
        Sync {
            namespace: Namespace::new(netuid, &config_hash),
            layout: PayloadLayout::new(config),
            schedule: WindowSchedule::new(&config.windows),
            config: config.clone(),
            config_hash,
            netuid,
            dataset,
            dataset_samples,
            threads: threads.max(1),
            stores: Mutex::new(HashMap::new()),
        }
    }

    /// The samples a uid is assigned in a window (what it must train on).
    pub fn assigned(&self, window: u64, uid: u16, hotkey: &ferrum_common::Hotkey) -> Vec<u64> {
        let req = SampleRequest { dataset: &self.dataset, netuid: self.netuid, window, uid, hotkey };
        // The config and dataset were checked against each other at startup, so the count
        // always fits; an empty list only if that check was skipped.
        assign_samples(&req, self.config.samples_per_window(), self.dataset_samples).unwrap_or_default()
    }

    /// The window's gather candidates, read from the chain at the window's boundary (the put
    /// window's opening block): metagraph, that block's hash, and bucket commitments.
    pub async fn plan(&self, chain: &impl Chain, window: u64, put: PutWindow) -> Result<WindowPlan, ChainError> {
        let (peers, boundary_hash) = self.peers(chain, window).await?;
        let tiers = &self.config.weights.tiers;
        let rules = GatherRules {
            gather_peers: tiers.gather_peers as usize,
            reserve_peers: tiers.reserve_peers as usize,
            burn_uid: self.config.weights.burn_uid,
        };
        Ok(WindowPlan { window, put, candidates: gather::candidates(&peers, &boundary_hash, &rules) })
    }

    /// Every registered neuron at `window`'s boundary with its bucket (if committed by then),
    /// in uid order, and the boundary block's hash.
    pub async fn peers(&self, chain: &impl Chain, window: u64) -> Result<(Vec<Peer>, [u8; 32]), ChainError> {
        let boundary = self.schedule.put_window_block(window);
        let metagraph = chain.metagraph(self.netuid, Some(boundary)).await?;
        let boundary_hash = chain.block_hash(boundary).await?;
        let mut peers = Vec::with_capacity(metagraph.neurons.len());
        for n in &metagraph.neurons {
            // A commitment written after the boundary did not exist at it.
            let bucket = chain
                .commitment(self.netuid, &n.hotkey)
                .await?
                .filter(|c| c.block <= boundary)
                .and_then(|c| gather::parse_commitment(&c.data));
            let validator = bucket.as_ref().is_some_and(|(_, v)| *v);
            let bucket = bucket.map(|(url, _)| url);
            peers.push(Peer { uid: n.uid, hotkey: n.hotkey, incentive: n.incentive, bucket, validator });
        }
        Ok((peers, boundary_hash))
    }

    fn store(&self, url: &str) -> Result<Store, String> {
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = stores.get(url) {
            return Ok(s.clone());
        }
        let s = Store::open(url, &self.config.storage).map_err(|e| e.to_string())?;
        stores.insert(url.to_string(), s.clone());
        Ok(s)
    }

    /// Fetches and checks one candidate's payload for `plan.window` against the base model.
    /// Fetches one peer's payload for `window` and checks what needs no model: size, signature,
    /// header, body, and the upload time against the put window.
    pub async fn fetch(&self, peer: &Peer, window: u64, put: &PutWindow) -> Result<(ObjectInfo, Payload), Skip> {
        let Some(url) = &peer.bucket else { return Err(Skip::Missing) };
        let store = self.store(url).map_err(Skip::Unreachable)?;
        let key = self.namespace.payload(window, peer.uid, &peer.hotkey);
        let expect = Expectation {
            netuid: self.netuid,
            window,
            uid: peer.uid,
            hotkey: &peer.hotkey,
            config_hash: &self.config_hash,
        };
        // A reader-side outage must not make this node skip what the others accept: transient
        // storage errors are retried before the payload counts as unreachable.
        let quick = Backoff { first: Duration::from_millis(250), max: Duration::from_secs(4), attempts: 4 };
        let fetched = retry("payload fetch", quick, || payload::fetch(&store, &key, &self.layout, &expect)).await;
        let (info, p) = fetched.map_err(|e| match e {
            FetchError::Storage(s) if s.is_not_found() => Skip::Missing,
            FetchError::Storage(s) => Skip::Unreachable(s.to_string()),
            FetchError::Rejected(r) => Skip::Invalid(r),
        })?;
        match put.classify(info.last_modified_ms) {
            Freshness::OnTime => Ok((info, p)),
            Freshness::TooEarly { by_ms } => Err(Skip::TooEarly { by_ms }),
            Freshness::TooLate { by_ms } => Err(Skip::TooLate { by_ms }),
        }
    }

    /// [`fetch`](Self::fetch), then the checks that need this window's base model: the payload
    /// was trained from it, on the samples the uid was assigned.
    async fn check(
        &self,
        peer: &Peer,
        plan: &WindowPlan,
        base: &Fingerprint,
    ) -> Result<(u64, Vec<EncodedTensor>), Skip> {
        let (info, p) = self.fetch(peer, plan.window, &plan.put).await?;
        if p.header.base_fingerprint != base.0 {
            return Err(Skip::StaleBase { claimed: Fingerprint(p.header.base_fingerprint) });
        }
        if p.header.samples_digest != samples_digest(&self.assigned(plan.window, peer.uid, &peer.hotkey)) {
            return Err(Skip::WrongSamples);
        }
        Ok((info.size, p.tensors))
    }

    /// Gathers the plan's payloads, aggregates the accepted ones and applies the outer step to
    /// `model` (the window's base). With nothing accepted the model is left as it is.
    pub async fn apply(&self, model: &mut MasterModel, plan: &WindowPlan) -> Applied {
        let base = model.fingerprint();
        let gather_peers = self.config.weights.tiers.gather_peers as usize;
        // Collected first: a stream over a borrowing closure is not `Send` for every lifetime,
        // and nodes run this inside spawned tasks.
        let checks: Vec<_> = plan.candidates.iter().map(|p| self.check(p, plan, &base)).collect();
        let results: Vec<Result<(u64, Vec<EncodedTensor>), Skip>> =
            futures::stream::iter(checks).buffered(FETCH_CONCURRENCY).collect().await;
        let mut payloads: Vec<Option<(u64, Vec<EncodedTensor>)>> = Vec::with_capacity(results.len());
        let mut verdicts = Vec::with_capacity(results.len());
        for (r, peer) in results.into_iter().zip(&plan.candidates) {
            // Equal updates differ at their first indices, so this scan is cheap.
            let earlier = payloads
                .iter()
                .zip(&plan.candidates)
                .find(|(q, _)| matches!((q, &r), (Some((_, a)), Ok((_, b))) if a == b));
            if let Some((_, first)) = earlier {
                payloads.push(None);
                verdicts.push(Verdict::Rejected(Skip::Duplicate { of: first.uid }));
                tracing::info!(window = plan.window, miner = peer.uid, of = first.uid, "duplicate update skipped");
                continue;
            }
            match r {
                Ok(p) => {
                    payloads.push(Some(p));
                    verdicts.push(Verdict::Accepted);
                }
                Err(skip) => {
                    payloads.push(None);
                    verdicts.push(Verdict::Rejected(skip));
                }
            }
        }
        let (positions, skipped) = gather::select(&plan.candidates, verdicts, gather_peers);
        let mut peers: Vec<(u16, &[EncodedTensor])> = Vec::with_capacity(positions.len());
        let mut bytes = 0;
        for &i in &positions {
            if let Some((size, tensors)) = &payloads[i] {
                bytes += size;
                peers.push((plan.candidates[i].uid, tensors.as_slice()));
            }
        }
        let mut failed_tensors = Vec::new();
        if !peers.is_empty() {
            let lr = self.config.training.outer_learning_rate as f32;
            // Sizes come from the same layout as the model's; a mismatch would be a bug.
            match aggregate_and_step(&peers, &self.layout.spec, &mut model.tensors, lr, self.threads) {
                Ok(failed) => failed_tensors = failed,
                Err(e) => tracing::warn!(window = plan.window, error = %e, "nothing aggregated"),
            }
        }
        Applied {
            window: plan.window,
            accepted: peers.iter().map(|(uid, _)| *uid).collect(),
            skipped,
            failed_tensors,
            fingerprint: model.fingerprint(),
            bytes,
        }
    }
}

impl Sync {
    /// The newest checkpoint any validator has published (verified in full), to start a node
    /// that has no state of its own from; `None` when there is none, or none loads.
    pub async fn newest_checkpoint(
        &self,
        chain: &impl Chain,
    ) -> Option<(MasterModel, ferrum_common::checkpoint::CheckpointManifest)> {
        let head = chain.best_block().await.ok()?.number;
        // The last window whose boundary block exists.
        let window = self.schedule.window_of(head).checked_sub(1)?;
        let (peers, _) = self.peers(chain, window).await.ok()?;
        let mut found: Vec<(u64, Store)> = Vec::new();
        for p in peers.iter().filter(|p| p.validator) {
            let Some(url) = &p.bucket else { continue };
            let Ok(store) = self.store(url) else { continue };
            if let Ok(Some(w)) = ferrum_common::checkpoint::latest(&store, &self.namespace).await {
                found.push((w, store));
            }
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        for (w, store) in found {
            match ferrum_common::checkpoint::load(&store, &self.namespace, &self.config, w).await {
                Ok(loaded) => return Some(loaded),
                Err(e) => tracing::warn!(window = w, store = store.location(), error = %e, "checkpoint refused"),
            }
        }
        None
    }
}

/// Largest gather record read.
const RECORD_CAP: u64 = 1 << 20;

impl Sync {
    /// A validator's signed gather record of `window` that checks out (signature, netuid,
    /// window, config, and the signer is the validator whose bucket holds it), from the first
    /// validator in uid order that has one.
    pub async fn gather_record(&self, chain: &impl Chain, window: u64) -> Option<GatherRecord> {
        let (peers, _) = self.peers(chain, window).await.ok()?;
        for p in peers.iter().filter(|p| p.validator) {
            let Some(url) = &p.bucket else { continue };
            let Ok(store) = self.store(url) else { continue };
            let Ok(bytes) = store.get(&self.namespace.gather_record(window, &p.hotkey), Some(RECORD_CAP)).await else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<GatherRecord>(&bytes) else { continue };
            let ours = record.netuid == self.netuid
                && record.window == window
                && record.config_hash == self.config_hash.to_string()
                && record.validator == p.hotkey.to_ss58();
            if ours && record.verify() {
                return Some(record);
            }
            tracing::warn!(
                window,
                validator = p.uid,
                "gather record refused: not signed by its validator or not for this window"
            );
        }
        None
    }
}

impl WindowPlan {
    /// The plan narrowed to what a validator's record says was aggregated, in its order: a
    /// node replaying a window it did not see live takes the record's set rather than judge
    /// freshness long after the fact.
    pub fn following(&self, record: &GatherRecord) -> WindowPlan {
        let candidates =
            record.accepted.iter().filter_map(|uid| self.candidates.iter().find(|p| p.uid == *uid).cloned()).collect();
        WindowPlan { window: self.window, put: self.put, candidates }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrum_common::Hotkey;

    #[test]
    fn following_a_record_keeps_its_uids_in_its_order() {
        let peer = |uid: u16| Peer {
            uid,
            hotkey: Hotkey([uid as u8; 32]),
            incentive: 0,
            bucket: Some(format!("/b/{uid}")),
            validator: false,
        };
        let plan = WindowPlan {
            window: 4,
            put: PutWindow { opens_ms: 1, closes_ms: 2 },
            candidates: vec![peer(5), peer(3), peer(8)],
        };
        let record = GatherRecord {
            netuid: 1,
            window: 4,
            config_hash: String::new(),
            validator: String::new(),
            base_fingerprint: String::new(),
            accepted: vec![8, 5, 9],
            skipped: Vec::new(),
            fingerprint: String::new(),
            signature: String::new(),
        };
        let followed = plan.following(&record);
        assert_eq!(followed.candidates.iter().map(|p| p.uid).collect::<Vec<_>>(), vec![8, 5], "9 is not a peer here");
        assert_eq!((followed.window, followed.put), (plan.window, plan.put));
    }
}
