//! Named default configs. Values follow the Templar reference (shared/reference/templar.md),
//! scaled to the model size; docs/config.md gives the reason for each departure.

use serde::{Deserialize, Serialize};

use super::{
    CompressionConfig, CopyConfig, DataConfig, GauntletConfig, ModelConfig, OpenSkillConfig, PenaltyConfig,
    PowerWeights, StorageConfig, SubnetConfig, SyncConfig, TierWeights, TrainingConfig, WeightScheme, WeightsConfig,
    WindowConfig,
};

/// A named starting point for a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Preset {
    /// Well under 1 M parameters, for unit tests.
    #[serde(rename = "test")]
    Test,
    /// A few million parameters, byte vocabulary, for CPU runs and the quick start.
    #[serde(rename = "small")]
    #[default]
    Small,
    /// About 150 M parameters plus a GPT-2 vocabulary.
    #[serde(rename = "150m")]
    Base150m,
    /// About 1.1 B parameters, the shape of the reference's 1.2 B Gauntlet run.
    #[serde(rename = "1b")]
    Large1b,
}

/// Rows of the byte tokenizer's 257 ids (256 bytes + EOS), padded to a multiple of 64 so the
/// embedding splits into full 64-wide blocks.
const BYTES_VOCAB_PADDED: u32 = 320;
/// GPT-2's 50 257 ids padded to a multiple of 64.
const GPT2_VOCAB_PADDED: u32 = 50_304;

impl Preset {
    /// Every preset, in size order.
    pub const ALL: [Preset; 4] = [Preset::Test, Preset::Small, Preset::Base150m, Preset::Large1b];

    /// The name used in config files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Test => "test",
            Preset::Small => "small",
            Preset::Base150m => "150m",
            Preset::Large1b => "1b",
        }
    }

    /// `test, small, 150m, 1b`.
    pub fn names() -> String {
        Self::ALL.map(Preset::name).join(", ")
    }

    /// Parses a preset name.
    pub fn from_name(name: &str) -> Option<Preset> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The full default config of this preset.
    pub fn config(self) -> SubnetConfig {
        let (model, tokenizer, sequence_length) = self.model();
        SubnetConfig {
            preset: self,
            model,
            data: DataConfig { tokenizer: tokenizer.to_string(), sequence_length, dataset_id: None },
            training: self.training(),
            compression: CompressionConfig {
                chunk: 64,
                topk: 64,
                quantization_bits: Some(2),
                quantization_range: 6.0,
                dct: false,
                error_feedback_decay: 0.95,
            },
            windows: self.windows(),
            gauntlet: gauntlet(),
            weights: WeightsConfig {
                burn_uid: 0,
                burn_share: 0.5,
                scheme: WeightScheme::Tiers,
                tiers: TierWeights {
                    gather_peers: 20,
                    reserve_peers: 10,
                    gather_share: 0.75,
                    top_ratio: 2.0,
                    reserve_decay: 0.5,
                },
                power: PowerWeights { exponent: 2.0 },
                windows_per_weights: 2,
                version_key: 0,
            },
            storage: StorageConfig {
                url: "ferrum-data/store".to_string(),
                dataset_url: "ferrum-data/dataset".to_string(),
                timeout_secs: 120,
                connect_timeout_secs: 10,
                max_retries: 5,
                retry_backoff_ms: 250,
                max_object_bytes: 8 << 30,
            },
        }
    }

    fn model(self) -> (ModelConfig, &'static str, u32) {
        let shape = |vocab_size, hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads| ModelConfig {
            vocab_size,
            hidden_size,
            intermediate_size,
            num_layers,
            num_heads,
            num_kv_heads,
            rope_theta: 10_000.0,
            norm_eps: 1e-5,
            tie_embeddings: true,
        };
        match self {
            Preset::Test => (shape(BYTES_VOCAB_PADDED, 64, 192, 2, 4, 2), "bytes", 64),
            Preset::Small => (shape(BYTES_VOCAB_PADDED, 256, 768, 6, 8, 4), "bytes", 256),
            Preset::Base150m => (shape(GPT2_VOCAB_PADDED, 1024, 2688, 12, 16, 16), "gpt2", 1024),
            Preset::Large1b => (shape(GPT2_VOCAB_PADDED, 2048, 8192, 16, 16, 8), "gpt2", 2048),
        }
    }

    fn training(self) -> TrainingConfig {
        // (inner_steps, batch, micro_batch, lr, warmup, cosine)
        let (inner_steps, batch_size, micro_batch_size, learning_rate, warmup_steps, cosine_steps) = match self {
            Preset::Test => (2, 4, 2, 3e-3, 4, 1_000),
            Preset::Small => (20, 16, 8, 1e-3, 200, 40_000),
            Preset::Base150m => (30, 64, 8, 6e-4, 1_500, 140_000),
            Preset::Large1b => (30, 192, 8, 4e-4, 1_500, 140_000),
        };
        TrainingConfig {
            inner_steps,
            batch_size,
            micro_batch_size,
            learning_rate,
            warmup_steps,
            cosine_steps,
            min_lr_factor: 0.1,
            adam_beta1: 0.9,
            adam_beta2: 0.95,
            adam_eps: 1e-8,
            weight_decay: 0.1,
            grad_clip: Some(1.0),
            outer_learning_rate: 1.0,
        }
    }

    fn windows(self) -> WindowConfig {
        let (blocks_per_window, put_window_secs) = match self {
            Preset::Test => (3, 10),
            Preset::Small => (10, 30),
            Preset::Base150m => (25, 45),
            Preset::Large1b => (50, 70),
        };
        WindowConfig { blocks_per_window, put_window_secs, block_time_secs: 12.0 }
    }
}

fn gauntlet() -> GauntletConfig {
    GauntletConfig {
        own_eval_samples: 8,
        random_eval_samples: 8,
        order_eval_samples: 4,
        order_gap: 0.1,
        eval_lr_factor: 0.2,
        uids_per_window: 20,
        max_eval_gap: 10,
        binary_reference_peers: 3,
        binary_ema_alpha: 0.05,
        binary_zero_threshold: 0.1,
        binary_warmup_windows: 10,
        rating_floor: 1.0,
        param_change_alpha: 0.2,
        openskill: OpenSkillConfig { beta: 7.0, tau: 0.1, mu: 25.0, sigma: 25.0 / 3.0 },
        sync: SyncConfig { max_steps_behind: 2.0, exponent: 2.5, slash_steps_behind: 2.0 },
        penalties: PenaltyConfig {
            missing_upload: 0.75,
            missing_upload_repeat: 0.5,
            missing_rating_score: -99.0,
            missing_lookback_windows: 8,
            missing_exclusion_windows: 20,
            negative_streak_exclusion: 3,
            poor_sync: 0.75,
            inactivity: 0.75,
            inactivity_reset_windows: 3,
            score_zero_threshold: 1e-4,
            gather_success_threshold: 0.4,
        },
        copy: CopyConfig {
            overlap_threshold: 0.4,
            high_multiplier: 0.5,
            reset_overlap: 0.5,
            exclude_overlap: 0.6,
            exclusion_windows: 200,
            grace_steps: 20,
            duplicate_distance: 0.25,
        },
    }
}
