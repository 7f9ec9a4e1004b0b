//! Checkpoints of the master model: a safetensors file with the Hugging Face Llama tensor names,
//! then a JSON manifest (config hash, window, global step, fingerprint, the file's size and
//! BLAKE3), written last so no reader ever sees half a checkpoint. Loading verifies all of it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

#[cfg(feature = "io")]
use crate::config::ConfigHash;
use crate::config::SubnetConfig;
#[cfg(feature = "io")]
use crate::keys::Namespace;
use crate::model::MasterModel;
use crate::params;
#[cfg(feature = "io")]
use crate::storage::{StorageError, Store};

/// Manifest `format` value.
pub const FORMAT: &str = "ferrum-checkpoint";
/// Manifest `version` value.
pub const VERSION: u32 = 1;
/// Manifests larger than this are refused before download.
#[cfg(feature = "io")]
const MANIFEST_CAP: u64 = 1 << 20;

/// What a checkpoint's manifest records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointManifest {
    pub format: String,
    pub version: u32,
    pub config_hash: String,
    /// The window whose outer step the parameters include.
    pub window: u64,
    /// Outer steps applied since genesis.
    pub global_step: u64,
    pub fingerprint: String,
    pub tensors_key: String,
    pub tensors_bytes: u64,
    pub tensors_blake3: String,
}

/// Why a checkpoint cannot be saved or used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    #[cfg(feature = "io")]
    Storage(#[from] StorageError),
    #[error("checkpoint manifest is not valid: {0}")]
    Manifest(String),
    #[error("checkpoint was made under config {found}, this node runs {expected}")]
    Config { expected: String, found: String },
    #[error("checkpoint tensors do not match the manifest's hash (truncated or altered)")]
    TensorsHash,
    #[error("checkpoint tensors are not valid safetensors: {0}")]
    Format(String),
    #[error("checkpoint tensor {path}: {reason}")]
    Tensor { path: String, reason: String },
    #[error("checkpoint fingerprint {found} does not match the manifest's {expected}")]
    Fingerprint { expected: String, found: String },
}

/// Serializes the parameters as safetensors (f32, row-major, Hugging Face names).
pub fn to_safetensors(model: &MasterModel, meta: HashMap<String, String>) -> Result<Vec<u8>, CheckpointError> {
    let bytes: Vec<Vec<u8>> = model.tensors.iter().map(|t| t.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let views = model
        .specs
        .iter()
        .zip(&bytes)
        .map(|(p, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, p.shape.clone(), b)
                .map(|v| (p.path.clone(), v))
                .map_err(|e| CheckpointError::Format(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, Some(meta)).map_err(|e| CheckpointError::Format(e.to_string()))
}

/// Reads parameters for a config's layout from safetensors bytes: every tensor present, f32,
/// the right shape, finite, and nothing else.
pub fn from_safetensors(bytes: &[u8], config: &SubnetConfig) -> Result<MasterModel, CheckpointError> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| CheckpointError::Format(e.to_string()))?;
    let specs = params::layout(&config.model);
    if st.len() != specs.len() {
        return Err(CheckpointError::Format(format!("{} tensors, the model has {}", st.len(), specs.len())));
    }
    let mut tensors = Vec::with_capacity(specs.len());
    for p in &specs {
        let bad = |reason: &str| CheckpointError::Tensor { path: p.path.clone(), reason: reason.to_string() };
        let view = st.tensor(&p.path).map_err(|_| bad("missing"))?;
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(bad("not f32"));
        }
        if view.shape() != p.shape.as_slice() {
            return Err(bad(&format!("shape {:?}, the model needs {:?}", view.shape(), p.shape)));
        }
        let values: Vec<f32> =
            view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(bad("holds a non-finite value"));
        }
        tensors.push(values);
    }
    Ok(MasterModel { specs, tensors })
}

#[cfg(feature = "io")]
/// Uploads a checkpoint of `model` after the outer step of `window`: tensors first, manifest last.
pub async fn save(
    store: &Store,
    ns: &Namespace,
    config_hash: &ConfigHash,
    window: u64,
    global_step: u64,
    model: &MasterModel,
) -> Result<CheckpointManifest, CheckpointError> {
    let fingerprint = model.fingerprint();
    let meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("config_hash".to_string(), config_hash.to_string()),
        ("window".to_string(), window.to_string()),
        ("global_step".to_string(), global_step.to_string()),
        ("fingerprint".to_string(), fingerprint.to_string()),
    ]);
    let bytes = to_safetensors(model, meta)?;
    let manifest = CheckpointManifest {
        format: FORMAT.into(),
        version: VERSION,
        config_hash: config_hash.to_string(),
        window,
        global_step,
        fingerprint: fingerprint.to_string(),
        tensors_key: ns.checkpoint_tensors(window),
        tensors_bytes: bytes.len() as u64,
        tensors_blake3: blake3::hash(&bytes).to_hex().to_string(),
    };
    store.put(&manifest.tensors_key, bytes.into()).await?;
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| CheckpointError::Manifest(e.to_string()))?;
    store.put(&ns.checkpoint_manifest(window), json.into()).await?;
    Ok(manifest)
}

#[cfg(feature = "io")]
/// Downloads and verifies the checkpoint of `window`: manifest, config, size, hash, every tensor,
/// and the fingerprint recomputed from the parameters.
pub async fn load(
    store: &Store,
    ns: &Namespace,
    config: &SubnetConfig,
    window: u64,
) -> Result<(MasterModel, CheckpointManifest), CheckpointError> {
    let manifest = load_manifest(store, ns, config, window).await?;
    let model = load_tensors(store, &manifest.tensors_key, &manifest, config).await?;
    Ok((model, manifest))
}

#[cfg(feature = "io")]
/// The manifest of the checkpoint of `window`, checked (format, version, window, config, the
/// protocol's tensors key) but without its tensors: what a node decides on before fetching them.
pub async fn load_manifest(
    store: &Store,
    ns: &Namespace,
    config: &SubnetConfig,
    window: u64,
) -> Result<CheckpointManifest, CheckpointError> {
    let raw = store.get(&ns.checkpoint_manifest(window), Some(MANIFEST_CAP)).await?;
    let manifest = parse_manifest(&raw, config, Some(window))?;
    // The manifest names the tensors' key; only the protocol's key is acceptable.
    if manifest.tensors_key != ns.checkpoint_tensors(window) {
        return Err(CheckpointError::Manifest(format!("unexpected tensors key {}", manifest.tensors_key)));
    }
    Ok(manifest)
}

#[cfg(feature = "io")]
/// Loads and verifies a checkpoint from its folder (the one holding `manifest.json`), wherever it
/// was copied: the tensors are the file of the manifest's `tensors_key` beside it.
pub async fn load_folder(
    folder: &Store,
    config: &SubnetConfig,
) -> Result<(MasterModel, CheckpointManifest), CheckpointError> {
    let raw = folder.get("manifest.json", Some(MANIFEST_CAP)).await?;
    let manifest = parse_manifest(&raw, config, None)?;
    let file = manifest.tensors_key.rsplit('/').next().unwrap_or_default().to_string();
    if file.is_empty() {
        return Err(CheckpointError::Manifest(format!("tensors key {} names no file", manifest.tensors_key)));
    }
    let model = load_tensors(folder, &file, &manifest, config).await?;
    Ok((model, manifest))
}

#[cfg(feature = "io")]
/// Parses a manifest and checks its format, version, window (when known) and config hash.
fn parse_manifest(
    raw: &[u8],
    config: &SubnetConfig,
    window: Option<u64>,
) -> Result<CheckpointManifest, CheckpointError> {
    let manifest: CheckpointManifest =
        serde_json::from_slice(raw).map_err(|e| CheckpointError::Manifest(e.to_string()))?;
    if manifest.format != FORMAT || manifest.version != VERSION || window.is_some_and(|w| manifest.window != w) {
        return Err(CheckpointError::Manifest(format!(
            "format {} v{} for window {}, expected {FORMAT} v{VERSION}{}",
            manifest.format,
            manifest.version,
            manifest.window,
            window.map(|w| format!(" for window {w}")).unwrap_or_default()
        )));
    }
    let expected = config.hash().to_string();
    if manifest.config_hash != expected {
        return Err(CheckpointError::Config { expected, found: manifest.config_hash });
    }
    Ok(manifest)
}

#[cfg(feature = "io")]
/// Downloads the tensors at `key` and checks size, hash, every tensor and the fingerprint.
pub async fn load_tensors(
    store: &Store,
    key: &str,
    manifest: &CheckpointManifest,
    config: &SubnetConfig,
) -> Result<MasterModel, CheckpointError> {
    let (_, bytes) = store.get_exact(key, manifest.tensors_bytes).await.map_err(|e| match e {
        StorageError::WrongSize { .. } => CheckpointError::TensorsHash,
        other => CheckpointError::Storage(other),
    })?;
    if blake3::hash(&bytes).to_hex().as_str() != manifest.tensors_blake3 {
        return Err(CheckpointError::TensorsHash);
    }
    let model = from_safetensors(&bytes, config)?;
    let found = model.fingerprint().to_string();
    if found != manifest.fingerprint {
        return Err(CheckpointError::Fingerprint { expected: manifest.fingerprint.clone(), found });
    }
    Ok(model)
}

#[cfg(feature = "io")]
/// The newest window with a complete checkpoint (one whose manifest exists).
pub async fn latest(store: &Store, ns: &Namespace) -> Result<Option<u64>, CheckpointError> {
    Ok(windows(store, ns).await?.first().copied())
}

#[cfg(feature = "io")]
/// The windows of every complete checkpoint in a store, newest first.
pub async fn windows(store: &Store, ns: &Namespace) -> Result<Vec<u64>, CheckpointError> {
    let prefix = format!("{}/checkpoints", ns.as_str());
    let objects = store.list(&prefix).await?;
    let mut found: Vec<u64> = objects
        .iter()
        .filter_map(|o| o.key.strip_suffix("/manifest.json"))
        .filter_map(|k| k.rsplit('/').next())
        .filter_map(|w| w.parse::<u64>().ok())
        .collect();
    found.sort_unstable_by(|a, b| b.cmp(a));
    found.dedup();
    Ok(found)
}

pub mod hf;

#[cfg(test)]
mod tests;
