//! The subnet as separate OS processes on the real subtensor runtime: `ferrum localnet` (chopsticks
//! and SeaweedFS), one validator and three miners started from the commands it prints. Every node
//! must hold the same model fingerprint each window, the validator's weights must be readable
//! from the chain, and a miner killed with SIGKILL and restarted must rejoin.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrum_chain::{Chain, SubtensorChain};

/// The `miner` and `validator` binaries beside this test's `ferrum` (`cargo test --workspace`
/// builds them: their packages have tests of their own).
fn node_binary(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_ferrum")).parent().expect("target dir").to_path_buf();
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run scripts/test (cargo test --workspace builds it) or cargo build -p ferrum-{name}",
        p.display()
    );
    p
}

struct Node {
    name: String,
    uid: u16,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn start(&mut self) {
        let log = File::options().create(true).append(true).open(&self.log).expect("log file");
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().cloned())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.name));
        self.child = Some(child);
    }

    /// SIGKILL: no chance to save anything beyond what it already wrote.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("reap");
        }
    }

    /// window → (fingerprint prefix, accepted uids) from the node's "window applied" log lines.
    fn applied(&self) -> BTreeMap<u64, (String, String)> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("window applied"))
            .filter_map(|l| {
                let field = |name: &str| l.split(&format!(" {name}=")).nth(1).map(|r| r.to_string());
                let window = field("window")?.split_whitespace().next()?.parse().ok()?;
                let fingerprint = field("fingerprint")?.trim_matches('"').to_string();
                let accepted = field("accepted")?.split(']').next()?.trim_start_matches('[').to_string();
                Some((window, (fingerprint, accepted)))
            })
            .collect()
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_for<T>(what: &str, limit: Duration, nodes: &[Node], mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            let tails: Vec<String> = nodes.iter().map(|n| format!("--- {}\n{}", n.name, n.tail())).collect();
            panic!("timed out after {limit:?} waiting for {what}\n{}", tails.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Windows every running node applied, with the fingerprints they hold; panics on a split.
fn agreed(nodes: &[Node]) -> BTreeMap<u64, (String, Vec<String>)> {
    let mut by_window: BTreeMap<u64, Vec<(String, String, String)>> = BTreeMap::new();
    for n in nodes {
        for (w, (fp, accepted)) in n.applied() {
            by_window.entry(w).or_default().push((n.name.clone(), fp, accepted));
        }
    }
    let mut out = BTreeMap::new();
    for (w, seen) in by_window {
        let first = &seen[0].1;
        assert!(seen.iter().all(|(_, fp, _)| fp == first), "nodes disagree on window {w}: {seen:?}");
        out.insert(w, (first.clone(), seen.iter().map(|(name, _, _)| name.clone()).collect()));
    }
    out
}

#[test]
fn separate_processes_on_the_subtensor_runtime_stay_in_sync() {
    let _alone = crate::CPU_HEAVY.blocking_write();
    let dir = KeepOnPanic(Some(tempfile::tempdir().expect("tempdir")));
    let root = dir.path();
    let log = File::create(root.join("localnet.log")).expect("log");
    // 6 blocks of the runtime's 3 s and a 5 s put window: an 18 s window, so a dozen windows
    // fit in a few minutes.
    let mut localnet = Command::new(env!("CARGO_BIN_EXE_ferrum"))
        .args(["localnet", "--port", "0", "--storage", "s3", "--miners", "3", "--validators", "1"])
        .args(["--blocks-per-window", "6", "--put-window-secs", "5", "--dir"])
        .arg(root)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start ferrum localnet");
    let guard = KillOnDrop(&mut localnet);
    let ready_path = root.join("ready.json");
    let started = Instant::now();
    while !ready_path.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "localnet not ready in 300 s:\n{}",
            std::fs::read_to_string(root.join("localnet.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let ready: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&ready_path).expect("ready file")).expect("ready json");
    let endpoint = ready["endpoint"].as_str().expect("endpoint").to_string();
    let netuid = ready["netuid"].as_u64().expect("netuid") as u16;
    let mut nodes: Vec<Node> = ready["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            let name = n["name"].as_str().expect("name").to_string();
            Node {
                program: node_binary(n["program"].as_str().expect("program")),
                args: n["args"]
                    .as_array()
                    .expect("args")
                    .iter()
                    .map(|a| a.as_str().expect("arg").to_string())
                    .collect(),
                env: n["env"]
                    .as_array()
                    .expect("env")
                    .iter()
                    .map(|kv| (kv[0].as_str().expect("k").to_string(), kv[1].as_str().expect("v").to_string()))
                    .collect(),
                log: root.join(format!("{name}.log")),
                uid: n["uid"].as_u64().and_then(|u| u16::try_from(u).ok()).expect("uid"),
                name,
                child: None,
            }
        })
        .collect();
    let uid_of = |nodes: &[Node], name: &str| nodes.iter().find(|n| n.name == name).map(|n| n.uid).expect("node");
    for n in &mut nodes {
        n.start();
    }

    // All four apply a window in which the three miners' payloads were all accepted.
    let full = wait_for("a window with all three miners aggregated", Duration::from_secs(420), &nodes, || {
        let miner_1 = nodes[1].applied();
        agreed(&nodes)
            .into_iter()
            .filter(|(_, (_, names))| names.len() == 4)
            .map(|(w, _)| w)
            .find(|w| miner_1.get(w).is_some_and(|(_, accepted)| accepted.split(", ").count() == 3))
    });

    // Kill miner-2 with SIGKILL, let a window pass, restart it from its state directory.
    let victim = nodes.iter().position(|n| n.name == "miner-2").expect("miner-2");
    let victim_uid = uid_of(&nodes, "miner-2").to_string();
    nodes[victim].kill();
    let killed_at = agreed(&nodes).keys().max().copied().unwrap_or(full);
    wait_for("a window after the kill", Duration::from_secs(180), &nodes, || {
        agreed(&nodes).keys().any(|w| *w > killed_at + 1).then_some(())
    });
    nodes[victim].start();
    let rejoined = wait_for("the restarted miner's payload aggregated again", Duration::from_secs(420), &nodes, || {
        let applied = nodes[victim].applied();
        applied
            .iter()
            .find(|(w, (_, accepted))| **w > killed_at + 1 && accepted.split(", ").any(|u| u == victim_uid))
            .map(|(w, _)| *w)
    });
    // Every window that every node applied, the restarted one included, agrees (agreed panics on
    // a split), and the replayed windows are among them.
    let windows = agreed(&nodes);
    assert!(windows.range(killed_at..=rejoined).all(|(_, (_, names))| names.iter().any(|n| n == "miner-2")));

    // The validator's weights are on chain.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let weights = rt.block_on(async {
        let chain = SubtensorChain::connect(&endpoint, Duration::from_secs(30), 3).await.expect("connect");
        chain.weights(netuid, uid_of(&nodes, "validator-1")).await.expect("weights")
    });
    let miners: Vec<u16> = ["miner-1", "miner-2", "miner-3"].iter().map(|m| uid_of(&nodes, m)).collect();
    assert!(weights.iter().any(|(uid, w)| miners.contains(uid) && *w > 0), "weights on chain: {weights:?}");
    drop(nodes);
    drop(guard);
}

/// The localnet's folder (logs of every process), kept when the test fails.
struct KeepOnPanic(Option<tempfile::TempDir>);

impl KeepOnPanic {
    fn path(&self) -> &Path {
        self.0.as_ref().expect("dir").path()
    }
}

impl Drop for KeepOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            eprintln!("localnet logs kept in {}", dir.keep().display());
        }
    }
}

struct KillOnDrop<'a>(&'a mut Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
