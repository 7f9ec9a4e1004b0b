//! The real subtensor runtime under chopsticks on 127.0.0.1, and the dev RPCs a localnet drives
//! it with: blocks on demand, the block build mode, and the chain's clock.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferrum_common::Hotkey;
use subxt::rpcs::{RpcClient, rpc_params};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running chopsticks process (killed on drop) and an RPC client to it.
pub struct Chopsticks {
    pub port: u16,
    rpc: RpcClient,
    /// The node process under the guard shell.
    node: Option<u32>,
    _process: Child,
}

impl Drop for Chopsticks {
    fn drop(&mut self) {
        // The shell is killed on drop; the node under it goes now too, not at this process's end.
        if let Some(pid) = self.node {
            let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

/// RPC methods chopsticks lacks, loaded with `--unsafe-rpc-methods` (the script's body must
/// return the handlers). `account_nextIndex` is Substrate's alias of `system_accountNextIndex`
/// and the one the Bittensor SDK (async-substrate-interface) calls before every transaction:
/// without it the SDK cannot submit anything to a localnet. Same answer as chopsticks' own
/// `system_accountNextIndex`: the account's nonce plus its transactions in the pool.
const EXTRA_RPC: &str = r#"return {
  account_nextIndex: async (context, [address]) => {
    const head = context.chain.head;
    const registry = await head.registry;
    const account = registry.createType('AccountId', address);
    const result = await head.call('AccountNonceApi_account_nonce', [account.toHex()]);
    // SCALE bytes: a hex string given to createType would be read as a big-endian number.
    const hex = result.result.slice(2);
    const bytes = new Uint8Array(hex.length / 2).map((_, i) => parseInt(hex.slice(2 * i, 2 * i + 2), 16));
    const nonce = registry.createType('Index', bytes).toNumber();
    return nonce + context.chain.txPool.pendingExtrinsicsBy(address).length;
  },
};
"#;

/// Free balance, in rao, that every account named at start gets at genesis.
pub const GENESIS_BALANCE: u128 = 1_000_000_000_000_000_000;

impl Chopsticks {
    /// Starts the runtime of `spec` (a raw chain spec) with `sudo` as its sudo key and each of
    /// `funded` holding [`GENESIS_BALANCE`]. `port` 0 takes a free one. Its output goes to
    /// `chopsticks.log` and `chopsticks.stderr.log` in `dir`.
    pub async fn start(
        chopsticks: &Path,
        spec: &Path,
        dir: &Path,
        port: u16,
        sudo: &Hotkey,
        funded: &[Hotkey],
    ) -> Result<Chopsticks> {
        let accounts: String = funded
            .iter()
            .map(|k| {
                format!("      - - - {k}\n        - providers: 1\n          data: {{ free: \"{GENESIS_BALANCE}\" }}\n")
            })
            .collect();
        let yaml = format!(
            "genesis: {}\nhost: 127.0.0.1\nport: {port}\nbuild-block-mode: Instant\nruntime-log-level: 0\n\
             import-storage:\n  Sudo:\n    Key: {sudo}\n  System:\n    Account:\n{accounts}",
            spec.display(),
        );
        let cfg = dir.join("chopsticks.yml");
        std::fs::write(&cfg, yaml).with_context(|| format!("writing {}", cfg.display()))?;
        let extra_rpc = dir.join("chopsticks-rpc.js");
        std::fs::write(&extra_rpc, EXTRA_RPC).with_context(|| format!("writing {}", extra_rpc.display()))?;
        let log_path = dir.join("chopsticks.log");
        // Under a guard shell, so chopsticks ends with this process however it ends (SIGKILL
        // included): a test that kills `ferrum localnet` must not leave a chain running.
        let mut process = Command::new("sh")
            .arg("-c")
            .arg(super::guard::script("", "", ""))
            .arg("sh")
            .arg("node")
            .arg(chopsticks)
            .arg("-c")
            .arg(&cfg)
            .arg("--unsafe-rpc-methods")
            .arg(&extra_rpc)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting chopsticks (is sh on PATH?)")?;
        let mut log = tokio::fs::File::create(&log_path).await?;
        let mut lines = BufReader::new(process.stdout.take().context("chopsticks stdout")?).lines();
        let mut errors = BufReader::new(process.stderr.take().context("chopsticks stderr")?).lines();
        let mut error_log = tokio::fs::File::create(dir.join("chopsticks.stderr.log")).await?;
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            while let Ok(Some(line)) = errors.next_line().await {
                let _ = error_log.write_all(format!("{line}\n").as_bytes()).await;
            }
        });
        let mut child: Option<u32> = None;
        let found = tokio::time::timeout(Duration::from_secs(180), async {
            use tokio::io::AsyncWriteExt as _;
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(pid) = line.strip_prefix(super::guard::CHILD_PREFIX) {
                    child = pid.trim().parse::<u32>().ok();
                    continue;
                }
                let _ = log.write_all(format!("{line}\n").as_bytes()).await;
                if let Some(rest) = line.split("RPC listening on http://127.0.0.1:").nth(1) {
                    return rest.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()).map(|p| (p, log));
                }
            }
            None
        })
        .await;
        let (port, mut log) = match found {
            Ok(Some(found)) => found,
            Ok(None) => bail!(
                "chopsticks exited before listening (a port in use?); its output is in {} and chopsticks.stderr.log beside it",
                log_path.display()
            ),
            Err(_) => bail!("chopsticks did not listen within 180 s; its output is in {}", log_path.display()),
        };
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = log.write_all(format!("{line}\n").as_bytes()).await;
            }
        });
        let rpc = RpcClient::from_insecure_url(format!("ws://127.0.0.1:{port}")).await.context("chopsticks RPC")?;
        Ok(Chopsticks { port, rpc, node: child, _process: process })
    }

    /// The WebSocket endpoint nodes connect to.
    pub fn endpoint(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Builds one block now.
    pub async fn new_block(&self) -> Result<()> {
        let _: serde_json::Value = self
            .rpc
            .request("dev_newBlock", rpc_params![serde_json::json!({ "count": 1 })])
            .await
            .context("dev_newBlock")?;
        Ok(())
    }

    /// `Instant` (a block per transaction) or `Manual` (blocks only from [`new_block`](Self::new_block)).
    pub async fn set_mode(&self, mode: &str) -> Result<()> {
        let _: serde_json::Value =
            self.rpc.request("dev_setBlockBuildMode", rpc_params![mode]).await.context("dev_setBlockBuildMode")?;
        Ok(())
    }

    /// Writes storage at the head block (`dev_setStorage`): `{Pallet: {Item: [[keys, value]]}}`,
    /// encoded by chopsticks from the runtime's metadata.
    pub async fn set_storage(&self, storage: serde_json::Value) -> Result<()> {
        let _: serde_json::Value =
            self.rpc.request("dev_setStorage", rpc_params![storage]).await.context("dev_setStorage")?;
        Ok(())
    }

    /// Sets the chain's clock: the next block's timestamp is `ms` plus one slot.
    pub async fn time_travel(&self, ms: u64) -> Result<()> {
        let _: serde_json::Value =
            self.rpc.request("dev_timeTravel", rpc_params![ms]).await.context("dev_timeTravel")?;
        Ok(())
    }
}
