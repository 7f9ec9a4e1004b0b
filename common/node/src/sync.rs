//! Gathering and applying one window's payloads: what every honest node does identically, so
//! that all of them hold the same model afterwards (docs/protocol.md §13).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use ferrum_chain::{Chain, ChainError};
use ferrum_common::agreement::{self, PayloadId, Witness};
use ferrum_common::assignment::{SampleRequest, assign_samples, samples_digest};
use ferrum_common::codec::{AggregateError, EncodedTensor, aggregate_and_step, similar};
use ferrum_common::gather::{self, GatherRules, Peer, Verdict};
use ferrum_common::keys::Namespace;
use ferrum_common::location::{Location, PeerUrlPolicy};
use ferrum_common::model::{Fingerprint, MasterModel};
use ferrum_common::payload::{self, Expectation, FetchError, Payload, PayloadLayout, Rejection};
use ferrum_common::{
    ConfigHash, DatasetId, Freshness, ObjectInfo, PutWindow, StorageLimits, Store, SubnetConfig, WindowSchedule,
};
use futures::StreamExt;

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
    /// Validators holding a stake majority did not accept this payload (§16): its bucket
    /// changed it, withheld it or served it differently to different readers, or they judged
    /// its updates harmful.
    NotAgreed,
    /// This validator's Gauntlet keeps the uid out of the gather set (§14): its record leaves
    /// the payload out, so a stake majority of such records drops it from the agreed set.
    Excluded,
    /// A miner leaves out in advance a uid the validators' agreed set left out in the last
    /// decided window although this node held its payload ([`left_out`]): validators'
    /// exclusions last many windows, and following them up front spares re-applying each one.
    LeftOut,
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
            Skip::Duplicate { of } => write!(
                f,
                "duplicate: the same update as uid {of} (within the duplicate distance), earlier in the gather order"
            ),
            Skip::NotAgreed => write!(
                f,
                "not agreed: validators holding a stake majority did not accept this payload (changed, withheld, served differently, or judged harmful)"
            ),
            Skip::Excluded => write!(f, "excluded: this validator's Gauntlet keeps the uid out of the gather set"),
            Skip::LeftOut => write!(f, "left out: the validators' agreed set left it out in the last decided window"),
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
            Skip::NotAgreed => "not_agreed",
            Skip::Excluded => "excluded",
            Skip::LeftOut => "left_out",
        }
    }
}

/// A payload fetch error that is retried like any storage error, except a timeout.
struct NoRetryOnTimeout(FetchError);

impl fmt::Display for NoRetryOnTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl crate::retry::Transient for NoRetryOnTimeout {
    fn is_transient(&self) -> bool {
        !matches!(self.0, FetchError::Storage(ferrum_common::StorageError::Timeout { .. }))
            && crate::retry::Transient::is_transient(&self.0)
    }
}

/// Who is tried for a window, in order, when its put window was, and who witnesses it.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowPlan {
    pub window: u64,
    pub put: PutWindow,
    pub candidates: Vec<Peer>,
    /// The validators whose gather records decide the window (`agreement::witnesses`), with
    /// their stake at the boundary; empty on a subnet without staked validators.
    pub witnesses: Vec<Peer>,
}

impl WindowPlan {
    /// The witnesses as the agreement rule takes them.
    pub fn witness_stakes(&self) -> Vec<Witness> {
        self.witnesses.iter().map(Witness::of).collect()
    }

    /// The candidates' uids in gather order.
    pub fn order(&self) -> Vec<u16> {
        self.candidates.iter().map(|p| p.uid).collect()
    }

    /// The candidate at `uid`.
    pub fn candidate(&self, uid: u16) -> Option<&Peer> {
        self.candidates.iter().find(|p| p.uid == uid)
    }
}

/// How a node's result for a window relates to the validators' agreed set (§16).
#[derive(Debug, Clone, PartialEq)]
pub enum Agreement {
    /// No staked validator witnesses the window: the node's own gather stands.
    Unwitnessed,
    /// The records read in time left the set open; the node keeps its own and decides later.
    Undecided,
    /// The agreed set is the node's own.
    Confirmed,
    /// The agreed set differed: the window was re-applied from its base with it.
    Repaired { fetched: usize },
    /// The agreed set differed and could not be rebuilt (a payload could be had from nowhere).
    Unrepairable(String),
}

/// A payload read from a candidate's bucket that passed the checks needing no model.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub info: ObjectInfo,
    pub payload: Payload,
    pub bytes: bytes::Bytes,
}

/// What a second read of a payload found ([`Sync::recheck`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Recheck {
    /// The same content id as the gather read.
    Same,
    /// Other bytes where the payload was: its server changed it after serving it.
    Changed(String),
    /// No answer (timeout, refused, gone): no evidence either way.
    NoAnswer(String),
}

/// Everything a node's own gather of a window found, kept until the window is settled: enough
/// to re-apply the window with another set without asking a miner's server again.
#[derive(Debug, Clone)]
pub struct Gathered {
    pub window: u64,
    /// The window's base model (kept when validators witness the window, or the caller gave it).
    pub base: Option<Arc<MasterModel>>,
    pub base_fingerprint: Fingerprint,
    /// Per candidate uid: what its bucket gave, or why nothing usable.
    pub fetched: BTreeMap<u16, Result<Fetched, Skip>>,
    /// What this node accepted, `(uid, content id)` in candidate order.
    pub own: Vec<(u16, PayloadId)>,
    /// Why the other candidates were not accepted.
    pub skipped: Vec<(u16, Skip)>,
}

impl Gathered {
    /// A verified payload with this content id, from this node's own reads.
    pub fn payload(&self, uid: u16, id: &PayloadId) -> Option<&Fetched> {
        self.fetched.get(&uid)?.as_ref().ok().filter(|f| f.payload.hash == *id)
    }
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
    /// Payload bytes downloaded (valid payloads: this node's gather and any mirrored ones).
    pub bytes: u64,
    pub agreement: Agreement,
    /// Seconds spent settling the window on the agreed set (reading records, re-applying).
    pub settle_secs: f64,
}

/// What a miner leaves out of its next gather in advance: the uids the last decided window's
/// agreed set left out although this node held a valid payload for them (not agreed, left out
/// in advance already, or a duplicate of either), each as [`Skip::LeftOut`]. Nothing after a
/// window the records did not decide. A guess that the records correct: where they take such a
/// uid back, [`settle`](Sync::settle) re-applies the window with it. Only for nodes whose
/// gather is not a witness: a validator's record must be its own judgement, or one window's
/// verdict would keep a uid out for good.
pub fn left_out(applied: &Applied) -> Vec<(u16, Skip)> {
    if !matches!(applied.agreement, Agreement::Confirmed | Agreement::Repaired { .. }) {
        return Vec::new();
    }
    let out: Vec<u16> = applied
        .skipped
        .iter()
        .filter(|(_, why)| matches!(why, Skip::NotAgreed | Skip::LeftOut))
        .map(|(u, _)| *u)
        .collect();
    let copies = applied.skipped.iter().filter(|(_, why)| matches!(why, Skip::Duplicate { of } if out.contains(of)));
    out.iter().copied().chain(copies.map(|(u, _)| *u)).map(|u| (u, Skip::LeftOut)).collect()
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
    access: PeerAccess,
    stores: Mutex<HashMap<String, Store>>,
}

/// A harness's wrapper around a peer's bucket, given its URL.
pub type StoreHook = Arc<dyn Fn(&str, Store) -> Store + Send + std::marker::Sync>;

/// How a node opens peers' buckets.
#[derive(Clone, Default)]
pub struct PeerAccess {
    /// Which bucket URLs it follows.
    pub policy: PeerUrlPolicy,
    /// The node's own bucket URL: a peer's bucket at the same S3 endpoint is read with the
    /// node's credentials, any other without.
    pub own_bucket: Option<String>,
    /// The devnet's misbehaving servers; `None` in production.
    pub hook: Option<StoreHook>,
}

impl std::fmt::Debug for PeerAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerAccess")
            .field("policy", &self.policy)
            .field("own_bucket", &self.own_bucket)
            .field("hook", &self.hook.is_some())
            .finish()
    }
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
            access: PeerAccess::default(),
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
        let witnesses: Vec<Peer> = agreement::witnesses(&peers).into_iter().cloned().collect();
        let candidates = gather::candidates(&peers, &boundary_hash, &rules);
        // What the ranking saw, so an operator (and the localnet test) can hold it against the
        // chain's incentive at the boundary block.
        let ranked: Vec<String> = candidates.iter().map(|p| format!("{}:{}", p.uid, p.incentive)).collect();
        let stakes: Vec<String> = witnesses.iter().map(|p| format!("{}:{}", p.uid, p.stake)).collect();
        tracing::info!(
            window,
            boundary = self.schedule.put_window_block(window),
            candidates = %ranked.join(" "),
            witnesses = %stakes.join(" "),
            "gather plan"
        );
        Ok(WindowPlan { window, put, candidates, witnesses })
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
            peers.push(Peer {
                uid: n.uid,
                hotkey: n.hotkey,
                incentive: n.incentive,
                bucket,
                validator,
                stake: n.stake,
                validator_permit: n.validator_permit,
            });
        }
        Ok((peers, boundary_hash))
    }

    /// How this node opens peers' buckets.
    pub fn with_access(mut self, access: PeerAccess) -> Sync {
        self.access = access;
        self
    }

    /// A peer's bucket, opened as the URL policy allows: read-only, and with this node's S3
    /// credentials only at the endpoint of its own bucket (one the operator configured).
    pub fn peer_store(&self, peer: &Peer) -> Result<Store, String> {
        let url = peer.bucket.as_deref().ok_or("no bucket committed")?;
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = stores.get(url) {
            return Ok(s.clone());
        }
        let location = Location::parse(url).map_err(|e| e.to_string())?;
        self.access.policy.check(&location).map_err(|e| {
            tracing::warn!(uid = peer.uid, url, reason = %e, "a peer's bucket URL is refused");
            format!("bucket URL refused: {e}")
        })?;
        if let Location::Local { root } = &location
            && !root.is_dir()
        {
            return Err(format!("no folder at {}", root.display()));
        }
        let limits = StorageLimits::from(&self.config.storage);
        let own_endpoint = |l: &Location| match l {
            Location::S3 { endpoint, .. } => Some(endpoint.clone()),
            Location::Local { .. } => None,
        };
        let configured = self.access.own_bucket.as_deref().and_then(|u| Location::parse(u).ok());
        let trusted = matches!(
            (own_endpoint(&location), configured.as_ref().and_then(own_endpoint)),
            (Some(a), Some(b)) if a == b
        );
        let store =
            if trusted { Store::open_location(&location, limits) } else { Store::open_anonymous(&location, limits) }
                .map_err(|e| e.to_string())?;
        let store = match &self.access.hook {
            Some(hook) => hook(url, store),
            None => store,
        };
        stores.insert(url.to_string(), store.clone());
        Ok(store)
    }

    /// Fetches one peer's payload for `window` and checks what needs no model: size, signature,
    /// header, body, and the upload time against the put window.
    pub async fn fetch(&self, peer: &Peer, window: u64, put: &PutWindow) -> Result<Fetched, Skip> {
        if peer.bucket.is_none() {
            return Err(Skip::Missing);
        }
        let store = self.peer_store(peer).map_err(Skip::Unreachable)?;
        let key = self.namespace.payload(window, peer.uid, &peer.hotkey);
        let expect = Expectation {
            netuid: self.netuid,
            window,
            uid: peer.uid,
            hotkey: &peer.hotkey,
            config_hash: &self.config_hash,
        };
        // A reader-side outage must not make this node skip what the others accept: transient
        // storage errors are retried before the payload counts as unreachable. A timeout is
        // not: a server that stalls a reader past its timeout had its chance, and retrying
        // would multiply the stall while the window's training time runs.
        let quick = Backoff { first: Duration::from_millis(250), max: Duration::from_secs(4), attempts: 4 };
        let fetched = retry("payload fetch", quick, || async {
            payload::fetch(&store, &key, &self.layout, &expect).await.map_err(NoRetryOnTimeout)
        })
        .await
        .map_err(|e| e.0);
        let (info, payload, bytes) = fetched.map_err(|e| match e {
            FetchError::Storage(s) if s.is_not_found() => Skip::Missing,
            FetchError::Storage(s) => Skip::Unreachable(s.to_string()),
            FetchError::Rejected(r) => Skip::Invalid(r),
        })?;
        match put.classify(info.last_modified_ms) {
            Freshness::OnTime => Ok(Fetched { info, payload, bytes }),
            Freshness::TooEarly { by_ms } => Err(Skip::TooEarly { by_ms }),
            Freshness::TooLate { by_ms } => Err(Skip::TooLate { by_ms }),
        }
    }

    /// The checks that need this window's base model: the payload was trained from it, on the
    /// samples the uid was assigned.
    fn check(&self, peer: &Peer, window: u64, base: &Fingerprint, p: &Payload) -> Result<(), Skip> {
        if p.header.base_fingerprint != base.0 {
            return Err(Skip::StaleBase { claimed: Fingerprint(p.header.base_fingerprint) });
        }
        if p.header.samples_digest != samples_digest(&self.assigned(window, peer.uid, &peer.hotkey)) {
            return Err(Skip::WrongSamples);
        }
        Ok(())
    }

    /// Reads the content id of `peer`'s payload of `window` again, after the put window, to see
    /// whether its server still serves what this node read (a range read of the 32-byte hash
    /// before the signature). Nothing here decides what a window applies: it gives a validator
    /// evidence that a miner's server changed an object it had already served.
    pub async fn recheck(&self, peer: &Peer, window: u64, read: &PayloadId, within: Duration) -> Recheck {
        let store = match self.peer_store(peer) {
            Ok(s) => s,
            Err(e) => return Recheck::NoAnswer(e),
        };
        let key = self.namespace.payload(window, peer.uid, &peer.hotkey);
        // The trailer is the 32-byte hash, then the 64-byte signature.
        let end = (self.layout.size() - payload::TRAILER_LEN + 32) as u64;
        match tokio::time::timeout(within, store.get_range(&key, end - 32..end)).await {
            Err(_) => Recheck::NoAnswer(format!("no answer within {} s", within.as_secs())),
            Ok(Ok(bytes)) if bytes.as_ref() == read.as_slice() => Recheck::Same,
            Ok(Ok(bytes)) => Recheck::Changed(format!(
                "content id {} read in the gather, {} now",
                &hex::encode(read)[..16],
                &hex::encode(&bytes)[..16.min(2 * bytes.len())]
            )),
            // A server that answers a range read with other than the bytes asked for is not
            // serving the object it served.
            Ok(Err(e @ ferrum_common::StorageError::BadRange { .. })) => Recheck::Changed(e.to_string()),
            Ok(Err(e)) => Recheck::NoAnswer(e.to_string()),
        }
    }

    /// Gathers the plan's payloads, aggregates the ones this node accepts and applies the outer
    /// step to `model` (the window's base). With nothing accepted the model is left as it is.
    /// `excluded` uids are left out with their reason (a validator's Gauntlet exclusions, or
    /// what a miner leaves out in advance: reserves take their places, and a validator's record
    /// does not name them). `base` is the caller's copy of the window's
    /// base, if it keeps one; otherwise one is taken only when validators witness the window.
    /// Returns what it did and what it read, to settle the window against the validators'
    /// records ([`settle`](Self::settle)).
    pub async fn apply(
        &self,
        model: &mut MasterModel,
        plan: &WindowPlan,
        excluded: &[(u16, Skip)],
        base: Option<Arc<MasterModel>>,
    ) -> (Applied, Gathered) {
        let base_fingerprint = crate::cpu::heavy(|| model.fingerprint());
        let base = base.or_else(|| (!plan.witnesses.is_empty()).then(|| Arc::new(model.clone())));
        let gather_peers = self.config.weights.tiers.gather_peers as usize;
        // Collected first: a stream over a borrowing closure is not `Send` for every lifetime,
        // and nodes run this inside spawned tasks.
        let fetches: Vec<_> = plan.candidates.iter().map(|p| self.fetch(p, plan.window, &plan.put)).collect();
        let results: Vec<Result<Fetched, Skip>> =
            futures::stream::iter(fetches).buffered(FETCH_CONCURRENCY).collect().await;
        let ks = self.layout.spec.tensors.iter().map(|(_, g)| g.k).collect::<Vec<_>>();
        let limit = self.config.gauntlet.copy.duplicate_distance;
        let mut verdicts: Vec<Verdict<Skip>> = Vec::with_capacity(results.len());
        // Squared norms of the accepted candidates' updates, for the duplicate test.
        let mut norms: Vec<Option<f64>> = Vec::with_capacity(results.len());
        for (peer, r) in plan.candidates.iter().zip(&results) {
            let mut norm = None;
            let verdict = match r {
                Err(skip) => Err(skip.clone()),
                Ok(_) if let Some((_, why)) = excluded.iter().find(|(u, _)| *u == peer.uid) => Err(why.clone()),
                Ok(f) => self.check(peer, plan.window, &base_fingerprint, &f.payload).and_then(|()| {
                    // One update counts once: within the duplicate distance of an earlier accepted
                    // candidate's (§7.3). Unrelated updates part within a few blocks.
                    let n = similar::squared_norm(&f.payload.tensors);
                    let earlier = plan.candidates.iter().zip(&results).zip(&norms).find(|((_, q), m)| {
                        let (Ok(q), Some(m)) = (q, m) else { return false };
                        similar::distance_within(&q.payload.tensors, &f.payload.tensors, &ks, (*m, n), limit).is_some()
                    });
                    match earlier {
                        Some(((first, _), _)) => Err(Skip::Duplicate { of: first.uid }),
                        None => {
                            norm = Some(n);
                            Ok(())
                        }
                    }
                }),
            };
            norms.push(norm);
            verdicts.push(verdict.map_or_else(Verdict::Rejected, |()| Verdict::Accepted));
        }
        let (positions, skipped) = gather::select(&plan.candidates, verdicts, gather_peers);
        let fetched: BTreeMap<u16, Result<Fetched, Skip>> =
            plan.candidates.iter().map(|p| p.uid).zip(results).collect();
        let own: Vec<(u16, PayloadId)> = positions
            .iter()
            .filter_map(|&i| {
                let uid = plan.candidates[i].uid;
                fetched.get(&uid).and_then(|r| r.as_ref().ok()).map(|f| (uid, f.payload.hash))
            })
            .collect();
        let gathered = Gathered { window: plan.window, base, base_fingerprint, fetched, own, skipped };
        let applied = self.aggregate(model, plan, &gathered, &gathered.own, &[], Agreement::Unwitnessed);
        (applied, gathered)
    }

    /// Aggregates `entries` (payloads from `gathered`, or from `extra` when this node did not
    /// have them) and applies the outer step to `model`.
    pub(crate) fn aggregate(
        &self,
        model: &mut MasterModel,
        plan: &WindowPlan,
        gathered: &Gathered,
        entries: &[(u16, PayloadId)],
        extra: &[Fetched],
        agreement: Agreement,
    ) -> Applied {
        let mut peers: Vec<(u16, &[EncodedTensor])> = Vec::with_capacity(entries.len());
        for (uid, id) in entries {
            let found = gathered
                .payload(*uid, id)
                .or_else(|| extra.iter().find(|f| f.payload.header.uid == *uid && f.payload.hash == *id));
            if let Some(f) = found {
                peers.push((*uid, f.payload.tensors.as_slice()));
            }
        }
        let bytes = gathered.fetched.values().flatten().chain(extra).map(|f| f.info.size).sum();
        let (failed_tensors, fingerprint) = crate::cpu::heavy(|| {
            let mut failed_tensors = Vec::new();
            if !peers.is_empty() {
                let lr = self.config.training.outer_learning_rate as f32;
                // Sizes come from the same layout as the model's; a mismatch would be a bug.
                match aggregate_and_step(&peers, &self.layout.spec, &mut model.tensors, lr, self.threads) {
                    Ok(failed) => failed_tensors = failed,
                    Err(e) => tracing::warn!(window = plan.window, error = %e, "nothing aggregated"),
                }
            }
            (failed_tensors, model.fingerprint())
        });
        let accepted: Vec<u16> = peers.iter().map(|(uid, _)| *uid).collect();
        // Every candidate not aggregated, with this node's own reason, or "not agreed" for one
        // it accepted itself.
        let skipped = plan
            .candidates
            .iter()
            .filter(|p| !accepted.contains(&p.uid))
            .filter_map(|p| {
                let own = gathered.skipped.iter().find(|(u, _)| *u == p.uid).map(|(_, s)| s.clone());
                match own {
                    Some(s) => Some((p.uid, s)),
                    None if gathered.own.iter().any(|(u, _)| *u == p.uid) => Some((p.uid, Skip::NotAgreed)),
                    None => None,
                }
            })
            .collect();
        Applied {
            window: plan.window,
            accepted,
            skipped,
            failed_tensors,
            fingerprint,
            bytes,
            agreement,
            settle_secs: 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrum_common::Preset;

    /// A miner follows the last decided window's agreed set: what it left out, and copies of
    /// that, are left out next time; nothing after an undecided or unwitnessed window.
    #[test]
    fn a_miner_leaves_out_in_advance_what_the_agreed_set_left_out() {
        let applied = |agreement, skipped: Vec<(u16, Skip)>| Applied {
            window: 9,
            accepted: vec![1, 2],
            skipped,
            failed_tensors: Vec::new(),
            fingerprint: Fingerprint([0; 32]),
            bytes: 0,
            agreement,
            settle_secs: 0.0,
        };
        let skipped = vec![
            (3, Skip::NotAgreed),
            (4, Skip::Duplicate { of: 3 }),
            (5, Skip::Duplicate { of: 1 }),
            (6, Skip::LeftOut),
            (7, Skip::Missing),
            (8, Skip::TooLate { by_ms: 10 }),
        ];
        let out = |a| left_out(&applied(a, skipped.clone())).into_iter().map(|(u, _)| u).collect::<Vec<_>>();
        assert_eq!(out(Agreement::Repaired { fetched: 0 }), [3, 6, 4]);
        assert_eq!(out(Agreement::Confirmed), [3, 6, 4]);
        assert!(left_out(&applied(Agreement::Confirmed, skipped.clone())).iter().all(|(_, w)| *w == Skip::LeftOut));
        for undecided in [Agreement::Unwitnessed, Agreement::Undecided, Agreement::Unrepairable("x".into())] {
            assert!(out(undecided).is_empty());
        }
    }

    /// A second read finds the same content id, other bytes, or nothing to judge by.
    #[tokio::test]
    async fn a_recheck_tells_a_changed_object_from_an_unanswered_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Preset::Test.config();
        let access = PeerAccess {
            policy: PeerUrlPolicy { allow_local: true, allow_private: true },
            own_bucket: None,
            hook: None,
        };
        let sync = Sync::new(&config, 1, ferrum_common::DatasetId([0; 32]), 100, 1).with_access(access);
        let hotkey = ferrum_common::Hotkey([7; 32]);
        let peer = Peer {
            uid: 3,
            hotkey,
            incentive: 0,
            bucket: Some(dir.path().display().to_string()),
            validator: false,
            stake: 0,
            validator_permit: false,
        };
        let path = dir.path().join(sync.namespace.payload(5, 3, &hotkey));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
        let size = sync.layout.size();
        let with_id = |id: u8| {
            let mut b = vec![1u8; size];
            b[size - payload::TRAILER_LEN..size - payload::TRAILER_LEN + 32].fill(id);
            b
        };
        let within = Duration::from_secs(5);
        std::fs::write(&path, with_id(9)).expect("write");
        assert_eq!(sync.recheck(&peer, 5, &[9; 32], within).await, Recheck::Same);
        std::fs::write(&path, with_id(4)).expect("overwrite");
        assert!(matches!(sync.recheck(&peer, 5, &[9; 32], within).await, Recheck::Changed(_)));
        // Cut short: the range is past its end, which a server reports as an error, not bytes:
        // no evidence (a reader cannot tell it from a failing server).
        std::fs::write(&path, &with_id(9)[..size / 2]).expect("truncate");
        assert!(matches!(sync.recheck(&peer, 5, &[9; 32], within).await, Recheck::NoAnswer(_)));
        std::fs::remove_file(&path).expect("delete");
        assert!(matches!(sync.recheck(&peer, 5, &[9; 32], within).await, Recheck::NoAnswer(_)));
    }
}
