//! The `ferrum` binary as a user runs it.

use std::path::Path;
use std::process::{Command, Output};

fn ferrum(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrum")).args(args).env_remove("FERRUM_CONFIG").output().expect("run ferrum")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn config_show_then_check_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    for preset in ["test", "small", "150m", "1b"] {
        let shown = ferrum(&["config", "show", "--preset", preset]);
        assert!(shown.status.success(), "{:?}", text(&shown));
        let file = dir.path().join(format!("{preset}.json"));
        std::fs::write(&file, &shown.stdout).expect("write");
        let checked = ferrum(&["config", "check", file.to_str().expect("utf8")]);
        let (out, err) = text(&checked);
        assert!(checked.status.success(), "{out}{err}");
        assert!(out.contains("valid") && out.contains(&format!("preset {preset}")), "{out}");
    }
}

#[test]
fn bad_config_fails_naming_field_and_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (r#"{"compression": {"chunk": 8, "topk": 100}}"#, "compression.topk", "chunk² = 64"),
        (r#"{"training": {"inner_stepz": 3}}"#, "training.inner_stepz", "unknown field"),
        (r#"{"windows": {"blocks_per_window": "many"}}"#, "windows.blocks_per_window", "invalid type"),
        ("{\"model\": {\n", "line 2", "not valid JSON"),
    ];
    for (json, field, rule) in cases {
        let file = dir.path().join("bad.json");
        std::fs::write(&file, json).expect("write");
        let o = ferrum(&["config", "check", file.to_str().expect("utf8")]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{out}{err}");
        assert!(err.contains(field) && err.contains(rule), "for {json}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let o = ferrum(&["--config", "/nonexistent/c.json", "config", "hash"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("cannot read"));
}

#[test]
fn damaged_dataset_gives_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = dir.path().join("c.jsonl");
    let ds = dir.path().join("ds");
    let (c, d) = (corpus.to_str().expect("utf8"), ds.to_str().expect("utf8"));
    assert!(ferrum(&["data", "synth", "--out", c, "--bytes", "100000"]).status.success());
    let o = ferrum(&["data", "prepare", "--input", c, "--out", d, "--quiet", "--sequence-length", "64"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).0.contains("dataset id"));
    let shard = ds.join("shards/00000.fts");
    let len = std::fs::metadata(&shard).expect("meta").len();
    std::fs::OpenOptions::new().write(true).open(&shard).expect("open").set_len(len / 2).expect("truncate");
    let o = ferrum(&["data", "verify", "--dataset", d]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("truncated") && !err.contains("panicked"), "{err}");
}

/// `bench train` on the test preset: the report is complete and the held-out loss falls. On the
/// real corpus when FERRUM_CORPUS is set (CI), else on synthetic text.
#[test]
fn bench_train_reports_throughput_and_a_falling_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["bench", "train", "--preset", "test", "--steps", "40", "--eval-samples", "32", "--json"];
    let dataset = dir.path().join("real");
    let dataset_arg = dataset.to_str().expect("utf8").to_string();
    if let Some(corpus) = std::env::var_os("FERRUM_CORPUS") {
        let input = std::path::Path::new(&corpus).join("train/corpus.jsonl");
        let prep = ferrum(&[
            "data",
            "prepare",
            "--input",
            input.to_str().expect("utf8"),
            "--tokenizer",
            "bytes",
            "--sequence-length",
            "64",
            "--out",
            &dataset_arg,
            "--quiet",
        ]);
        assert!(prep.status.success(), "{:?}", text(&prep));
        args.extend(["--dataset", &dataset_arg]);
    }
    let out = ferrum(&args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let r: serde_json::Value = serde_json::from_str(&stdout).expect("json report");
    assert_eq!(r["steps"], 40);
    assert!(r["tokens_per_sec"].as_f64().expect("tokens/s") > 0.0);
    // The CPU and the kernel paths taken on it are named, as bench codec names its own.
    assert!(!r["cpu"].as_str().expect("cpu").is_empty());
    let gemm = r["kernels"]["gemm"].as_str().expect("gemm path");
    assert!(["avx512f", "fma", "scalar", "portable"].contains(&gemm), "{gemm}");
    assert!(["avx512", "avx2", "baseline"].contains(&r["kernels"]["fused"].as_str().expect("fused path")));
    assert!(r["kernels"]["threads"].as_u64().expect("threads") >= 1);
    let (start, end) = (r["eval_loss_start"].as_f64().expect("start"), r["eval_loss_end"].as_f64().expect("end"));
    assert!((start - 320f64.ln()).abs() < 0.2, "genesis loss {start}");
    assert!(end < start - 1.0, "held-out loss {start} -> {end}");
    assert_eq!(r["loss_tail"].as_array().map(Vec::len), Some(10));
}

/// `ferrum config show | head -1`: a reader that goes away ends the program quietly.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let o = Command::new(env!("CARGO_BIN_EXE_ferrum"))
        .args(["config", "show", "--preset", "1b"])
        .stdout(writer)
        .output()
        .expect("run ferrum");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("panicked") && err.is_empty(), "{err}");
}

#[test]
fn devnet_refuses_a_folder_it_did_not_make_and_absurd_window_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mine = dir.path().join("nodes/notes.txt");
    std::fs::create_dir_all(mine.parent().expect("parent")).expect("mkdir");
    std::fs::write(&mine, "a user's file").expect("write");
    let o = ferrum(&["devnet", "--windows", "1", "--dir", dir.path().to_str().expect("utf-8")]);
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("ferrum did not make"), "{err}");
    assert_eq!(std::fs::read_to_string(&mine).expect("kept"), "a user's file");

    for windows in ["0", "18446744073709551615"] {
        let o = ferrum(&["devnet", "--windows", windows, "--dir", dir.path().to_str().expect("utf-8")]);
        let (_, err) = text(&o);
        assert!(!o.status.success() && err.contains("--windows"), "{windows}: {err}");
    }
}

/// `ferrum devnet --dataset --heldout`: prepared GPT-2-token data runs a subnet (the generated
/// corpus is bytes only); without it a GPT-2 config is refused naming the flags, and a config
/// that pins another dataset is refused naming the pin.
fn ln_config(dir: &str) -> String {
    Path::new(dir).join("subnet.json").to_str().expect("utf-8").to_string()
}

#[test]
fn devnet_runs_on_prepared_gpt2_data_and_names_a_mismatch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_string();
    for (name, seed) in [("train", "0"), ("heldout", "1")] {
        let corpus = path(&format!("{name}.jsonl"));
        let synth = ferrum(&["data", "synth", "--out", &corpus, "--bytes", "200000", "--seed", seed]);
        assert!(synth.status.success(), "{:?}", text(&synth));
        let prep = ferrum(&[
            "data",
            "prepare",
            "--input",
            &corpus,
            "--tokenizer",
            "gpt2",
            "--sequence-length",
            "64",
            "--out",
            &path(name),
            "--quiet",
        ]);
        assert!(prep.status.success(), "{:?}", text(&prep));
    }
    let config = path("gpt2.json");
    let gpt2 = r#"{"preset": "test", "data": {"tokenizer": "gpt2"}, "model": {"vocab_size": 50304}"#;
    std::fs::write(&config, format!("{gpt2}}}")).expect("config");

    let o = ferrum(&["--config", &config, "devnet", "--windows", "1", "--dir", &path("refused")]);
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("--dataset") && err.contains("gpt2"), "{err}");

    let (train, heldout) = (path("train"), path("heldout"));
    let run = ["devnet", "--miners", "2", "--windows", "1", "--dataset", &train, "--heldout", &heldout, "--json"];
    let o = ferrum(&[&["--config", config.as_str()][..], &run[..], &["--dir", &path("run")][..]].concat());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let summary: serde_json::Value = serde_json::from_str(out.lines().last().expect("summary")).expect("json");
    let initial = summary["initial_loss"].as_f64().expect("initial loss");
    assert!((initial - 50304f64.ln()).abs() < 0.5, "a GPT-2-vocabulary genesis: {initial}");
    let window = &summary["windows"][0];
    assert_eq!(window["in_sync"], true, "{window}");
    assert!(window["loss"].as_f64().is_some_and(|l| l < initial), "{window}");

    // The localnet takes the same prepared data: its config is pinned to it, its nodes read it.
    let o = ferrum(&["--config", &config, "localnet", "--port", "0", "--dir", &path("ln-refused")]);
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("--dataset") && err.contains("gpt2"), "{err}");
    let ln = path("ln");
    let args = ["localnet", "--port", "0", "--miners", "1", "--blocks", "1", "--dataset", &train, "--dir", &ln];
    let o = ferrum(&[&["--config", config.as_str()][..], &args[..]].concat());
    assert!(o.status.success(), "{:?}", text(&o));
    let subnet: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("ln/subnet.json")).expect("subnet.json")).expect("json");
    assert_eq!(subnet["data"]["tokenizer"], "gpt2");
    assert_eq!(subnet["storage"]["dataset_url"].as_str(), std::fs::canonicalize(&train).expect("train").to_str());
    let id = subnet["data"]["dataset_id"].as_str().expect("pinned");
    assert_eq!(id.len(), 64, "{id}");
    let check = ferrum(&["--config", &ln_config(&ln), "data", "verify"]);
    assert!(check.status.success() && text(&check).0.contains(id), "{:?}", text(&check));

    let pinned = path("pinned.json");
    let zeros = "0".repeat(64);
    std::fs::write(&pinned, gpt2.replace(r#""gpt2"}"#, &format!(r#""gpt2", "dataset_id": "{zeros}"}}"#)) + "}")
        .expect("config");
    let o = ferrum(&[&["--config", pinned.as_str()][..], &run[..], &["--dir", &path("pinned")][..]].concat());
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains(&zeros) && err.contains("pins"), "{err}");
}

#[test]
fn converge_bench_reports_both_runs_window_by_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = dir.path().join("corpus");
    for (split, seed) in [("train", "0"), ("heldout", "1")] {
        std::fs::create_dir_all(corpus.join(split)).expect("mkdir");
        let out = corpus.join(split).join("text.jsonl");
        let synth =
            ferrum(&["data", "synth", "--out", out.to_str().expect("utf-8"), "--bytes", "300000", "--seed", seed]);
        assert!(synth.status.success(), "{:?}", text(&synth));
    }
    let work = dir.path().join("work");
    let o = ferrum(&[
        "bench",
        "converge",
        "--corpus",
        corpus.to_str().expect("utf-8"),
        "--dir",
        work.to_str().expect("utf-8"),
        "--miners",
        "2",
        "--windows",
        "2",
        "--eval-samples",
        "32",
        "--json",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let r: serde_json::Value = serde_json::from_str(out.lines().last().expect("report")).expect("json");
    let curve = |k: &str| -> Vec<(u64, f64)> {
        r[k].as_array()
            .expect(k)
            .iter()
            .map(|p| (p[0].as_u64().expect("window"), p[1].as_f64().expect("loss")))
            .collect()
    };
    let (decentralized, central) = (curve("curve"), curve("central_curve"));
    assert_eq!(decentralized.len(), 2, "{r}");
    let windows = |c: &[(u64, f64)]| c.iter().map(|(w, _)| *w).collect::<Vec<_>>();
    assert_eq!(windows(&decentralized), windows(&central), "{r}");
    let initial = r["initial_loss"].as_f64().expect("genesis loss");
    assert!(central.iter().all(|(_, l)| l.is_finite() && *l < initial), "the central run learns: {r}");
    assert_eq!(r["centralized_loss"].as_f64(), central.last().map(|(_, l)| *l), "{r}");
    assert_eq!(r["eval_samples"], 32);
}
