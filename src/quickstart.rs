//! `ferrum quickstart`: the foundation end to end on embedded defaults, with no download.
//!
//! Generates a corpus, prepares the training and held-out datasets in the local store, pins the
//! dataset id into a config, then shows what the miner and validator will compute: the config
//! hash and namespace, each dev miner's assignment for a window, the window's random data, and
//! verified samples read back through the storage layer.

use ferrum_common::outln;
use std::path::Path;

use anyhow::{Context, Result, bail};
use ferrum_common::assignment::{SampleRequest, assign_samples, random_identity};
use ferrum_common::keys::Namespace;
use ferrum_common::storage::Store;
use ferrum_common::{Dataset, Hotkey, SubnetConfig, WindowSchedule};

use crate::prepare::{PrepareJob, prepare};
use crate::synth::write_corpus;
use crate::tokenizer::Tokenizer;

const NETUID: u16 = 1;
const WINDOW: u64 = 42;
const DEV_MINERS: [&str; 4] = ["//Bob", "//Charlie", "//Dave", "//Eve"];

/// Runs the quick start in `dir`.
pub async fn run(dir: &Path, corpus_mb: u64, config_path: Option<&Path>) -> Result<()> {
    let mut config = SubnetConfig::load_or_default(config_path)?;
    if !matches!(config.data.tokenizer.as_str(), "bytes" | "gpt2") {
        bail!("quickstart builds its dataset with `bytes` or `gpt2`; the config asks for {}", config.data.tokenizer);
    }
    config.storage.url = dir.join("store").display().to_string();
    config.storage.dataset_url = dir.join("dataset").display().to_string();

    outln!("1. generating {corpus_mb} MiB of synthetic text in {}", dir.join("corpus").display())?;
    let train_txt = dir.join("corpus/train.jsonl");
    let heldout_txt = dir.join("corpus/heldout.jsonl");
    write_corpus(&train_txt, corpus_mb << 20, 0)?;
    write_corpus(&heldout_txt, (corpus_mb << 20) / 16, 1)?;

    outln!(
        "2. preparing shards ({} tokenizer, {} tokens per sample)",
        config.data.tokenizer,
        config.data.sequence_length
    )?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut ids = Vec::new();
    for (input, out) in [(&train_txt, "dataset"), (&heldout_txt, "heldout")] {
        let store = Store::open(&dir.join(out).display().to_string(), &config.storage)?;
        let report = prepare(
            PrepareJob {
                inputs: vec![input.clone()],
                tokenizer: Tokenizer::load(&config.data.tokenizer, None)?,
                sequence_length: config.data.sequence_length,
                samples_per_shard: 8192,
                text_field: "text".into(),
                threads,
                progress: false,
            },
            &store,
        )
        .await?;
        outln!(
            "   {out:8} id {}  {} samples in {} shards",
            report.id,
            report.manifest.total_samples,
            report.manifest.shards.len()
        )?;
        ids.push(report.id);
    }

    config.data.dataset_id = Some(ids[0].to_string());
    let config_file = dir.join("config.json");
    std::fs::write(&config_file, config.to_pretty_json()).context("writing the config")?;
    let config = SubnetConfig::load(&config_file)?;
    let hash = config.hash();
    outln!("3. config written to {} (hash {hash})", config_file.display())?;
    outln!("   namespace {}", Namespace::new(NETUID, &hash).as_str())?;

    let dataset = Dataset::open(Store::open(&config.storage.dataset_url, &config.storage)?, Some(&ids[0])).await?;
    dataset.check_config(&config)?;
    let count = config.samples_per_window();
    let schedule = WindowSchedule::new(&config.windows);
    outln!(
        "4. window {WINDOW}: blocks {}..{}, put window opens at block {}; each miner trains on {count} samples",
        schedule.first_block(WINDOW),
        schedule.first_block(WINDOW + 1) - 1,
        schedule.put_window_block(WINDOW),
    )?;
    let tokenizer = Tokenizer::load(&config.data.tokenizer, None)?;
    for (i, uri) in DEV_MINERS.iter().enumerate() {
        let hotkey = Hotkey::from_dev_uri(uri)?;
        let uid = i as u16 + 1;
        let req = SampleRequest { dataset: dataset.id(), netuid: NETUID, window: WINDOW, uid, hotkey: &hotkey };
        let samples = assign_samples(&req, count, dataset.num_samples())?;
        let first = dataset.sample(samples[0]).await?;
        outln!("   uid {uid} {uri:9} {hotkey}: samples {:?}…", &samples[..samples.len().min(4)])?;
        outln!("      sample {}: {}", samples[0], snippet(&tokenizer.decode(&first)))?;
    }

    // On chain this is the hash of block `random_seed_block(WINDOW)`; here a stand-in.
    let seed_hash = blake3::hash(b"quickstart stand-in for a block hash");
    let (uid, hotkey) = random_identity(seed_hash.as_bytes());
    let req = SampleRequest { dataset: dataset.id(), netuid: NETUID, window: WINDOW, uid, hotkey: &hotkey };
    let random = assign_samples(&req, u64::from(config.gauntlet.random_eval_samples), dataset.num_samples())?;
    outln!(
        "5. random data of window {WINDOW} (seeded by block {}): samples {random:?}",
        schedule.random_seed_block(WINDOW)
    )?;
    let verified = dataset.verify().await?;
    outln!("6. verified every shard hash ({verified} bytes)")?;
    let config_arg = config_file.display();
    outln!("done. Next, from this directory:")?;
    outln!(
        "   cargo run --release --bin ferrum -- --config {config_arg} data sample --index 0 --tokenizer {}",
        config.data.tokenizer
    )?;
    outln!(
        "   cargo run --release -p ferrum-miner -- --config {config_arg} --hotkey {} check --uid 1 --window {WINDOW}",
        Hotkey::from_dev_uri(DEV_MINERS[0])?
    )?;
    Ok(())
}

fn snippet(text: &str) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let cut: String = flat.chars().take(90).collect();
    format!("\"{cut}…\"")
}

/// A dataset of synthetic text with at least `tokens` tokens (in the config's tokenizer and
/// sequence length), prepared in `dir/dataset` (for benchmarks and tests).
pub async fn synthetic_dataset(dir: &Path, config: &SubnetConfig, tokens: u64) -> Result<Dataset> {
    // Byte tokens are one per byte; GPT-2 packs about four bytes per token: size for bytes.
    prepare_synthetic(&dir.join("dataset"), config, tokens.max(1 << 16), 7).await
}

/// Writes `bytes` of synthetic text from `seed` beside `out` and prepares it into `out`.
pub async fn prepare_synthetic(out: &Path, config: &SubnetConfig, bytes: u64, seed: u64) -> Result<Dataset> {
    let text = out.with_extension("jsonl");
    write_corpus(&text, bytes, seed)?;
    prepare_into(out, vec![text], config).await
}

/// Prepares text files (or JSON lines with a `text` field) into a dataset at `out` with the
/// config's tokenizer and sequence length, and opens it.
pub async fn prepare_into(out: &Path, inputs: Vec<std::path::PathBuf>, config: &SubnetConfig) -> Result<Dataset> {
    let store = Store::open(&out.display().to_string(), &config.storage)?;
    prepare(
        PrepareJob {
            inputs,
            tokenizer: Tokenizer::load(&config.data.tokenizer, None)?,
            sequence_length: config.data.sequence_length,
            samples_per_shard: 8192,
            text_field: "text".into(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            progress: false,
        },
        &store,
    )
    .await?;
    Ok(Dataset::open(store, None).await?)
}
