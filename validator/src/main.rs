//! `validator`: runs the Gauntlet over miners' uploads and sets weights on chain (the loop is
//! the `ferrum_validator` library; this file parses flags). `validator check` is the preflight
//! alone; `validator report --window W` prints a scored window's Gauntlet record.

use ferrum_common::outln;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use ferrum_common::assignment::{SampleRequest, assign_samples, random_identity};
use ferrum_common::cli::{NodeArgs, exit_code, init_tracing};
use ferrum_common::node::NodeContext;
use ferrum_common::{Hotkey, SubnetConfig, WindowSchedule};
use ferrum_node::cli::RunArgs;
use ferrum_validator::{ValidatorFiles, ValidatorSetup};
use tracing::info;

#[derive(Parser)]
#[command(name = "validator", version, about = "Ferrum validator")]
struct Cli {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    run: RunArgs,
    /// Publish a checkpoint every this many windows (0: never): after each window W with
    /// (W + 1) a multiple of it, so a run shorter than that publishes none.
    #[arg(long = "checkpoint.every", env = "FERRUM_CHECKPOINT_EVERY", default_value_t = 10, global = true)]
    checkpoint_every: u64,
    /// Without a command, the validator runs.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the Gauntlet record of a scored window (every input, penalty and reason) as JSON,
    /// from --state.dir.
    Report {
        #[arg(long, env = "FERRUM_WINDOW")]
        window: u64,
        /// One line per miner instead of JSON: uid, score, weight, the rule that left it unpaid
        /// and every reason.
        #[arg(long, env = "FERRUM_REPORT_SUMMARY")]
        summary: bool,
    },
    /// Check config, bucket write access and dataset, then read and verify a window's random data.
    Check {
        /// Window to evaluate.
        #[arg(long, env = "FERRUM_WINDOW")]
        window: u64,
        /// Hash (0x-hex) of the window's random-seed block, the block the output names: the
        /// window's random data is drawn from it, so no miner knows it before that block. A
        /// running validator reads it from the chain; here, give it to check the real draw
        /// (for example from a block explorer). Without it the check draws from an all-zero
        /// hash: the same reads and hash checks, different samples.
        #[arg(long, env = "FERRUM_SEED_BLOCK_HASH")]
        seed_block_hash: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    exit_code(run(Cli::parse()).await)
}

async fn run(cli: Cli) -> Result<()> {
    let config = cli.node.load_config()?;
    match cli.command {
        Some(Command::Check { window, seed_block_hash }) => {
            let hotkey = cli.run.address(cli.node.hotkey.as_deref())?;
            let mut seed = [0u8; 32];
            if let Some(hash) = &seed_block_hash {
                hex::decode_to_slice(hash.trim_start_matches("0x"), &mut seed)
                    .map_err(|e| anyhow::anyhow!("--seed-block-hash must be 32 bytes of hex: {e}"))?;
            }
            check(config, cli.node.netuid, &hotkey, window, &seed, seed_block_hash.is_some()).await
        }
        Some(Command::Report { window, summary }) => {
            let files = ValidatorFiles::open(&cli.run.state_dir, &config)?;
            match files.report(window).await? {
                Some(r) if summary => {
                    outln!("window {}: uid  score     weight  verdict", r.window)?;
                    for u in &r.uids {
                        let weight = r.weights.get(&u.uid).copied().unwrap_or(0.0);
                        let verdict = u.verdict.map_or("paid", |v| v.name());
                        outln!(
                            "  {:>4}  {:<8.4}  {:<6.4}  {:<14}  {}",
                            u.uid,
                            u.final_score,
                            weight,
                            verdict,
                            u.explain()
                        )?;
                    }
                }
                Some(r) => outln!("{}", serde_json::to_string_pretty(&r)?)?,
                None => anyhow::bail!("no Gauntlet record for window {window} in {}", cli.run.state_dir.display()),
            }
            Ok(())
        }
        None => validate(cli, config).await,
    }
}

async fn validate(cli: Cli, config: SubnetConfig) -> Result<()> {
    let launch = cli.run.launch(&cli.node, config).await?;
    let setup = ValidatorSetup { node: launch.setup, checkpoint_every: cli.checkpoint_every };
    ferrum_validator::run(setup, launch.chain, launch.shutdown).await?;
    Ok(())
}

async fn check(
    config: SubnetConfig,
    netuid: u16,
    hotkey: &Hotkey,
    window: u64,
    seed: &[u8; 32],
    seed_given: bool,
) -> Result<()> {
    let span = tracing::info_span!("validator", window, hotkey = %hotkey);
    let _entered = span.enter();
    let ctx = NodeContext::preflight(config, netuid, hotkey).await?;
    let (uid, pseudo) = random_identity(seed);
    let req = SampleRequest { dataset: ctx.dataset.id(), netuid, window, uid, hotkey: &pseudo };
    let count = u64::from(ctx.config.gauntlet.random_eval_samples);
    let samples = assign_samples(&req, count, ctx.dataset.num_samples())?;
    ctx.dataset.samples(&samples).await?;
    let schedule = WindowSchedule::new(&ctx.config.windows);
    info!(?samples, "random data read and verified");
    outln!(
        "ready: window {window} (blocks {}..{}), put window opens at block {}, random data {samples:?} seeded by block {}",
        schedule.first_block(window),
        schedule.first_block(window + 1) - 1,
        schedule.put_window_block(window),
        schedule.random_seed_block(window)
    )?;
    if !seed_given {
        outln!(
            "note: drawn from an all-zero stand-in hash; pass --seed-block-hash with the hash of block {} for the real draw",
            schedule.random_seed_block(window)
        )?;
    }
    Ok(())
}
