use super::*;

fn parse(json: &str) -> Result<SubnetConfig, ConfigError> {
    SubnetConfig::from_json_str(json, "test.json")
}

fn fields_of(json: &str) -> Vec<String> {
    let err = parse(json).expect_err("config should be rejected");
    err.fields().into_iter().map(String::from).collect()
}

#[test]
fn every_preset_is_valid_and_round_trips() {
    for p in Preset::ALL {
        let c = p.config();
        c.validate().unwrap_or_else(|e| panic!("preset {}: {e:?}", p.name()));
        let back = parse(&c.to_pretty_json()).expect("shown config parses");
        assert_eq!(back, c);
        assert_eq!(Preset::from_name(p.name()), Some(p));
    }
}

#[test]
fn empty_file_is_the_default_preset() {
    assert_eq!(parse("{}").expect("empty"), SubnetConfig::default());
    assert_eq!(parse(r#"{"preset": "test"}"#).expect("test"), Preset::Test.config());
}

#[test]
fn file_values_merge_over_preset() {
    let c =
        parse(r#"{"preset": "test", "training": {"inner_steps": 7}, "weights": {"scheme": "power"}}"#).expect("merge");
    assert_eq!(c.training.inner_steps, 7);
    assert_eq!(c.training.batch_size, Preset::Test.config().training.batch_size);
    assert_eq!(c.weights.scheme, WeightScheme::Power);
    assert_eq!(c.model, Preset::Test.config().model);
}

#[test]
fn unknown_key_names_its_path() {
    assert_eq!(fields_of(r#"{"compression": {"topkk": 3}}"#), ["compression.topkk"]);
    assert_eq!(fields_of(r#"{"gauntlet": {"openskill": {"gamma": 3}}}"#), ["gauntlet.openskill.gamma"]);
    assert_eq!(fields_of(r#"{"extra": 1}"#), ["extra"]);
}

#[test]
fn wrong_type_names_its_path() {
    assert_eq!(fields_of(r#"{"training": {"inner_steps": "ten"}}"#), ["training.inner_steps"]);
    assert_eq!(fields_of(r#"{"training": {"inner_steps": -1}}"#), ["training.inner_steps"]);
    assert_eq!(fields_of(r#"{"compression": {"dct": 1}}"#), ["compression.dct"]);
    assert_eq!(fields_of(r#"{"weights": {"scheme": "softmax"}}"#), ["weights.scheme"]);
    assert_eq!(fields_of(r#"{"preset": "huge"}"#), ["preset"]);
    let err = parse(r#"{"preset": "huge"}"#).expect_err("bad preset");
    assert!(err.to_string().contains("test, small, 150m, 1b"), "{err}");
}

#[test]
fn syntax_error_gives_line_and_column() {
    let err = parse("{\n  \"training\": {\n    \"inner_steps\": 3,\n  }\n}").expect_err("trailing comma");
    match err {
        ConfigError::Syntax { line, .. } => assert_eq!(line, 4),
        other => panic!("unexpected {other}"),
    }
    assert!(matches!(parse("[1, 2]"), Err(ConfigError::Field { .. })));
}

#[test]
fn range_rules_name_the_field_and_rule() {
    let err = parse(r#"{"compression": {"topk": 5000}}"#).expect_err("topk above block");
    let text = err.to_string();
    assert!(text.contains("compression.topk"), "{text}");
    assert!(text.contains("chunk² = 4096"), "{text}");

    let cases: &[(&str, &str)] = &[
        (r#"{"training": {"micro_batch_size": 3}}"#, "training.micro_batch_size"),
        (r#"{"training": {"learning_rate": 0}}"#, "training.learning_rate"),
        (r#"{"training": {"adam_beta2": 1.0}}"#, "training.adam_beta2"),
        (r#"{"training": {"grad_clip": -1}}"#, "training.grad_clip"),
        (r#"{"model": {"num_heads": 12}}"#, "model.num_heads"),
        (r#"{"model": {"num_kv_heads": 3}}"#, "model.num_kv_heads"),
        (r#"{"model": {"vocab_size": 256}}"#, "model.vocab_size"),
        (r#"{"compression": {"quantization_bits": 9}}"#, "compression.quantization_bits"),
        (r#"{"compression": {"error_feedback_decay": 1.5}}"#, "compression.error_feedback_decay"),
        (r#"{"windows": {"put_window_secs": 600}}"#, "windows.put_window_secs"),
        (r#"{"windows": {"blocks_per_window": 0}}"#, "windows.blocks_per_window"),
        (r#"{"gauntlet": {"own_eval_samples": 100000}}"#, "gauntlet.own_eval_samples"),
        (r#"{"gauntlet": {"order_eval_samples": 9}}"#, "gauntlet.order_eval_samples"),
        (r#"{"gauntlet": {"copy": {"reset_overlap": 0.3}}}"#, "gauntlet.copy.reset_overlap"),
        (r#"{"gauntlet": {"copy": {"duplicate_distance": 1.0}}}"#, "gauntlet.copy.duplicate_distance"),
        (r#"{"weights": {"burn_share": 1.2}}"#, "weights.burn_share"),
        (r#"{"weights": {"tiers": {"top_ratio": 0.5}}}"#, "weights.tiers.top_ratio"),
        (r#"{"data": {"tokenizer": "sentencepiece"}}"#, "data.tokenizer"),
        (r#"{"data": {"dataset_id": "abc"}}"#, "data.dataset_id"),
        (r#"{"storage": {"url": "gs://bucket"}}"#, "storage.url"),
        (r#"{"storage": {"connect_timeout_secs": 500}}"#, "storage.connect_timeout_secs"),
    ];
    for (json, field) in cases {
        assert_eq!(fields_of(json), [*field], "{json}");
    }
}

#[test]
fn topk_larger_than_a_tensor_block_is_inconsistent() {
    // 100 splits into 50-row blocks, so gate_proj [100, 64] has 50×64-value blocks: fine. A prime
    // width 97 only splits into single rows: 1×64 blocks cannot hold a top-128.
    let ok = parse(r#"{"preset": "test", "model": {"intermediate_size": 100}, "compression": {"topk": 128}}"#);
    assert!(ok.is_ok(), "{:?}", ok.err());
    let err = parse(r#"{"preset": "test", "model": {"intermediate_size": 97}, "compression": {"topk": 128}}"#)
        .expect_err("prime width");
    let text = err.to_string();
    assert!(text.contains("compression.topk") && text.contains("mlp.gate_proj"), "{text}");
}

#[test]
fn all_violations_are_reported_together() {
    let err = parse(r#"{"training": {"learning_rate": -1, "inner_steps": 0}, "weights": {"burn_share": 2}}"#)
        .expect_err("three errors");
    let mut f = err.fields();
    f.sort();
    assert_eq!(f, ["training.inner_steps", "training.learning_rate", "weights.burn_share"]);
}

#[test]
fn hash_covers_protocol_not_node_settings() {
    let base = Preset::Small.config();
    let h = base.hash();
    assert_eq!(h, base.clone().hash(), "hash is deterministic");

    let mut local = base.clone();
    local.storage.url = "s3://elsewhere/x".into();
    local.storage.timeout_secs = 5;
    assert_eq!(local.hash(), h, "storage is node-local");

    // Same values reached through a different preset label hash the same.
    let mut relabeled = base.clone();
    relabeled.preset = Preset::Test;
    assert_eq!(relabeled.hash(), h);

    let mut changed = base.clone();
    changed.compression.topk = 32;
    assert_ne!(changed.hash(), h);
    let mut changed = base.clone();
    changed.gauntlet.openskill.tau = 0.2;
    assert_ne!(changed.hash(), h);

    // Key order and whitespace in the file do not matter.
    let a = parse(r#"{"training": {"inner_steps": 5, "batch_size": 8}}"#).expect("a");
    let b = parse("{ \"training\" : { \"batch_size\":8,\n \"inner_steps\":5 } }").expect("b");
    assert_eq!(a.hash(), b.hash());
    assert!(!base.canonical_json().contains("storage"));
    assert_eq!(h.short().len(), 16);
}
