//! `miner`: trains on its assigned samples each window and uploads a compressed pseudo-gradient.
//!
//! `miner check` is the preflight: everything a miner verifies before it trains (config,
//! bucket, dataset, its assigned samples). The window loop that joins the trainer, codec and
//! chain client is the next step (docs/protocol.md describes what it will do).

use ferrum_common::outln;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use ferrum_common::assignment::{SampleRequest, assign_samples};
use ferrum_common::cli::{NodeArgs, exit_code, init_tracing};
use ferrum_common::node::NodeContext;
use ferrum_common::{Hotkey, SubnetConfig, WindowSchedule};
use tracing::info;

#[derive(Parser)]
#[command(name = "miner", version, about = "Ferrum miner")]
struct Cli {
    #[command(flatten)]
    node: NodeArgs,
    #[command(subcommand)]
    command: Command,
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
    let hotkey = cli.node.hotkey()?;
    match cli.command {
        Command::Check { uid, window } => check(config, cli.node.netuid, uid, &hotkey, window).await,
    }
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
