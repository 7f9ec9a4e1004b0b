//! Command-line pieces shared by the binaries, so every node takes the same flags the same way.

use std::fmt::Display;
use std::io::IsTerminal as _;
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
    /// This node's hotkey. `check` needs only its SS58 address (or 0x-hex public key); a
    /// running node needs the secret: a secret URI (`//Alice`), a key file, or `env:VAR` naming
    /// a variable holding a mnemonic (or use --wallet.name / --wallet.hotkey).
    #[arg(long, global = true, env = "FERRUM_HOTKEY")]
    pub hotkey: Option<String>,
    /// This node's bucket, in place of the config's `storage.url` (node-local: the config hash
    /// does not cover it, so every node can run the subnet's published file unchanged).
    #[arg(long = "storage.url", global = true, env = "FERRUM_STORAGE_URL")]
    pub storage_url: Option<String>,
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
    /// The config named by `--config`, or the default preset, with `--storage.url` applied and
    /// checked like the file's own value.
    pub fn load_config(&self) -> Result<SubnetConfig, ConfigError> {
        let mut config = SubnetConfig::load_or_default(self.config.as_deref())?;
        if let Some(url) = &self.storage_url {
            config.storage.url = url.clone();
            config.validate().map_err(|errors| ConfigError::Invalid { path: "--storage.url".into(), errors })?;
        }
        Ok(config)
    }

    /// The parsed `--hotkey`.
    pub fn hotkey(&self) -> Result<Hotkey, ArgError> {
        self.hotkey.as_deref().ok_or(ArgError::MissingHotkey)?.parse().map_err(ArgError::BadHotkey)
    }
}

/// `println!` that returns the write error instead of panicking, so output piped into a
/// reader that stops early (`| head -1`) ends the program quietly; use with `?`.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        writeln!(::std::io::stdout().lock(), $($arg)*)
    }};
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`). Colour only on a terminal, and
/// never with `NO_COLOR` set, so logs written to a file or a pipe carry no escape codes.
pub fn init_tracing() {
    init_tracing_at("info");
}

/// [`init_tracing`] with another level when `RUST_LOG` is unset (a command whose own output is
/// the point, such as the devnet's per-window lines, keeps its nodes' logs to warnings).
pub fn init_tracing_at(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into()))
        .with_writer(std::io::stderr)
        .with_ansi(log_colours())
        .init();
}

/// Whether stderr is a terminal and `NO_COLOR` is unset (<https://no-color.org>).
pub fn log_colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Prints an error with its causes and turns the outcome into the exit status. A closed stdout
/// (the reader of a pipe went away) is a normal end, not an error.
pub fn exit_code<E>(result: Result<(), E>) -> ExitCode
where
    E: Display + AsRef<dyn std::error::Error + Send + Sync + 'static>,
{
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes joined by `: `, leaving out a cause whose text the message before it
/// already holds (library errors quote their source in their own message, so logs that print
/// only the top error still say why; printed whole, each cause would appear twice).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// Whether an error, or any error in its chain of causes, is a write to a closed pipe.
fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) {
            return true;
        }
        next = err.source();
    }
    false
}

/// Resolves on Ctrl-C or SIGTERM, so a node can stop between steps.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("chain connection: ws://h:1 refused")]
    struct Refused;

    #[derive(Debug, thiserror::Error)]
    enum Launch {
        #[error("connecting to the chain: {0}")]
        Chain(#[from] Refused),
    }

    /// Context that does not quote its cause, as anyhow's `.context()` does not.
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Context(&'static str, #[source] Box<dyn std::error::Error + Send + Sync>);

    #[test]
    fn each_cause_is_printed_once() {
        let e = Context("starting the miner", Box::new(Launch::from(Refused)));
        assert_eq!(error_chain(&e), "starting the miner: connecting to the chain: chain connection: ws://h:1 refused");
        // A cause the message does not quote is still printed.
        let io = Context("saving state", Box::new(std::io::Error::other("disk full")));
        assert_eq!(error_chain(&io), "saving state: disk full");
    }
}
