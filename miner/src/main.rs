//! `miner`: trains on its assigned samples each window and uploads a compressed pseudo-gradient
//! (the loop is the `ferrum_miner` library; this file parses flags). `miner check` is the
//! preflight alone.

use ferrum_common::outln;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use ferrum_common::assignment::{SampleRequest, assign_samples};
use ferrum_common::cli::{NodeArgs, exit_code, init_tracing};
use ferrum_common::node::NodeContext;
use ferrum_common::{Hotkey, SubnetConfig, WindowSchedule};
use ferrum_miner::MinerSetup;
use ferrum_node::cli::RunArgs;
use tracing::info;

#[derive(Parser)]
#[command(name = "miner", version, about = "Ferrum miner")]
struct Cli {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    run: RunArgs,
    /// Without a command, the miner runs.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check config, bucket write access and dataset, then read and verify every sample this
    /// miner is assigned in a window.
    Check {
        /// This miner's uid on the subnet.
        #[arg(long, env = "FERRUM_UID")]
        uid: u16,
        /// Window to compute the assignment for.
        #[arg(long, env = "FERRUM_WINDOW")]
        window: u64,
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
        Some(Command::Check { uid, window }) => {
            // A public address is enough to check; a signing key gives its address too.
            let hotkey = cli.run.address(cli.node.hotkey.as_deref())?;
            check(config, cli.node.netuid, uid, &hotkey, window).await
        }
        None => mine(cli, config).await,
    }
}

async fn mine(cli: Cli, config: SubnetConfig) -> Result<()> {
    let launch = cli.run.launch(&cli.node, config).await?;
    let setup = MinerSetup { node: launch.setup, behaviour: ferrum_miner::Behaviour::Honest };
    ferrum_miner::run(setup, launch.chain, launch.shutdown).await?;
    Ok(())
}

async fn check(config: SubnetConfig, netuid: u16, uid: u16, hotkey: &Hotkey, window: u64) -> Result<()> {
    let span = tracing::info_span!("miner", window, uid, hotkey = %hotkey);
    let _entered = span.enter();
    let ctx = NodeContext::preflight(config, netuid, hotkey).await?;
    let req = SampleRequest { dataset: ctx.dataset.id(), netuid, window, uid, hotkey };
    let samples = assign_samples(&req, ctx.config.samples_per_window(), ctx.dataset.num_samples())?;
    let read = ctx.dataset.samples(&samples).await?;
    let tokens: usize = read.iter().map(Vec::len).sum();
    let schedule = WindowSchedule::new(&ctx.config.windows);
    info!(samples = samples.len(), tokens, dataset = %ctx.dataset.id(), "assigned samples read and verified");
    outln!(
        "ready: window {window} assigns {} samples ({tokens} tokens) of dataset {}; upload due at block {} within {} s",
        samples.len(),
        ctx.dataset.id(),
        schedule.put_window_block(window),
        ctx.config.windows.put_window_secs
    )?;
    Ok(())
}
