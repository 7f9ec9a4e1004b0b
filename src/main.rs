//! `ferrum`: the subnet owner's and developer's tool.

use ferrum_common::outln;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use ferrum::{prepare, quickstart, synth, tokenizer};
use ferrum_common::assignment::{SampleRequest, assign_samples};
use ferrum_common::cli::{exit_code, init_tracing_at};
use ferrum_common::storage::Store;
use ferrum_common::{Dataset, Hotkey, Preset, SubnetConfig};

#[derive(Parser)]
#[command(name = "ferrum", version, about = "Ferrum subnet tool: config, data, benchmarks, quick start")]
struct Cli {
    /// Subnet config file (JSON). When absent: the command's `--preset` where it has one, else
    /// the `small` preset's defaults.
    #[arg(long, global = true, env = "FERRUM_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show, check and hash subnet configs.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Prepare, inspect and verify datasets.
    #[command(subcommand)]
    Data(DataCmd),
    /// Measure performance (build with --release).
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Run a whole subnet in this process, offline: an in-process chain, local stores, N miners
    /// on generated data. Prints, per window, the global model's held-out loss, the bytes
    /// uploaded, the peers aggregated and whether every node holds the same model.
    Devnet {
        /// Miners to run.
        #[arg(long, env = "FERRUM_DEVNET_MINERS", default_value_t = 3)]
        miners: usize,
        /// Validators to run (each scores every miner and sets weights).
        #[arg(long, env = "FERRUM_DEVNET_VALIDATORS", default_value_t = 0)]
        validators: usize,
        /// Cheating miners to add, one per name: noise, copier, zeros, wrong-data, replay,
        /// forged, late, stale, oversized, malformed, sign-flip, scaled, shuffled; and miners
        /// whose bucket attacks agreement: late-overwrite, late-garbage, equivocate, selective,
        /// slow, vanish.
        #[arg(long, env = "FERRUM_DEVNET_ADVERSARIES", value_delimiter = ',')]
        adversaries: Vec<String>,
        /// Faults that are nobody's fault: flaky-link (one honest miner cannot reach another's
        /// bucket for one window).
        #[arg(long, env = "FERRUM_DEVNET_FAULTS", value_delimiter = ',')]
        faults: Vec<String>,
        /// Windows to run.
        #[arg(long, env = "FERRUM_DEVNET_WINDOWS", default_value_t = 6,
              value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        windows: u64,
        /// Config preset (a bytes-tokenizer one: test or small); a --config file replaces it.
        #[arg(long, env = "FERRUM_PRESET", default_value = "test")]
        preset: String,
        /// Where the data, stores, node state and config go (node state is wiped each run).
        #[arg(long, env = "FERRUM_DEVNET_DIR", default_value = "ferrum-devnet")]
        dir: PathBuf,
        /// Inner steps per window. The test preset's 2 steps barely fit a miner's own data,
        /// which leaves the Gauntlet's own-versus-random test with little signal; 8 gives it one.
        #[arg(long, env = "FERRUM_DEVNET_INNER_STEPS", default_value_t = 8)]
        inner_steps: u32,
        /// Put window length in seconds.
        #[arg(long, env = "FERRUM_DEVNET_PUT_WINDOW_SECS", default_value_t = 2)]
        put_window_secs: u64,
        /// Held-out samples for the loss.
        #[arg(long, env = "FERRUM_DEVNET_EVAL_SAMPLES", default_value_t = 64)]
        eval_samples: usize,
        /// The last line of stdout is one JSON object with every window.
        #[arg(long, env = "FERRUM_DEVNET_JSON")]
        json: bool,
        /// Then run the same devnet without --adversaries and --faults (in DIR/all-honest, same
        /// data and genesis) and report its held-out loss beside the attacked run's.
        #[arg(long, env = "FERRUM_DEVNET_COMPARE_HONEST")]
        compare_honest: bool,
    },
    /// Write a checkpoint as a Hugging Face folder (config.json, model.safetensors, tokenizer
    /// files) that `transformers` loads with AutoModelForCausalLM.from_pretrained. Needs the
    /// subnet's --config.
    Export {
        /// The folder to write.
        #[arg(long, env = "FERRUM_EXPORT_HF")]
        hf: PathBuf,
        /// A checkpoint's folder, the one holding its manifest.json (a path or a storage URL);
        /// default: the newest checkpoint in the config's storage.url for --netuid.
        #[arg(long, env = "FERRUM_CHECKPOINT")]
        checkpoint: Option<String>,
        /// Subnet id (for the default checkpoint's location).
        #[arg(long, env = "FERRUM_NETUID", default_value_t = 1)]
        netuid: u16,
        /// The tokenizer.json of an `hf:<hash>` tokenizer, to include (checked against the hash).
        #[arg(long, env = "FERRUM_TOKENIZER")]
        tokenizer: Option<PathBuf>,
    },
    /// A subnet's neurons as Ferrum sees them: uid, role, hotkey, stake, incentive, dividends,
    /// permit, last weights and who weights whom, bucket commitment, whether its records count
    /// toward agreement, and what keeps nodes from using it. Reads plain chain storage, so it
    /// works on every runtime Ferrum supports (the localnet's included).
    Metagraph {
        /// Subnet id.
        #[arg(long, env = "FERRUM_NETUID", default_value_t = 1)]
        netuid: u16,
        #[command(flatten)]
        chain: ferrum_node::cli::ChainArgs,
        /// Read the neurons at this block (default: the best block). Commitments and weights
        /// are read at the best block whatever this says (the chain client reads them there).
        #[arg(long, env = "FERRUM_BLOCK")]
        block: Option<u64>,
        /// Judge bucket URLs as nodes started with --peers.allow_local do (a devnet or localnet).
        #[arg(long = "peers.allow_local", env = "FERRUM_PEERS_ALLOW_LOCAL")]
        peers_allow_local: bool,
        /// Judge bucket URLs as nodes started with --peers.allow_private do.
        #[arg(long = "peers.allow_private", env = "FERRUM_PEERS_ALLOW_PRIVATE")]
        peers_allow_private: bool,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Start a subnet on the real subtensor runtime (chopsticks, a block every slot of the
    /// runtime: 3 s at spec 218) with a local store,
    /// fund, register and stake its owner, validators and miners, and print the commands that
    /// run each node in a terminal of its own. Runs until Ctrl-C.
    Localnet {
        /// Miners to register.
        #[arg(long, env = "FERRUM_LOCALNET_MINERS", default_value_t = 3)]
        miners: usize,
        /// Validators to register and stake.
        #[arg(long, env = "FERRUM_LOCALNET_VALIDATORS", default_value_t = 1)]
        validators: usize,
        /// Chain RPC port (0: a free one; 9944 is what `--subtensor.network local` means).
        #[arg(long, env = "FERRUM_LOCALNET_PORT", default_value_t = 9944)]
        port: u16,
        /// Node buckets: `fs` (folders) or `s3` (a SeaweedFS server on 127.0.0.1).
        #[arg(long, env = "FERRUM_LOCALNET_STORAGE", value_enum, default_value = "fs")]
        storage: ferrum::localnet::StorageKind,
        /// Config preset (bytes tokenizer: test or small); a --config file replaces it.
        #[arg(long, env = "FERRUM_PRESET", default_value = "test")]
        preset: String,
        /// Raw chain spec of the runtime (default: FERRUM_SUBTENSOR_SPEC, else scripts/tools').
        #[arg(long, env = "FERRUM_SUBTENSOR_SPEC")]
        spec: Option<PathBuf>,
        /// Where the data, config, buckets and node state go (node state is wiped each start).
        #[arg(long, env = "FERRUM_LOCALNET_DIR", default_value = "ferrum-localnet")]
        dir: PathBuf,
        /// Stop after this many blocks.
        #[arg(long, env = "FERRUM_LOCALNET_BLOCKS")]
        blocks: Option<u64>,
        /// Blocks per window (default: the config's window length in seconds, in the
        /// runtime's blocks; chopsticks makes one every slot of the runtime).
        #[arg(long, env = "FERRUM_LOCALNET_BLOCKS_PER_WINDOW")]
        blocks_per_window: Option<u64>,
        /// Put window in seconds (sets windows.put_window_secs; it must close before the
        /// window's random-data block).
        #[arg(long, env = "FERRUM_LOCALNET_PUT_WINDOW_SECS")]
        put_window_secs: Option<u64>,
        /// Weights by commit and reveal.
        #[arg(long, env = "FERRUM_LOCALNET_COMMIT_REVEAL")]
        commit_reveal: bool,
        /// Blocks between epochs, where incentive, dividends and permits are computed
        /// (default: 9 with --commit-reveal, else 99).
        #[arg(long, env = "FERRUM_LOCALNET_TEMPO")]
        tempo: Option<u16>,
        /// Print commands that run the `miner` and `validator` binaries from this folder
        /// instead of `cargo run`.
        #[arg(long, env = "FERRUM_LOCALNET_BIN_DIR")]
        bin_dir: Option<PathBuf>,
    },
    /// Build a dataset from generated text, then show the config, the assignment of a few dev
    /// miners and one of their samples read back through the storage layer.
    Quickstart {
        /// Working directory for the generated corpus, dataset and store.
        #[arg(long, env = "FERRUM_DIR", default_value = "ferrum-data")]
        dir: PathBuf,
        /// Size of the generated corpus in MiB.
        #[arg(long, env = "FERRUM_CORPUS_MB", default_value_t = 8)]
        corpus_mb: u64,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Codec throughput on a preset's tensor shapes (miner step, encode, decode, aggregate) at
    /// each thread count, medians after a warm-up, and payload size.
    Codec {
        /// Preset whose model shapes to use (default: the --config's, else 1b).
        #[arg(long, env = "FERRUM_PRESET")]
        preset: Option<String>,
        /// Peers to aggregate.
        #[arg(long, env = "FERRUM_BENCH_PEERS", default_value_t = 20)]
        peers: usize,
        /// Runs per measurement after one warm-up; the median is reported.
        #[arg(long, env = "FERRUM_BENCH_REPEATS", default_value_t = 5)]
        repeats: usize,
        /// Thread counts to measure, comma-separated.
        #[arg(long, env = "FERRUM_BENCH_THREADS", value_delimiter = ',', default_values_t = [1usize, 2])]
        threads: Vec<usize>,
        /// Extra tensor shapes to measure, comma-separated, e.g. 8192x2048,4096.
        #[arg(long, env = "FERRUM_BENCH_SHAPES", value_delimiter = ',')]
        shapes: Vec<String>,
        /// Measure only the --shapes, not the preset's model.
        #[arg(long, env = "FERRUM_BENCH_ONLY_SHAPES")]
        only_shapes: bool,
        /// Turn the DCT on (or off) regardless of the config.
        #[arg(long, env = "FERRUM_BENCH_DCT")]
        dct: Option<bool>,
        /// Print JSON instead of a table.
        #[arg(long, env = "FERRUM_BENCH_JSON")]
        json: bool,
    },
    /// Training throughput (forward, backward, AdamW step), peak memory and the loss curve.
    Train {
        /// Preset to train (default: the --config's, else small).
        #[arg(long, env = "FERRUM_PRESET")]
        preset: Option<String>,
        /// Optimizer steps.
        #[arg(long, env = "FERRUM_BENCH_STEPS", default_value_t = 20)]
        steps: u64,
        /// A prepared dataset (path or URL) whose tokenizer and sequence length match the preset;
        /// default: synthetic text made and prepared on the spot.
        #[arg(long, env = "FERRUM_DATASET")]
        dataset: Option<String>,
        /// Samples held out (the dataset's last) for the evaluation loss.
        #[arg(long, env = "FERRUM_BENCH_EVAL_SAMPLES", default_value_t = 64)]
        eval_samples: usize,
        /// Backend: flex (CPU), or wgpu / cuda in builds with those features.
        #[arg(long, env = "FERRUM_BACKEND", default_value = "flex")]
        backend: String,
        /// Print JSON instead of a summary.
        #[arg(long, env = "FERRUM_BENCH_JSON")]
        json: bool,
    },
    /// Decentralized training (a devnet of N miners, the config's compression and outer step)
    /// against one AdamW run of the same model on the same samples and tokens, both scored on
    /// the real corpus's held-out split (scripts/fetch-corpus). Build with --release.
    Converge {
        /// The corpus folder (with train/ and heldout/), as scripts/fetch-corpus writes it.
        #[arg(long, env = "FERRUM_CORPUS")]
        corpus: PathBuf,
        /// Preset (a bytes-tokenizer one: test or small); a --config file replaces it.
        #[arg(long, env = "FERRUM_PRESET", default_value = "test")]
        preset: String,
        #[arg(long, env = "FERRUM_CONVERGE_MINERS", default_value_t = 4)]
        miners: usize,
        #[arg(long, env = "FERRUM_CONVERGE_WINDOWS", default_value_t = 20,
              value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        windows: u64,
        /// Inner steps per window (default: the devnet's 8).
        #[arg(long, env = "FERRUM_CONVERGE_INNER_STEPS", default_value_t = 8)]
        inner_steps: u32,
        /// Held-out samples for the loss.
        #[arg(long, env = "FERRUM_CONVERGE_EVAL_SAMPLES", default_value_t = 256)]
        eval_samples: usize,
        /// Working folder (prepared datasets are kept).
        #[arg(long, env = "FERRUM_CONVERGE_DIR", default_value = "ferrum-converge")]
        dir: PathBuf,
        /// Print JSON instead of a summary.
        #[arg(long, env = "FERRUM_BENCH_JSON")]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print a full config: the loaded --config, else a preset's defaults.
    Show {
        /// Preset to show (test, small, 150m, 1b).
        #[arg(long, env = "FERRUM_PRESET")]
        preset: Option<String>,
    },
    /// Validate a config file; every problem is listed with its field.
    Check { file: PathBuf },
    /// Print the config hash (the protocol version nodes must share).
    Hash,
    /// Print the reference of every config field (Markdown: type, meaning, each preset's value),
    /// generated from the code; docs/config-reference.md is its output.
    Reference,
}

#[derive(Subcommand)]
enum DataCmd {
    /// Tokenize text and JSON-lines files into shards and a manifest.
    Prepare(PrepareArgs),
    /// Write a deterministic synthetic corpus (JSON lines).
    Synth {
        #[arg(long, env = "FERRUM_SYNTH_OUT")]
        out: PathBuf,
        /// Approximate size in bytes.
        #[arg(long, env = "FERRUM_SYNTH_BYTES", default_value_t = 8 << 20)]
        bytes: u64,
        #[arg(long, env = "FERRUM_SYNTH_SEED", default_value_t = 0)]
        seed: u64,
    },
    /// Download every shard and check every hash.
    Verify(DatasetArg),
    /// Print one sample's tokens (and text, with --tokenizer).
    Sample {
        #[command(flatten)]
        dataset: DatasetArg,
        #[arg(long, env = "FERRUM_SAMPLE_INDEX")]
        index: u64,
        /// Decode with this tokenizer (bytes, gpt2 or a tokenizer.json).
        #[arg(long, env = "FERRUM_TOKENIZER")]
        tokenizer: Option<String>,
    },
    /// Print the sample indices a miner is assigned in a window.
    Assign {
        #[command(flatten)]
        dataset: DatasetArg,
        #[arg(long, env = "FERRUM_NETUID")]
        netuid: u16,
        #[arg(long, env = "FERRUM_WINDOW")]
        window: u64,
        #[arg(long, env = "FERRUM_UID")]
        uid: u16,
        /// SS58 address or 0x-hex public key.
        #[arg(long, env = "FERRUM_HOTKEY")]
        hotkey: String,
        /// Samples to draw (default: inner_steps × batch_size from the config).
        #[arg(long, env = "FERRUM_COUNT")]
        count: Option<u64>,
    },
}

#[derive(Args)]
struct DatasetArg {
    /// Dataset location (default: storage.dataset_url from the config).
    #[arg(long, env = "FERRUM_DATASET")]
    dataset: Option<String>,
}

#[derive(Args)]
struct PrepareArgs {
    /// Text (.txt, .md, .rst: one document per file) and JSON-lines (.jsonl) files or directories.
    #[arg(long = "input", env = "FERRUM_INPUT", value_delimiter = ',', num_args = 1.., required = true)]
    inputs: Vec<PathBuf>,
    /// bytes, gpt2, or a path to a Hugging Face tokenizer.json.
    #[arg(long, env = "FERRUM_TOKENIZER", default_value = "bytes")]
    tokenizer: String,
    /// End-of-document token for a tokenizer.json without a usual one.
    #[arg(long, env = "FERRUM_EOS")]
    eos: Option<String>,
    /// Output directory or URL (s3://bucket/prefix?endpoint=..., r2://account/bucket/prefix).
    #[arg(long, env = "FERRUM_OUT")]
    out: String,
    /// Tokens per sample (default: data.sequence_length from the config).
    #[arg(long, env = "FERRUM_SEQUENCE_LENGTH")]
    sequence_length: Option<u32>,
    /// Samples per shard.
    #[arg(long, env = "FERRUM_SAMPLES_PER_SHARD", default_value_t = 65_536)]
    samples_per_shard: u64,
    /// JSON field holding the text in .jsonl files.
    #[arg(long, env = "FERRUM_TEXT_FIELD", default_value = "text")]
    text_field: String,
    /// Tokenizer threads (default: all cores).
    #[arg(long, env = "FERRUM_THREADS")]
    threads: Option<usize>,
    /// No progress bar.
    #[arg(long, env = "FERRUM_QUIET")]
    quiet: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The devnet runs every node in this process: their INFO lines would bury its own report.
    init_tracing_at(if matches!(cli.command, Command::Devnet { .. }) { "warn" } else { "info" });
    exit_code(run(cli).await)
}

async fn run(cli: Cli) -> Result<()> {
    let config = || SubnetConfig::load_or_default(cli.config.as_deref()).map_err(anyhow::Error::from);
    match cli.command {
        Command::Config(ConfigCmd::Show { preset }) => {
            let c = match (preset, &cli.config) {
                (Some(name), _) => Preset::from_name(&name)
                    .with_context(|| format!("unknown preset `{name}`: use one of {}", Preset::names()))?
                    .config(),
                (None, _) => config()?,
            };
            outln!("{}", c.to_pretty_json())?;
        }
        Command::Config(ConfigCmd::Check { file }) => {
            let c = SubnetConfig::load(&file)?;
            let params = ferrum_common::params::count(&c.model) as f64 / 1e6;
            outln!(
                "{}: valid (preset {}, {params:.2} M parameters, config hash {})",
                file.display(),
                c.preset.name(),
                c.hash()
            )?;
        }
        Command::Config(ConfigCmd::Hash) => outln!("{}", config()?.hash())?,
        Command::Config(ConfigCmd::Reference) => outln!("{}", ferrum::config_reference::markdown().trim_end())?,
        Command::Data(cmd) => data(cmd, &config()?).await?,
        Command::Bench(BenchCmd::Codec { preset, peers, repeats, threads, shapes, only_shapes, dct, json }) => {
            let mut c = match (preset, &cli.config) {
                (Some(name), _) => Preset::from_name(&name)
                    .with_context(|| format!("unknown preset `{name}`: use one of {}", Preset::names()))?
                    .config(),
                (None, Some(_)) => config()?,
                (None, None) => Preset::Large1b.config(),
            };
            if let Some(on) = dct {
                c.compression.dct = on;
            }
            if peers == 0 || threads.contains(&0) {
                bail!("--peers and every --threads value must be at least 1");
            }
            let shapes = shapes.iter().map(|s| parse_shape(s)).collect::<Result<Vec<_>>>()?;
            if only_shapes && shapes.is_empty() {
                bail!("--only-shapes needs --shapes");
            }
            if cfg!(debug_assertions) {
                eprintln!("warning: this is a debug build; timings are meaningless (use cargo run --release)");
            }
            let bench = ferrum::bench::CodecBench { peers, repeats, threads, shapes, only_shapes };
            let report = tokio::task::spawn_blocking(move || ferrum::bench::codec(&c, &bench)).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                report.print()?;
            }
        }
        Command::Bench(BenchCmd::Converge {
            corpus,
            preset,
            miners,
            windows,
            inner_steps,
            eval_samples,
            dir,
            json,
        }) => {
            let bench = ferrum::bench::ConvergeBench {
                corpus,
                dir,
                preset,
                config: cli.config.as_deref().map(SubnetConfig::load).transpose()?,
                miners,
                windows,
                inner_steps: Some(inner_steps),
                eval_samples,
            };
            let report = ferrum::bench::converge(&bench).await?;
            if json {
                outln!("{}", serde_json::to_string(&report)?)?;
            } else {
                report.print()?;
            }
        }
        Command::Bench(BenchCmd::Train { preset, steps, dataset, eval_samples, backend, json }) => {
            let (name, c) = match (preset, &cli.config) {
                (Some(name), _) => {
                    let p = Preset::from_name(&name)
                        .with_context(|| format!("unknown preset `{name}`: use one of {}", Preset::names()))?;
                    (name, p.config())
                }
                (None, Some(_)) => {
                    let c = config()?;
                    (c.preset.name().to_string(), c)
                }
                (None, None) => ("small".to_string(), Preset::Small.config()),
            };
            if steps == 0 {
                bail!("--steps must be at least 1");
            }
            if cfg!(debug_assertions) {
                eprintln!("warning: this is a debug build; timings are meaningless (use cargo run --release)");
            }
            let scratch = tempfile::tempdir().context("creating a scratch directory")?;
            let dataset = match dataset {
                Some(url) => Dataset::open_url(&url, &c.storage).await?,
                None => {
                    let tokens = (steps * u64::from(c.training.batch_size) + eval_samples as u64 * 2)
                        * u64::from(c.data.sequence_length);
                    eprintln!("making a synthetic dataset in {}", scratch.path().display());
                    quickstart::synthetic_dataset(scratch.path(), &c, tokens).await?
                }
            };
            dataset.check_config(&c)?;
            let bench = ferrum::bench::TrainBench { steps, eval_samples, backend };
            let report = ferrum::bench::train(&c, &dataset, &name, &bench).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                report.print()?;
            }
        }
        Command::Metagraph { netuid, chain, block, peers_allow_local, peers_allow_private, json } => {
            let url = chain.endpoint().map_err(anyhow::Error::msg)?;
            let chain = ferrum_chain::SubtensorChain::connect(&url, std::time::Duration::from_secs(30), 3)
                .await
                .with_context(|| format!("connecting to {url}"))?;
            let burn_uid = SubnetConfig::load_or_default(cli.config.as_deref())?.weights.burn_uid;
            let policy = ferrum_common::location::PeerUrlPolicy {
                allow_local: peers_allow_local,
                allow_private: peers_allow_private,
            };
            let (at, rows) = ferrum::metagraph::read(&chain, netuid, block, &policy, burn_uid).await?;
            if json {
                outln!("{}", serde_json::json!({ "netuid": netuid, "block": at, "neurons": rows }))?;
            } else {
                outln!("netuid {netuid} at block {at}, {} neurons", rows.len())?;
                use std::io::Write as _;
                write!(std::io::stdout().lock(), "{}", ferrum::metagraph::table(&rows))?;
            }
        }
        Command::Export { hf, checkpoint, netuid, tokenizer } => {
            let config = SubnetConfig::load_or_default(cli.config.as_deref())?;
            let opts = ferrum::export::ExportOptions { out: hf, checkpoint, netuid, tokenizer };
            let done = ferrum::export::export_hf(&config, &opts).await?;
            outln!(
                "exported window {} (global step {}, fingerprint {}) to {}: {}",
                done.manifest.window,
                done.manifest.global_step,
                &done.manifest.fingerprint[..16],
                opts.out.display(),
                done.files.join(", ")
            )?;
            if let Some(note) = done.tokenizer_note {
                outln!("no tokenizer files: {note}")?;
            }
        }
        Command::Localnet {
            miners,
            validators,
            port,
            storage,
            preset,
            spec,
            dir,
            blocks,
            blocks_per_window,
            put_window_secs,
            commit_reveal,
            tempo,
            bin_dir,
        } => {
            let opts = ferrum::localnet::LocalnetOptions {
                dir,
                miners,
                validators,
                port,
                storage,
                preset,
                config: cli.config.as_deref().map(SubnetConfig::load).transpose()?,
                spec,
                blocks,
                blocks_per_window,
                put_window_secs,
                commit_reveal,
                tempo,
                bin_dir,
            };
            localnet(opts).await?;
        }
        Command::Devnet {
            miners,
            validators,
            adversaries,
            faults,
            windows,
            preset,
            dir,
            inner_steps,
            put_window_secs,
            eval_samples,
            json,
            compare_honest,
        } => {
            if miners == 0 || windows == 0 {
                bail!("--miners and --windows must be at least 1");
            }
            let opts = ferrum::devnet::DevnetOptions {
                miners,
                validators,
                adversaries,
                faults,
                windows,
                preset,
                config: cli.config.as_deref().map(SubnetConfig::load).transpose()?,
                dir,
                put_window_secs,
                inner_steps: Some(inner_steps),
                eval_samples,
                compare_honest,
                ..Default::default()
            };
            eprintln!("devnet: {miners} miners, preset {}, {windows} windows in {}", opts.preset, opts.dir.display());
            // The report goes to stdout; with --json, stdout is for the summary alone.
            let report = |line: String| {
                if json {
                    eprintln!("{line}");
                } else {
                    // A reader that went away ends nothing here; the run goes on.
                    let _ = outln!("{line}");
                }
            };
            let summary = ferrum::devnet::run(&opts, |w| {
                report(format!(
                    "window {:>4}  loss {:.4}  in_sync {}  peers {:?}  uploaded {} B  {:.1} s  fingerprint {}",
                    w.window,
                    w.loss,
                    w.in_sync,
                    w.peers,
                    w.bytes_uploaded,
                    w.seconds,
                    w.fingerprints.values().next().map_or("-", |f| &f[..16]),
                ));
                for (uid, why) in &w.skipped {
                    report(format!("             skipped uid {uid}: {why}"));
                }
                let repaired: Vec<&u16> =
                    w.agreement.iter().filter(|(_, a)| a.starts_with("repaired")).map(|(u, _)| u).collect();
                if !repaired.is_empty() {
                    report(format!("             re-applied with the validators' agreed set: uids {repaired:?}"));
                }
            })
            .await?;
            let all_in_sync = summary.windows.iter().all(|w| w.in_sync);
            outln!(
                "devnet: held-out loss {:.4} at genesis, {:.4} after {} windows; every window in sync: {all_in_sync}",
                summary.initial_loss,
                summary.final_loss(),
                summary.windows.len()
            )?;
            if let (Some(honest), Some(ratio)) = (&summary.all_honest_loss, summary.loss_ratio()) {
                outln!(
                    "devnet: the same run without adversaries or faults: {:.4} after {} windows (this run / that: {ratio:.4})",
                    honest.last().copied().unwrap_or(f32::NAN),
                    honest.len()
                )?;
            }
            if json {
                outln!("{}", serde_json::to_string(&summary)?)?;
            }
            for m in &summary.miners {
                if summary.validators > 0 {
                    report(format!(
                        "miner {:>3} {:<14} weight {:>6.2} %  {:<14} {}",
                        m.uid,
                        m.role,
                        100.0 * m.weight,
                        m.rule,
                        m.reason
                    ));
                }
            }
            if !all_in_sync {
                bail!("nodes diverged");
            }
        }
        Command::Quickstart { dir, corpus_mb } => quickstart::run(&dir, corpus_mb, cli.config.as_deref()).await?,
    }
    Ok(())
}

async fn open_dataset(arg: &DatasetArg, config: &SubnetConfig) -> Result<Dataset> {
    let url = arg.dataset.as_deref().unwrap_or(&config.storage.dataset_url);
    Ok(Dataset::open_url(url, &config.storage).await?)
}

async fn data(cmd: DataCmd, config: &SubnetConfig) -> Result<()> {
    match cmd {
        DataCmd::Prepare(a) => {
            let out = Store::open(&a.out, &config.storage)?;
            let job = prepare::PrepareJob {
                inputs: a.inputs,
                tokenizer: tokenizer::Tokenizer::load(&a.tokenizer, a.eos.as_deref())?,
                sequence_length: a.sequence_length.unwrap_or(config.data.sequence_length),
                samples_per_shard: a.samples_per_shard,
                text_field: a.text_field,
                threads: a.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
                progress: !a.quiet,
            };
            let r = prepare::prepare(job, &out).await?;
            outln!("dataset id     {}", r.id)?;
            outln!("location       {}", out.location())?;
            outln!("tokenizer      {} (vocab {})", r.manifest.tokenizer.id, r.manifest.tokenizer.vocab_size)?;
            outln!("documents      {}", r.documents)?;
            outln!(
                "samples        {} of {} tokens ({} tokens, {} shards)",
                r.manifest.total_samples,
                r.manifest.sequence_length,
                r.manifest.total_tokens,
                r.manifest.shards.len()
            )?;
            outln!("dropped tail   {} tokens", r.dropped_tokens)?;
        }
        DataCmd::Synth { out, bytes, seed } => {
            let docs = synth::write_corpus(&out, bytes, seed)?;
            outln!("{}: {docs} documents", out.display())?;
        }
        DataCmd::Verify(arg) => {
            let ds = open_dataset(&arg, config).await?;
            let bytes = ds.verify().await?;
            outln!("dataset {}: {} shards, {bytes} bytes, every hash matches", ds.id(), ds.manifest().shards.len())?;
        }
        DataCmd::Sample { dataset, index, tokenizer } => {
            let ds = open_dataset(&dataset, config).await?;
            let tokens = ds.sample(index).await?;
            outln!("{tokens:?}")?;
            if let Some(spec) = tokenizer {
                outln!("{}", tokenizer::Tokenizer::load(&spec, None)?.decode(&tokens))?;
            }
        }
        DataCmd::Assign { dataset, netuid, window, uid, hotkey, count } => {
            let ds = open_dataset(&dataset, config).await?;
            let hotkey: Hotkey = hotkey.parse()?;
            let count = count.unwrap_or_else(|| config.samples_per_window());
            if count == 0 {
                bail!("--count must be positive");
            }
            let req = SampleRequest { dataset: ds.id(), netuid, window, uid, hotkey: &hotkey };
            let samples = assign_samples(&req, count, ds.num_samples())?;
            outln!("{}", serde_json::to_string(&samples)?)?;
        }
    }
    Ok(())
}

/// `8192x2048` → `[8192, 2048]`; one or two positive dimensions.
fn parse_shape(s: &str) -> Result<Vec<usize>> {
    let dims: Vec<usize> = s
        .split('x')
        .map(|d| d.trim().parse::<usize>().ok().filter(|&n| n > 0))
        .collect::<Option<_>>()
        .with_context(|| format!("shape `{s}`: write positive dimensions like 8192x2048 or 4096"))?;
    if dims.is_empty() || dims.len() > 2 {
        bail!("shape `{s}`: one or two dimensions");
    }
    Ok(dims)
}

async fn localnet(opts: ferrum::localnet::LocalnetOptions) -> Result<()> {
    let net = ferrum::localnet::Localnet::start(&opts).await?;
    let r = &net.ready;
    outln!("localnet ready: subtensor runtime at {}, netuid {}", r.endpoint, r.netuid)?;
    outln!("  config   {} (hash {})", r.config.display(), r.config_hash)?;
    outln!("  owner    {} (uid 0, the burn uid)", r.owner)?;
    if let Some(s3) = &r.s3_endpoint {
        outln!("  S3       {s3}, bucket {}", ferrum::localnet::BUCKET)?;
    }
    outln!("  blocks   every {} s, {} a window; Ctrl-C stops the chain", r.block_secs, r.blocks_per_window)?;
    outln!("\nRun each node in a terminal of its own:")?;
    for n in &r.nodes {
        outln!("\n# {} (uid {}, hotkey {})\n{}", n.name, n.uid, n.hotkey, n.command(opts.bin_dir.as_deref()))?;
    }
    outln!("\nThe same, as JSON: {}", opts.dir.join("ready.json").display())?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop_tx.send(true);
        }
    });
    net.produce(opts.blocks, stop).await
}
