//! `ferrum localnet`: a real subnet on one machine. The subtensor runtime runs under chopsticks
//! with a block every slot of the runtime of wall-clock time, its clock set once to the wall
//! clock before any node starts (so chain time matches the storage clocks that freshness is
//! judged by, and every reader sees the same timestamps); a subnet is created with the project's config,
//! the owner, validators and miners are funded, registered and (validators) staked; buckets live
//! on the filesystem or in a SeaweedFS S3 server. The miners and validators are separate
//! processes, started from the commands it prints (or by the test harness from its ready file).

pub mod chopsticks;
pub mod guard;
pub mod seaweed;
pub mod tools;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferrum_chain::{Chain, Keypair, SubtensorChain};
use ferrum_common::storage::StorageLimits;
use ferrum_common::{Hotkey, S3Credentials, SubnetConfig};
use serde::Serialize;
use subxt::dynamic::Value;

use chopsticks::Chopsticks;
use seaweed::Seaweed;
use tools::Tools;

/// The S3 bucket every node's prefix lives in.
pub const BUCKET: &str = "ferrum-localnet";
/// Development credentials of the local S3 server (it listens on 127.0.0.1 only).
const S3_KEY: &str = "ferrumlocalnet";
const S3_SECRET: &str = "ferrumlocalnetsecret0123456789";

/// Where nodes keep their buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageKind {
    /// Directories under the localnet's folder.
    Fs,
    /// Prefixes of one bucket on a SeaweedFS S3 server on 127.0.0.1 (signed requests).
    S3,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct LocalnetOptions {
    pub dir: PathBuf,
    pub miners: usize,
    pub validators: usize,
    /// RPC port of the chain (0: a free one).
    pub port: u16,
    pub storage: StorageKind,
    pub preset: String,
    pub config: Option<SubnetConfig>,
    /// Raw chain spec of the runtime (default: `FERRUM_SUBTENSOR_SPEC` or scripts/tools').
    pub spec: Option<PathBuf>,
    /// Blocks per window (default: the config's window length in seconds, in the runtime's
    /// blocks).
    pub blocks_per_window: Option<u64>,
    /// The put window (default: the config's).
    pub put_window_secs: Option<u64>,
    /// Stop after this many blocks (default: run until Ctrl-C).
    pub blocks: Option<u64>,
    /// Weights by commit and reveal.
    pub commit_reveal: bool,
    /// Blocks between epochs (default: 9 with commit-reveal, else 99).
    pub tempo: Option<u16>,
    /// How the printed commands start a node: `cargo` (`cargo run --release -p …`) or a folder
    /// holding the `miner` and `validator` binaries.
    pub bin_dir: Option<PathBuf>,
}

/// One node to run, as the printed command and the ready file give it.
#[derive(Debug, Clone, Serialize)]
pub struct NodePlan {
    /// `miner` or `validator`: the binary.
    pub program: String,
    pub name: String,
    pub uid: u16,
    pub hotkey: String,
    /// Arguments after the binary.
    pub args: Vec<String>,
    /// Environment the node needs (S3 credentials).
    pub env: Vec<(String, String)>,
    pub state_dir: PathBuf,
    pub storage_url: String,
    pub metrics_port: u16,
}

/// What a running localnet tells its users (and writes to `ready.json` in its folder).
#[derive(Debug, Clone, Serialize)]
pub struct Ready {
    pub endpoint: String,
    pub netuid: u16,
    pub config: PathBuf,
    pub config_hash: String,
    pub owner: String,
    pub s3_endpoint: Option<String>,
    pub block_secs: f64,
    pub blocks_per_window: u64,
    pub nodes: Vec<NodePlan>,
}

/// Where the localnet's nodes run: what every node's flags share.
struct Site<'a> {
    dir: &'a Path,
    config: &'a Path,
    netuid: u16,
    endpoint: String,
    store: Option<&'a Seaweed>,
}

impl NodePlan {
    /// The flags, environment, bucket and state folder of node `{role}-{i}`.
    fn new(
        at: &Site<'_>,
        role: &str,
        i: usize,
        secret_uri: &str,
        hotkey: &Hotkey,
        uid: u16,
        metrics_port: u16,
    ) -> Self {
        let name = format!("{role}-{i}");
        let state_dir = at.dir.join("nodes").join(&name);
        let (storage_url, env) = match at.store {
            None => (state_dir.join("bucket").display().to_string(), Vec::new()),
            Some(s) => (
                s.location(&name).to_url(),
                vec![
                    ("AWS_ACCESS_KEY_ID".to_string(), S3_KEY.to_string()),
                    ("AWS_SECRET_ACCESS_KEY".to_string(), S3_SECRET.to_string()),
                ],
            ),
        };
        let mut args: Vec<String> = [
            ("--config", at.config.display().to_string()),
            ("--netuid", at.netuid.to_string()),
            ("--hotkey", secret_uri.to_string()),
            ("--subtensor.chain_endpoint", at.endpoint.clone()),
            ("--storage.url", storage_url.clone()),
            ("--state.dir", state_dir.join("state").display().to_string()),
            ("--metrics.port", metrics_port.to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect();
        // Every bucket of a localnet is a local folder or its own S3 server on 127.0.0.1,
        // which nodes refuse to follow for a peer unless told.
        args.extend(["--peers.allow_local".to_string(), "--peers.allow_private".to_string()]);
        if role == "validator" {
            args.extend(["--checkpoint.every".to_string(), "5".to_string()]);
        }
        NodePlan {
            program: role.to_string(),
            name,
            uid,
            hotkey: hotkey.to_string(),
            args,
            env,
            state_dir,
            storage_url,
            metrics_port,
        }
    }

    /// The shell line that starts this node.
    pub fn command(&self, bin_dir: Option<&Path>) -> String {
        let env: String = self.env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        let program = match bin_dir {
            Some(dir) => dir.join(&self.program).display().to_string(),
            None => format!("cargo run --release -p ferrum-{} --", self.program),
        };
        let args: Vec<String> = self.args.iter().map(|a| shell_quote(a)).collect();
        format!("{env}{program} {}", args.join(" "))
    }
}

fn shell_quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/-_.:=,@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn u(n: impl Into<u128>) -> Value {
    Value::u128(n.into())
}

/// A started localnet: the chain (blocks come from [`Localnet::produce`]) and the store.
pub struct Localnet {
    pub ready: Ready,
    chain: Chopsticks,
    /// What the runtime adds to its clock per block (its slot as chopsticks reads it).
    slot_ms: u64,
    _store: Option<Seaweed>,
}

impl Localnet {
    /// Prepares data and config, starts the chain and the store, creates and fills the subnet.
    pub async fn start(opts: &LocalnetOptions) -> Result<Localnet> {
        if opts.miners == 0 {
            bail!("--miners must be at least 1");
        }
        // The test preset's 2 inner steps barely fit a miner's own data; the devnet's 8 give the
        // Gauntlet's own-versus-random test a signal.
        let inner_steps = opts.config.is_none().then_some(8);
        let mut config =
            crate::devnet::tuned_config(&opts.preset, opts.config.as_ref(), opts.put_window_secs, inner_steps, false)?;
        std::fs::create_dir_all(&opts.dir).with_context(|| format!("creating {}", opts.dir.display()))?;
        let dir = std::fs::canonicalize(&opts.dir)?;
        // A new chain each start: state from an earlier run belongs to another chain.
        crate::devnet::clear_run_folders(&dir, &["nodes", "seaweed"])?;
        let tokens = 4 * config.samples_per_window() * u64::from(config.data.sequence_length) * 16;
        let dataset = crate::devnet::make_dataset(&dir.join("dataset"), &config, tokens.max(1 << 20), 0).await?;
        config.data.dataset_id = Some(dataset.id().to_string());
        config.storage.dataset_url = dir.join("dataset").display().to_string();
        config.storage.url = dir.join("nodes").display().to_string();

        let tools = Tools::find(opts.spec.as_deref())?;
        let store = match opts.storage {
            StorageKind::Fs => None,
            StorageKind::S3 => {
                let (weed, at) = (tools.weed.clone(), dir.join("seaweed"));
                let credentials = S3Credentials { access_key_id: S3_KEY.into(), secret_access_key: S3_SECRET.into() };
                let server =
                    tokio::task::spawn_blocking(move || Seaweed::start(&weed, &at, BUCKET, credentials)).await??;
                // The dataset goes into the bucket too, as a subnet's would.
                let target = server.store("dataset", limits())?;
                let root = dir.join("dataset");
                for path in files_under(&root)? {
                    let key = path.strip_prefix(&root)?.to_string_lossy().replace('\\', "/");
                    target.put_file(&key, &path).await?;
                }
                config.storage.dataset_url = server.location("dataset").to_url();
                Some(server)
            }
        };
        let config_path = dir.join("subnet.json");

        let owner = Keypair::from_secret("//Alice", "localnet owner")?;
        let roles: Vec<(&str, usize)> =
            (1..=opts.validators).map(|i| ("validator", i)).chain((1..=opts.miners).map(|i| ("miner", i))).collect();
        let keys: Vec<(String, Keypair)> = roles
            .iter()
            .map(|(role, i)| {
                let uri = format!("//ferrum-localnet-{role}-{i}");
                Keypair::from_secret(&uri, "localnet node").map(|k| (uri, k))
            })
            .collect::<Result<_, _>>()?;
        let mut funded = vec![owner.hotkey()];
        funded.extend(keys.iter().map(|(_, k)| k.hotkey()));

        eprintln!("localnet: starting the subtensor runtime ({}) under chopsticks", tools.spec.display());
        let chain =
            Chopsticks::start(&tools.chopsticks, &tools.spec, &dir, opts.port, &owner.hotkey(), &funded).await?;
        // Setting up takes a block per extrinsic (instant mode), each a slot later than the last:
        // they happen an hour in the past, so the clock then jumps to now and stays with it.
        chain.time_travel(now_ms() - 3_600_000).await?;
        let client = SubtensorChain::connect(&chain.endpoint(), Duration::from_secs(60), 5).await?;
        let tempo = opts.tempo.unwrap_or(if opts.commit_reveal { 9 } else { 99 });
        if tempo == 0 {
            bail!("--tempo must be at least 1 block");
        }
        let netuid = create_subnet(&client, &owner, opts.commit_reveal, tempo).await?;
        seed_pool(&chain, netuid).await?;
        let mut nodes = Vec::new();
        for ((role, i), (uri, key)) in roles.iter().zip(&keys) {
            let uid = client.register(&owner, netuid, &key.hotkey()).await?;
            if *role == "validator" {
                let stake = 1_000_000_000_000u64; // 1,000 TAO
                client
                    .submit_call(&owner, ferrum_chain::calls::add_stake(key.hotkey().0, netuid, stake))
                    .await
                    .context("staking the validator")?;
                let alpha = client.metagraph(netuid, None).await?.neurons.get(usize::from(uid)).map_or(0, |n| n.stake);
                // At the seeded pool's price of about 1, less than 90 % back means it was not seeded.
                if alpha < stake / 10 * 9 {
                    bail!(
                        "the validator's stake did not land on subnet {netuid}: {stake} rao of TAO bought {alpha} rao of alpha"
                    );
                }
            }
            let at =
                Site { dir: &dir, config: &config_path, netuid, endpoint: chain.endpoint(), store: store.as_ref() };
            nodes.push(NodePlan::new(&at, role, *i, uri, &key.hotkey(), uid, 9100 + nodes.len() as u16));
        }
        chain.set_mode("Manual").await?;
        // Chopsticks stamps each block one slot (as it reads the runtime's) after its parent,
        // whatever the wall clock says: learn the slot from one block, then make a block every
        // slot of wall-clock time so chain time keeps pace with the storage clocks.
        let probe = now_ms() - 60_000;
        chain.time_travel(probe).await?;
        chain.new_block().await?;
        let slot_ms = client.best_block().await?.timestamp_ms.saturating_sub(probe);
        if slot_ms < 1000 {
            bail!("the runtime's slot is {slot_ms} ms; a localnet needs at least 1 s between blocks");
        }
        // Windows keep the config's length in seconds, counted in this runtime's blocks.
        let nominal_ms = config.windows.blocks_per_window as f64 * config.windows.block_time_secs * 1000.0;
        config.windows.block_time_secs = slot_ms as f64 / 1000.0;
        config.windows.blocks_per_window =
            opts.blocks_per_window.unwrap_or(((nominal_ms / slot_ms as f64).round() as u64).max(3));
        if let Err(errors) = config.validate() {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            bail!("localnet config is not valid: {}", list.join("; "));
        }
        std::fs::write(&config_path, config.to_pretty_json())?;
        // Nodes wait for the validators' records after each window at most a third of a window
        // (the 20 s default suits windows of minutes; in a localnet's short windows it would eat
        // the next window's training): undecided, a node settles the window at the next one.
        let window_secs = config.windows.blocks_per_window as f64 * config.windows.block_time_secs;
        let record_wait = ((window_secs / 3.0).round() as u64).clamp(2, 20);
        for n in &mut nodes {
            n.args.extend(["--gather.record_wait_secs".to_string(), record_wait.to_string()]);
        }
        // The clock is set once, before any node reads a block: from here on every block is its
        // parent plus a slot, so every reader sees the same timestamps.
        chain.time_travel(now_ms().saturating_sub(slot_ms)).await?;
        chain.new_block().await?;
        let ready = Ready {
            endpoint: chain.endpoint(),
            netuid,
            config: config_path,
            config_hash: config.hash().to_string(),
            owner: owner.hotkey().to_string(),
            s3_endpoint: store.as_ref().map(|s| s.endpoint.clone()),
            block_secs: config.windows.block_time_secs,
            blocks_per_window: config.windows.blocks_per_window,
            nodes,
        };
        let json = serde_json::to_vec_pretty(&ready)?;
        let tmp = dir.join("ready.json.tmp");
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, dir.join("ready.json"))?;
        Ok(Localnet { ready, chain, slot_ms, _store: store })
    }

    /// Makes a block every slot of wall-clock time until `blocks` have been made or `stop` fires.
    pub async fn produce(&self, blocks: Option<u64>, mut stop: tokio::sync::watch::Receiver<bool>) -> Result<()> {
        let mut made = 0u64;
        let slot = Duration::from_millis(self.slot_ms);
        let mut next = tokio::time::Instant::now() + slot;
        while blocks.is_none_or(|n| made < n) {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = stop.changed() => return Ok(()),
            }
            // A fixed schedule: a late block is followed by an early one, so chain time (a slot
            // per block) never drifts from the wall clock.
            next += slot;
            let started = std::time::Instant::now();
            self.chain.new_block().await?;
            made += 1;
            let took = started.elapsed();
            if took > slot {
                eprintln!(
                    "localnet: block {made} took {} ms to build, longer than a slot ({} ms): the chain falls behind the clock",
                    took.as_millis(),
                    self.slot_ms
                );
            }
        }
        Ok(())
    }
}

fn files_under(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(files_under(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

fn limits() -> StorageLimits {
    StorageLimits {
        timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(5),
        max_retries: 3,
        retry_backoff: Duration::from_millis(100),
        max_object_bytes: 1 << 30,
    }
}

/// Registers a subnet owned by `owner` (its hotkey takes uid 0, the burn uid) and sets the
/// hyperparameters a localnet runs with (sudo).
async fn create_subnet(client: &SubtensorChain, owner: &Keypair, commit_reveal: bool, tempo: u16) -> Result<u16> {
    let sudo = |call: &'static str, args: Vec<Value>| {
        let sudo = ferrum_chain::calls::sudo_admin(call, args);
        async move { client.submit_call(owner, sudo).await.with_context(|| format!("sudo {call}")) }
    };
    // Calls that changed between runtimes (register_network's mechid, the stake threshold,
    // start_call) are chosen from the metadata.
    let profile = client.runtime_profile().await?;
    sudo("sudo_set_network_rate_limit", vec![u(0u64)]).await?;
    let before = subnets(client).await;
    client
        .submit_call(owner, ferrum_chain::calls::register_network(&profile, owner.hotkey().0))
        .await
        .context("registering the subnet")?;
    let netuid = subnets(client).await.into_iter().find(|n| !before.contains(n)).context("no new subnet appeared")?;
    if client.uid_of(netuid, &owner.hotkey()).await? != Some(0) {
        bail!("the owner's hotkey is not uid 0 of the new subnet {netuid}; the burn uid would pay someone else");
    }
    let threshold =
        profile.sudo_stake_threshold_call.context("this runtime has no sudo call for the stake threshold")?;
    sudo(threshold, vec![u(0u64)]).await?;
    if profile.start_call {
        // Emissions of a new subnet start when its owner says so, after a delay made zero here.
        sudo("sudo_set_start_call_delay", vec![u(0u64)]).await?;
        client.submit_call(owner, ferrum_chain::calls::start_call(&profile, netuid)?).await.context("start_call")?;
    }
    sudo("sudo_set_target_registrations_per_interval", vec![u(netuid), u(1000u16)]).await?;
    sudo("sudo_set_max_registrations_per_block", vec![u(netuid), u(1000u16)]).await?;
    sudo("sudo_set_tempo", vec![u(netuid), u(tempo)]).await?;
    sudo("sudo_set_weights_set_rate_limit", vec![u(netuid), u(1u64)]).await?;
    sudo("sudo_set_weights_version_key", vec![u(netuid), u(0u64)]).await?;
    sudo("sudo_set_min_allowed_weights", vec![u(netuid), u(1u16)]).await?;
    sudo("sudo_set_max_weight_limit", vec![u(netuid), u(u16::MAX)]).await?;
    sudo("sudo_set_commit_reveal_weights_enabled", vec![u(netuid), Value::bool(commit_reveal)]).await?;
    Ok(netuid)
}

/// Liquidity each side of a new subnet's pool: 100,000 TAO against 100,000 alpha.
const POOL_RAO: u64 = 100_000_000_000_000;

/// Gives the new subnet's pool the depth of a subnet in use. A subnet registered on this
/// genesis holds almost no alpha in its pool, so `add_stake` swaps 1,000 TAO for about 0
/// alpha: validators would hold no stake on the subnet, earn no dividends and give miners no
/// incentive. At price 1 and this depth, 1,000 TAO buy 990 alpha, and a second validator gets
/// within 1 % of the first. Both sides are written together: a block built on a pool whose
/// price is far from its alpha side's was seen to lose the write.
async fn seed_pool(chain: &Chopsticks, netuid: u16) -> Result<()> {
    let pool = serde_json::json!([[[netuid], POOL_RAO.to_string()]]);
    chain
        .set_storage(serde_json::json!({ "SubtensorModule": { "SubnetTAO": pool, "SubnetAlphaIn": pool } }))
        .await
        .context("seeding the subnet's pool")
}

async fn subnets(client: &SubtensorChain) -> Vec<u16> {
    let mut out = Vec::new();
    for n in 0..64u16 {
        if client.subnet_params(n).await.is_ok() {
            out.push(n);
        }
    }
    out
}
