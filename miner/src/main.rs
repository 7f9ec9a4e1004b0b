//! `miner`: trains on its assigned samples each window and uploads a compressed pseudo-gradient.
//!
//! This build has the preflight (`miner check`): everything a miner verifies before it trains.
//! The training loop needs the model, codec and chain client, which are not in this build.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ferrum_common::assignment::{SampleRequest, assign_samples};
use ferrum_common::node::NodeContext;
use ferrum_common::{Hotkey, SubnetConfig, WindowSchedule};
use tracing::info;

#[derive(Parser)]
#[command(name = "miner", version, about = "Ferrum miner")]
struct Cli {
    /// Subnet config file (JSON); the `small` preset's defaults when absent.
    #[arg(long, global = true, env = "FERRUM_CONFIG")]
    config: Option<PathBuf>,
    /// Subnet id.
    #[arg(long, global = true, env = "FERRUM_NETUID", default_value_t = 1)]
    netuid: u16,
    /// This miner's hotkey (SS58 address or 0x-hex public key).
    #[arg(long, global = true, env = "FERRUM_HOTKEY")]
    hotkey: Option<String>,
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
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let config = SubnetConfig::load_or_default(cli.config.as_deref())?;
    let hotkey: Hotkey =
        cli.hotkey.as_deref().context("--hotkey is required (SS58 address of this miner's hotkey)")?.parse()?;
    match cli.command {
        Command::Check { uid, window } => check(config, cli.netuid, uid, &hotkey, window).await,
    }
}

async fn check(config: SubnetConfig, netuid: u16, uid: u16, hotkey: &Hotkey, window: u64) -> Result<()> {
    let span = tracing::info_span!("miner", window, uid, hotkey = %hotkey);
    let _entered = span.enter();
    let ctx = NodeContext::open(config, netuid).await?;
    info!(config_hash = %ctx.config_hash, namespace = ctx.namespace.as_str(), "config loaded");
    ctx.probe_store(hotkey).await?;
    info!(store = ctx.store.location(), "bucket is writable");
    let req = SampleRequest { dataset: ctx.dataset.id(), netuid, window, uid, hotkey };
    let samples = assign_samples(&req, ctx.config.samples_per_window(), ctx.dataset.num_samples())?;
    let read = ctx.dataset.samples(&samples).await?;
    let tokens: usize = read.iter().map(Vec::len).sum();
    let schedule = WindowSchedule::new(&ctx.config.windows);
    info!(samples = samples.len(), tokens, dataset = %ctx.dataset.id(), "assigned samples read and verified");
    println!(
        "ready: window {window} assigns {} samples ({tokens} tokens) of dataset {}; upload due at block {} within {} s",
        samples.len(),
        ctx.dataset.id(),
        schedule.put_window_block(window),
        ctx.config.windows.put_window_secs
    );
    Ok(())
}
