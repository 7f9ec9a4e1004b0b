//! Several miners on the in-process harness (`ferrum::devnet`): a LocalChain, local buckets,
//! real training. One window costs about a put window (1 s here) plus training.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use ferrum::devnet::{Devnet, DevnetOptions, NETUID};
use ferrum_chain::Keypair;
use ferrum_common::assignment::{SampleRequest, assign_samples, samples_digest};
use ferrum_common::codec::{CodecSpec, encode_model, synthetic_delta};
use ferrum_common::model::MasterModel;
use ferrum_common::payload::{self, PayloadHeader, PayloadLayout, Rejection};
use ferrum_common::{Hotkey, Store};
use ferrum_miner::MinerSetup;
use ferrum_node::{Metrics, NodeSetup, Skip};

fn options(dir: &std::path::Path, miners: usize) -> DevnetOptions {
    DevnetOptions { miners, dir: dir.to_path_buf(), put_window_secs: 1, eval_samples: 16, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miners_stay_in_sync_while_one_is_killed_and_restarted() {
    let _heavy = crate::CPU_HEAVY.read().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Devnet::start(&options(dir.path(), 3)).await.expect("devnet");
    let w = d.current_window().await.expect("window") + 1;
    let s = d.run_window(w).await.expect("window");
    assert!(s.in_sync && s.peers.len() == 3, "{s:?}");

    // Miners applied w and are now in w + 1's training time: kill one there.
    d.kill_miner(2);
    let s = d.run_window(w + 1).await.expect("window without miner 2");
    assert!(s.in_sync, "{s:?}");
    assert!(!s.peers.contains(&2), "a killed miner uploads nothing: {s:?}");
    assert_eq!(s.fingerprints.keys().copied().collect::<Vec<_>>(), vec![1, 3]);
    let after_w1 = s.fingerprints[&1].clone();

    // Restarted from its state directory, it replays w + 1 and rejoins in w + 2.
    d.start_miner(2).expect("restart");
    let s = d.run_window(w + 2).await.expect("window after restart");
    assert!(s.in_sync, "{s:?}");
    assert_eq!(s.fingerprints.len(), 3);
    assert_eq!(d.reports(w + 1)[&2].0.fingerprint.to_string(), after_w1, "the replay reaches the same model");
    assert!(s.peers.contains(&2), "it trains and uploads again in the window it rejoined: {s:?}");
    let m = d.metrics(2).expect("metrics");
    assert_eq!(m.get("ferrum_window"), Some((w + 2) as f64));
    assert_eq!(m.get("ferrum_peers_gathered"), Some(3.0));
    d.stop().await;
}

/// One miner trains on the wgpu backend (Mesa's lavapipe in CI), the others on the CPU: its
/// updates are gathered like theirs and every node holds the same model every window (the outer
/// step is plain f32 on the CPU everywhere). Each node names its device in its metrics.
#[cfg(feature = "wgpu")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpu_miner_and_cpu_miners_stay_in_sync() {
    let _heavy = crate::CPU_HEAVY.read().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = DevnetOptions { gpu_miners: (1, "wgpu".into()), ..options(dir.path(), 3) };
    let mut d = Devnet::start(&opts).await.expect("devnet");
    let w = d.current_window().await.expect("window") + 1;
    for i in 0..3 {
        let s = d.run_window(w + i).await.expect("window");
        assert!(s.in_sync && s.peers.len() == 3, "window {}: {s:?}", w + i);
    }
    let device = |uid| {
        d.metrics(uid)
            .expect("metrics")
            .get(&format!("ferrum_device_info{{device=\"{}\"}}", if uid == 1 { "wgpu" } else { "cpu" }))
    };
    assert_eq!((device(1), device(2), device(3)), (Some(1.0), Some(1.0), Some(1.0)));
    d.stop().await;
}

/// A hand-made payload from `key` (as uid `uid`) for `window`, trained "from" `base`.
fn crafted(d: &Devnet, key: &Keypair, uid: u16, window: u64, base: &MasterModel, samples_of_window: u64) -> Vec<u8> {
    crafted_scaled(d, key, uid, window, base, samples_of_window, 1.0)
}

/// [`crafted`], its update scaled by `scale`.
fn crafted_scaled(
    d: &Devnet,
    key: &Keypair,
    uid: u16,
    window: u64,
    base: &MasterModel,
    samples_of_window: u64,
    scale: f32,
) -> Vec<u8> {
    let config = &d.config;
    let spec = CodecSpec::new(config);
    let delta: Vec<Vec<f32>> =
        base.tensors.iter().enumerate().map(|(i, t)| synthetic_delta(t.len(), i as u64)).collect();
    let mut feedback: Vec<Vec<f32>> = base.tensors.iter().map(|t| vec![0.0; t.len()]).collect();
    let mut tensors = encode_model(&mut feedback, &delta, 0.9, &spec, 1);
    if scale != 1.0 {
        tensors = tensors.iter().map(|t| t.scaled(scale)).collect();
    }
    let hotkey = key.hotkey();
    let req =
        SampleRequest { dataset: d.dataset().id(), netuid: NETUID, window: samples_of_window, uid, hotkey: &hotkey };
    let samples = assign_samples(&req, config.samples_per_window(), d.dataset().num_samples()).expect("assign");
    let header = PayloadHeader {
        netuid: NETUID,
        uid,
        window,
        hotkey,
        config_hash: config.hash(),
        base_fingerprint: base.fingerprint().0,
        samples_digest: samples_digest(&samples),
    };
    payload::build(&header, &tensors, &PayloadLayout::new(config), key.pair()).expect("build")
}

/// Writes an object straight into a local bucket with a chosen LastModified.
fn put_at(root: &std::path::Path, key: &str, bytes: Vec<u8>, mtime_ms: u64) {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, bytes).expect("write");
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(mtime_ms);
    std::fs::File::options().write(true).open(&path).expect("open").set_modified(t).expect("set mtime");
}

/// Late, early, forged, for another window, of the wrong size, stale, trained on other
/// samples, and the same update under three hotkeys (once bit for bit, once scaled by 1.0005):
/// every node skips each of them (all but the first of the equal updates), for the same
/// reason, and stays in sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_are_skipped_by_every_node_alike() {
    let _heavy = crate::CPU_HEAVY.read().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Devnet::start(&options(dir.path(), 2)).await.expect("devnet");
    let names = [
        "late",
        "early",
        "forged",
        "other-window",
        "wrong-size",
        "stale",
        "wrong-samples",
        "original",
        "duplicate",
        "near-duplicate",
    ];
    let mut peers = BTreeMap::new();
    for name in names {
        let (uid, key, bucket) = d.register_peer(&format!("//ferrum-test-{name}")).await.expect("register");
        peers.insert(name, (uid, key, bucket));
    }
    let w = d.current_window().await.expect("window") + 1;
    let s = d.run_window(w).await.expect("first window");
    assert!(s.in_sync);
    let base = d.reports(w)[&1].1.clone();
    let genesis = MasterModel::genesis(&d.config);
    let target = w + 1;
    let ns = ferrum_common::keys::Namespace::new(NETUID, &d.config.hash());
    let put_ms = d.config.windows.put_window_secs * 1000;
    let eve = Keypair::from_secret("//Eve", "test").expect("eve");
    let jobs: Vec<(u16, std::path::PathBuf, String, Vec<u8>, i64)> = peers
        .iter()
        .map(|(&name, (uid, key, bucket))| {
            let good = || crafted(&d, key, *uid, target, &base, target);
            let (bytes, offset_ms): (Vec<u8>, i64) = match name {
                "late" => (good(), put_ms as i64 + 5_000),
                "early" => (good(), -5_000),
                "forged" => {
                    // Eve's own valid payload, relabelled as this peer's.
                    let mut b = crafted(&d, &eve, *uid, target, &base, target);
                    b[24..56].copy_from_slice(key.hotkey().as_bytes());
                    (b, 300)
                }
                "other-window" => (crafted(&d, key, *uid, w, &base, w), 300),
                "wrong-size" => (vec![7u8; PayloadLayout::new(&d.config).size() + 1], 300),
                "stale" => (crafted(&d, key, *uid, target, &genesis, target), 300),
                "wrong-samples" => (crafted(&d, key, *uid, target, &base, target + 5), 300),
                // Both valid and signed by their own keys; the tensors are the same.
                "original" | "duplicate" => (good(), 300),
                "near-duplicate" => (crafted_scaled(&d, key, *uid, target, &base, target, 1.0005), 300),
                _ => unreachable!(),
            };
            (*uid, bucket.clone(), ns.payload(target, *uid, &Hotkey(key.hotkey().0)), bytes, offset_ms)
        })
        .collect();
    let s = d
        .run_window_with(target, |opened_ms| {
            for (_, root, key, bytes, offset) in &jobs {
                put_at(root, key, bytes.clone(), (opened_ms as i64 + offset) as u64);
            }
        })
        .await
        .expect("window with bad payloads");
    assert!(s.in_sync, "{s:?}");
    // Which of the equal updates counts is the gather order's choice.
    let equal = ["original", "duplicate", "near-duplicate"];
    let kept: Vec<u16> = equal.iter().map(|n| peers[n].0).filter(|u| s.peers.contains(u)).collect();
    assert_eq!(kept.len(), 1, "one of the equal updates counts: {s:?}");
    let kept = kept[0];
    assert_eq!(s.peers.iter().copied().collect::<std::collections::BTreeSet<_>>(), [1, 2, kept].into(), "{s:?}");
    let reports = d.reports(target);
    let (first, _) = &reports[&1];
    for (uid, (applied, _)) in &reports {
        assert_eq!(applied.skipped, first.skipped, "miner {uid} skipped other payloads or for other reasons");
    }
    let reason = |name: &str| -> Skip {
        let uid = peers[name].0;
        first
            .skipped
            .iter()
            .find(|(u, _)| *u == uid)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("{name} not skipped"))
    };
    assert!(matches!(reason("late"), Skip::TooLate { .. }), "{:?}", reason("late"));
    assert!(matches!(reason("early"), Skip::TooEarly { .. }), "{:?}", reason("early"));
    assert!(
        matches!(reason("forged"), Skip::Invalid(Rejection::Hash | Rejection::Signature)),
        "{:?}",
        reason("forged")
    );
    assert!(matches!(reason("other-window"), Skip::Invalid(Rejection::Window { .. })), "{:?}", reason("other-window"));
    assert!(matches!(reason("wrong-size"), Skip::Invalid(Rejection::Size { .. })), "{:?}", reason("wrong-size"));
    assert!(matches!(reason("stale"), Skip::StaleBase { .. }), "{:?}", reason("stale"));
    assert!(matches!(reason("wrong-samples"), Skip::WrongSamples), "{:?}", reason("wrong-samples"));
    for dropped in equal.iter().filter(|n| peers[*n].0 != kept) {
        assert_eq!(reason(dropped), Skip::Duplicate { of: kept }, "{dropped}");
    }
    d.stop().await;
}

/// A hotkey that is not registered, and a bucket that cannot be reached: plain errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_hotkey_and_an_unreachable_store_give_clear_errors() {
    let _heavy = crate::CPU_HEAVY.read().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Devnet::start(&options(dir.path(), 1)).await.expect("devnet");
    let stranger = Keypair::from_secret("//ferrum-test-stranger", "test").expect("key");
    let store = Store::open(&dir.path().join("s").display().to_string(), &d.config.storage).expect("store");
    let node = NodeSetup {
        config: d.config.clone(),
        netuid: NETUID,
        keypair: stranger.clone(),
        store,
        bucket_url: dir.path().join("s").display().to_string(),
        dataset: std::sync::Arc::new(
            ferrum_common::Dataset::open_url(&d.config.storage.dataset_url, &d.config.storage).await.expect("dataset"),
        ),
        state_dir: dir.path().join("stranger"),
        backend: "flex".into(),
        threads: 1,
        metrics: Metrics::default(),
        events: None,
        peers: Default::default(),
        record_wait: std::time::Duration::from_secs(1),
    };
    let setup = MinerSetup { node, behaviour: ferrum_miner::Behaviour::Honest };

    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let err = ferrum_miner::run(setup, d.chain.clone(), shutdown).await.expect_err("unregistered").to_string();
    assert!(
        err.contains("not registered") && err.contains(&stranger.hotkey().to_string()) && err.contains("netuid 1"),
        "{err}"
    );

    let mut config = d.config.clone();
    config.storage.url = "s3://bucket/miner?endpoint=http://127.0.0.1:1&region=us-east-1".into();
    config.storage.timeout_secs = 3;
    config.storage.max_retries = 0;
    let err = ferrum_common::node::NodeContext::preflight(config, NETUID, &stranger.hotkey())
        .await
        .err()
        .expect("unreachable store")
        .to_string();
    assert!(err.contains("s3://bucket/miner") && err.contains("127.0.0.1:1"), "{err}");
    d.stop().await;
}

/// A validator scores honest miners above cheats, records why each cheat earns nothing, and
/// picks up where it stopped after being killed: same ledger, no weights slot submitted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_scores_cheats_to_zero_and_survives_a_restart() {
    let _heavy = crate::CPU_HEAVY.read().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = DevnetOptions {
        validators: 1,
        adversaries: ["noise", "near-copy", "zeros", "forged", "late", "sign-flip"].map(String::from).to_vec(),
        inner_steps: Some(4),
        ..options(dir.path(), 2)
    };
    let mut d = Devnet::start(&opts).await.expect("devnet");
    let validator = *d.miner_uids().last().expect("uids");
    assert_eq!(d.role(validator), Some(&ferrum::devnet::Role::Validator));
    let first = d.current_window().await.expect("window") + 1;
    for w in first..first + 4 {
        assert!(d.run_window(w).await.expect("window").in_sync);
    }
    d.run_until_scored(first + 3, 12).await.expect("scored");
    let before = d.last_report(validator).expect("report").clone();

    d.kill_miner(validator);
    let state = dir.path().join(format!("nodes/validator-{validator}/state"));
    let config = d.config.clone();
    let saved = ferrum_validator::ValidatorFiles::open(&state, &config).expect("files").load().await.expect("state");
    assert_eq!(saved.ledger.records.len(), before.uids.len(), "every scored miner is on disk");
    let slot_before = saved.last_weights_slot;
    d.start_miner(validator).expect("restart");

    // The near-copy (its victim's update scaled by less than 0.1 %) and its victim are never
    // both aggregated.
    let copier = d.miner_uids().into_iter().find(|u| d.role(*u).map(|r| r.name()) == Some("near-copy"));
    let copier = copier.expect("a near-copy miner");
    let victim = d.miner_uids().into_iter().find(|u| d.role(*u).map(|r| r.name()) == Some("honest"));
    let victim = victim.expect("an honest miner, the one copied");
    let mut last = None;
    for w in first + 4..first + 9 {
        let s = d.run_window(w).await.expect("window");
        assert!(s.in_sync, "the restarted validator stays in sync");
        assert!(!(s.peers.contains(&copier) && s.peers.contains(&victim)), "the same update twice: {s:?}");
        last = Some(s);
    }
    // Updates the validator judged harmful are no longer aggregated by anyone: its record
    // leaves them out and every node follows the agreed set.
    let harmful: Vec<u16> = d
        .miner_uids()
        .into_iter()
        // (Noise is left aside: clipped to the median norm its gain on random data is a coin
        // flip of tiny size early on, so it may be judged harmful, then not.)
        .filter(|u| matches!(d.role(*u).map(|r| r.name()), Some("zeros" | "sign-flip")))
        .collect();
    let last = last.expect("windows ran");
    assert!(harmful.iter().all(|u| !last.peers.contains(u)), "harmful {harmful:?} aggregated: {last:?}");
    d.run_until_scored(first + 8, 12).await.expect("scored");
    let after = ferrum_validator::ValidatorFiles::open(&state, &config).expect("files").load().await.expect("state");
    assert!(after.last_weights_slot > slot_before, "weights go on after the restart");
    let report = d.last_report(validator).expect("report");
    assert!(report.window >= first + 8);

    let summary = d.miner_summaries();
    for m in &summary {
        if m.role != "honest" {
            assert!(m.weight <= 0.01, "{m:?}");
            assert!(!m.reason.is_empty(), "{m:?}");
            // Each cheat is named by the rule that caught it, not only "no positive score".
            let caught_by: &[&str] = match m.role.as_str() {
                "forged" => &["invalid"],
                "late" => &["missing", "missed_windows"],
                "near-copy" => &["copy"],
                // Random values clipped to the median norm move the random-data loss by a
                // coin flip of tiny size in a young model, so its gradient EMA may end above 0;
                // the own-data test catches it then.
                "noise" => &["harmful", "no_gain", "own_data"],
                // Both make no gain on random data, so they also leave the gather set.
                _ => &["harmful", "no_gain"],
            };
            assert!(caught_by.contains(&m.rule.as_str()), "{m:?}");
        }
    }
    let honest: f64 = summary.iter().filter(|m| m.role == "honest").map(|m| m.weight).sum();
    let finals: BTreeMap<u16, f64> = report.uids.iter().map(|u| (u.uid, u.final_score)).collect();
    let best_cheat = summary.iter().filter(|m| m.role != "honest").map(|m| finals[&m.uid]).fold(f64::MIN, f64::max);
    let best_honest = summary.iter().filter(|m| m.role == "honest").map(|m| finals[&m.uid]).fold(f64::MIN, f64::max);
    assert!(best_honest > best_cheat, "honest {best_honest} vs cheats {best_cheat}: {summary:?}");
    assert!(honest == 0.0 || honest >= 0.95, "honest share {honest}: {summary:?}");

    // A miner that joins now starts from the validator's newest checkpoint, not genesis.
    let newcomer = d.add_miner().await.expect("new miner");
    let w = d.current_window().await.expect("window") + 1;
    let s = d.run_window(w).await.expect("window with the newcomer");
    assert!(s.in_sync && s.fingerprints.contains_key(&newcomer), "{s:?}");
    let replayed = (first..w).filter(|x| d.reports(*x).contains_key(&newcomer)).count();
    assert!(replayed < (w - first) as usize, "it skipped the windows the checkpoint covers");
    d.stop().await;
}

/// On a subnet with commit-reveal, the validator commits its weights and reveals them in the
/// reveal epoch (hash commits), or commits them timelocked and the chain reveals them (today's
/// runtime); either way the chain then holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_commits_then_reveals_its_weights() {
    commit_reveal_weights_reach_the_chain(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_commits_timelocked_weights_and_the_chain_reveals_them() {
    commit_reveal_weights_reach_the_chain(true).await;
}

async fn commit_reveal_weights_reach_the_chain(timelocked_commits: bool) {
    let _heavy = crate::CPU_HEAVY.read().await;
    use ferrum_chain::Chain;
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = DevnetOptions { validators: 1, commit_reveal: true, timelocked_commits, ..options(dir.path(), 2) };
    let mut d = Devnet::start(&opts).await.expect("devnet");
    let validator = *d.miner_uids().last().expect("uids");
    assert!(d.chain.weights(NETUID, validator).await.expect("weights").is_empty());
    let first = d.current_window().await.expect("window") + 1;
    for w in first..first + 8 {
        assert!(d.run_window(w).await.expect("window").in_sync);
    }
    let on_chain = d.chain.weights(NETUID, validator).await.expect("weights");
    assert!(!on_chain.is_empty(), "revealed weights are on chain");
    let state = dir.path().join(format!("nodes/validator-{validator}/state"));
    let saved = ferrum_validator::ValidatorFiles::open(&state, &d.config).expect("files").load().await.expect("state");
    assert!(saved.last_weights_slot.is_some());
    // The validator took the subnet's path: hash commits and reveals, or timelocked commits
    // that leave nothing to reveal.
    let hotkey = d.chain.metagraph(NETUID, None).await.expect("metagraph").neurons[usize::from(validator)].hotkey;
    let (hash, timelocked) = d.chain.commits_made(NETUID, &hotkey);
    if timelocked_commits {
        assert!(hash == 0 && timelocked > 0, "hash commits {hash}, timelocked {timelocked}");
        assert!(saved.pending_reveals.is_empty(), "a timelocked commit needs no reveal");
    } else {
        assert!(hash > 0 && timelocked == 0, "hash commits {hash}, timelocked {timelocked}");
    }
    d.stop().await;
}

/// Miners whose buckets lie (overwrite after the window, serve two signed payloads, refuse or
/// drop some readers) and an honest node that cannot reach one bucket for a window: every node
/// ends every window on the validators' agreed model (docs/protocol.md §16). Two validators of
/// equal stake read with opposite parity, so the equivocating and selective buckets split them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_attacks_do_not_split_the_network() {
    let _heavy = crate::CPU_HEAVY.read().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = DevnetOptions {
        validators: 2,
        adversaries: ["late-overwrite", "equivocate", "selective", "vanish"].map(String::from).to_vec(),
        faults: vec!["flaky-link".into()],
        inner_steps: Some(4),
        ..options(dir.path(), 3)
    };
    let mut d = Devnet::start(&opts).await.expect("devnet");
    let role = |d: &Devnet, name: &str| {
        d.miner_uids().into_iter().find(|u| d.role(*u).is_some_and(|r| r.name() == name)).expect("role")
    };
    let (equivocate, selective) = (role(&d, "equivocate"), role(&d, "selective"));
    let first = d.current_window().await.expect("window") + 1;
    // The flaky link: honest miner 1 cannot read honest miner 2's bucket in the second window.
    d.set_flaky_window(first + 1);
    let mut repaired = 0;
    for w in first..first + 4 {
        let s = d.run_window(w).await.expect("window");
        assert!(s.in_sync, "window {w}: {s:?}");
        assert!(
            !s.peers.contains(&equivocate) && !s.peers.contains(&selective),
            "validators split on these, so no stake majority accepts them: {s:?}"
        );
        repaired += s.agreement.values().filter(|a| a.starts_with("repaired")).count();
        if w == first + 1 && s.peers.contains(&2) {
            // At least uid 2's payload came from a mirror (an attacker's may have too, when
            // this node read it after the attack).
            let fetched: Option<u32> = s.agreement[&1]
                .strip_prefix("repaired (")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok());
            assert!(
                fetched.is_some_and(|n| n >= 1),
                "the node behind the flaky link took uid 2's payload from a mirror: {s:?}"
            );
        }
    }
    assert!(repaired > 0, "some node re-applied a window with the agreed set");
    d.stop().await;
}

/// `--compare-honest`: the same devnet runs again without its adversaries, on the same data and
/// genesis, and the summary carries that run's held-out loss per window beside the attacked one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_all_honest_comparison_reruns_the_devnet_without_adversaries() {
    let _heavy = crate::CPU_HEAVY.read().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = DevnetOptions {
        adversaries: vec!["sign-flip".into()],
        windows: 2,
        inner_steps: Some(2),
        compare_honest: true,
        ..options(dir.path(), 2)
    };
    let summary = ferrum::devnet::run(&opts, |_| {}).await.expect("devnet");
    let honest = summary.all_honest_loss.clone().expect("the all-honest run's losses");
    assert_eq!(honest.len(), 2, "{summary:?}");
    assert!(honest.iter().all(|l| l.is_finite() && *l < summary.initial_loss), "{honest:?}");
    assert!(summary.loss_ratio().is_some_and(f32::is_finite));
    // The attacker (uid 3) ran in the first run only; the same data served both.
    assert!(dir.path().join("nodes/miner-3").exists());
    assert!(dir.path().join("all-honest/nodes/miner-2").exists());
    assert!(!dir.path().join("all-honest/nodes/miner-3").exists(), "no adversary in the all-honest run");
    assert!(!dir.path().join("all-honest/dataset").exists(), "the attacked run's data is reused");
}
