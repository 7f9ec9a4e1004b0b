//! `ferrum export --hf` from a checkpoint folder: the files `transformers` needs, the weights
//! bit for bit, and, with `FERRUM_HF_PYTHON` naming a Python that has torch and transformers
//! (scripts/check-hf-export), the loss `transformers` computes equal to Ferrum's.

use std::path::Path;
use std::process::Command;

use ferrum_common::checkpoint;
use ferrum_common::config::{Preset, SubnetConfig};
use ferrum_common::keys::Namespace;
use ferrum_common::model::MasterModel;
use ferrum_common::storage::{Location, Store};
use ferrum_common::train::{Evaluator, device};

const TEXT: &str = "The miners train; the validators judge. Ünïcödé and tabs\tstay bytes.";

fn export(config_file: &Path, folder: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferrum"))
        .arg("--config")
        .arg(config_file)
        .args(["export", "--hf"])
        .arg(out)
        .arg("--checkpoint")
        .arg(folder)
        .output()
        .expect("run ferrum export")
}

/// `gpt2`: the test model with GPT-2's tokenizer and a 50,304-row vocabulary, else bytes.
async fn export_and_compare(tied: bool, gpt2: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config: SubnetConfig = Preset::Test.config();
    config.model.tie_embeddings = tied;
    if gpt2 {
        config.data.tokenizer = "gpt2".into();
        config.model.vocab_size = 50_304;
    }
    let (text_ids, eos): (Vec<u32>, u32) = if gpt2 {
        (ferrum::tokenizer::Tokenizer::load("gpt2", None).expect("gpt2").encode(TEXT).expect("encode"), 50_256)
    } else {
        (TEXT.bytes().map(u32::from).collect(), 256)
    };
    let config_file = dir.path().join("subnet.json");
    std::fs::write(&config_file, config.to_pretty_json()).expect("config");
    let store = Store::open_location(&Location::Local { root: dir.path().join("bucket") }, crate::seaweed::limits())
        .expect("store");
    let ns = Namespace::new(1, &config.hash());
    let mut model = MasterModel::genesis(&config);
    let updates: Vec<Option<Vec<f32>>> =
        model.tensors.iter().map(|t| Some(ferrum_common::codec::synthetic_delta(t.len(), 5))).collect();
    model.outer_step(&updates, 1.0, 1).expect("step");
    checkpoint::save(&store, &ns, &config.hash(), 7, 1, &model).await.expect("save");
    let folder = dir.path().join("bucket").join(ns.checkpoint_manifest(7)).parent().expect("folder").to_path_buf();
    let out = dir.path().join("hf");

    let run = export(&config_file, &folder, &out);
    assert!(run.status.success(), "export failed: {}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stdout).contains("exported window 7"));

    let hf_config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).expect("config.json")).expect("json");
    assert_eq!(hf_config["architectures"][0], "LlamaForCausalLM");
    assert_eq!(hf_config["tie_word_embeddings"], tied);
    assert_eq!(hf_config["num_hidden_layers"], config.model.num_layers);
    let bytes = std::fs::read(out.join("model.safetensors")).expect("weights");
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
    assert_eq!(meta.metadata().as_ref().and_then(|m| m.get("format")).map(String::as_str), Some("pt"));
    let back = checkpoint::from_safetensors(&bytes, &config).expect("weights load");
    assert_eq!(back, model, "weights bit for bit");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    assert_eq!(st.names().contains(&"lm_head.weight"), !tied);
    for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let tokenizer_config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("tokenizer_config.json")).expect("read")).expect("json");
    assert_eq!(tokenizer_config["model_input_names"], serde_json::json!(["input_ids", "attention_mask"]));

    // Fixed sequences: the text's tokens, and an end of document inside one.
    let len = config.data.sequence_length as usize;
    let sequences: Vec<Vec<u32>> = (0..3)
        .map(|i| {
            (0..len)
                .map(|j| if i == 1 && j == len / 2 { eos } else { text_ids[(i * 7 + j) % text_ids.len()] })
                .collect()
        })
        .collect();
    let ours = Evaluator::new(&config, &device("flex").expect("device")).mean_loss(&model, &sequences).expect("loss");

    let Some(python) = std::env::var_os("FERRUM_HF_PYTHON") else {
        eprintln!("transformers cross-check skipped: set FERRUM_HF_PYTHON (scripts/check-hf-export does)");
        return;
    };
    let request = dir.path().join("request.json");
    std::fs::write(&request, serde_json::json!({ "sequences": sequences, "text": TEXT }).to_string()).expect("request");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/hf_loss.py");
    let run = Command::new(python).arg(script).arg(&out).arg(&request).output().expect("run python");
    assert!(run.status.success(), "hf_loss.py failed: {}", String::from_utf8_lossy(&run.stderr));
    let theirs: serde_json::Value = serde_json::from_slice(&run.stdout).expect("hf_loss.py JSON");
    let loss = theirs["loss"].as_f64().expect("loss");
    eprintln!("transformers {}: loss {loss:.7}, Ferrum {ours:.7} (tied {tied})", theirs["transformers"]);
    assert!((loss - f64::from(ours)).abs() <= 1e-5 * loss.abs().max(1.0), "transformers {loss} vs Ferrum {ours}");
    assert_eq!(theirs["text_ids"], serde_json::json!(text_ids));
    assert_eq!(theirs["eos_token_id"], eos);
    assert_eq!(theirs["tied"], tied);
    assert_eq!(theirs["input_names"], serde_json::json!(["attention_mask", "input_ids"]));
    assert!(theirs["generated"].as_u64().is_some_and(|n| n >= 1), "generate made no tokens: {theirs}");
}

#[tokio::test]
async fn exported_tied_model_matches() {
    export_and_compare(true, false).await;
}

#[tokio::test]
async fn exported_untied_model_matches() {
    export_and_compare(false, false).await;
}

/// A GPT-2-token model: transformers loads it, tokenizes as Ferrum does and generates.
#[tokio::test]
async fn exported_gpt2_model_matches() {
    export_and_compare(true, true).await;
}

/// A checkpoint whose tensors were altered is refused, and nothing is written.
#[tokio::test]
async fn an_altered_checkpoint_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Preset::Test.config();
    let config_file = dir.path().join("subnet.json");
    std::fs::write(&config_file, config.to_pretty_json()).expect("config");
    let store = Store::open_location(&Location::Local { root: dir.path().join("bucket") }, crate::seaweed::limits())
        .expect("store");
    let ns = Namespace::new(1, &config.hash());
    let manifest =
        checkpoint::save(&store, &ns, &config.hash(), 2, 1, &MasterModel::genesis(&config)).await.expect("save");
    let tensors = dir.path().join("bucket").join(&manifest.tensors_key);
    // Under another config: refused, saying which flag fixes it.
    let mut other = config.clone();
    other.training.learning_rate *= 2.0;
    let other_file = dir.path().join("other.json");
    std::fs::write(&other_file, other.to_pretty_json()).expect("config");
    let run = export(&other_file, tensors.parent().expect("folder"), &dir.path().join("hf-other"));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && err.contains("made under config") && err.contains("--config"), "{err}");

    let mut bytes = std::fs::read(&tensors).expect("tensors");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&tensors, bytes).expect("alter");
    let out = dir.path().join("hf");
    let run = export(&config_file, tensors.parent().expect("folder"), &out);
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("do not match the manifest's hash"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(!out.join("model.safetensors").exists());
}
