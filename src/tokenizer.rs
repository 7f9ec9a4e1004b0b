//! Text tokenizers for `ferrum data prepare`: raw bytes (257 ids), GPT-2 BPE (offline, from
//! tiktoken-rs's bundled ranks) and any Hugging Face `tokenizer.json`.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use ferrum_common::data::TokenizerInfo;

/// End-of-document id of the byte tokenizer.
const BYTES_EOS: u32 = 256;
/// GPT-2's `<|endoftext|>`.
const GPT2_EOS: u32 = 50_256;
const GPT2_VOCAB: u32 = 50_257;

/// A loaded tokenizer.
pub enum Tokenizer {
    Bytes,
    Gpt2(Box<tiktoken_rs::CoreBPE>),
    Hf { inner: Box<tokenizers::Tokenizer>, info: TokenizerInfo },
}

impl Tokenizer {
    /// `bytes`, `gpt2`, or a path to a `tokenizer.json` (with `eos` naming its end-of-document
    /// token when it is not one of the usual ones).
    pub fn load(spec: &str, eos: Option<&str>) -> Result<Tokenizer> {
        match spec {
            "bytes" => Ok(Tokenizer::Bytes),
            "gpt2" => {
                Ok(Tokenizer::Gpt2(Box::new(tiktoken_rs::r50k_base().map_err(|e| anyhow!("loading GPT-2 BPE: {e}"))?)))
            }
            path if path.ends_with(".json") => Self::load_hf(Path::new(path), eos),
            other => bail!("unknown tokenizer `{other}`: use bytes, gpt2 or a path to a tokenizer.json"),
        }
    }

    fn load_hf(path: &Path, eos: Option<&str>) -> Result<Tokenizer> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| anyhow!("{} is not a Hugging Face tokenizer.json: {e}", path.display()))?;
        let candidates: Vec<&str> = match eos {
            Some(e) => vec![e],
            None => vec!["<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "[SEP]"],
        };
        let eos_token = candidates.iter().find_map(|t| inner.token_to_id(t)).ok_or_else(|| {
            anyhow!("{}: no end-of-document token among {candidates:?}; pass --eos TOKEN", path.display())
        })?;
        let hash = hex::encode(blake3::hash(&bytes).as_bytes());
        let info =
            TokenizerInfo { id: format!("hf:{hash}"), vocab_size: inner.get_vocab_size(true) as u32, eos_token, hash };
        Ok(Tokenizer::Hf { inner: Box::new(inner), info })
    }

    /// Identity recorded in the manifest.
    pub fn info(&self) -> TokenizerInfo {
        match self {
            Tokenizer::Bytes => TokenizerInfo {
                id: "bytes".into(),
                vocab_size: 257,
                eos_token: BYTES_EOS,
                hash: hex::encode(blake3::hash(b"ferrum bytes tokenizer: ids 0-255 are bytes, 256 is EOS").as_bytes()),
            },
            Tokenizer::Gpt2(bpe) => {
                // The ranks are the vocabulary in id order; hashing each token's bytes (length
                // prefixed) pins the exact BPE that was used.
                let mut h = blake3::Hasher::new();
                for id in 0..GPT2_EOS {
                    let b = bpe.decode_bytes(&[id]).unwrap_or_default();
                    h.update(&(b.len() as u32).to_le_bytes());
                    h.update(&b);
                }
                TokenizerInfo {
                    id: "gpt2".into(),
                    vocab_size: GPT2_VOCAB,
                    eos_token: GPT2_EOS,
                    hash: hex::encode(h.finalize().as_bytes()),
                }
            }
            Tokenizer::Hf { info, .. } => info.clone(),
        }
    }

    /// Token ids of a piece of text (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(match self {
            Tokenizer::Bytes => text.bytes().map(u32::from).collect(),
            Tokenizer::Gpt2(bpe) => bpe.encode_ordinary(text),
            Tokenizer::Hf { inner, .. } => {
                inner.encode_fast(text, false).map_err(|e| anyhow!("tokenizing: {e}"))?.get_ids().to_vec()
            }
        })
    }

    /// Text of a token sequence, for display (invalid UTF-8 shown lossily, EOS as a marker).
    pub fn decode(&self, tokens: &[u32]) -> String {
        match self {
            Tokenizer::Bytes => tokens
                .split(|&t| t == BYTES_EOS)
                .map(|run| {
                    let bytes: Vec<u8> = run.iter().map(|&t| t as u8).collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                })
                .collect::<Vec<_>>()
                .join("⟨eos⟩"),
            Tokenizer::Gpt2(bpe) => {
                let bytes = bpe.decode_bytes(tokens).unwrap_or_default();
                String::from_utf8_lossy(&bytes).replace("<|endoftext|>", "⟨eos⟩")
            }
            Tokenizer::Hf { inner, .. } => inner.decode(tokens, false).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let t = Tokenizer::Bytes;
        let ids = t.encode("héllo").expect("encode");
        assert_eq!(ids.len(), 6);
        let mut with_eos = ids.clone();
        with_eos.push(BYTES_EOS);
        with_eos.extend(t.encode("x").expect("encode"));
        assert_eq!(t.decode(&with_eos), "héllo⟨eos⟩x");
        assert_eq!(t.info().vocab_size, 257);
    }

    #[test]
    fn gpt2_is_offline_and_known() {
        let t = Tokenizer::load("gpt2", None).expect("gpt2");
        // "Hello world" is [15496, 995] in GPT-2's vocabulary.
        assert_eq!(t.encode("Hello world").expect("encode"), vec![15496, 995]);
        assert_eq!(t.decode(&[15496, 995, GPT2_EOS]), "Hello world⟨eos⟩");
        let info = t.info();
        assert_eq!((info.vocab_size, info.eos_token), (50_257, 50_256));
        assert_eq!(info.hash, t.info().hash);
    }

    /// A minimal Hugging Face tokenizer.json (word-level), parsed by the real tokenizers crate.
    const WORD_LEVEL: &str = r#"{
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": 2, "content": "</s>", "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null, "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"hello": 0, "world": 1, "</s>": 2, "[UNK]": 3},
                  "unk_token": "[UNK]"}
    }"#;

    #[test]
    fn hugging_face_tokenizer_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, WORD_LEVEL).expect("write");
        let t = Tokenizer::load(path.to_str().expect("utf8"), None).expect("load");
        let info = t.info();
        assert_eq!(info.id, format!("hf:{}", hex::encode(blake3::hash(WORD_LEVEL.as_bytes()).as_bytes())));
        assert_eq!((info.vocab_size, info.eos_token), (4, 2));
        assert_eq!(t.encode("hello world again").expect("encode"), vec![0, 1, 3]);
        // A file whose end-of-document token is unusual needs --eos.
        let odd = WORD_LEVEL.replace("</s>", "<end>");
        std::fs::write(&path, &odd).expect("write");
        let err = Tokenizer::load(path.to_str().expect("utf8"), None).err().expect("no usual eos");
        assert!(err.to_string().contains("--eos"), "{err}");
        let t = Tokenizer::load(path.to_str().expect("utf8"), Some("<end>")).expect("explicit eos");
        assert_eq!(t.info().eos_token, 2);
        std::fs::write(&path, "{not json").expect("write");
        assert!(Tokenizer::load(path.to_str().expect("utf8"), None).is_err());
    }

    #[test]
    fn unknown_spec_is_an_error() {
        assert!(Tokenizer::load("sentencepiece", None).is_err());
        assert!(Tokenizer::load("/nonexistent/tokenizer.json", None).is_err());
    }
}
