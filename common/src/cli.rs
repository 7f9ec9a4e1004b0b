//! Command-line pieces shared by the binaries, so every node takes the same flags the same way.

use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{ConfigError, SubnetConfig};
use crate::hotkey::Hotkey;

/// Flags every node binary takes (Bittensor conventions; each is also an environment variable).
#[derive(clap::Args, Debug, Clone)]
pub struct NodeArgs {
    /// Subnet config file (JSON); the `small` preset's defaults when absent.
    #[arg(long, global = true, env = "FERRUM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Subnet id.
    #[arg(long, global = true, env = "FERRUM_NETUID", default_value_t = 1)]
    pub netuid: u16,
    /// This node's hotkey (SS58 address or 0x-hex public key).
    #[arg(long, global = true, env = "FERRUM_HOTKEY")]
    pub hotkey: Option<String>,
}

/// A node flag that is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    #[error("--hotkey is required (the SS58 address of this node's hotkey)")]
    MissingHotkey,
    #[error("--hotkey: {0}")]
    BadHotkey(crate::hotkey::HotkeyParseError),
}

impl NodeArgs {
    /// The config named by `--config`, or the default preset.
    pub fn load_config(&self) -> Result<SubnetConfig, ConfigError> {
        SubnetConfig::load_or_default(self.config.as_deref())
    }

    /// The parsed `--hotkey`.
    pub fn hotkey(&self) -> Result<Hotkey, ArgError> {
        self.hotkey.as_deref().ok_or(ArgError::MissingHotkey)?.parse().map_err(ArgError::BadHotkey)
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
}

/// Prints an error with its causes (`{:#}`) and turns the outcome into the exit status.
pub fn exit_code<E: Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
