//! Range and consistency rules. Each violation names the field and the rule it broke.

use std::fmt;

use super::{SubnetConfig, WeightScheme};
use crate::params;

/// One broken rule.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Dotted path, e.g. `compression.topk`.
    pub field: String,
    /// What the value must satisfy, with the offending value.
    pub rule: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.rule)
    }
}

#[derive(Default)]
struct Rules(Vec<FieldError>);

impl Rules {
    fn check(&mut self, ok: bool, field: &str, rule: impl FnOnce() -> String) {
        if !ok {
            self.0.push(FieldError { field: field.to_string(), rule: rule() });
        }
    }

    fn positive<T: PartialOrd + Default + fmt::Display + Copy>(&mut self, field: &str, v: T) {
        self.check(v > T::default(), field, || format!("must be greater than 0, got {v}"));
    }

    fn finite_positive(&mut self, field: &str, v: f64) {
        self.check(v.is_finite() && v > 0.0, field, || format!("must be a finite number greater than 0, got {v}"));
    }

    fn non_negative(&mut self, field: &str, v: f64) {
        self.check(v.is_finite() && v >= 0.0, field, || format!("must be a finite number at least 0, got {v}"));
    }

    /// lo ≤ v ≤ hi (with open ends where asked).
    fn range(&mut self, field: &str, v: f64, lo: f64, lo_open: bool, hi: f64, hi_open: bool) {
        let above = if lo_open { v > lo } else { v >= lo };
        let below = if hi_open { v < hi } else { v <= hi };
        self.check(v.is_finite() && above && below, field, || {
            let l = if lo_open { "(" } else { "[" };
            let h = if hi_open { ")" } else { "]" };
            format!("must be in {l}{lo}, {hi}{h}, got {v}")
        });
    }

    fn fraction(&mut self, field: &str, v: f64) {
        self.range(field, v, 0.0, false, 1.0, false);
    }
}

pub(super) fn validate(c: &SubnetConfig) -> Result<(), Vec<FieldError>> {
    let mut r = Rules::default();
    model(c, &mut r);
    data(c, &mut r);
    training(c, &mut r);
    compression(c, &mut r);
    windows(c, &mut r);
    gauntlet(c, &mut r);
    weights(c, &mut r);
    storage(c, &mut r);
    if r.0.is_empty() { Ok(()) } else { Err(r.0) }
}

fn model(c: &SubnetConfig, r: &mut Rules) {
    let m = &c.model;
    r.positive("model.vocab_size", m.vocab_size);
    r.positive("model.hidden_size", m.hidden_size);
    r.positive("model.intermediate_size", m.intermediate_size);
    r.positive("model.num_layers", m.num_layers);
    r.positive("model.num_heads", m.num_heads);
    r.positive("model.num_kv_heads", m.num_kv_heads);
    if m.num_heads > 0 {
        r.check(m.hidden_size.is_multiple_of(m.num_heads), "model.num_heads", || {
            format!("must divide model.hidden_size ({}), got {}", m.hidden_size, m.num_heads)
        });
        let head_dim = m.hidden_size / m.num_heads;
        r.check(!m.hidden_size.is_multiple_of(m.num_heads) || head_dim.is_multiple_of(2), "model.num_heads", || {
            format!("must leave an even head dimension for rotary embedding, got head_dim {head_dim}")
        });
    }
    if m.num_kv_heads > 0 {
        r.check(
            m.num_kv_heads <= m.num_heads && m.num_heads.is_multiple_of(m.num_kv_heads),
            "model.num_kv_heads",
            || format!("must divide model.num_heads ({}), got {}", m.num_heads, m.num_kv_heads),
        );
    }
    r.finite_positive("model.rope_theta", m.rope_theta);
    r.range("model.norm_eps", m.norm_eps, 0.0, true, 1.0, true);
}

fn data(c: &SubnetConfig, r: &mut Rules) {
    let d = &c.data;
    let known =
        matches!(d.tokenizer.as_str(), "bytes" | "gpt2") || d.tokenizer.strip_prefix("hf:").is_some_and(is_hex32);
    r.check(known, "data.tokenizer", || {
        format!("must be `bytes`, `gpt2` or `hf:<64 hex digits>`, got `{}`", d.tokenizer)
    });
    let min_vocab = match d.tokenizer.as_str() {
        "bytes" => Some(257),
        "gpt2" => Some(50_257),
        _ => None,
    };
    if let Some(min) = min_vocab {
        r.check(c.model.vocab_size >= min, "model.vocab_size", || {
            format!("must be at least {min} for tokenizer `{}`, got {}", d.tokenizer, c.model.vocab_size)
        });
    }
    r.check(d.sequence_length >= 2, "data.sequence_length", || {
        format!("must be at least 2 (one input and one target), got {}", d.sequence_length)
    });
    if let Some(id) = &d.dataset_id {
        r.check(is_hex32(id), "data.dataset_id", || {
            format!("must be 64 hex digits (the manifest's blake3) or null, got `{id}`")
        });
    }
}

fn is_hex32(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn training(c: &SubnetConfig, r: &mut Rules) {
    let t = &c.training;
    r.positive("training.inner_steps", t.inner_steps);
    r.positive("training.batch_size", t.batch_size);
    r.positive("training.micro_batch_size", t.micro_batch_size);
    if t.micro_batch_size > 0 {
        r.check(t.batch_size.is_multiple_of(t.micro_batch_size), "training.micro_batch_size", || {
            format!("must divide training.batch_size ({}), got {}", t.batch_size, t.micro_batch_size)
        });
    }
    r.finite_positive("training.learning_rate", t.learning_rate);
    r.positive("training.cosine_steps", t.cosine_steps);
    r.fraction("training.min_lr_factor", t.min_lr_factor);
    r.range("training.adam_beta1", t.adam_beta1, 0.0, false, 1.0, true);
    r.range("training.adam_beta2", t.adam_beta2, 0.0, false, 1.0, true);
    r.range("training.adam_eps", t.adam_eps, 0.0, true, 1.0, true);
    r.non_negative("training.weight_decay", t.weight_decay);
    if let Some(clip) = t.grad_clip {
        r.finite_positive("training.grad_clip", clip);
    }
    r.finite_positive("training.outer_learning_rate", t.outer_learning_rate);
}

fn compression(c: &SubnetConfig, r: &mut Rules) {
    let k = &c.compression;
    r.check((1..=4096).contains(&k.chunk), "compression.chunk", || format!("must be in [1, 4096], got {}", k.chunk));
    let block = u64::from(k.chunk) * u64::from(k.chunk);
    r.check(k.topk >= 1 && u64::from(k.topk) <= block, "compression.topk", || {
        format!("must be in [1, chunk² = {block}] (a block holds chunk² values), got {}", k.topk)
    });
    if (1..=4096).contains(&k.chunk) && u64::from(k.topk) <= block && c.model.num_heads > 0 {
        // The chunk is a target: a dimension without a divisor near it gets smaller blocks.
        for p in params::layout(&c.model).iter().filter(|p| p.shape.len() == 2) {
            let elems = params::block_elements(&p.shape, k.chunk as usize);
            if (k.topk as usize) > elems {
                let sides: Vec<String> =
                    p.shape.iter().map(|&d| params::block_side(d, k.chunk as usize).to_string()).collect();
                r.check(false, "compression.topk", || {
                    format!(
                        "is larger than the {} block of {} (shape {:?}); pick model sizes with a divisor near compression.chunk",
                        sides.join("×"),
                        p.path,
                        p.shape
                    )
                });
                break;
            }
        }
    }
    if let Some(bits) = k.quantization_bits {
        r.check((1..=8).contains(&bits), "compression.quantization_bits", || {
            format!("must be in [1, 8] or null for f32 values, got {bits}")
        });
    }
    r.finite_positive("compression.quantization_range", k.quantization_range);
    r.fraction("compression.error_feedback_decay", k.error_feedback_decay);
}

fn windows(c: &SubnetConfig, r: &mut Rules) {
    let w = &c.windows;
    r.positive("windows.blocks_per_window", w.blocks_per_window);
    r.positive("windows.put_window_secs", w.put_window_secs);
    r.finite_positive("windows.block_time_secs", w.block_time_secs);
    if w.blocks_per_window > 0 && w.block_time_secs.is_finite() && w.block_time_secs > 0.0 {
        let offset = crate::window::seed_offset_blocks(w);
        r.check(offset < w.blocks_per_window, "windows.put_window_secs", || {
            format!(
                "must close well inside the next window: the random-data seed block lies {offset} blocks into it \
                 but a window has only {} blocks of {} s",
                w.blocks_per_window, w.block_time_secs
            )
        });
    }
}

fn gauntlet(c: &SubnetConfig, r: &mut Rules) {
    let g = &c.gauntlet;
    r.positive("gauntlet.own_eval_samples", g.own_eval_samples);
    r.positive("gauntlet.random_eval_samples", g.random_eval_samples);
    let assigned = c.samples_per_window();
    r.check(assigned == 0 || u64::from(g.own_eval_samples) <= assigned, "gauntlet.own_eval_samples", || {
        format!(
            "must not exceed the samples a miner is assigned (inner_steps × batch_size = {assigned}), got {}",
            g.own_eval_samples
        )
    });
    r.check(g.order_eval_samples <= g.own_eval_samples, "gauntlet.order_eval_samples", || {
        format!("must not exceed own_eval_samples ({}), got {}", g.own_eval_samples, g.order_eval_samples)
    });
    r.range("gauntlet.order_gap", g.order_gap, 0.0, false, 10.0, false);
    r.finite_positive("gauntlet.eval_lr_factor", g.eval_lr_factor);
    r.positive("gauntlet.uids_per_window", g.uids_per_window);
    r.positive("gauntlet.max_eval_gap", g.max_eval_gap);
    r.range("gauntlet.binary_ema_alpha", g.binary_ema_alpha, 0.0, true, 1.0, false);
    r.range("gauntlet.binary_zero_threshold", g.binary_zero_threshold, -1.0, false, 1.0, false);
    r.non_negative("gauntlet.rating_floor", g.rating_floor);
    r.range("gauntlet.param_change_alpha", g.param_change_alpha, 0.0, true, 1.0, false);
    r.finite_positive("gauntlet.openskill.beta", g.openskill.beta);
    r.non_negative("gauntlet.openskill.tau", g.openskill.tau);
    r.check(g.openskill.mu.is_finite(), "gauntlet.openskill.mu", || format!("must be finite, got {}", g.openskill.mu));
    r.finite_positive("gauntlet.openskill.sigma", g.openskill.sigma);
    r.finite_positive("gauntlet.sync.max_steps_behind", g.sync.max_steps_behind);
    r.finite_positive("gauntlet.sync.exponent", g.sync.exponent);
    r.finite_positive("gauntlet.sync.slash_steps_behind", g.sync.slash_steps_behind);
    let p = &g.penalties;
    r.fraction("gauntlet.penalties.missing_upload", p.missing_upload);
    r.fraction("gauntlet.penalties.missing_upload_repeat", p.missing_upload_repeat);
    r.check(p.missing_rating_score.is_finite(), "gauntlet.penalties.missing_rating_score", || {
        format!("must be finite, got {}", p.missing_rating_score)
    });
    r.positive("gauntlet.penalties.missing_lookback_windows", p.missing_lookback_windows);
    r.positive("gauntlet.penalties.negative_streak_exclusion", p.negative_streak_exclusion);
    r.fraction("gauntlet.penalties.poor_sync", p.poor_sync);
    r.fraction("gauntlet.penalties.inactivity", p.inactivity);
    r.positive("gauntlet.penalties.inactivity_reset_windows", p.inactivity_reset_windows);
    r.range("gauntlet.penalties.score_zero_threshold", p.score_zero_threshold, 0.0, false, 1.0, true);
    r.fraction("gauntlet.penalties.gather_success_threshold", p.gather_success_threshold);
    let k = &g.copy;
    r.range("gauntlet.copy.overlap_threshold", k.overlap_threshold, 0.0, true, 1.0, false);
    r.fraction("gauntlet.copy.high_multiplier", k.high_multiplier);
    r.range("gauntlet.copy.duplicate_distance", k.duplicate_distance, 0.0, false, 1.0, true);
    r.check(
        k.overlap_threshold <= k.reset_overlap && k.reset_overlap <= k.exclude_overlap && k.exclude_overlap <= 1.0,
        "gauntlet.copy.reset_overlap",
        || {
            format!(
                "must satisfy overlap_threshold ≤ reset_overlap ≤ exclude_overlap ≤ 1, got {} ≤ {} ≤ {}",
                k.overlap_threshold, k.reset_overlap, k.exclude_overlap
            )
        },
    );
}

fn weights(c: &SubnetConfig, r: &mut Rules) {
    let w = &c.weights;
    r.fraction("weights.burn_share", w.burn_share);
    r.positive("weights.windows_per_weights", w.windows_per_weights);
    let t = &w.tiers;
    if w.scheme == WeightScheme::Tiers {
        r.positive("weights.tiers.gather_peers", t.gather_peers);
    }
    r.fraction("weights.tiers.gather_share", t.gather_share);
    r.check(t.top_ratio.is_finite() && t.top_ratio >= 1.0, "weights.tiers.top_ratio", || {
        format!("must be at least 1 (rank 1 over rank gather_peers), got {}", t.top_ratio)
    });
    r.range("weights.tiers.reserve_decay", t.reserve_decay, 0.0, true, 1.0, false);
    r.finite_positive("weights.power.exponent", w.power.exponent);
}

fn storage(c: &SubnetConfig, r: &mut Rules) {
    let s = &c.storage;
    for (field, url) in [("storage.url", &s.url), ("storage.dataset_url", &s.dataset_url)] {
        if let Err(e) = crate::location::Location::parse(url) {
            r.check(false, field, || e.to_string());
        }
    }
    r.positive("storage.timeout_secs", s.timeout_secs);
    r.positive("storage.connect_timeout_secs", s.connect_timeout_secs);
    r.check(s.connect_timeout_secs <= s.timeout_secs, "storage.connect_timeout_secs", || {
        format!("must not exceed storage.timeout_secs ({}), got {}", s.timeout_secs, s.connect_timeout_secs)
    });
    r.check(s.max_retries <= 20, "storage.max_retries", || format!("must be at most 20, got {}", s.max_retries));
    r.check(s.max_object_bytes >= 1 << 20, "storage.max_object_bytes", || {
        format!("must be at least 1 MiB, got {}", s.max_object_bytes)
    });
}
