//! The validator's own state beyond the model (which `ferrum_node::StateDir` keeps): the
//! Gauntlet ledger, the recent base fingerprints sync lag is measured against, the last weights
//! slot, a pending weights reveal, identical pairs' copy evidence, and one Gauntlet report per
//! window. Each file is written
//! whole (by rename), so a kill at any instant leaves the previous or the new version.

use std::path::Path;

use ferrum_common::storage::{Location, StorageError, StorageLimits};
use ferrum_common::{Store, SubnetConfig};
use ferrum_gauntlet::{Ledger, WindowReport};
use serde::{Deserialize, Serialize};

const STATE_KEY: &str = "validator.json";
const CAP: u64 = 64 << 20;

/// Weights committed and waiting for their reveal epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingReveal {
    pub uids: Vec<u16>,
    pub values: Vec<u16>,
    pub salt: Vec<u16>,
    /// The epoch of the commit.
    pub epoch: u64,
}

/// What the validator remembers between windows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ValidatorState {
    pub ledger: Ledger,
    /// `(window, fingerprint hex)` of recent base models, newest first.
    pub recent: Vec<(u64, String)>,
    /// The last cadence slot whose weights were submitted (never submitted twice).
    pub last_weights_slot: Option<u64>,
    /// Commits waiting for their reveal epoch, oldest first.
    #[serde(default)]
    pub pending_reveals: Vec<PendingReveal>,
    /// The weights last submitted (uid → share).
    pub last_weights: Vec<(u16, f64)>,
    /// Copy evidence of every pair of miners that uploaded the same update (`rules::PairEvidence`).
    #[serde(default)]
    pub copy_evidence: Vec<CopyEvidence>,
}

/// One identical pair's evidence, tied to both hotkeys: a uid taken over by another hotkey starts
/// with none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopyEvidence {
    /// The lower uid and its hotkey (SS58).
    pub a: (u16, String),
    /// The higher uid and its hotkey.
    pub b: (u16, String),
    pub evidence: ferrum_gauntlet::rules::PairEvidence,
}

/// Why the validator's files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ValidatorStateError {
    #[error("validator state: {0}")]
    Storage(#[from] StorageError),
    #[error("validator state file {0} is damaged: {1}")]
    Damaged(String, String),
}

/// The validator's files in its state directory.
pub struct ValidatorFiles {
    store: Store,
}

impl ValidatorFiles {
    /// Opens (creating) `dir`.
    pub fn open(dir: &Path, config: &SubnetConfig) -> Result<ValidatorFiles, ValidatorStateError> {
        let store =
            Store::open_location(&Location::Local { root: dir.to_path_buf() }, StorageLimits::from(&config.storage))?;
        Ok(ValidatorFiles { store })
    }

    /// The saved state, or a fresh one.
    pub async fn load(&self) -> Result<ValidatorState, ValidatorStateError> {
        match self.store.get(STATE_KEY, Some(CAP)).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| ValidatorStateError::Damaged(STATE_KEY.into(), e.to_string())),
            Err(e) if e.is_not_found() => Ok(ValidatorState::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Saves the state whole.
    pub async fn save(&self, state: &ValidatorState) -> Result<(), ValidatorStateError> {
        let json =
            serde_json::to_vec(state).map_err(|e| ValidatorStateError::Damaged(STATE_KEY.into(), e.to_string()))?;
        Ok(self.store.put(STATE_KEY, json.into()).await?)
    }

    fn report_key(window: u64) -> String {
        format!("reports/{window:012}.json")
    }

    /// Writes a window's Gauntlet report.
    pub async fn save_report(&self, report: &WindowReport) -> Result<(), ValidatorStateError> {
        let json = serde_json::to_vec_pretty(report)
            .map_err(|e| ValidatorStateError::Damaged(Self::report_key(report.window), e.to_string()))?;
        Ok(self.store.put(&Self::report_key(report.window), json.into()).await?)
    }

    /// A window's Gauntlet report, if the validator scored it.
    pub async fn report(&self, window: u64) -> Result<Option<WindowReport>, ValidatorStateError> {
        let key = Self::report_key(window);
        match self.store.get(&key, Some(CAP)).await {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map(Some).map_err(|e| ValidatorStateError::Damaged(key, e.to_string()))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
