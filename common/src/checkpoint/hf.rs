//! The Hugging Face form of a model: `config.json` for `LlamaForCausalLM`, safetensors weights
//! with the metadata `transformers` expects (`format: pt`), and the `bytes` tokenizer as a
//! `tokenizer.json`. Pure functions; `ferrum export --hf` writes their output.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::config::SubnetConfig;
use crate::model::MasterModel;

use super::{CheckpointError, to_safetensors};

/// The end-of-document token's text in exported tokenizers (GPT-2's spelling, which the `gpt2`
/// tokenizer already uses).
pub const EOS_TEXT: &str = "<|endoftext|>";

/// `config.json` for `transformers`' `LlamaForCausalLM`. Both the 4.x keys (`rope_theta`,
/// `rope_scaling`, `torch_dtype`) and the 5.x ones (`rope_parameters`, `dtype`) are written, so
/// either line reads it. `eos` is the end-of-document id (also used as BOS: the model never
/// sees a separate BOS token), `null` when unknown.
pub fn config_json(config: &SubnetConfig, eos: Option<u32>) -> Value {
    let m = &config.model;
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": m.vocab_size,
        "hidden_size": m.hidden_size,
        "intermediate_size": m.intermediate_size,
        "num_hidden_layers": m.num_layers,
        "num_attention_heads": m.num_heads,
        "num_key_value_heads": m.num_kv_heads,
        "head_dim": m.hidden_size / m.num_heads.max(1),
        "hidden_act": "silu",
        "max_position_embeddings": config.data.sequence_length,
        "rms_norm_eps": m.norm_eps,
        "rope_theta": m.rope_theta,
        "rope_scaling": null,
        "rope_parameters": { "rope_type": "default", "rope_theta": m.rope_theta },
        "attention_bias": false,
        "attention_dropout": 0.0,
        "mlp_bias": false,
        "pretraining_tp": 1,
        "initializer_range": 0.02,
        "tie_word_embeddings": m.tie_embeddings,
        "use_cache": true,
        "torch_dtype": "float32",
        "dtype": "float32",
        "bos_token_id": eos,
        "eos_token_id": eos,
    })
}

/// `generation_config.json`: stop at the end of a document.
pub fn generation_config_json(eos: Option<u32>) -> Value {
    json!({ "bos_token_id": eos, "eos_token_id": eos })
}

/// The weights as `transformers` loads them: Hugging Face names, f32, metadata `format: pt`
/// (4.x refuses any other format). A tied head is left out; `tie_word_embeddings` restores it.
pub fn weights(model: &MasterModel) -> Result<Vec<u8>, CheckpointError> {
    to_safetensors(model, HashMap::from([("format".to_string(), "pt".to_string())]))
}

/// GPT-2's reversible map from bytes to printable characters, which byte-level BPE vocabularies
/// are written in.
pub fn byte_chars() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        out[usize::from(b)] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(256 + extra).unwrap_or('\u{FFFD}');
            extra += 1;
            c
        };
    }
    out
}

/// A `tokenizer.json` for a byte-level BPE vocabulary: `vocab` (token bytes by id), `merges`
/// (pairs of token byte strings, in priority order), the GPT-2 split pattern when `split` is
/// set, and the end-of-document token at id `eos`.
pub fn byte_level_tokenizer(vocab: &[Vec<u8>], merges: &[(Vec<u8>, Vec<u8>)], eos: u32, split: bool) -> Value {
    let chars = byte_chars();
    let text = |bytes: &[u8]| -> String { bytes.iter().map(|b| chars[usize::from(*b)]).collect() };
    let mut vocab: serde_json::Map<String, Value> =
        vocab.iter().enumerate().map(|(id, bytes)| (text(bytes), json!(id))).collect();
    // As in GPT-2's own tokenizer.json: the end-of-document token is an entry of the vocabulary
    // too, not only an added token.
    vocab.insert(EOS_TEXT.to_string(), json!(eos));
    let merges: Vec<Value> = merges.iter().map(|(a, b)| json!([text(a), text(b)])).collect();
    let byte_level =
        json!({ "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": split });
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{
            "id": eos, "content": EOS_TEXT, "single_word": false, "lstrip": false, "rstrip": false,
            "normalized": false, "special": true
        }],
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": null,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges
        }
    })
}

/// The `bytes` tokenizer (ids 0-255 are the bytes, 256 ends a document): a byte-level BPE with
/// one token per byte and no merges.
pub fn bytes_tokenizer() -> Value {
    let vocab: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    byte_level_tokenizer(&vocab, &[], 256, false)
}

/// `tokenizer_config.json` for a `PreTrainedTokenizerFast` over `tokenizer.json`.
pub fn tokenizer_config_json(max_length: u32) -> Value {
    json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOS_TEXT,
        "eos_token": EOS_TEXT,
        "model_max_length": max_length,
        "clean_up_tokenization_spaces": false,
        "add_bos_token": false,
        "add_eos_token": false,
        // LLaMA takes no token_type_ids: without this list the fast tokenizer returns them and
        // transformers 4.x's `generate(**tokenizer(prompt))` refuses the unused argument.
        "model_input_names": ["input_ids", "attention_mask"]
    })
}

/// `special_tokens_map.json`.
pub fn special_tokens_json() -> Value {
    json!({ "bos_token": EOS_TEXT, "eos_token": EOS_TEXT })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;

    #[test]
    fn byte_chars_are_gpt2s_map() {
        let c = byte_chars();
        assert_eq!((c[usize::from(b'A')], c[usize::from(b' ')], c[usize::from(b'\n')]), ('A', 'Ġ', 'Ċ'));
        assert_eq!(c[0], 'Ā');
        let distinct: std::collections::HashSet<char> = c.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }

    #[test]
    fn config_names_llama_and_the_tied_head() {
        let mut cfg = Preset::Test.config();
        cfg.model.tie_embeddings = true;
        let v = config_json(&cfg, Some(256));
        assert_eq!(v["model_type"], "llama");
        assert_eq!(v["tie_word_embeddings"], true);
        assert_eq!(v["num_key_value_heads"], cfg.model.num_kv_heads);
        assert_eq!(v["max_position_embeddings"], cfg.data.sequence_length);
        assert_eq!(v["eos_token_id"], 256);
    }

    #[test]
    fn weights_carry_format_pt() {
        let cfg = Preset::Test.config();
        let model = MasterModel::genesis(&cfg);
        let bytes = weights(&model).expect("weights");
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
        let meta = meta.metadata().clone().expect("metadata");
        assert_eq!(meta.get("format").map(String::as_str), Some("pt"));
    }
}
