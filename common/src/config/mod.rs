//! The subnet config: one JSON file with every protocol and scoring parameter.
//!
//! A file names a `preset` (default `small`); the preset's full default config is laid down
//! first and the file's keys are merged over it, so a file only needs the keys it changes.
//! Parsing is strict (unknown keys and wrong types are errors naming the field), then
//! [`validate`](SubnetConfig::validate) checks ranges and cross-field rules.
//!
//! The [`ConfigHash`] names the protocol version: blake3 over the canonical JSON of every section
//! except `preset` (a merge directive) and `storage` (node-local: where this node's bucket and
//! its dataset copy live).

mod presets;
mod validate;

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use presets::Preset;
pub use validate::FieldError;

/// Domain separation for the config hash (see docs/protocol.md).
const CONFIG_HASH_CONTEXT: &str = "ferrum 2026-12 subnet config v2";

/// The whole subnet config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetConfig {
    /// Preset whose defaults sit under this file's values.
    pub preset: Preset,
    pub model: ModelConfig,
    pub data: DataConfig,
    pub training: TrainingConfig,
    pub compression: CompressionConfig,
    pub windows: WindowConfig,
    pub gauntlet: GauntletConfig,
    pub weights: WeightsConfig,
    /// Node-local; excluded from the config hash.
    pub storage: StorageConfig,
}

/// LLaMA-style decoder shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Embedding rows; at least the tokenizer's vocabulary, padded so it chunks well.
    pub vocab_size: u32,
    /// Width of the residual stream; a multiple of `num_heads`.
    pub hidden_size: u32,
    /// SwiGLU inner width.
    pub intermediate_size: u32,
    /// Decoder blocks.
    pub num_layers: u32,
    /// Query heads; the head size is `hidden_size / num_heads`.
    pub num_heads: u32,
    /// Key/value heads (grouped-query attention when below `num_heads`).
    pub num_kv_heads: u32,
    /// Base of the rotary position embedding frequencies.
    pub rope_theta: f64,
    /// Epsilon of every RMSNorm.
    pub norm_eps: f64,
    /// Share the embedding matrix with the output head.
    pub tie_embeddings: bool,
}

/// Tokenizer and sample shape that the dataset must match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Tokenizer id recorded in the dataset manifest: `bytes`, `gpt2` or `hf:<blake3 of file>`.
    pub tokenizer: String,
    /// Tokens per sample.
    pub sequence_length: u32,
    /// Pinned dataset id (hex blake3 of the manifest); `null` accepts the manifest found at
    /// `storage.dataset_url`, which is for development only.
    pub dataset_id: Option<String>,
}

/// The miner's inner loop and the outer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// Optimizer steps per window (H).
    pub inner_steps: u32,
    /// Sequences per inner step; a miner is assigned `inner_steps × batch_size` samples.
    pub batch_size: u32,
    /// Sequences per forward pass; must divide `batch_size`.
    pub micro_batch_size: u32,
    /// Peak inner (AdamW) learning rate.
    pub learning_rate: f64,
    /// Linear warm-up, in inner steps.
    pub warmup_steps: u64,
    /// Cosine decay length after warm-up, in inner steps.
    pub cosine_steps: u64,
    /// Floor of the cosine schedule as a fraction of `learning_rate`.
    pub min_lr_factor: f64,
    /// AdamW first-moment decay.
    pub adam_beta1: f64,
    /// AdamW second-moment decay.
    pub adam_beta2: f64,
    /// AdamW epsilon.
    pub adam_eps: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip; `null` disables clipping.
    pub grad_clip: Option<f64>,
    /// θ ← θ − outer_learning_rate · aggregate.
    pub outer_learning_rate: f64,
}

/// Pseudo-gradient compression (SparseLoCo family).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionConfig {
    /// Target block side; each dimension uses its largest divisor not above this.
    pub chunk: u32,
    /// Values kept per block.
    pub topk: u32,
    /// Bits per transmitted value; `null` sends f32 values.
    pub quantization_bits: Option<u8>,
    /// Quantizer range in standard deviations.
    pub quantization_range: f64,
    /// Orthonormal DCT-II per block before top-k.
    pub dct: bool,
    /// Error-feedback decay β in e ← β·e + Δ.
    pub error_feedback_decay: f64,
}

/// Window timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// window = block / blocks_per_window.
    pub blocks_per_window: u64,
    /// Length of the put window that opens at the first block of the next window.
    pub put_window_secs: u64,
    /// Nominal block time of the chain; used to place the random-data seed block after the put
    /// window closes (12 s on subtensor).
    pub block_time_secs: f64,
}

/// Gauntlet evaluation and scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GauntletConfig {
    /// Samples of the miner's own assignment evaluated per miner.
    pub own_eval_samples: u32,
    /// Samples of the window's random data evaluated per window.
    pub random_eval_samples: u32,
    /// The first this many of the own samples are also measured with their tokens shuffled: an
    /// update must help them in their order more than shuffled, or its own-data test fails
    /// that window (§14). At most `own_eval_samples`; 0 turns the order test off.
    pub order_eval_samples: u32,
    /// The order test applies once the base model's loss on the shuffled samples is at least
    /// this fraction above its loss on them in order: before a model has learned from order,
    /// token counts are real help and honest updates' order gains are noise.
    pub order_gap: f64,
    /// Scale of a miner's update when the validator applies it for evaluation (λ_eval).
    pub eval_lr_factor: f64,
    /// Miners given the full loss evaluation per window.
    pub uids_per_window: u32,
    /// A received miner not evaluated for this many windows (or never) is due: due miners are
    /// evaluated first, the longest-waiting first, and the rest of `uids_per_window` is drawn in
    /// the window's unpredictable order (docs/protocol.md §14).
    pub max_eval_gap: u32,
    /// Other miners' updates measured on each evaluated miner's own data, the control of the
    /// binary indicator (0: compare against random data alone, as the reference does).
    pub binary_reference_peers: u32,
    /// EMA rate of the own-vs-random binary indicator.
    pub binary_ema_alpha: f64,
    /// After `binary_warmup_windows` evaluations, a binary EMA below this zeroes the score.
    pub binary_zero_threshold: f64,
    /// Evaluations before a binary-indicator EMA under `binary_zero_threshold` zeroes a score.
    pub binary_warmup_windows: u32,
    /// Least rating term of the final score (`max(μ − 3σ, rating_floor)`): a miner whose updates
    /// help (gradient EMA above 0) and pass the own-data test earns something however it ranks
    /// in a small field (0: the rating alone, as the reference does).
    pub rating_floor: f64,
    /// EMA rate of the per-parameter movement used by the sync score.
    pub param_change_alpha: f64,
    pub openskill: OpenSkillConfig,
    pub sync: SyncConfig,
    pub penalties: PenaltyConfig,
    pub copy: CopyConfig,
}

/// Plackett–Luce rating parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenSkillConfig {
    /// Performance noise of one window (openskill `beta`).
    pub beta: f64,
    /// Skill drift added each rating update (openskill `tau`).
    pub tau: f64,
    /// Initial skill mean of a new miner.
    pub mu: f64,
    /// Initial skill uncertainty of a new miner.
    pub sigma: f64,
}

/// sync = (1 − min(steps_behind, max_steps_behind)/max_steps_behind)^exponent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Steps behind at which the sync score reaches 0.
    pub max_steps_behind: f64,
    /// Exponent of the sync score curve.
    pub exponent: f64,
    /// Gather peers further behind than this are slashed.
    pub slash_steps_behind: f64,
}

/// Multiplicative penalties on a positive score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PenaltyConfig {
    /// Multiplier for a missing, late or invalid upload.
    pub missing_upload: f64,
    /// Multiplier for the second missed upload in a row; from the third on the score is zeroed.
    pub missing_upload_repeat: f64,
    /// Rating score a missing upload enters the OpenSkill update with (ranked last).
    pub missing_rating_score: f64,
    /// Windows looked back over for the missing-upload exclusion.
    pub missing_lookback_windows: u32,
    /// A uid that missed more than half of the lookback windows is excluded this many windows.
    pub missing_exclusion_windows: u32,
    /// This many negative gradient scores in a row exclude a uid from the gather set until it
    /// scores positive again.
    pub negative_streak_exclusion: u32,
    /// Multiplier for a gather peer out of sync.
    pub poor_sync: f64,
    /// Multiplier per inactive window.
    pub inactivity: f64,
    /// Inactive windows before a full reset.
    pub inactivity_reset_windows: u32,
    /// Scores below this become zero.
    pub score_zero_threshold: f64,
    /// Below this gather success rate the skipped peers are zeroed.
    pub gather_success_threshold: f64,
}

/// Originality: two uploads of a window that are the same update, or whose top-k index overlap
/// stands out from the window's typical pair. The overlap thresholds apply to that excess,
/// `(overlap − median) / (1 − median)` over the window's pairs (§14).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyConfig {
    /// Overlap excess from which one of the pair is treated as a copier.
    pub overlap_threshold: f64,
    /// Score multiplier for an excess in [overlap_threshold, reset_overlap).
    pub high_multiplier: f64,
    /// Excess from which scores are reset.
    pub reset_overlap: f64,
    /// Excess from which the uid is also excluded for `exclusion_windows`.
    pub exclude_overlap: f64,
    /// Windows a uid stays excluded after an excess at or above `exclude_overlap`.
    pub exclusion_windows: u32,
    /// Global steps at the start of a run during which overlap is not penalised.
    pub grace_steps: u64,
    /// Two updates of one window within this relative L2 distance of each other
    /// (`‖a − b‖ / max(‖a‖, ‖b‖)`) are one update: the gather aggregates the first in gather
    /// order only, and validators judge the pair as identical, grace steps or not. 0 counts only
    /// bit-identical updates as one. Honest updates of one window stay far apart
    /// (docs/performance.md); a copy perturbed by less than this gains nothing.
    pub duplicate_distance: f64,
}

/// Scores to on-chain weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsConfig {
    /// Uid that receives the burned share.
    pub burn_uid: u16,
    /// Fraction of the weight given to `burn_uid`.
    pub burn_share: f64,
    /// Which normalization turns positive final scores into weights.
    pub scheme: WeightScheme,
    pub tiers: TierWeights,
    pub power: PowerWeights,
    /// Weights are set every this many windows.
    pub windows_per_weights: u32,
    /// Must equal the subnet's WeightsVersionKey.
    pub version_key: u64,
}

/// How positive final scores become weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightScheme {
    /// See [`TierWeights`].
    Tiers,
    /// See [`PowerWeights`].
    Power,
}

/// The top `gather_peers` share `gather_share` on a linear `top_ratio`:1 profile; the next
/// `reserve_peers` share the rest geometrically with ratio `reserve_decay`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierWeights {
    /// Miners in the top tier (the peers nodes aggregate).
    pub gather_peers: u32,
    /// Miners in the reserve tier after them.
    pub reserve_peers: u32,
    /// Share of the miners' weight that the top tier splits.
    pub gather_share: f64,
    /// Weight of the best top-tier miner over the last one (linear profile).
    pub top_ratio: f64,
    /// Ratio between successive reserve-tier weights.
    pub reserve_decay: f64,
}

/// w ∝ score^exponent over positive scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerWeights {
    /// Weights are scores raised to this power, normalized.
    pub exponent: f64,
}

/// Node-local storage settings (not part of the config hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// This node's bucket: a path, `file://`, `s3://bucket/prefix` or `r2://account/bucket`.
    pub url: String,
    /// Where the dataset manifest and shards are read from (same URL forms).
    pub dataset_url: String,
    /// Bound on one storage operation, retries included.
    pub timeout_secs: u64,
    /// Bound on connecting to an S3 endpoint.
    pub connect_timeout_secs: u64,
    /// Retries of a failed storage operation (transient errors only).
    pub max_retries: u32,
    /// First retry delay; it doubles each retry, up to 32 times this.
    pub retry_backoff_ms: u64,
    /// Largest object this node downloads without a more specific cap.
    pub max_object_bytes: u64,
}

/// A failure to load a config, with the file and the field it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path}: not valid JSON at line {line}, column {column}: {message}")]
    Syntax { path: String, line: usize, column: usize, message: String },
    #[error("{path}: {field}: {message}")]
    Field { path: String, field: String, message: String },
    #[error("{path}: {} invalid value(s):\n{}", .errors.len(), list(.errors))]
    Invalid { path: String, errors: Vec<FieldError> },
}

fn list(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n")
}

impl ConfigError {
    /// The fields this error names (empty for I/O and syntax errors).
    pub fn fields(&self) -> Vec<&str> {
        match self {
            ConfigError::Field { field, .. } => vec![field.as_str()],
            ConfigError::Invalid { errors, .. } => errors.iter().map(|e| e.field.as_str()).collect(),
            _ => Vec::new(),
        }
    }
}

/// blake3 of the canonical protocol part of a config.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConfigHash(pub [u8; 32]);

impl ConfigHash {
    /// First 8 bytes in hex: the namespace component of storage keys.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..8])
    }
}

hex_id!(ConfigHash);

impl Default for SubnetConfig {
    fn default() -> Self {
        Preset::default().config()
    }
}

impl SubnetConfig {
    /// Reads, merges over its preset, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io { path: shown.clone(), error })?;
        Self::from_json_str(&text, &shown)
    }

    /// [`load`](Self::load) when a file is given, else the default preset's config.
    pub fn load_or_default(path: Option<&Path>) -> Result<Self, ConfigError> {
        path.map_or_else(|| Ok(Self::default()), Self::load)
    }

    /// As [`load`](Self::load), from text; `origin` names the source in errors.
    pub fn from_json_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let file: Value = serde_json::from_str(text).map_err(|e| ConfigError::Syntax {
            path: origin.to_string(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        let Value::Object(ref obj) = file else {
            return Err(field_error(origin, "(root)", "must be a JSON object"));
        };
        let preset = match obj.get("preset") {
            None => Preset::default(),
            Some(v) => serde_json::from_value::<Preset>(v.clone())
                .map_err(|_| field_error(origin, "preset", &format!("must be one of {}", Preset::names())))?,
        };
        let mut merged = serde_json::to_value(preset.config()).expect("config serializes");
        merge(&mut merged, file);
        let config: SubnetConfig = serde_path_to_error::deserialize(merged).map_err(|e| {
            let field = e.path().to_string();
            field_error(origin, &field, &e.into_inner().to_string())
        })?;
        config.validate().map_err(|errors| ConfigError::Invalid { path: origin.to_string(), errors })?;
        Ok(config)
    }

    /// Checks ranges and cross-field rules; every violation is reported, not just the first.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        validate::validate(self)
    }

    /// Canonical JSON of the protocol part: every section but `preset` and `storage`, keys
    /// sorted, no whitespace, floats in shortest round-trip form.
    pub fn canonical_json(&self) -> String {
        let mut value = serde_json::to_value(self).expect("config serializes");
        if let Value::Object(map) = &mut value {
            map.remove("preset");
            map.remove("storage");
        }
        // serde_json's Map is a BTreeMap here (no preserve_order feature), so keys are sorted.
        serde_json::to_string(&value).expect("value serializes")
    }

    /// The protocol version nodes must share.
    pub fn hash(&self) -> ConfigHash {
        let mut hasher = blake3::Hasher::new_derive_key(CONFIG_HASH_CONTEXT);
        hasher.update(self.canonical_json().as_bytes());
        ConfigHash(*hasher.finalize().as_bytes())
    }

    /// Full config as pretty JSON, as `ferrum config show` prints it.
    pub fn to_pretty_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serializes")
    }

    /// Samples assigned to one miner per window.
    pub fn samples_per_window(&self) -> u64 {
        u64::from(self.training.inner_steps) * u64::from(self.training.batch_size)
    }
}

fn field_error(path: &str, field: &str, message: &str) -> ConfigError {
    ConfigError::Field {
        path: path.to_string(),
        field: if field.is_empty() || field == "." { "(root)".to_string() } else { field.to_string() },
        message: message.to_string(),
    }
}

/// Deep-merges `over` into `base`: objects merge key by key, anything else replaces.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

#[cfg(test)]
mod tests;
