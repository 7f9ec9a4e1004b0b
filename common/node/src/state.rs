//! A node's own state on local disk: the model (the base of a window), the error-feedback
//! buffer and where the node got to, written so that a node killed at any instant, SIGKILL
//! included, restarts from the last complete save.
//!
//! Each save writes the model as a verified checkpoint and the feedback buffer under keys named
//! by the window, then `state.json` last (each file lands by rename, so it is whole or absent);
//! `state.json` names the files that belong together. Older files are removed after.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use ferrum_common::checkpoint::{self, CheckpointError};
use ferrum_common::keys::Namespace;
use ferrum_common::model::MasterModel;
use ferrum_common::storage::{Location, StorageError, StorageLimits};
use ferrum_common::{ConfigHash, Store, SubnetConfig};
use serde::{Deserialize, Serialize};

const STATE_KEY: &str = "state.json";
const STATE_CAP: u64 = 1 << 20;
const BLOB_CONTEXT: &str = "ferrum 2026-11 node state file v1";

/// What a node restores after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeState {
    /// The window the model is the base of.
    pub base_window: u64,
    /// Outer steps applied since genesis (windows with at least one payload).
    pub global_step: u64,
    /// Whether this node's payload for `base_window` was uploaded.
    pub uploaded: bool,
    pub model: MasterModel,
    /// The miner's error-feedback buffer, per tensor (validators have none).
    pub feedback: Option<Vec<Vec<f32>>>,
    /// The miner's optimizer state, opaque (`Trainer::optimizer_state`).
    pub optimizer: Option<Vec<u8>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    base_window: u64,
    global_step: u64,
    uploaded: bool,
    fingerprint: String,
    /// Key of the feedback file, when there is one.
    feedback: Option<String>,
    /// Key of the optimizer-state file, when there is one.
    #[serde(default)]
    optimizer: Option<String>,
    config_hash: String,
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("node state in {dir}: {source}")]
    Storage { dir: String, source: StorageError },
    #[error("node state in {dir}: model: {source}")]
    Checkpoint { dir: String, source: CheckpointError },
    #[error("node state in {dir} is damaged ({reason}); move it aside to start over from the network")]
    Damaged { dir: String, reason: String },
    #[error(
        "node state in {dir} belongs to another subnet config ({found}, this node runs {expected}); use another --state.dir"
    )]
    OtherConfig { dir: String, expected: String, found: String },
}

/// The state directory of one node.
pub struct StateDir {
    dir: PathBuf,
    store: Store,
    namespace: Namespace,
    config_hash: ConfigHash,
}

impl StateDir {
    /// Opens (creating) the directory.
    pub fn open(dir: &Path, config: &SubnetConfig, netuid: u16) -> Result<StateDir, StateError> {
        let location = Location::Local { root: dir.to_path_buf() };
        let store = Store::open_location(&location, StorageLimits::from(&config.storage))
            .map_err(|source| StateError::Storage { dir: dir.display().to_string(), source })?;
        let config_hash = config.hash();
        Ok(StateDir { dir: dir.to_path_buf(), store, namespace: Namespace::new(netuid, &config_hash), config_hash })
    }

    fn shown(&self) -> String {
        self.dir.display().to_string()
    }

    fn storage(&self, source: StorageError) -> StateError {
        StateError::Storage { dir: self.shown(), source }
    }

    fn feedback_key(window: u64) -> String {
        format!("feedback/{window:012}.bin")
    }

    fn optimizer_key(window: u64) -> String {
        format!("optimizer/{window:012}.bin")
    }

    /// The saved state, or `None` for a node that never saved one.
    pub async fn load(&self, config: &SubnetConfig) -> Result<Option<NodeState>, StateError> {
        let raw = match self.store.get(STATE_KEY, Some(STATE_CAP)).await {
            Ok(raw) => raw,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(self.storage(e)),
        };
        let damaged = |reason: String| StateError::Damaged { dir: self.shown(), reason };
        let record: Record = serde_json::from_slice(&raw).map_err(|e| damaged(format!("{STATE_KEY}: {e}")))?;
        if record.config_hash != self.config_hash.to_string() {
            return Err(StateError::OtherConfig {
                dir: self.shown(),
                expected: self.config_hash.to_string(),
                found: record.config_hash,
            });
        }
        let (model, _) = checkpoint::load(&self.store, &self.namespace, config, record.base_window)
            .await
            .map_err(|source| StateError::Checkpoint { dir: self.shown(), source })?;
        if model.fingerprint().to_string() != record.fingerprint {
            return Err(damaged("the model does not match state.json".into()));
        }
        let feedback = match &record.feedback {
            None => None,
            Some(key) => {
                let bytes = self.store.get(key, None).await.map_err(|e| self.storage(e))?;
                Some(decode_feedback(&bytes, &model).ok_or_else(|| damaged(format!("{key} is truncated or altered")))?)
            }
        };
        let optimizer = match &record.optimizer {
            None => None,
            Some(key) => {
                let bytes = self.store.get(key, None).await.map_err(|e| self.storage(e))?;
                Some(open_blob(&bytes).ok_or_else(|| damaged(format!("{key} is truncated or altered")))?)
            }
        };
        Ok(Some(NodeState {
            base_window: record.base_window,
            global_step: record.global_step,
            uploaded: record.uploaded,
            model,
            feedback,
            optimizer,
        }))
    }

    /// Saves the state: model and feedback first, `state.json` last, then drops older files.
    pub async fn save(&self, state: &NodeState) -> Result<(), StateError> {
        let w = state.base_window;
        checkpoint::save(&self.store, &self.namespace, &self.config_hash, w, state.global_step, &state.model)
            .await
            .map_err(|source| StateError::Checkpoint { dir: self.shown(), source })?;
        let feedback = match &state.feedback {
            Some(f) => {
                let key = Self::feedback_key(w);
                self.store.put(&key, encode_feedback(f)).await.map_err(|e| self.storage(e))?;
                Some(key)
            }
            None => None,
        };
        let optimizer = match &state.optimizer {
            Some(o) => {
                let key = Self::optimizer_key(w);
                self.store.put(&key, seal_blob(o)).await.map_err(|e| self.storage(e))?;
                Some(key)
            }
            None => None,
        };
        let record = Record {
            base_window: w,
            global_step: state.global_step,
            uploaded: state.uploaded,
            fingerprint: crate::cpu::heavy(|| state.model.fingerprint()).to_string(),
            feedback,
            optimizer,
            config_hash: self.config_hash.to_string(),
        };
        let json = serde_json::to_vec_pretty(&record)
            .map_err(|e| StateError::Damaged { dir: self.shown(), reason: e.to_string() })?;
        self.store.put(STATE_KEY, json.into()).await.map_err(|e| self.storage(e))?;
        self.prune(w).await;
        Ok(())
    }

    /// Removes model and feedback files of windows before `keep` (best effort: a leftover
    /// file is only disk space).
    async fn prune(&self, keep: u64) {
        let prefixes =
            [format!("{}/checkpoints", self.namespace.as_str()), "feedback".to_string(), "optimizer".to_string()];
        for prefix in prefixes {
            let Ok(objects) = self.store.list(&prefix).await else { continue };
            for o in objects {
                // Window numbers are the 12-digit path segments.
                let window = o.key.split('/').find_map(|part| {
                    let digits = part.strip_suffix(".bin").unwrap_or(part);
                    (digits.len() == 12).then(|| digits.parse::<u64>().ok()).flatten()
                });
                if window.is_some_and(|w| w < keep) {
                    let _ = self.store.delete(&o.key).await;
                }
            }
        }
    }
}

/// blake3-derive(body) ‖ body: a local file that is whole or detectably not.
fn seal_blob(body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(32 + body.len());
    out.extend_from_slice(&blake3::derive_key(BLOB_CONTEXT, body));
    out.extend_from_slice(body);
    out.into()
}

fn open_blob(bytes: &[u8]) -> Option<Vec<u8>> {
    (bytes.len() >= 32 && blake3::derive_key(BLOB_CONTEXT, &bytes[32..]) == bytes[..32]).then(|| bytes[32..].to_vec())
}

/// The f32 values little-endian, tensor after tensor, sealed.
fn encode_feedback(f: &[Vec<f32>]) -> Bytes {
    let mut body = Vec::with_capacity(f.iter().map(Vec::len).sum::<usize>() * 4);
    for t in f {
        for v in t {
            body.extend_from_slice(&v.to_le_bytes());
        }
    }
    seal_blob(&body)
}

fn decode_feedback(bytes: &[u8], model: &MasterModel) -> Option<Vec<Vec<f32>>> {
    let body = open_blob(bytes)?;
    let n: usize = model.tensors.iter().map(Vec::len).sum();
    if body.len() != 4 * n {
        return None;
    }
    let mut values = body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    Some(model.tensors.iter().map(|t| values.by_ref().take(t.len()).collect()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn saves_load_back_and_the_newest_complete_save_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ferrum_common::Preset::Test.config();
        let sd = StateDir::open(dir.path(), &config, 1).expect("open");
        assert_eq!(sd.load(&config).await.expect("empty"), None);
        let mut model = MasterModel::genesis(&config);
        let feedback: Vec<Vec<f32>> = model.tensors.iter().map(|t| vec![0.5; t.len()]).collect();
        let s0 = NodeState {
            base_window: 3,
            global_step: 2,
            uploaded: true,
            model: model.clone(),
            feedback: Some(feedback),
            optimizer: Some(vec![1, 2, 3]),
        };
        sd.save(&s0).await.expect("save");
        assert_eq!(sd.load(&config).await.expect("load"), Some(s0.clone()));

        model.tensors[0][0] += 1.0;
        let s1 = NodeState { base_window: 4, global_step: 3, uploaded: false, model, feedback: None, optimizer: None };
        sd.save(&s1).await.expect("save");
        assert_eq!(sd.load(&config).await.expect("load"), Some(s1.clone()));
        assert!(!dir.path().join(StateDir::feedback_key(3)).exists(), "older files pruned");
        assert!(!dir.path().join(StateDir::optimizer_key(3)).exists(), "older files pruned");

        // A damaged feedback file is reported, never loaded.
        sd.save(&s0).await.expect("save");
        let f = dir.path().join(StateDir::feedback_key(3));
        let mut bytes = std::fs::read(&f).expect("read");
        bytes[40] ^= 1;
        std::fs::write(&f, bytes).expect("write");
        assert!(matches!(sd.load(&config).await, Err(StateError::Damaged { .. })));

        let mut other = config.clone();
        other.training.learning_rate *= 2.0;
        let sd2 = StateDir::open(dir.path(), &other, 1).expect("open");
        assert!(matches!(sd2.load(&other).await, Err(StateError::OtherConfig { .. })));
    }
}
