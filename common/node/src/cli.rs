//! Flags every long-running node takes, beyond `common::cli::NodeArgs`: the wallet, the chain
//! endpoint, where its state and metrics go. Bittensor's names; each is also an environment
//! variable.

use std::path::PathBuf;
use std::time::Duration;

use ferrum_chain::wallet::{default_wallet_root, expand_home, wallet_address};
use ferrum_chain::{ChainError, Keypair, SubtensorChain, WalletError};

/// A node's identity, chain and local resources.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Bittensor wallet name (`{wallet.path}/{wallet.name}/hotkeys/{wallet.hotkey}`); instead of
    /// --hotkey.
    #[arg(global = true, long = "wallet.name", env = "BT_WALLET_NAME")]
    pub wallet_name: Option<String>,
    /// Hotkey file name within the wallet.
    #[arg(global = true, long = "wallet.hotkey", env = "BT_WALLET_HOTKEY", default_value = "default")]
    pub wallet_hotkey: String,
    /// Wallet root (default ~/.bittensor/wallets).
    #[arg(global = true, long = "wallet.path", env = "BT_WALLET_PATH")]
    pub wallet_path: Option<PathBuf>,
    #[command(flatten)]
    pub chain: ChainArgs,
    /// The subnet mechanism whose weights a validator sets (0: the subnet's first). Runtimes
    /// with mechanisms only; elsewhere anything but 0 is refused when weights are set.
    #[arg(global = true, long = "mechid", env = "BT_MECHID", default_value_t = 0)]
    pub mechid: u8,
    /// Directory for this node's model, error feedback and progress (survives restarts).
    #[arg(global = true, long = "state.dir", env = "FERRUM_STATE_DIR", default_value = "ferrum-state")]
    pub state_dir: PathBuf,
    /// Serve Prometheus metrics on this port (127.0.0.1 unless --metrics.public).
    #[arg(global = true, long = "metrics.port", env = "FERRUM_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// Serve metrics on all interfaces.
    #[arg(global = true, long = "metrics.public", env = "FERRUM_METRICS_PUBLIC")]
    pub metrics_public: bool,
    /// Device to train and evaluate on: cpu, or wgpu / cuda in builds with those features
    /// (`--features wgpu`). `--backend` and `flex` (the CPU backend's name) are accepted too.
    #[arg(global = true, long = "device", alias = "backend", env = "FERRUM_DEVICE", default_value = "cpu")]
    pub backend: String,
    /// Threads for encoding and aggregation (default: all cores).
    #[arg(global = true, long, env = "FERRUM_THREADS")]
    pub threads: Option<usize>,
    /// Follow peers' buckets that are local folders (a devnet or localnet on one machine).
    #[arg(global = true, long = "peers.allow_local", env = "FERRUM_PEERS_ALLOW_LOCAL")]
    pub peers_allow_local: bool,
    /// Follow peers' buckets over plain http or at loopback and private addresses (a localnet's
    /// S3 server). Link-local addresses are never followed.
    #[arg(global = true, long = "peers.allow_private", env = "FERRUM_PEERS_ALLOW_PRIVATE")]
    pub peers_allow_private: bool,
    /// Longest wait, after applying a window, for the validators' gather records to decide it
    /// (undecided, the node keeps its own set and decides at the next window).
    #[arg(global = true, long = "gather.record_wait_secs", env = "FERRUM_RECORD_WAIT_SECS", default_value_t = 20)]
    pub record_wait_secs: u64,
}

/// A key that cannot be had from the flags.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Wallet(#[from] WalletError),
    #[error(
        "no signing key: pass --wallet.name (and --wallet.hotkey), or --hotkey with a secret URI (//Alice), a key \
         file path, or env:VAR naming a variable that holds a mnemonic"
    )]
    Missing,
    #[error("--hotkey {0} is a public address; signing needs the secret (a key file, a secret URI or env:VAR)")]
    PublicOnly(String),
}

/// Why a node cannot start from its flags.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Preflight(#[from] ferrum_common::node::NodeError),
    #[error("storage.url: {0}")]
    Location(#[from] ferrum_common::location::LocationError),
    #[error("connecting to the chain: {0}")]
    Chain(#[from] ChainError),
    #[error("serving metrics: {0}")]
    Metrics(std::io::Error),
}

/// A node ready to run: its setup, the chain, and a shutdown signal tied to Ctrl-C / SIGTERM.
pub struct Launch {
    pub setup: crate::startup::NodeSetup,
    pub chain: SubtensorChain,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Which chain to talk to, as the Bittensor SDK names it; shared by the nodes and `ferrum
/// metagraph`.
#[derive(clap::Args, Debug, Clone)]
pub struct ChainArgs {
    /// `finney`, `test` or `local` (the Bittensor SDK's endpoints).
    #[arg(global = true, long = "subtensor.network", env = "BT_SUBTENSOR_NETWORK", default_value = "finney")]
    pub network: String,
    /// A chain endpoint (ws:// or wss://), overriding --subtensor.network.
    #[arg(global = true, long = "subtensor.chain_endpoint", env = "BT_SUBTENSOR_CHAIN_ENDPOINT")]
    pub chain_endpoint: Option<String>,
}

impl ChainArgs {
    /// The endpoint: `--subtensor.chain_endpoint`, else the network's.
    pub fn endpoint(&self) -> Result<String, String> {
        match &self.chain_endpoint {
            Some(url) => Ok(url.clone()),
            None => network_endpoint(&self.network).map(str::to_string).ok_or_else(|| {
                format!(
                    "--subtensor.network {}: unknown; use finney, test, local or --subtensor.chain_endpoint",
                    self.network
                )
            }),
        }
    }
}

/// The Bittensor SDK's endpoint for a network name.
pub fn network_endpoint(network: &str) -> Option<&'static str> {
    match network {
        "finney" => Some("wss://entrypoint-finney.opentensor.ai:443"),
        "test" => Some("wss://test.finney.opentensor.ai:443"),
        "archive" => Some("wss://archive.chain.opentensor.ai:443"),
        "local" => Some("ws://127.0.0.1:9944"),
        _ => None,
    }
}

impl RunArgs {
    /// The signing key: the wallet's hotkey file, else `--hotkey` as `env:VAR`, a key file, or
    /// a secret URI / mnemonic.
    pub fn keypair(&self, hotkey_flag: Option<&str>) -> Result<Keypair, KeyError> {
        if let Some(name) = &self.wallet_name {
            return Ok(Keypair::from_wallet(&self.wallet_root(), name, &self.wallet_hotkey)?);
        }
        let secret = hotkey_flag.ok_or(KeyError::Missing)?;
        if let Some(var) = secret.strip_prefix("env:") {
            return Ok(Keypair::from_env(var)?);
        }
        let path = std::path::Path::new(secret);
        if path.is_file() {
            return Ok(Keypair::from_key_file(path)?);
        }
        if secret.parse::<ferrum_common::Hotkey>().is_ok() {
            return Err(KeyError::PublicOnly(secret.to_string()));
        }
        Ok(Keypair::from_secret(secret, "--hotkey")?)
    }

    /// The hotkey's address, for commands that need no signature (`check`): `--hotkey` as an
    /// address, else the wallet's public key (from the hotkey file, or `{hotkey}pub.txt` when
    /// the secret is encrypted or absent), else the key `--hotkey` names. The error says why
    /// each source was refused.
    pub fn address(&self, hotkey_flag: Option<&str>) -> Result<ferrum_common::Hotkey, KeyError> {
        if let Some(address) = hotkey_flag.and_then(|h| h.parse::<ferrum_common::Hotkey>().ok()) {
            return Ok(address);
        }
        if let Some(name) = &self.wallet_name {
            return Ok(wallet_address(&self.wallet_root(), name, &self.wallet_hotkey)?);
        }
        self.keypair(hotkey_flag).map(|k| k.hotkey())
    }

    /// `--wallet.path` with a leading `~` read as the home directory (as bittensor-wallet does),
    /// else Bittensor's default root.
    pub fn wallet_root(&self) -> PathBuf {
        self.wallet_path.as_deref().map_or_else(default_wallet_root, expand_home)
    }

    /// The endpoint to connect to.
    pub fn endpoint(&self) -> Result<String, String> {
        self.chain.endpoint()
    }

    /// Connects to the chain, retrying with a doubling pause (1 s to 30 s, 8 tries) while it is
    /// unreachable, and saying so each time: an operator sees at once which endpoint it is
    /// trying and why it fails.
    pub async fn connect(&self) -> Result<SubtensorChain, ChainError> {
        const ATTEMPTS: u32 = 8;
        let url = self.endpoint().map_err(ChainError::Connection)?;
        tracing::info!(endpoint = %url, "connecting to the chain");
        let mut pause = Duration::from_secs(1);
        let mut attempt = 1;
        loop {
            match SubtensorChain::connect(&url, Duration::from_secs(60), 1).await {
                Ok(chain) => {
                    tracing::info!(endpoint = %url, "connected to the chain");
                    return Ok(chain.with_mechanism(self.mechid));
                }
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    tracing::warn!(
                        endpoint = %url,
                        attempt,
                        of = ATTEMPTS,
                        retry_in_secs = pause.as_secs(),
                        error = %e,
                        "chain unreachable; retrying"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(30));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Everything a node binary does before its loop: the signing key, the preflight (config,
    /// dataset, bucket), the chain connection, the metrics endpoint and the shutdown signal.
    pub async fn launch(
        &self,
        node: &ferrum_common::cli::NodeArgs,
        config: ferrum_common::SubnetConfig,
    ) -> Result<Launch, LaunchError> {
        let keypair = self.keypair(node.hotkey.as_deref())?;
        let ctx = ferrum_common::node::NodeContext::preflight(config, node.netuid, &keypair.hotkey()).await?;
        let bucket_url = ferrum_common::location::Location::parse(&ctx.config.storage.url)?.absolute().to_url();
        let chain = self.connect().await?;
        // A runtime the client cannot sign for stops the node here, naming what it lacks.
        let runtime = chain.runtime_profile().await?;
        runtime.storage_index(node.netuid, self.mechid)?;
        tracing::info!(
            mechanisms = runtime.mechanisms,
            timelocked_commits = runtime.timelocked_commits,
            mechid = self.mechid,
            "chain runtime"
        );
        let metrics = crate::metrics::Metrics::default();
        if let Some(port) = self.metrics_port {
            let bound = metrics.serve(port, self.metrics_public).await.map_err(LaunchError::Metrics)?;
            tracing::info!(port = bound, "metrics at /metrics");
        }
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            ferrum_common::cli::shutdown_signal().await;
            tracing::info!("stopping");
            let _ = stop.send(true);
        });
        let setup = crate::startup::NodeSetup {
            netuid: node.netuid,
            keypair,
            store: ctx.store,
            bucket_url: bucket_url.clone(),
            dataset: std::sync::Arc::new(ctx.dataset),
            state_dir: self.state_dir.clone(),
            backend: self.backend.clone(),
            threads: self.threads(),
            metrics,
            events: None,
            peers: crate::sync::PeerAccess {
                policy: ferrum_common::location::PeerUrlPolicy {
                    allow_local: self.peers_allow_local,
                    allow_private: self.peers_allow_private,
                },
                own_bucket: Some(bucket_url.clone()),
                hook: None,
            },
            record_wait: Duration::from_secs(self.record_wait_secs),
            config: ctx.config,
        };
        Ok(Launch { setup, chain, shutdown })
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1)
    }
}

/// Logs and exports (`ferrum_device_info{device=…}`) the device a node trains or evaluates on,
/// once the caller has made sure it works (`ferrum_common::train::device`; this crate does not
/// build the training core).
pub fn announce_device(metrics: &crate::metrics::Metrics, name: &str) {
    tracing::info!(device = name, "training and evaluation device");
    metrics.set(format!("ferrum_device_info{{device=\"{name}\"}}"), "The device training and evaluation run on.", 1.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[derive(Parser)]
    struct WithCheck {
        #[command(flatten)]
        run: RunArgs,
        #[command(subcommand)]
        command: Option<Sub>,
    }

    #[derive(clap::Subcommand)]
    enum Sub {
        Check,
    }

    #[test]
    fn node_flags_may_follow_the_subcommand_and_the_wallet_path_expands_home() {
        let after = WithCheck::try_parse_from(["x", "check", "--wallet.name", "w", "--wallet.path", "~/ws"])
            .expect("wallet flags after check");
        assert!(matches!(after.command, Some(Sub::Check)));
        assert_eq!(after.run.wallet_name.as_deref(), Some("w"));
        let home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
        assert_eq!(after.run.wallet_root(), home.join("ws"));
    }

    #[test]
    fn check_gets_an_address_or_the_real_reason() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../chain/tests/fixtures/wallets");
        let root = root.to_str().expect("utf-8");
        let alice = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
        let run = |args: &[&str]| Cli::parse_from([&["x"], args].concat()).run;
        let wallet = run(&["--wallet.path", root, "--wallet.name", "w", "--wallet.hotkey", "uri"]);
        assert_eq!(wallet.address(None).expect("wallet").to_ss58(), alice);
        assert_eq!(run(&[]).address(Some(alice)).expect("address").to_ss58(), alice);
        let reason = |r: RunArgs| r.address(None).expect_err("refused").to_string();
        let ed = reason(run(&["--wallet.path", root, "--wallet.name", "w", "--wallet.hotkey", "ed"]));
        assert!(ed.contains("ed25519"), "{ed}");
        let missing = reason(run(&["--wallet.path", root, "--wallet.name", "w", "--wallet.hotkey", "nope"]));
        assert!(missing.contains("cannot read key file") && missing.contains("nope"), "{missing}");
        assert!(reason(run(&[])).contains("--wallet.name"));
    }

    #[test]
    fn networks_map_to_the_sdk_endpoints_and_the_endpoint_overrides() {
        let a = Cli::parse_from(["x", "--subtensor.network", "test"]).run;
        assert_eq!(a.endpoint().as_deref(), Ok("wss://test.finney.opentensor.ai:443"));
        let a = Cli::parse_from(["x", "--subtensor.network", "local", "--subtensor.chain_endpoint", "ws://h:1"]).run;
        assert_eq!(a.endpoint().as_deref(), Ok("ws://h:1"));
        assert!(Cli::parse_from(["x", "--subtensor.network", "mars"]).run.endpoint().is_err());
    }

    #[test]
    fn keys_from_uri_env_and_refusal_of_public_addresses() {
        let a = Cli::parse_from(["x"]).run;
        let alice = a.keypair(Some("//Alice")).expect("uri");
        assert_eq!(alice.hotkey().to_ss58(), "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY");
        assert!(matches!(a.keypair(Some(&alice.hotkey().to_ss58())), Err(KeyError::PublicOnly(_))));
        assert!(matches!(a.keypair(None), Err(KeyError::Missing)));
        assert!(a.keypair(Some("env:FERRUM_TEST_NO_SUCH_VAR")).is_err());
    }
}
