//! `ferrum devnet`: a whole subnet in one process, offline: a [`LocalChain`], local object
//! stores, N miners, on data the project makes itself. The same harness runs the multi-node
//! tests. It conducts the chain: a block is produced only when every live node has processed
//! the previous one and waits, and the block that closes a put window only after the window's
//! length has passed on the wall clock (block timestamps and object times are both real).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferrum_chain::{Chain, Keypair, LocalChain, SubnetParams};
use ferrum_common::model::MasterModel;
use ferrum_common::storage::Location;
use ferrum_common::train::{Evaluator, device};
use ferrum_common::{Dataset, Preset, Store, SubnetConfig, WindowSchedule};
use ferrum_gauntlet::WindowReport;
use ferrum_miner::MinerSetup;
use ferrum_miner::adversary::{Behaviour, Victim};
use ferrum_node::{Applied, Metrics, NodeEvent, NodeSetup};
use ferrum_validator::ValidatorSetup;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub mod hostile;

use hostile::{Attack, Hostile};

/// The devnet's subnet id.
pub const NETUID: u16 = 1;
/// How long the conductor waits for a node before producing the next block anyway.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// What to run.
#[derive(Debug, Clone)]
pub struct DevnetOptions {
    pub miners: usize,
    pub validators: usize,
    /// Adversary names (`ferrum_miner::adversary::ADVERSARIES`), one cheating miner each.
    pub adversaries: Vec<String>,
    pub windows: u64,
    pub preset: String,
    /// A subnet config to run instead of the preset's (the devnet's own settings below still
    /// apply on top of it).
    pub config: Option<SubnetConfig>,
    pub dir: PathBuf,
    /// Put window length (short, so a devnet window takes seconds).
    pub put_window_secs: u64,
    /// Inner steps per window (default: the preset's).
    pub inner_steps: Option<u32>,
    /// Held-out samples for the loss of the global model.
    pub eval_samples: usize,
    /// Threads per node for encoding and aggregation.
    pub threads: usize,
    /// Weights by commit and reveal (the subnet's epochs are then 10 blocks, so reveals come
    /// within a few windows).
    pub commit_reveal: bool,
    /// With `commit_reveal`: weights committed timelocked, revealed by the chain itself, as on
    /// today's runtime (the dev chain keeps them in the clear until the reveal epoch).
    pub timelocked_commits: bool,
    /// Prepared training and held-out datasets (folders) to use instead of generated ones.
    pub datasets: Option<(PathBuf, PathBuf)>,
    /// Faults that are nobody's fault (`FAULTS`).
    pub faults: Vec<String>,
    /// After the run, run it again without adversaries or faults (same honest miners,
    /// validators, data and genesis, in `dir/all-honest`) and report its held-out loss beside.
    pub compare_honest: bool,
    /// The first this many honest miners train on this device (`wgpu`, `cuda`); every other
    /// node on the CPU. Training need not match across devices bit for bit; the outer step is
    /// plain f32 on the CPU everywhere, so the models stay in sync.
    pub gpu_miners: (usize, String),
}

/// Names accepted by `--faults`: `flaky-link`, the first honest miner cannot reach the second
/// honest miner's bucket in the run's second window.
pub const FAULTS: [&str; 1] = ["flaky-link"];

impl Default for DevnetOptions {
    fn default() -> Self {
        DevnetOptions {
            miners: 3,
            validators: 0,
            adversaries: Vec::new(),
            windows: 6,
            preset: "test".into(),
            config: None,
            dir: PathBuf::from("ferrum-devnet"),
            put_window_secs: 2,
            inner_steps: None,
            eval_samples: 64,
            threads: 1,
            commit_reveal: false,
            timelocked_commits: false,
            datasets: None,
            faults: Vec::new(),
            compare_honest: false,
            gpu_miners: (0, "cpu".into()),
        }
    }
}

/// One window as the devnet saw it.
#[derive(Debug, Clone, Serialize)]
pub struct WindowSummary {
    pub window: u64,
    /// Held-out loss of the global model after the window's outer step.
    pub loss: f32,
    /// Every live miner reported the window and all hold the same fingerprint.
    pub in_sync: bool,
    /// uid → fingerprint (hex) after the window.
    pub fingerprints: BTreeMap<u16, String>,
    /// Uids aggregated (as the lowest reporting uid saw it; in sync, all saw the same).
    pub peers: Vec<u16>,
    /// uid → why its payload was skipped.
    pub skipped: BTreeMap<u16, String>,
    /// Payload bytes uploaded in the window, all miners together.
    pub bytes_uploaded: u64,
    /// uid → how its result relates to the validators' agreed set (`confirmed`, `repaired`,
    /// `undecided`, `unwitnessed`, `unrepairable: …`).
    pub agreement: BTreeMap<u16, String>,
    /// The longest any node spent settling the window (reading records, re-applying), s.
    pub agreement_secs: f64,
    pub seconds: f64,
}

/// One miner as the (first) validator ended up seeing it.
#[derive(Debug, Clone, Serialize)]
pub struct MinerSummary {
    pub uid: u16,
    /// `honest` or the adversary's name.
    pub role: String,
    /// Its share of the validator's last weights, the burn uid left out.
    pub weight: f64,
    /// The rule that left it unpaid in the validator's last report (`paid` when none did).
    pub rule: String,
    /// Why it was penalized in the validator's last report (empty when it was not).
    pub reason: String,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct DevnetSummary {
    pub preset: String,
    /// Honest miners.
    pub honest_miners: usize,
    pub validators: usize,
    /// Held-out loss of the genesis model.
    pub initial_loss: f32,
    pub windows: Vec<WindowSummary>,
    /// Every miner, with weights and reasons when a validator ran.
    pub miners: Vec<MinerSummary>,
    /// With `compare_honest`: the held-out loss after each window of the same run without
    /// adversaries or faults (its nodes' timing differs, so it is one sample, not a bound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_honest_loss: Option<Vec<f32>>,
}

impl DevnetSummary {
    /// Held-out loss after the last window.
    pub fn final_loss(&self) -> f32 {
        self.windows.last().map_or(f32::NAN, |w| w.loss)
    }

    /// The final loss over the all-honest run's (below 1: the attacked run ended lower).
    pub fn loss_ratio(&self) -> Option<f32> {
        let honest = self.all_honest_loss.as_ref()?.last()?;
        Some(self.final_loss() / honest)
    }
}

/// What a devnet node is.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    Miner(Behaviour),
    Validator,
}

impl Role {
    /// `honest`, an adversary's name, or `validator`.
    pub fn name(&self) -> &'static str {
        match self {
            Role::Miner(b) => b.name(),
            Role::Validator => "validator",
        }
    }
}

struct MinerSlot {
    keypair: Keypair,
    role: Role,
    /// The device it trains or evaluates on.
    device: String,
    dir: PathBuf,
    task: Option<JoinHandle<Result<(), String>>>,
    stop: Option<watch::Sender<bool>>,
    metrics: Metrics,
}

/// A running devnet.
pub struct Devnet {
    pub chain: LocalChain,
    pub config: SubnetConfig,
    pub schedule: WindowSchedule,
    dataset: Arc<Dataset>,
    heldout: Vec<Vec<u32>>,
    evaluator: Evaluator,
    threads: usize,
    /// Every node the devnet runs, miners and validators, by uid.
    miners: BTreeMap<u16, MinerSlot>,
    events_tx: mpsc::UnboundedSender<NodeEvent>,
    events: mpsc::UnboundedReceiver<NodeEvent>,
    /// Last block each miner reported waiting after.
    idle: HashMap<u16, u64>,
    /// window → uid → what applying it did, and the model after it.
    applied: BTreeMap<u64, BTreeMap<u16, (Applied, Arc<MasterModel>)>>,
    uploaded: BTreeMap<u64, u64>,
    /// validator uid → its latest Gauntlet report.
    scored: BTreeMap<u16, Arc<WindowReport>>,
    /// validator uid → its latest weights on chain.
    weights: BTreeMap<u16, BTreeMap<u16, f64>>,
    /// Bucket URL → the attack its server makes, and what it has served once already.
    attacks: HashMap<String, (Attack, hostile::Served)>,
    /// The flaky link: (reader uid, bucket URL) and the window it fails in (set by `run`).
    flaky: Option<(u16, String)>,
    flaky_window: Arc<std::sync::atomic::AtomicU64>,
    record_wait: Duration,
}

/// The file that marks a folder as made by `ferrum devnet` or `ferrum localnet`.
pub const RUN_MARKER: &str = ".ferrum-run";

/// Removes the given sub-folders of a run folder (state of an earlier run) and marks the
/// folder as Ferrum's. A folder holding one of them without the marker was not made by Ferrum
/// (a user's `--dir`): it is refused, not emptied.
pub fn clear_run_folders(dir: &Path, subs: &[&str]) -> Result<()> {
    let marker = dir.join(RUN_MARKER);
    let present: Vec<PathBuf> = subs.iter().map(|s| dir.join(s)).filter(|p| p.exists()).collect();
    if !present.is_empty() && !marker.exists() {
        bail!(
            "{} holds {} that ferrum did not make (no {RUN_MARKER} file): choose another --dir, or remove it yourself",
            dir.display(),
            present.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and ")
        );
    }
    for p in present {
        std::fs::remove_dir_all(&p).with_context(|| format!("clearing {}", p.display()))?;
    }
    std::fs::write(&marker, "a ferrum devnet or localnet folder: its nodes/ and seaweed/ are wiped at each start\n")
        .with_context(|| format!("writing {}", marker.display()))?;
    Ok(())
}

impl Devnet {
    /// Prepares data, config and chain under `opts.dir` (node state there is wiped; the
    /// dataset is kept and reused), registers the miners and starts them.
    pub async fn start(opts: &DevnetOptions) -> Result<Devnet> {
        if opts.gpu_miners.0 > 0 {
            ferrum_common::train::device(&opts.gpu_miners.1).context("the devnet's GPU miners")?;
        }
        let mut config = tuned_config(
            &opts.preset,
            opts.config.as_ref(),
            Some(opts.put_window_secs),
            opts.inner_steps,
            opts.datasets.is_some(),
        )?;
        std::fs::create_dir_all(&opts.dir).with_context(|| format!("creating {}", opts.dir.display()))?;
        let dir = std::fs::canonicalize(&opts.dir)?;
        clear_run_folders(&dir, &["nodes"])?;
        let nodes = dir.join("nodes");
        let tokens = 4 * config.samples_per_window() * u64::from(config.data.sequence_length) * 16;
        let (train_dir, heldout_dir, dataset, heldout_ds) = match &opts.datasets {
            Some((train, heldout)) => {
                let open = |d: &PathBuf| {
                    let url = d.display().to_string();
                    let storage = config.storage.clone();
                    async move { Dataset::open_url(&url, &storage).await.with_context(|| format!("opening dataset {url}")) }
                };
                (train.clone(), heldout.clone(), open(train).await?, open(heldout).await?)
            }
            None => (
                dir.join("dataset"),
                dir.join("heldout"),
                make_dataset(&dir.join("dataset"), &config, tokens.max(1 << 20), 0).await?,
                make_dataset(&dir.join("heldout"), &config, 1 << 18, 1).await?,
            ),
        };
        // The config's pin (`data.dataset_id`), tokenizer and shapes against the training data;
        // the held-out data need only be tokenized alike.
        dataset.check_config(&config).with_context(|| format!("dataset {}", train_dir.display()))?;
        let (held, train) = (&heldout_ds.manifest(), &dataset.manifest());
        if (&held.tokenizer.id, held.sequence_length) != (&train.tokenizer.id, train.sequence_length) {
            bail!(
                "held-out dataset {} is tokenized with {} at sequence length {}, the training data with {} at {}",
                heldout_dir.display(),
                held.tokenizer.id,
                held.sequence_length,
                train.tokenizer.id,
                train.sequence_length
            );
        }
        config.data.dataset_id = Some(dataset.id().to_string());
        config.storage.dataset_url = std::fs::canonicalize(&train_dir)?.display().to_string();
        config.storage.url = nodes.display().to_string();
        if opts.adversaries.iter().any(|a| a == "slow") {
            // A slow server must outlast readers' timeouts; with the presets' two minutes (and
            // retries) a devnet window would take ten.
            config.storage.timeout_secs = 2;
            config.storage.connect_timeout_secs = config.storage.connect_timeout_secs.min(2);
        }
        if let Err(errors) = config.validate() {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            bail!("devnet config is not valid: {}", list.join("; "));
        }
        std::fs::write(dir.join("config.json"), config.to_pretty_json())?;
        let heldout = heldout_ds.samples(&spread(heldout_ds.num_samples(), opts.eval_samples as u64)).await?;
        let evaluator = Evaluator::new(&config, &device("flex")?);

        let chain = LocalChain::new();
        let params = SubnetParams {
            tempo: if opts.commit_reveal { 9 } else { 99 },
            weights_rate_limit: 1,
            weights_version_key: 0,
            min_allowed_weights: 1,
            max_weight_limit: u16::MAX,
            commit_reveal: opts.commit_reveal,
            reveal_period_epochs: 1,
            max_uids: 256,
            max_validators: 64,
            timelocked_commits: opts.timelocked_commits,
        };
        chain.create_subnet(NETUID, params, 1_000_000_000);
        let owner = Keypair::from_secret("//Alice", "devnet owner")?;
        chain.fund(&owner.hotkey(), u64::MAX / 4);
        // The owner takes uid 0, the burn uid.
        chain.register(&owner, NETUID, &owner.hotkey()).await?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let mut devnet = Devnet {
            schedule: WindowSchedule::new(&config.windows),
            chain,
            config,
            dataset: Arc::new(dataset),
            heldout,
            evaluator,
            threads: opts.threads.max(1),
            miners: BTreeMap::new(),
            events_tx,
            events,
            idle: HashMap::new(),
            applied: BTreeMap::new(),
            uploaded: BTreeMap::new(),
            scored: BTreeMap::new(),
            weights: BTreeMap::new(),
            attacks: HashMap::new(),
            flaky: None,
            flaky_window: Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)),
            record_wait: Duration::from_secs(30),
        };
        let mut roles: Vec<Role> = (0..opts.miners).map(|_| Role::Miner(Behaviour::Honest)).collect();
        for name in &opts.adversaries {
            roles.push(Role::Miner(name.parse::<Behaviour>()?));
        }
        roles.extend((0..opts.validators).map(|_| Role::Validator));
        for (i, role) in roles.into_iter().enumerate() {
            let name = if role == Role::Validator { "validator" } else { "miner" };
            let keypair = Keypair::from_secret(&format!("//ferrum-devnet-{name}-{}", i + 1), "devnet node")?;
            let uid = devnet.chain.register(&owner, NETUID, &keypair.hotkey()).await?;
            if role == Role::Validator {
                devnet.chain.set_stake(NETUID, &keypair.hotkey(), 1_000_000_000_000)?;
            }
            let device = if i < opts.gpu_miners.0.min(opts.miners) { opts.gpu_miners.1.clone() } else { "cpu".into() };
            let slot = MinerSlot {
                keypair,
                role,
                device,
                dir: nodes.join(format!("{name}-{uid}")),
                task: None,
                stop: None,
                metrics: Metrics::default(),
            };
            devnet.miners.insert(uid, slot);
        }
        // Copiers copy the first honest miner.
        let victim = devnet.miners.iter().find(|(_, s)| s.role == Role::Miner(Behaviour::Honest)).map(|(u, s)| {
            Victim { uid: *u, hotkey: s.keypair.hotkey(), bucket: s.dir.join("bucket").display().to_string() }
        });
        for slot in devnet.miners.values_mut() {
            if let (Role::Miner(Behaviour::Copier { victim: v } | Behaviour::NearCopy { victim: v }), Some(real)) =
                (&mut slot.role, &victim)
            {
                *v = real.clone();
            }
        }
        let slow = Duration::from_secs(devnet.config.storage.timeout_secs + 1);
        for slot in devnet.miners.values() {
            let attack = match &slot.role {
                Role::Miner(Behaviour::LateOverwrite | Behaviour::LateGarbage) => Attack::Overwrite,
                Role::Miner(Behaviour::Equivocate) => Attack::Equivocate,
                Role::Miner(Behaviour::Selective) => Attack::Selective,
                Role::Miner(Behaviour::Slow) => Attack::Slow { delay: slow },
                Role::Miner(Behaviour::Vanish) => Attack::Vanish,
                _ => continue,
            };
            devnet.attacks.insert(slot.dir.join("bucket").display().to_string(), (attack, Default::default()));
        }
        for fault in &opts.faults {
            if fault != "flaky-link" {
                bail!("unknown fault `{fault}`: use any of {}", FAULTS.join(", "));
            }
            let honest: Vec<(u16, String)> = devnet
                .miners
                .iter()
                .filter(|(_, s)| s.role == Role::Miner(Behaviour::Honest))
                .map(|(u, s)| (*u, s.dir.join("bucket").display().to_string()))
                .collect();
            let [(reader, _), (_, bucket), ..] = honest.as_slice() else {
                bail!("the flaky-link fault needs at least two honest miners");
            };
            devnet.flaky = Some((*reader, bucket.clone()));
        }
        let uids: Vec<u16> = devnet.miners.keys().copied().collect();
        for uid in uids {
            devnet.start_miner(uid)?;
        }
        devnet.settle().await?;
        devnet.chain.pool_extrinsics();
        Ok(devnet)
    }

    /// Waits until every node has joined (its commitment is a block of its own) and caught up,
    /// so the next window starts with all of them ready to train.
    pub async fn settle(&mut self) -> Result<()> {
        loop {
            let head = self.chain.best_block().await?.number;
            self.wait_idle(head).await?;
            if self.chain.best_block().await?.number == head {
                return Ok(());
            }
        }
    }

    /// The uids of the nodes (miners and validators).
    pub fn miner_uids(&self) -> Vec<u16> {
        self.miners.keys().copied().collect()
    }

    /// The hotkey of the node at `uid`.
    pub fn hotkey(&self, uid: u16) -> Option<ferrum_common::Hotkey> {
        self.miners.get(&uid).map(|s| s.keypair.hotkey())
    }

    /// A node's role.
    pub fn role(&self, uid: u16) -> Option<&Role> {
        self.miners.get(&uid).map(|s| &s.role)
    }

    /// The latest Gauntlet report of a validator.
    pub fn last_report(&self, validator: u16) -> Option<&Arc<WindowReport>> {
        self.scored.get(&validator)
    }

    /// The latest weights a validator set.
    pub fn last_weights(&self, validator: u16) -> Option<&BTreeMap<u16, f64>> {
        self.weights.get(&validator)
    }

    /// Produces blocks until every validator has scored `window` (its random data is seeded a
    /// few blocks after its put window) and has set weights since, or `max_blocks` are made.
    pub async fn run_until_scored(&mut self, window: u64, max_blocks: u64) -> Result<()> {
        let validators: Vec<u16> = self
            .miners
            .iter()
            .filter(|(_, s)| s.role == Role::Validator && s.task.is_some())
            .map(|(u, _)| *u)
            .collect();
        for _ in 0..max_blocks {
            let head = self.chain.best_block().await?;
            self.wait_idle(head.number).await?;
            let done = validators
                .iter()
                .all(|v| self.scored.get(v).is_some_and(|r| r.window >= window) && self.weights.contains_key(v));
            if done {
                return Ok(());
            }
            self.chain.advance(1);
        }
        Ok(())
    }

    /// Starts (or restarts, from its state directory) miner `uid`.
    pub fn start_miner(&mut self, uid: u16) -> Result<()> {
        let hook = self.hook(uid);
        let slot = self.miners.get_mut(&uid).with_context(|| format!("no miner {uid}"))?;
        let bucket = slot.dir.join("bucket");
        let store = Store::open_location(
            &Location::Local { root: bucket.clone() },
            ferrum_common::StorageLimits::from(&self.config.storage),
        )?;
        let (stop, shutdown) = watch::channel(false);
        let chain = self.chain.clone();
        let node = NodeSetup {
            config: self.config.clone(),
            netuid: NETUID,
            keypair: slot.keypair.clone(),
            store,
            bucket_url: bucket.display().to_string(),
            dataset: self.dataset.clone(),
            state_dir: slot.dir.join("state"),
            backend: slot.device.clone(),
            threads: self.threads,
            metrics: slot.metrics.clone(),
            events: Some(self.events_tx.clone()),
            peers: ferrum_node::PeerAccess {
                policy: ferrum_common::location::PeerUrlPolicy { allow_local: true, allow_private: true },
                own_bucket: Some(bucket.display().to_string()),
                hook: Some(hook),
            },
            record_wait: self.record_wait,
        };
        let task = match &slot.role {
            Role::Miner(behaviour) => {
                let setup = MinerSetup { node, behaviour: behaviour.clone() };
                tokio::spawn(async move { ferrum_miner::run(setup, chain, shutdown).await.map_err(|e| e.to_string()) })
            }
            Role::Validator => {
                let setup = ValidatorSetup { node, checkpoint_every: 5 };
                tokio::spawn(
                    async move { ferrum_validator::run(setup, chain, shutdown).await.map_err(|e| e.to_string()) },
                )
            }
        };
        slot.task = Some(task);
        slot.stop = Some(stop);
        self.idle.remove(&uid);
        Ok(())
    }

    /// How node `reader` sees peers' buckets: the hostile ones through their attack, the flaky
    /// link as down in its window, every other as it is.
    fn hook(&self, reader: u16) -> ferrum_node::StoreHook {
        let attacks = self.attacks.clone();
        let flaky = self.flaky.clone().filter(|(r, _)| *r == reader).map(|(_, url)| url);
        let flaky_window = self.flaky_window.clone();
        Arc::new(move |url: &str, store: Store| {
            if let Some((attack, read)) = attacks.get(url) {
                let (attack, read) = (attack.clone(), read.clone());
                return store.wrapped(|inner| Arc::new(Hostile { inner, attack, reader, read }));
            }
            if flaky.as_deref() == Some(url) {
                let attack = Attack::Unreachable { window: flaky_window.clone() };
                return store.wrapped(|inner| Arc::new(Hostile { inner, attack, reader, read: Default::default() }));
            }
            store
        })
    }

    /// Makes the flaky link (if any) fail in `window`.
    pub fn set_flaky_window(&self, window: u64) {
        self.flaky_window.store(window, std::sync::atomic::Ordering::Relaxed);
    }

    /// Kills miner `uid` where it stands: its task is aborted at its next await, so nothing
    /// after that point runs (the in-process stand-in for SIGKILL; its training thread ends
    /// with its current step).
    pub fn kill_miner(&mut self, uid: u16) {
        if let Some(slot) = self.miners.get_mut(&uid) {
            if let Some(t) = slot.task.take() {
                t.abort();
            }
            slot.stop = None;
        }
        self.idle.remove(&uid);
    }

    /// Registers and starts one more honest miner (it joins with no state of its own).
    pub async fn add_miner(&mut self) -> Result<u16> {
        let owner = Keypair::from_secret("//Alice", "devnet owner")?;
        let n = self.miners.len() + 1;
        let keypair = Keypair::from_secret(&format!("//ferrum-devnet-late-miner-{n}"), "devnet node")?;
        let uid = self.chain.register(&owner, NETUID, &keypair.hotkey()).await?;
        let dir = Path::new(&self.config.storage.url).join(format!("miner-{uid}"));
        let slot = MinerSlot {
            keypair,
            role: Role::Miner(Behaviour::Honest),
            device: "cpu".into(),
            dir,
            task: None,
            stop: None,
            metrics: Metrics::default(),
        };
        self.miners.insert(uid, slot);
        self.start_miner(uid)?;
        self.settle().await?;
        Ok(uid)
    }

    /// Registers another neuron (not run by the devnet) with a committed local bucket, for
    /// tests that play a peer by hand, writing its objects straight into the returned folder.
    pub async fn register_peer(&mut self, secret: &str) -> Result<(u16, Keypair, PathBuf)> {
        let owner = Keypair::from_secret("//Alice", "devnet owner")?;
        let keypair = Keypair::from_secret(secret, "devnet peer")?;
        let uid = self.chain.register(&owner, NETUID, &keypair.hotkey()).await?;
        let dir = Path::new(&self.config.storage.url).join(format!("peer-{uid}"));
        let commitment = ferrum_common::gather::commitment(&dir.display().to_string(), false)?;
        self.chain.set_commitment(&keypair, NETUID, &commitment).await?;
        Ok((uid, keypair, dir))
    }

    /// What each miner reported for `window`: uid → (what applying it did, the model after).
    pub fn reports(&self, window: u64) -> BTreeMap<u16, (Applied, Arc<MasterModel>)> {
        self.applied.get(&window).cloned().unwrap_or_default()
    }

    /// The dataset the miners train on.
    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    /// Every miner's role, weight share and penalty reasons, as the first validator saw them.
    pub fn miner_summaries(&self) -> Vec<MinerSummary> {
        let validator = self.miners.iter().find(|(_, s)| s.role == Role::Validator).map(|(u, _)| *u);
        let weights = validator.and_then(|v| self.weights.get(&v));
        let burn = self.config.weights.burn_uid;
        let total: f64 = weights.map_or(0.0, |w| w.iter().filter(|(u, _)| **u != burn).map(|(_, x)| x).sum());
        let report = validator.and_then(|v| self.scored.get(&v));
        self.miners
            .iter()
            .filter(|(_, s)| s.role != Role::Validator)
            .map(|(&uid, s)| {
                let share = weights.and_then(|w| w.get(&uid)).copied().unwrap_or(0.0);
                let scored = report.and_then(|r| r.uids.iter().find(|u| u.uid == uid));
                let reason = scored.map(ferrum_gauntlet::UidReport::reasons).unwrap_or_default();
                let rule = match scored {
                    Some(u) => u.verdict.map_or("paid", |r| r.name()),
                    None => "unscored",
                };
                MinerSummary {
                    uid,
                    role: s.role.name().to_string(),
                    weight: if total > 0.0 { share / total } else { 0.0 },
                    rule: rule.to_string(),
                    reason,
                }
            })
            .collect()
    }

    /// A miner's metrics.
    pub fn metrics(&self, uid: u16) -> Option<&Metrics> {
        self.miners.get(&uid).map(|s| &s.metrics)
    }

    fn live(&self) -> Vec<u16> {
        self.miners.iter().filter(|(_, s)| s.task.is_some()).map(|(&u, _)| u).collect()
    }

    fn take_event(&mut self, e: NodeEvent) {
        match e {
            NodeEvent::Idle { uid, block } => {
                self.idle.insert(uid, block);
            }
            NodeEvent::Uploaded { window, bytes, .. } => *self.uploaded.entry(window).or_default() += bytes as u64,
            NodeEvent::Applied { uid, applied, model } => {
                self.applied.entry(applied.window).or_default().insert(uid, (applied, model));
            }
            NodeEvent::Scored { uid, report } => {
                self.scored.insert(uid, report);
            }
            NodeEvent::WeightsSet { uid, weights, .. } => {
                self.weights.insert(uid, weights);
            }
        }
    }

    /// Waits until every live miner waits after `head`; a miner that died is reported.
    async fn wait_idle(&mut self, head: u64) -> Result<()> {
        let deadline = Instant::now() + IDLE_TIMEOUT;
        loop {
            while let Ok(e) = self.events.try_recv() {
                self.take_event(e);
            }
            for uid in self.live() {
                let finished = self.miners[&uid].task.as_ref().is_some_and(JoinHandle::is_finished);
                if finished {
                    let task = self.miners.get_mut(&uid).and_then(|s| s.task.take());
                    if let Some(t) = task {
                        match t.await {
                            Ok(Ok(())) => bail!("miner {uid} stopped"),
                            Ok(Err(e)) => bail!("miner {uid} failed: {e}"),
                            Err(e) => bail!("miner {uid} panicked: {e}"),
                        }
                    }
                }
            }
            if self.live().iter().all(|u| self.idle.get(u).is_some_and(|&b| b >= head)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                tracing::warn!(
                    head,
                    "nodes still busy after {} s; producing the next block anyway",
                    IDLE_TIMEOUT.as_secs()
                );
                return Ok(());
            }
            if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), self.events.recv()).await {
                self.take_event(e);
            }
        }
    }

    /// Produces blocks until every live miner has applied `window`, and returns its summary.
    pub async fn run_window(&mut self, window: u64) -> Result<WindowSummary> {
        self.run_window_with(window, |_| {}).await
    }

    /// As [`run_window`](Self::run_window), calling `on_open(opened_ms)` once the block that
    /// opens `window`'s put window exists (tests place their own objects then).
    pub async fn run_window_with(&mut self, window: u64, mut on_open: impl FnMut(u64)) -> Result<WindowSummary> {
        let started = Instant::now();
        let mut opened_called = false;
        let put_ms = self.config.windows.put_window_secs * 1000;
        loop {
            let head = self.chain.best_block().await?;
            self.wait_idle(head.number).await?;
            let live = self.live();
            let done = self.applied.get(&window).is_some_and(|m| live.iter().all(|u| m.contains_key(u)));
            if done {
                break;
            }
            // Hold the block that would close an open put window until the window is over.
            let open: Option<u64> = (0..=self.schedule.window_of(head.number))
                .rev()
                .take(2)
                .map(|w| self.schedule.put_window_block(w))
                .filter(|&b| b <= head.number)
                .max();
            if let Some(b) = open {
                let opened = block_timestamp(&self.chain, b).await?;
                let now = now_ms();
                if now <= opened + put_ms {
                    tokio::time::sleep(Duration::from_millis(opened + put_ms - now + 20)).await;
                }
            }
            self.chain.advance(1);
            let put_block = self.schedule.put_window_block(window);
            if !opened_called && self.chain.best_block().await?.number >= put_block {
                on_open(block_timestamp(&self.chain, put_block).await?);
                opened_called = true;
            }
        }
        Ok(self.summarize(window, started.elapsed().as_secs_f64()))
    }

    fn summarize(&self, window: u64, seconds: f64) -> WindowSummary {
        let reports = self.applied.get(&window).cloned().unwrap_or_default();
        let fingerprints: BTreeMap<u16, String> =
            reports.iter().map(|(&u, (a, _))| (u, a.fingerprint.to_string())).collect();
        let live = self.live();
        let in_sync = live.iter().all(|u| reports.contains_key(u))
            && fingerprints.values().collect::<std::collections::BTreeSet<_>>().len() == 1;
        let first = reports.values().next();
        let loss = first.map_or(f32::NAN, |(_, model)| self.loss(model));
        WindowSummary {
            window,
            loss,
            in_sync,
            fingerprints,
            peers: first.map(|(a, _)| a.accepted.clone()).unwrap_or_default(),
            skipped: first
                .map(|(a, _)| a.skipped.iter().map(|(u, s)| (*u, s.to_string())).collect())
                .unwrap_or_default(),
            bytes_uploaded: self.uploaded.get(&window).copied().unwrap_or(0),
            agreement: reports.iter().map(|(&u, (a, _))| (u, agreement_name(&a.agreement))).collect(),
            agreement_secs: reports.values().map(|(a, _)| a.settle_secs).fold(0.0, f64::max),
            seconds,
        }
    }

    /// Held-out loss of a model.
    pub fn loss(&self, model: &MasterModel) -> f32 {
        tokio::task::block_in_place(|| self.evaluator.mean_loss(model, &self.heldout)).unwrap_or(f32::NAN)
    }

    /// The window the chain is in.
    pub async fn current_window(&self) -> Result<u64> {
        Ok(self.schedule.window_of(self.chain.best_block().await?.number))
    }

    /// Stops every miner.
    pub async fn stop(&mut self) {
        for slot in self.miners.values_mut() {
            if let Some(s) = slot.stop.take() {
                let _ = s.send(true);
            }
            if let Some(t) = slot.task.take() {
                let _ = t.await;
            }
        }
    }
}

/// Runs a devnet for `opts.windows` windows, calling `each` after every window; with
/// `compare_honest`, then the same run without adversaries and faults.
pub async fn run(opts: &DevnetOptions, each: impl FnMut(&WindowSummary)) -> Result<DevnetSummary> {
    let mut summary = run_once(opts, each).await?;
    if opts.compare_honest {
        let dir = std::fs::canonicalize(&opts.dir)?;
        let honest = DevnetOptions {
            adversaries: Vec::new(),
            faults: Vec::new(),
            compare_honest: false,
            dir: dir.join("all-honest"),
            // The same data: the attacked run made it (or was given it).
            datasets: Some(opts.datasets.clone().unwrap_or_else(|| (dir.join("dataset"), dir.join("heldout")))),
            ..opts.clone()
        };
        let baseline = run_once(&honest, |_| {}).await.context("the all-honest run")?;
        summary.all_honest_loss = Some(baseline.windows.iter().map(|w| w.loss).collect());
    }
    Ok(summary)
}

async fn run_once(opts: &DevnetOptions, mut each: impl FnMut(&WindowSummary)) -> Result<DevnetSummary> {
    let mut devnet = Devnet::start(opts).await?;
    let initial_loss = devnet.loss(&MasterModel::genesis(&devnet.config));
    let first = devnet.current_window().await? + 1;
    devnet.set_flaky_window(first + 1);
    let mut windows = Vec::new();
    for w in first..first + opts.windows {
        let s = devnet.run_window(w).await?;
        each(&s);
        windows.push(s);
    }
    if opts.validators > 0 {
        let blocks = 4 * devnet.config.windows.blocks_per_window * u64::from(devnet.config.weights.windows_per_weights);
        devnet.run_until_scored(first + opts.windows - 1, blocks).await?;
    }
    let miners = devnet.miner_summaries();
    devnet.stop().await;
    Ok(DevnetSummary {
        preset: opts.preset.clone(),
        honest_miners: opts.miners,
        validators: opts.validators,
        initial_loss,
        windows,
        miners,
        all_honest_loss: None,
    })
}

/// The subnet config a devnet or localnet runs: the given file, else the preset's, with the
/// settings that make a small model's subnet show its behaviour in a few windows.
pub fn tuned_config(
    preset: &str,
    file: Option<&SubnetConfig>,
    put_window_secs: Option<u64>,
    inner_steps: Option<u32>,
    prepared_data: bool,
) -> Result<SubnetConfig> {
    let named = Preset::from_name(preset)
        .with_context(|| format!("unknown preset `{preset}`: use one of {}", Preset::names()))?;
    let (mut config, source) = match file {
        Some(c) => (c.clone(), "the config file".to_string()),
        None => (named.config(), format!("preset {preset}")),
    };
    if file.is_none() && named == Preset::Test {
        // The test model has about 100 K parameters: at the subnet's 64 values of every
        // 4,096 an update carries too little of what a miner learned from its own samples
        // for the Gauntlet's own-data test to see it in a dozen windows (the honest miners
        // beat every reference in 64 % of their windows, a wrong-data miner in 35 %); a
        // quarter of each block makes that 82-86 % against 18-33 % (docs/performance.md).
        config.compression.topk = config.compression.chunk.pow(2) / 4;
    }
    if !prepared_data && config.data.tokenizer != "bytes" {
        bail!(
            "generated data uses the bytes tokenizer; {source} uses {}: pass a prepared dataset with --dataset \
             (`ferrum data prepare`; the devnet takes a held-out one with --heldout too)",
            config.data.tokenizer
        );
    }
    if let Some(secs) = put_window_secs {
        config.windows.put_window_secs = secs;
    }
    if let Some(steps) = inner_steps {
        config.training.inner_steps = steps;
    }
    // Small models learn their own samples only a little more than any others: the
    // validator looks at all of a miner's samples, and four times as many random ones (the
    // random-data term is most of the noise in the own-data test), to see it.
    let all = u32::try_from(config.samples_per_window()).unwrap_or(u32::MAX);
    config.gauntlet.own_eval_samples = all;
    config.gauntlet.random_eval_samples = 4 * all;
    Ok(config)
}

async fn block_timestamp(chain: &LocalChain, number: u64) -> Result<u64> {
    use futures::StreamExt;
    match chain.blocks(number).next().await {
        Some(Ok(b)) => Ok(b.timestamp_ms),
        Some(Err(e)) => Err(e.into()),
        None => bail!("block {number} is not available"),
    }
}

fn agreement_name(a: &ferrum_node::Agreement) -> String {
    use ferrum_node::Agreement;
    match a {
        Agreement::Unwitnessed => "unwitnessed".into(),
        Agreement::Undecided => "undecided".into(),
        Agreement::Confirmed => "confirmed".into(),
        Agreement::Repaired { fetched } => format!("repaired ({fetched} fetched from mirrors)"),
        Agreement::Unrepairable(e) => format!("unrepairable: {e}"),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// `n` sample indices spread evenly over `0..total` (all of them when `n >= total`): a
/// prepared split is in corpus order, so its first samples are one source's text only.
fn spread(total: u64, n: u64) -> Vec<u64> {
    let n = n.min(total);
    (0..n).map(|i| (u128::from(i) * u128::from(total) / u128::from(n)) as u64).collect()
}

/// A dataset of synthetic text in `dir`, reused when it is already there.
pub async fn make_dataset(dir: &Path, config: &SubnetConfig, bytes: u64, seed: u64) -> Result<Dataset> {
    if dir.join(ferrum_common::keys::DATASET_MANIFEST).exists()
        && let Ok(ds) = Dataset::open_url(&dir.display().to_string(), &config.storage).await
        && ds.check_config(config).is_ok()
    {
        return Ok(ds);
    }
    crate::quickstart::prepare_synthetic(dir, config, bytes, seed).await
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn held_out_samples_are_spread_over_the_split() {
        assert_eq!(spread(10, 4), vec![0, 2, 5, 7]);
        assert_eq!(spread(3, 8), vec![0, 1, 2], "a short split is taken whole");
        assert_eq!(spread(1 << 40, 2), vec![0, 1 << 39]);
        assert!(spread(0, 4).is_empty());
    }
}
