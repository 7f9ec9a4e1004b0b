//! The `ferrum` binary as a user runs it.

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
