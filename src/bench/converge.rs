//! `ferrum bench converge`: does decentralized training keep up with a central run? A devnet of
//! N miners (the config's compression, the nodes' outer step) against one AdamW run of the same
//! model on the same samples, in the same order, for the same number of steps (so the same
//! tokens), both scored on the held-out split of the real corpus.

use ferrum_common::outln;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ferrum_common::assignment::{SampleRequest, assign_samples};
use ferrum_common::model::MasterModel;
use ferrum_common::train::{Trainer, device};
use ferrum_common::{Dataset, Preset, SubnetConfig, params};
use serde::Serialize;

use crate::devnet::{Devnet, DevnetOptions, NETUID};
use crate::prepare::expand_inputs;

/// What to run.
#[derive(Debug, Clone)]
pub struct ConvergeBench {
    /// The corpus (`scripts/fetch-corpus`): `train/` and `heldout/` folders of text.
    pub corpus: PathBuf,
    /// Working folder (prepared datasets are kept and reused).
    pub dir: PathBuf,
    pub preset: String,
    /// A config to run instead of the preset's.
    pub config: Option<SubnetConfig>,
    pub miners: usize,
    pub windows: u64,
    pub inner_steps: Option<u32>,
    pub eval_samples: usize,
}

/// The figures (`--json` prints them as they are).
#[derive(Debug, Serialize)]
pub struct ConvergeReport {
    pub preset: String,
    pub params: u64,
    pub miners: usize,
    pub windows: u64,
    pub inner_steps: u32,
    pub batch_size: u32,
    pub sequence_length: u32,
    pub topk: u32,
    pub chunk: u32,
    pub outer_learning_rate: f64,
    pub eval_samples: usize,
    /// Held-out loss of the genesis model, of the decentralized run's global model and of the
    /// central run, and their ratio (decentralized / central).
    pub initial_loss: f32,
    pub decentralized_loss: f32,
    pub centralized_loss: f32,
    pub ratio: f32,
    /// Predicted tokens each run trained on: the central run takes the batches the miners ran,
    /// so one count is both.
    pub tokens: u64,
    /// Mean bytes one miner uploaded per window, and the same update as dense f32.
    pub upload_bytes_per_miner_window: f64,
    pub dense_bytes: u64,
    /// (window, held-out loss of the global model) of the decentralized run.
    pub curve: Vec<(u64, f32)>,
    /// (window, held-out loss) of the central run after the steps the miners took up to and
    /// including that window.
    pub central_curve: Vec<(u64, f32)>,
    pub in_sync: bool,
}

async fn prepared(corpus: &Path, out: &Path, config: &SubnetConfig) -> Result<Dataset> {
    let url = out.display().to_string();
    if out.join(ferrum_common::keys::DATASET_MANIFEST).exists()
        && let Ok(ds) = Dataset::open_url(&url, &config.storage).await
        && ds.check_config(config).is_ok()
    {
        return Ok(ds);
    }
    crate::quickstart::prepare_into(out, expand_inputs(&[corpus.to_path_buf()])?, config).await
}

/// Runs both and compares them.
pub async fn converge(bench: &ConvergeBench) -> Result<ConvergeReport> {
    if bench.miners == 0 || bench.windows == 0 {
        bail!("--miners and --windows must be at least 1");
    }
    for split in ["train", "heldout"] {
        if !bench.corpus.join(split).is_dir() {
            bail!("{} has no {split}/ folder: fetch the corpus with scripts/fetch-corpus", bench.corpus.display());
        }
    }
    let preset = Preset::from_name(&bench.preset).with_context(|| format!("unknown preset {}", bench.preset))?;
    // The subnet's own compression: the preset's config as it is, not the devnet's test tuning.
    let config = bench.config.clone().unwrap_or_else(|| preset.config());
    std::fs::create_dir_all(&bench.dir)?;
    let train_dir = bench.dir.join("train");
    let heldout_dir = bench.dir.join("heldout");
    prepared(&bench.corpus.join("train"), &train_dir, &config).await?;
    prepared(&bench.corpus.join("heldout"), &heldout_dir, &config).await?;

    let opts = DevnetOptions {
        miners: bench.miners,
        windows: bench.windows,
        preset: bench.preset.clone(),
        config: Some(config),
        dir: bench.dir.join("devnet"),
        inner_steps: bench.inner_steps,
        eval_samples: bench.eval_samples,
        datasets: Some((train_dir, heldout_dir)),
        ..Default::default()
    };
    let mut devnet = Devnet::start(&opts).await?;
    let config = devnet.config.clone();
    let initial_loss = devnet.loss(&MasterModel::genesis(&config));
    let first = devnet.current_window().await? + 1;
    let miners = devnet.miner_uids();
    let (mut curve, mut in_sync, mut uploaded) = (Vec::new(), true, 0u64);
    // (window, uid, inner steps it ran): the central run takes the same steps on the same data.
    let mut steps_run: Vec<(u64, u16, u64)> = Vec::new();
    let mut last = None;
    for w in first..first + bench.windows {
        let s = devnet.run_window(w).await?;
        eprintln!("window {w}: held-out loss {:.4}, peers {:?}, in sync {}", s.loss, s.peers, s.in_sync);
        in_sync &= s.in_sync;
        uploaded += s.bytes_uploaded;
        curve.push((w, s.loss));
        for uid in &miners {
            let steps = devnet.metrics(*uid).and_then(|m| m.get("ferrum_inner_steps")).unwrap_or(0.0) as u64;
            steps_run.push((w, *uid, steps));
        }
        last = Some(s);
    }
    let decentralized_loss = last.map_or(f32::NAN, |s| s.loss);

    // The central run: one AdamW trainer from genesis over the miners' samples, window by
    // window and miner by miner, with the inner schedule counted over all its steps.
    let dataset = Dataset::open_url(&config.storage.dataset_url, &config.storage).await?;
    let mut trainer = Trainer::new(&config, &MasterModel::genesis(&config), &device("flex")?)?;
    let batch = config.training.batch_size.max(1) as usize;
    let (mut step, mut tokens) = (0u64, 0u64);
    let specs = params::layout(&config.model);
    let mut central_curve = Vec::new();
    for (i, (w, uid, steps)) in steps_run.iter().enumerate() {
        let hotkey = devnet.hotkey(*uid).context("a miner's hotkey")?;
        let req = SampleRequest { dataset: dataset.id(), netuid: NETUID, window: *w, uid: *uid, hotkey: &hotkey };
        let ids = assign_samples(&req, config.samples_per_window(), dataset.num_samples())?;
        let samples = dataset.samples(&ids).await?;
        for b in samples.chunks(batch).take(*steps as usize) {
            tokens += b.iter().map(|s| s.len().saturating_sub(1) as u64).sum::<u64>();
            tokio::task::block_in_place(|| trainer.step(b, step))?;
            step += 1;
        }
        if steps_run.get(i + 1).is_none_or(|(next, _, _)| next != w) {
            let model = MasterModel { specs: specs.clone(), tensors: trainer.export()? };
            central_curve.push((*w, devnet.loss(&model)));
        }
    }
    let centralized_loss = central_curve.last().map_or(f32::NAN, |(_, loss)| *loss);
    devnet.stop().await;

    let windows_uploaded = (bench.windows as usize * bench.miners).max(1) as f64;
    Ok(ConvergeReport {
        preset: bench.preset.clone(),
        params: params::count(&config.model),
        miners: bench.miners,
        windows: bench.windows,
        inner_steps: config.training.inner_steps,
        batch_size: config.training.batch_size,
        sequence_length: config.data.sequence_length,
        topk: config.compression.topk,
        chunk: config.compression.chunk,
        outer_learning_rate: config.training.outer_learning_rate,
        eval_samples: bench.eval_samples,
        initial_loss,
        decentralized_loss,
        centralized_loss,
        ratio: decentralized_loss / centralized_loss,
        tokens,
        upload_bytes_per_miner_window: uploaded as f64 / windows_uploaded,
        dense_bytes: params::count(&config.model) * 4,
        curve,
        central_curve,
        in_sync,
    })
}

impl ConvergeReport {
    /// The human summary.
    pub fn print(&self) -> std::io::Result<()> {
        outln!(
            "converge: preset {} ({} parameters), {} miners x {} windows x {} inner steps of {} x {} tokens; top-{} of {}x{} blocks, outer lr {}",
            self.preset,
            self.params,
            self.miners,
            self.windows,
            self.inner_steps,
            self.batch_size,
            self.sequence_length,
            self.topk,
            self.chunk,
            self.chunk,
            self.outer_learning_rate
        )?;
        outln!("held-out loss (mean of {} samples): genesis {:.4}", self.eval_samples, self.initial_loss)?;
        outln!(
            "  decentralized {:.4} ({} tokens each, every window in sync: {})",
            self.decentralized_loss,
            self.tokens,
            self.in_sync
        )?;
        outln!("  centralized   {:.4} (AdamW on the same samples and tokens)", self.centralized_loss)?;
        outln!("  ratio         {:.3}", self.ratio)?;
        outln!("  window  decentralized  central")?;
        for ((w, d), (_, c)) in self.curve.iter().zip(&self.central_curve) {
            outln!("  {w:>6}  {d:>13.4}  {c:>7.4}")?;
        }
        outln!(
            "upload per miner and window: {:.0} B against {} B dense f32 ({:.1}x smaller)",
            self.upload_bytes_per_miner_window,
            self.dense_bytes,
            self.dense_bytes as f64 / self.upload_bytes_per_miner_window.max(1.0)
        )
    }
}
