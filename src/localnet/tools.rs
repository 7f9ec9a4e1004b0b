//! Where the pinned tools are: the chain spec, chopsticks and SeaweedFS. The environment names
//! them (`FERRUM_SUBTENSOR_SPEC`, `FERRUM_CHOPSTICKS`, `FERRUM_WEED_BIN`); anything it does not
//! name comes from `scripts/tools`, which installs the pinned versions once into
//! `~/.cache/ferrum-tools` and prints their paths.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Paths of the tools a localnet runs.
#[derive(Debug, Clone)]
pub struct Tools {
    pub spec: PathBuf,
    pub chopsticks: PathBuf,
    pub weed: PathBuf,
}

const VARS: [&str; 3] = ["FERRUM_SUBTENSOR_SPEC", "FERRUM_CHOPSTICKS", "FERRUM_WEED_BIN"];

impl Tools {
    /// From the environment, else from `scripts/tools` in this checkout (run only when needed).
    pub fn find(spec: Option<&Path>) -> Result<Tools> {
        let mut found: HashMap<&str, PathBuf> =
            VARS.iter().filter_map(|v| std::env::var_os(v).map(|p| (*v, PathBuf::from(p)))).collect();
        if let Some(spec) = spec {
            found.insert(VARS[0], spec.to_path_buf());
        }
        if VARS.iter().any(|v| !found.contains_key(v)) {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tools");
            if !script.exists() {
                bail!(
                    "set {} (the tools a localnet runs), or run from a Ferrum checkout where scripts/tools installs them",
                    VARS.join(", ")
                );
            }
            eprintln!("localnet: finding the pinned tools with {} (installs them on first use)", script.display());
            let out = std::process::Command::new(&script)
                .stderr(std::process::Stdio::inherit())
                .output()
                .with_context(|| format!("running {}", script.display()))?;
            if !out.status.success() {
                bail!("{} failed ({}); see the lines above", script.display(), out.status);
            }
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some((key, value)) = line.split_once('=')
                    && let Some(var) = VARS.iter().find(|v| **v == key)
                {
                    found.entry(var).or_insert_with(|| PathBuf::from(value));
                }
            }
        }
        let take = |var: &str| -> Result<PathBuf> {
            let p = found
                .get(var)
                .cloned()
                .with_context(|| format!("{var} is not set and scripts/tools did not print it"))?;
            if !p.exists() {
                bail!("{var}: {} does not exist", p.display());
            }
            Ok(p)
        };
        Ok(Tools { spec: take(VARS[0])?, chopsticks: take(VARS[1])?, weed: take(VARS[2])? })
    }
}
