//! The subnet as separate OS processes on the real subtensor runtime: `ferrum localnet` (chopsticks
//! and SeaweedFS), one validator and three miners started from the commands it prints. Every node
//! must hold the same model fingerprint each window, the validator's weights must be readable
//! from the chain, and a miner killed with SIGKILL and restarted must rejoin. The validator's stake
//! must land on the subnet, making it the witness whose records decide each window. A fourth
//! miner keeps its bucket on a server of its own that lies (tests/integration/hostile_s3.rs:
//! each payload as uploaded to its first reader only, other bytes written after the window to
//! every later one), and the honest nodes must still agree every window.

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

/// The miner whose bucket lies: not an honest node, so not held to the others' model.
const ATTACKER: &str = "miner-4";

/// Windows every running honest node applied, with the fingerprints they hold; panics on a split.
fn agreed(nodes: &[Node]) -> BTreeMap<u64, (String, Vec<String>)> {
    let mut by_window: BTreeMap<u64, Vec<(String, String, String)>> = BTreeMap::new();
    for n in nodes.iter().filter(|n| n.name != ATTACKER) {
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
        .args(["localnet", "--port", "0", "--storage", "s3", "--miners", "4", "--validators", "1"])
        .args(["--blocks-per-window", "6", "--put-window-secs", "5", "--tempo", "10", "--dir"])
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
    let stake_of = |uid: u16| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let chain = SubtensorChain::connect(&endpoint, Duration::from_secs(30), 3).await.expect("connect");
            let metagraph = chain.metagraph(netuid, None).await.expect("metagraph");
            metagraph.neurons.iter().find(|n| n.uid == uid).map(|n| n.stake).expect("neuron")
        })
    };
    let staked = stake_of(uid_of(&nodes, "validator-1"));
    let hostile = crate::hostile_s3::HostileS3::start();
    let attacker = nodes.iter_mut().find(|n| n.name == ATTACKER).expect("attacker");
    let at = attacker.args.iter().position(|a| a == "--storage.url").expect("--storage.url") + 1;
    attacker.args[at] = format!("s3://ferrum-hostile/{ATTACKER}?endpoint={}", hostile.endpoint);
    // Its own bucket elsewhere, it may not read the others' (unsigned reads are refused there);
    // it only needs to upload on time, so it waits for no one's records.
    let wait = attacker.args.iter().position(|a| a == "--gather.record_wait_secs").expect("record wait") + 1;
    attacker.args[wait] = "0".to_string();
    for n in &mut nodes {
        n.start();
    }

    // The four honest nodes apply a window in which the three honest miners were all aggregated.
    let honest: Vec<String> = ["miner-1", "miner-2", "miner-3"].iter().map(|m| uid_of(&nodes, m).to_string()).collect();
    let full = wait_for("a window with all three honest miners aggregated", Duration::from_secs(420), &nodes, || {
        let miner_1 = nodes[1].applied();
        agreed(&nodes).into_iter().filter(|(_, (_, names))| names.len() == 4).map(|(w, _)| w).find(|w| {
            miner_1.get(w).is_some_and(|(_, accepted)| honest.iter().all(|u| accepted.split(", ").any(|a| a == u)))
        })
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

    // The validator's weights are on chain, its stake landed on the subnet, and it was every
    // node's witness: the windows were decided by its records, not by each node alone.
    let validator = uid_of(&nodes, "validator-1");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (weights, stake, next_index) = rt.block_on(async {
        let chain = SubtensorChain::connect(&endpoint, Duration::from_secs(30), 3).await.expect("connect");
        let weights = chain.weights(netuid, validator).await.expect("weights");
        let metagraph = chain.metagraph(netuid, None).await.expect("metagraph");
        let stake = metagraph.neurons.iter().find(|n| n.uid == validator).map(|n| n.stake).expect("validator");
        // The SDK's name for the next nonce answers as chopsticks' own does.
        let rpc = subxt::rpcs::RpcClient::from_insecure_url(&endpoint).await.expect("rpc");
        let alice = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
        let mut next: Vec<u64> = Vec::new();
        for method in ["account_nextIndex", "system_accountNextIndex"] {
            next.push(rpc.request(method, subxt::rpcs::rpc_params![alice]).await.expect(method));
        }
        (weights, stake, next)
    });
    assert!(stake >= 900_000_000_000, "the validator's 1,000 TAO bought {stake} rao of alpha");
    // Epochs every 11 blocks pay by the weights: the validator's dividends and the miners'
    // incentive, as alpha (this runtime's own epoch is a stub; the localnet runs Yuma in its
    // place: docs/guides/subnet-owner.md).
    assert!(stake > staked, "the validator's stake earned nothing: {staked} rao then, {stake} now");
    // Nodes rank the gather's candidates by that incentive, read from the chain.
    let ranked = |nodes: &[Node]| {
        nodes.iter().filter(|n| n.name.starts_with("miner-")).any(|n| {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            text.lines().filter(|l| l.contains("gather plan")).any(|l| {
                let Some(list) = l.split(" candidates=").nth(1) else { return false };
                let incentive: Vec<u64> = list
                    .split(' ')
                    .take_while(|kv| !kv.starts_with("witnesses="))
                    .filter_map(|kv| kv.split_once(':')?.1.parse().ok())
                    .collect();
                incentive.iter().any(|&i| i > 0) && incentive.windows(2).all(|w| w[0] >= w[1])
            })
        })
    };
    let honest_miners: Vec<u16> = ["miner-1", "miner-2", "miner-3"].iter().map(|m| uid_of(&nodes, m)).collect();
    let (metagraph, paid) = wait_for(
        "an epoch paying honest miners alpha, and a gather ranked by it",
        Duration::from_secs(300),
        &nodes,
        || {
            std::thread::sleep(Duration::from_secs(3));
            let metagraph = rt.block_on(async {
                let chain = SubtensorChain::connect(&endpoint, Duration::from_secs(30), 3).await.ok()?;
                chain.metagraph(netuid, None).await.ok()
            })?;
            let paid: Vec<(u16, u64)> = metagraph
                .neurons
                .iter()
                .filter(|n| honest_miners.contains(&n.uid) && n.stake > 0)
                .map(|n| (n.uid, n.stake))
                .collect();
            (!paid.is_empty() && ranked(&nodes)).then_some((metagraph, paid))
        },
    );
    let localnet_log = std::fs::read_to_string(root.join("localnet.log")).unwrap_or_default();
    assert!(localnet_log.contains("by Yuma"), "no epoch was run by weights:\n{localnet_log}");
    let v = metagraph.neurons.iter().find(|n| n.uid == validator).expect("validator");
    assert_eq!(v.dividends, u16::MAX, "the only validator holds every bond: {paid:?}");
    assert_eq!(next_index[0], next_index[1], "account_nextIndex against system_accountNextIndex");
    assert!(next_index[0] > 0, "the owner has sent transactions: {next_index:?}");
    let witnessed = nodes.iter().filter(|n| n.name != ATTACKER).all(|n| {
        let text = std::fs::read_to_string(&n.log).unwrap_or_default();
        text.lines().any(|l| l.contains("gather plan") && l.contains(&format!("witnesses={validator}:")))
            && text.lines().any(|l| l.contains("window applied") && l.contains("agreement=Confirmed"))
    });
    assert!(witnessed, "every node names the validator as witness and confirms a window by its records");

    // The operator's view: `ferrum metagraph` reads the same from plain storage on this runtime.
    let out = Command::new(env!("CARGO_BIN_EXE_ferrum"))
        .args(["metagraph", "--json", "--peers.allow_local", "--peers.allow_private", "--netuid"])
        .arg(netuid.to_string())
        .args(["--subtensor.chain_endpoint", &endpoint, "--config"])
        .arg(ready["config"].as_str().expect("config"))
        .output()
        .expect("ferrum metagraph");
    assert!(out.status.success(), "ferrum metagraph: {}", String::from_utf8_lossy(&out.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metagraph json");
    let rows = shown["neurons"].as_array().expect("neurons");
    let row = |uid: u16| rows.iter().find(|r| r["uid"] == uid).expect("row");
    let v = row(validator);
    assert_eq!((v["role"].as_str(), v["witness"].as_bool()), (Some("validator"), Some(true)), "{v}");
    // The same as the chain's own storage at the block it names (an epoch since the read
    // above may have paid or taken stake: the localnet moves alpha by weights).
    let at = shown["block"].as_u64().expect("block");
    let then = rt.block_on(async {
        let chain = SubtensorChain::connect(&endpoint, Duration::from_secs(30), 3).await.expect("connect");
        chain.metagraph(netuid, Some(at)).await.expect("metagraph at its block")
    });
    let stake_then = then.neurons.iter().find(|n| n.uid == validator).map(|n| n.stake);
    assert_eq!(v["stake"].as_u64(), stake_then, "{v} against block {at}");
    let set: Vec<u16> =
        v["weights_set"].as_array().expect("weights").iter().map(|w| w[0].as_u64().expect("uid") as u16).collect();
    assert_eq!(set, weights.iter().map(|(u, _)| *u).collect::<Vec<_>>(), "{v}");
    for m in ["miner-1", "miner-2", "miner-3"] {
        let r = row(uid_of(&nodes, m));
        assert_eq!(r["role"], "miner", "{r}");
        assert_eq!(r["problems"], serde_json::json!([]), "{r}");
    }
    assert_eq!(row(0)["role"], "burn");
    // The attack happened, and the honest nodes that read differently were brought back by the
    // witness's record (every window above agreed; `agreed` panics otherwise).
    assert!(hostile.replaced() > 0, "the hostile server never served a late replacement");
    let repaired = nodes
        .iter()
        .filter(|n| n.name != ATTACKER)
        .any(|n| std::fs::read_to_string(&n.log).unwrap_or_default().contains("agreement=Repaired"));
    assert!(repaired, "no honest node had to repair a window: the attack never split a read");
    let miners: Vec<u16> = ["miner-1", "miner-2", "miner-3"].iter().map(|m| uid_of(&nodes, m)).collect();
    // What the chain holds is the validator's last submission, and some submission paid a miner
    // (one slot can leave every miner at zero: a killed miner, a field too small to rank).
    let validator_log = &nodes.iter().find(|n| n.name == "validator-1").expect("validator").log;
    let log = std::fs::read_to_string(validator_log).unwrap_or_default();
    let submitted: Vec<Vec<(u16, f64)>> = log
        .lines()
        .filter(|l| l.contains("weights submitted"))
        .filter_map(|l| {
            let map = l.split(" weights={").nth(1)?.split('}').next()?;
            map.split(", ")
                .map(|kv| kv.split_once(": ").and_then(|(u, w)| Some((u.parse().ok()?, w.parse().ok()?))))
                .collect()
        })
        .collect();
    let uids = |w: &[(u16, f64)]| {
        let mut u: Vec<u16> = w.iter().filter(|(_, share)| *share > 0.0).map(|(u, _)| *u).collect();
        u.sort_unstable();
        u
    };
    let mut on_chain: Vec<u16> = weights.iter().filter(|(_, w)| *w > 0).map(|(u, _)| *u).collect();
    on_chain.sort_unstable();
    // The chain was read a moment before the log: the last submission or the one before it.
    assert!(
        submitted.iter().rev().take(2).any(|w| uids(w) == on_chain),
        "weights on chain {weights:?} against the last submitted {:?}",
        submitted.last()
    );
    assert!(
        submitted.iter().any(|w| w.iter().any(|(u, share)| miners.contains(u) && *share > 0.0)),
        "no submission paid a miner: {submitted:?}"
    );
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
