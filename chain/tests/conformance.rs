//! One conformance suite for every `Chain`: each case runs against a fresh dev network from a
//! `Harness`. `LocalChain` runs here; the subtensor runtime (chopsticks) harness plugs into the
//! same cases.

use ferrum_chain::commit_reveal::commit_hash;
use ferrum_chain::{Chain, ChainError, Keypair, SubnetParams, weights};
use ferrum_common::Hotkey;
use futures::StreamExt;

const TAO: u64 = 1_000_000_000;

/// A fresh chain with subnet `netuid()` created by //Alice (funded), and dev-only controls.
trait Harness {
    type C: Chain;
    fn chain(&self) -> &Self::C;
    /// The subnet the cases work on.
    fn netuid(&self) -> u16;
    /// Produces `n` empty blocks.
    fn advance(&self, n: u64) -> impl Future<Output = ()>;
    /// Sets the subnet's hyperparameters (sudo on a real chain).
    fn configure(&self, params: SubnetParams) -> impl Future<Output = ()>;
}

fn key(uri: &str) -> Keypair {
    Keypair::from_secret(uri, "test").expect("dev key")
}

fn params() -> SubnetParams {
    SubnetParams {
        tempo: 10,
        weights_rate_limit: 5,
        weights_version_key: 0,
        min_allowed_weights: 1,
        max_weight_limit: u16::MAX,
        commit_reveal: false,
        reveal_period_epochs: 1,
        max_uids: 64,
        max_validators: 8,
        timelocked_commits: false,
    }
}

/// Registers //Bob, //Charlie and //Dave (paid by //Alice), then waits out the weights rate
/// limit, which runs from registration; returns their uids.
async fn register_three<H: Harness>(h: &H) -> Vec<u16> {
    let netuid = h.netuid();
    let alice = key("//Alice");
    let mut uids = Vec::new();
    for who in ["//Bob", "//Charlie", "//Dave"] {
        uids.push(h.chain().register(&alice, netuid, &key(who).hotkey()).await.expect("register"));
    }
    h.advance(params().weights_rate_limit).await;
    uids
}

async fn register_and_read_the_metagraph<H: Harness>(h: &H) {
    let netuid = h.netuid();
    let c = h.chain();
    let before = c.best_block().await.expect("block").number;
    let uids = register_three(h).await;
    let bob = key("//Bob").hotkey();
    assert_eq!(c.uid_of(netuid, &bob).await.expect("uid"), Some(uids[0]));
    assert_eq!(c.uid_of(netuid, &key("//Eve").hotkey()).await.expect("uid"), None);
    let m = c.metagraph(netuid, None).await.expect("metagraph");
    let n = m.by_hotkey(&bob).expect("bob in metagraph");
    assert_eq!(n.uid, uids[0]);
    assert_eq!(n.coldkey, key("//Alice").hotkey());
    assert!(n.registered_at > before);
    assert_eq!(
        c.register(&key("//Alice"), netuid, &bob).await,
        Err(ChainError::AlreadyRegistered { hotkey: bob, netuid })
    );
    // The metagraph at the block before the last registration lacks //Dave.
    let dave = key("//Dave").hotkey();
    let at = m.by_hotkey(&dave).expect("dave").registered_at - 1;
    let old = c.metagraph(netuid, Some(at)).await.expect("old metagraph");
    assert!(old.by_hotkey(&bob).is_some() && old.by_hotkey(&dave).is_none());
}

async fn commitments_round_trip<H: Harness>(h: &H) {
    let netuid = h.netuid();
    let c = h.chain();
    register_three(h).await;
    let bob = key("//Bob");
    let data = b"s3://ferrum-bob?endpoint=https://r2.example.com&region=auto".to_vec();
    c.set_commitment(&bob, netuid, &data).await.expect("commit");
    let got = c.commitment(netuid, &bob.hotkey()).await.expect("read").expect("present");
    assert_eq!(got.data, data);
    assert_eq!(c.commitment(netuid, &key("//Charlie").hotkey()).await.expect("read"), None);
    let too_big = vec![7u8; ferrum_chain::MAX_COMMITMENT_BYTES + 1];
    assert!(matches!(c.set_commitment(&bob, netuid, &too_big).await, Err(ChainError::CommitmentTooLarge { .. })));
    let eve = key("//Eve");
    assert_eq!(
        c.set_commitment(&eve, netuid, b"x").await,
        Err(ChainError::NotRegistered { hotkey: eve.hotkey(), netuid })
    );
}

async fn set_weights_and_read_them_back<H: Harness>(h: &H) {
    let netuid = h.netuid();
    let c = h.chain();
    let uids = register_three(h).await;
    let bob = key("//Bob");
    let (u, v) = weights::to_u16(&[(uids[1], 3.0), (uids[2], 1.0)], u16::MAX).expect("weights");
    c.set_weights(&bob, netuid, &u, &v, 0).await.expect("set weights");
    let stored = c.weights(netuid, uids[0]).await.expect("read");
    assert_eq!(stored, vec![(uids[1], 65535), (uids[2], 21845)]);
    let m = c.metagraph(netuid, None).await.expect("metagraph");
    assert_eq!(m.neurons[usize::from(uids[0])].last_update, m.block);
}

async fn weight_errors_are_plain<H: Harness>(h: &H) {
    let netuid = h.netuid();
    let c = h.chain();
    let uids = register_three(h).await;
    let eve = key("//Eve");
    let err = c.set_weights(&eve, netuid, &[uids[0]], &[1], 0).await.expect_err("unregistered");
    assert_eq!(err, ChainError::NotRegistered { hotkey: eve.hotkey(), netuid });
    assert!(err.to_string().contains(&format!("hotkey {} is not registered on netuid {netuid}", eve.hotkey())));

    let mut p = params();
    p.weights_version_key = 5;
    h.configure(p.clone()).await;
    let bob = key("//Bob");
    let err = c.set_weights(&bob, netuid, &[uids[1]], &[1], 4).await.expect_err("old version");
    assert_eq!(err, ChainError::VersionKey { required: 5, got: 4 });

    c.set_weights(&bob, netuid, &[uids[1]], &[1], 5).await.expect("first");
    let last = c.metagraph(netuid, None).await.expect("mg").neurons[usize::from(uids[0])].last_update;
    let err = c.set_weights(&bob, netuid, &[uids[2]], &[1], 5).await.expect_err("too fast");
    assert_eq!(err, ChainError::TooFast { next_allowed: last + p.weights_rate_limit });
    assert!(err.to_string().starts_with("setting weights too fast: next allowed at block"));
    h.advance(p.weights_rate_limit).await;
    c.set_weights(&bob, netuid, &[uids[2]], &[1], 5).await.expect("after the rate limit");
}

async fn commit_then_reveal<H: Harness>(h: &H) {
    let netuid = h.netuid();
    let c = h.chain();
    let uids = register_three(h).await;
    let mut p = params();
    p.commit_reveal = true;
    p.weights_rate_limit = 0;
    h.configure(p.clone()).await;
    let bob = key("//Bob");
    let (u, v) = (vec![uids[1], uids[2]], vec![65535, 100]);
    let salt = [9u16, 8, 7, 6];
    assert_eq!(c.set_weights(&bob, netuid, &u, &v, 0).await, Err(ChainError::CommitRevealEnabled { netuid }));
    // Commit in the first block of an epoch, so the reveal right after is still in that epoch.
    let now = c.best_block().await.expect("block").number;
    let epoch_start = p.epoch_start(netuid, p.epoch(netuid, now + 1) + 1);
    h.advance(epoch_start - now - 1).await;
    c.commit_weights(&bob, netuid, commit_hash(&bob.hotkey(), netuid, &u, &v, &salt, 0)).await.expect("commit");
    let early = c.reveal_weights(&bob, netuid, &u, &v, &salt, 0).await.expect_err("too early");
    let ChainError::RevealTooEarly { from } = early else { panic!("{early:?}") };
    let now = c.best_block().await.expect("block").number;
    h.advance(from.saturating_sub(now + 1)).await;
    let wrong = c.reveal_weights(&bob, netuid, &u, &v, &[1, 2, 3], 0).await.expect_err("wrong salt");
    assert_eq!(wrong, ChainError::NoMatchingCommit { hotkey: bob.hotkey(), netuid });
    c.reveal_weights(&bob, netuid, &u, &v, &salt, 0).await.expect("reveal in the next epoch");
    assert_eq!(c.weights(netuid, uids[0]).await.expect("read"), vec![(uids[1], 65535), (uids[2], 100)]);
}

async fn blocks_stream_and_hashes<H: Harness>(h: &H) {
    let c = h.chain();
    let start = c.best_block().await.expect("block");
    let mut stream = c.blocks(start.number + 1);
    h.advance(2).await;
    let a = stream.next().await.expect("a block").expect("ok");
    let b = stream.next().await.expect("a block").expect("ok");
    assert_eq!((a.number, b.number), (start.number + 1, start.number + 2));
    assert_eq!(c.block_hash(b.number).await.expect("hash"), b.hash);
    assert_ne!(a.hash, b.hash);
    assert!(b.timestamp_ms >= start.timestamp_ms);
    // A stream from the past replays what it missed, in order.
    let replay: Vec<u64> = c.blocks(start.number).take(3).map(|b| b.expect("ok").number).collect().await;
    assert_eq!(replay, vec![start.number, start.number + 1, start.number + 2]);
}

/// Every conformance case as a `#[tokio::test]` against the harness that `$harness` builds (an
/// expression, awaited inside the test where it is async).
macro_rules! conformance_suite {
    ($harness:expr) => {
        conformance_suite!(@cases $harness;
            register_and_read_the_metagraph,
            commitments_round_trip,
            set_weights_and_read_them_back,
            weight_errors_are_plain,
            commit_then_reveal,
            blocks_stream_and_hashes
        );
    };
    (@cases $harness:expr; $($case:ident),*) => {$(
        #[tokio::test]
        async fn $case() {
            super::$case(&$harness).await;
        }
    )*};
}

mod local {
    use super::*;
    use ferrum_chain::LocalChain;

    struct Local(LocalChain);

    const NETUID: u16 = 3;

    impl Local {
        fn new() -> Local {
            let chain = LocalChain::new();
            chain.fund(&key("//Alice").hotkey(), 1_000 * TAO);
            chain.create_subnet(NETUID, params(), TAO);
            Local(chain)
        }
    }

    impl Harness for Local {
        type C = LocalChain;
        fn chain(&self) -> &LocalChain {
            &self.0
        }
        fn netuid(&self) -> u16 {
            NETUID
        }
        async fn advance(&self, n: u64) {
            self.0.advance(n);
        }
        async fn configure(&self, params: SubnetParams) {
            self.0.set_subnet_params(NETUID, params).expect("subnet exists");
        }
    }

    conformance_suite!(Local::new());

    #[tokio::test]
    async fn registration_costs_the_burn() {
        let h = Local::new();
        let poor = key("//Ferdie");
        let err = h.0.register(&poor, NETUID, &Hotkey([1; 32])).await.expect_err("unfunded");
        assert!(matches!(err, ChainError::InsufficientBalance { needed: TAO, balance: 0, .. }), "{err}");
    }
}

/// The real subtensor runtime (spec 218, `raonet.json`) served by chopsticks on 127.0.0.1.
mod subtensor {
    use super::*;
    use std::path::PathBuf;
    use std::process::Stdio;
    use std::time::Duration;

    use ferrum_chain::SubtensorChain;
    use subxt::dynamic::Value;
    use subxt::rpcs::{RpcClient, rpc_params};
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::process::{Child, Command};

    const DEV: [&str; 6] = ["//Alice", "//Bob", "//Charlie", "//Dave", "//Eve", "//Ferdie"];

    struct Subtensor {
        chain: SubtensorChain,
        rpc: RpcClient,
        netuid: u16,
        // Killed on drop.
        _node: Child,
        _dir: tempfile::TempDir,
    }

    fn chopsticks() -> PathBuf {
        if let Some(p) = std::env::var_os("FERRUM_CHOPSTICKS") {
            return p.into();
        }
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("chopsticks/node_modules/@acala-network/chopsticks/chopsticks.cjs");
        assert!(
            p.exists(),
            "chopsticks is not installed: run scripts/test, or `npm ci` in chain/chopsticks, or set FERRUM_CHOPSTICKS"
        );
        p
    }

    fn spec() -> PathBuf {
        let p = std::env::var_os("FERRUM_SUBTENSOR_SPEC")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/subtensor/raonet.json"));
        assert!(
            p.exists(),
            "subtensor chain spec not found at {} (run scripts/test, or set FERRUM_SUBTENSOR_SPEC)",
            p.display()
        );
        p
    }

    async fn start() -> (Child, tempfile::TempDir, u16) {
        let dir = tempfile::tempdir().expect("tempdir");
        let accounts: String = DEV
            .iter()
            .map(|u| {
                format!(
                    "      - - - {}\n        - providers: 1\n          data: {{ free: \"1000000000000000000\" }}\n",
                    key(u).hotkey()
                )
            })
            .collect();
        let yaml = format!(
            "genesis: {}\nhost: 127.0.0.1\nport: 0\nbuild-block-mode: Instant\nruntime-log-level: 0\nimport-storage:\n  Sudo:\n    Key: {}\n  System:\n    Account:\n{accounts}",
            spec().display(),
            key("//Alice").hotkey()
        );
        let cfg = dir.path().join("subtensor.yml");
        std::fs::write(&cfg, yaml).expect("write config");
        let mut node = Command::new("node")
            .arg(chopsticks())
            .arg("-c")
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chopsticks (is node on PATH?)");
        let mut lines = BufReader::new(node.stdout.take().expect("stdout")).lines();
        let port = tokio::time::timeout(Duration::from_secs(120), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("RPC listening on http://127.0.0.1:").nth(1) {
                    return rest.split_whitespace().next().and_then(|p| p.parse::<u16>().ok());
                }
            }
            None
        })
        .await
        .expect("chopsticks did not start within 120 s")
        .expect("chopsticks exited before listening");
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        (node, dir, port)
    }

    fn u(n: impl Into<u128>) -> Value {
        Value::u128(n.into())
    }

    impl Subtensor {
        async fn new() -> Subtensor {
            let (node, dir, port) = start().await;
            let url = format!("ws://127.0.0.1:{port}");
            let chain = SubtensorChain::connect(&url, Duration::from_secs(60), 5).await.expect("connect");
            let rpc = RpcClient::from_insecure_url(&url).await.expect("rpc");
            let mut h = Subtensor { chain, rpc, netuid: 0, _node: node, _dir: dir };
            h.sudo("sudo_set_network_rate_limit", vec![u(0u64)]).await;
            let before = h.subnets().await;
            let alice = key("//Alice");
            // The calls that changed since spec 218 are chosen from the metadata; this runtime
            // reads as spec 218 (tests/finney.rs holds the same code to today's runtime).
            let profile = h.chain.runtime_profile().await.expect("runtime profile");
            assert_eq!(
                (profile.mechanisms, profile.stake_threshold_item, profile.register_network_takes_mechid),
                (false, Some("WeightsMinStake"), true)
            );
            assert!(!profile.start_call && !profile.timelocked_commits);
            let register = ferrum_chain::calls::register_network(&profile, key("//Ferdie").hotkey().0);
            h.chain.submit_call(&alice, register).await.expect("register network");
            let after = h.subnets().await;
            h.netuid = *after.iter().find(|n| !before.contains(n)).expect("a new subnet");
            h.sudo(profile.sudo_stake_threshold_call.expect("stake threshold call"), vec![u(0u64)]).await;
            assert_eq!(h.chain.stake_threshold().await.expect("stake threshold"), 0);
            h.sudo("sudo_set_target_registrations_per_interval", vec![u(h.netuid), u(1000u16)]).await;
            h.sudo("sudo_set_max_registrations_per_block", vec![u(h.netuid), u(1000u16)]).await;
            h.configure(params()).await;
            h
        }

        async fn subnets(&self) -> Vec<u16> {
            let mut out = Vec::new();
            for n in 0..64u16 {
                if self.chain.subnet_params(n).await.is_ok() {
                    out.push(n);
                }
            }
            out
        }

        async fn sudo(&self, call: &str, args: Vec<Value>) {
            self.chain
                .submit_call(&key("//Alice"), ferrum_chain::calls::sudo_admin(call, args))
                .await
                .unwrap_or_else(|e| panic!("sudo {call}: {e}"));
        }
    }

    impl Harness for Subtensor {
        type C = SubtensorChain;
        fn chain(&self) -> &SubtensorChain {
            &self.chain
        }
        fn netuid(&self) -> u16 {
            self.netuid
        }
        async fn advance(&self, n: u64) {
            if n > 0 {
                let _: serde_json::Value = self
                    .rpc
                    .request("dev_newBlock", rpc_params![serde_json::json!({ "count": n })])
                    .await
                    .expect("dev_newBlock");
            }
        }
        async fn configure(&self, p: SubnetParams) {
            let n = self.netuid;
            self.sudo("sudo_set_tempo", vec![u(n), u(p.tempo)]).await;
            self.sudo("sudo_set_weights_set_rate_limit", vec![u(n), u(p.weights_rate_limit)]).await;
            self.sudo("sudo_set_weights_version_key", vec![u(n), u(p.weights_version_key)]).await;
            self.sudo("sudo_set_min_allowed_weights", vec![u(n), u(p.min_allowed_weights)]).await;
            self.sudo("sudo_set_max_weight_limit", vec![u(n), u(p.max_weight_limit)]).await;
            self.sudo("sudo_set_commit_reveal_weights_enabled", vec![u(n), Value::bool(p.commit_reveal)]).await;
        }
    }

    /// The client checks weights before submitting them; this holds those checks to the
    /// runtime's own rejections by submitting the calls raw.
    #[tokio::test]
    async fn the_runtime_rejects_what_the_client_checks() {
        let h = Subtensor::new().await;
        let uids = register_three(&h).await;
        let mut p = params();
        p.weights_version_key = 5;
        h.configure(p).await;
        let raw = |who: &str, version: u64| {
            let args = vec![
                u(h.netuid),
                Value::unnamed_composite([u(uids[1])]),
                Value::unnamed_composite([u(1u16)]),
                u(version),
            ];
            let (chain, signer) = (h.chain.clone(), key(who));
            async move { chain.submit(&signer, "SubtensorModule", "set_weights", args).await }
        };
        let name = |r: Result<(), ChainError>| match r {
            Err(ChainError::Dispatch { error, .. }) => error,
            other => panic!("expected a runtime rejection, got {other:?}"),
        };
        assert_eq!(name(raw("//Bob", 4).await), "IncorrectWeightVersionKey");
        raw("//Bob", 5).await.expect("accepted");
        assert_eq!(name(raw("//Bob", 5).await), "SettingWeightsTooFast");
        let unregistered = name(raw("//Eve", 5).await);
        assert!(unregistered.contains("NotRegistered"), "{unregistered}");
    }

    /// docs/performance.md: how long reading a 256-uid metagraph from the runtime takes. The
    /// neurons are written straight into storage (chopsticks' `dev_setStorage`) rather than
    /// registered one extrinsic at a time; the read goes through the runtime's storage as a
    /// node's does. The figure is printed (run with `--nocapture`), not asserted.
    #[tokio::test]
    async fn a_metagraph_of_256_uids() {
        let h = Subtensor::new().await;
        let (n, netuid) = (256u16, h.netuid);
        let keys: Vec<String> =
            (0..n).map(|i| format!("0x{}", hex::encode(sp_crypto_hashing::blake2_256(&i.to_le_bytes())))).collect();
        let storage = serde_json::json!({
            "SubtensorModule": {
                "SubnetworkN": [[[netuid], n]],
                "Keys": keys.iter().enumerate().map(|(i, k)| serde_json::json!([[netuid, i], k])).collect::<Vec<_>>(),
                "Owner": keys.iter().map(|k| serde_json::json!([[k], k])).collect::<Vec<_>>(),
                "TotalHotkeyAlpha": keys.iter().enumerate().map(|(i, k)| serde_json::json!([[k, netuid], 1000 + i])).collect::<Vec<_>>(),
                "BlockAtRegistration": (0..n).map(|i| serde_json::json!([[netuid, i], i])).collect::<Vec<_>>(),
                "Incentive": [[[netuid], vec![7u16; usize::from(n)]]],
                "Dividends": [[[netuid], vec![9u16; usize::from(n)]]],
                "Active": [[[netuid], vec![true; usize::from(n)]]],
                "ValidatorPermit": [[[netuid], vec![false; usize::from(n)]]],
                "LastUpdate": [[[netuid], vec![0u64; usize::from(n)]]],
            }
        });
        let _: serde_json::Value = h.rpc.request("dev_setStorage", rpc_params![storage]).await.expect("dev_setStorage");
        let mut ms = Vec::new();
        for _ in 0..5 {
            let started = std::time::Instant::now();
            let m = h.chain.metagraph(netuid, None).await.expect("metagraph");
            ms.push(started.elapsed().as_secs_f64() * 1e3);
            assert_eq!(m.neurons.len(), usize::from(n));
            for (i, neuron) in m.neurons.iter().enumerate() {
                assert_eq!(format!("0x{}", hex::encode(neuron.hotkey.0)), keys[i]);
                assert_eq!((neuron.stake, neuron.incentive, neuron.registered_at), (1000 + i as u64, 7, i as u64));
                assert_eq!(neuron.dividends, 9);
            }
        }
        ms.sort_by(f64::total_cmp);
        eprintln!(
            "metagraph of {n} uids on the subtensor runtime under chopsticks: median {:.0} ms of 5 reads ({ms:.0?})",
            ms[2]
        );
    }

    conformance_suite!(Subtensor::new().await);
}
