//! `ferrum export --hf`: a checkpoint as a folder that Hugging Face `transformers` loads with
//! `AutoModelForCausalLM.from_pretrained` (config, safetensors weights, tokenizer files).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ferrum_common::SubnetConfig;
use ferrum_common::checkpoint::{self, CheckpointManifest, hf};
use ferrum_common::keys::Namespace;
use ferrum_common::model::MasterModel;
use ferrum_common::storage::Store;

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The folder to write.
    pub out: PathBuf,
    /// A checkpoint's folder (the one holding `manifest.json`): a path or a storage URL. Default:
    /// the newest checkpoint in the config's `storage.url` for `netuid`.
    pub checkpoint: Option<String>,
    pub netuid: u16,
    /// The `tokenizer.json` of an `hf:<hash>` tokenizer (checked against the hash).
    pub tokenizer: Option<PathBuf>,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Exported {
    pub manifest: CheckpointManifest,
    pub files: Vec<String>,
    /// Why no tokenizer files were written, when none were.
    pub tokenizer_note: Option<String>,
}

/// Loads and verifies the checkpoint, then writes the Hugging Face folder.
pub async fn export_hf(config: &SubnetConfig, opts: &ExportOptions) -> Result<Exported> {
    let (model, manifest) = load(config, opts).await?;
    std::fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    let (tokenizer, note) = tokenizer_files(config, opts.tokenizer.as_deref())?;
    let eos = eos_id(config);
    let mut files = Vec::new();
    let mut write = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = opts.out.join(name);
        let tmp = opts.out.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        files.push(name.to_string());
        Ok(())
    };
    let json = |v: &serde_json::Value| serde_json::to_vec_pretty(v).map_err(anyhow::Error::from);
    write("model.safetensors", &hf::weights(&model)?)?;
    write("config.json", &json(&hf::config_json(config, eos))?)?;
    write("generation_config.json", &json(&hf::generation_config_json(eos))?)?;
    if let Some(tokenizer) = tokenizer {
        write("tokenizer.json", &tokenizer)?;
        write("tokenizer_config.json", &json(&hf::tokenizer_config_json(config.data.sequence_length))?)?;
        write("special_tokens_map.json", &json(&hf::special_tokens_json())?)?;
    }
    Ok(Exported { manifest, files, tokenizer_note: note })
}

async fn load(config: &SubnetConfig, opts: &ExportOptions) -> Result<(MasterModel, CheckpointManifest)> {
    match &opts.checkpoint {
        Some(folder) => {
            let store = Store::open(folder, &config.storage).with_context(|| format!("opening {folder}"))?;
            checkpoint::load_folder(&store, config)
                .await
                .map_err(|e| match e {
                    checkpoint::CheckpointError::Config { .. } => anyhow::anyhow!(
                        "{e}: pass the config the checkpoint was made under with --config (a devnet writes it to \
                         DIR/config.json, a localnet to DIR/subnet.json)"
                    ),
                    e => e.into(),
                })
                .with_context(|| format!("loading the checkpoint in {folder}"))
        }
        None => {
            let store = Store::open(&config.storage.url, &config.storage)?;
            let ns = Namespace::new(opts.netuid, &config.hash());
            let Some(window) = checkpoint::latest(&store, &ns).await? else {
                bail!(
                    "no checkpoint under {} for netuid {} and this config; pass --checkpoint FOLDER",
                    config.storage.url,
                    opts.netuid
                );
            };
            Ok(checkpoint::load(&store, &ns, config, window).await?)
        }
    }
}

/// The end-of-document id of the config's tokenizer, where the tokenizer id says it (an
/// `hf:` tokenizer's is in its own files).
fn eos_id(config: &SubnetConfig) -> Option<u32> {
    match config.data.tokenizer.as_str() {
        "bytes" => Some(256),
        "gpt2" => Some(50256),
        _ => None,
    }
}

/// `tokenizer.json` bytes for the config's tokenizer, or why there are none.
fn tokenizer_files(config: &SubnetConfig, given: Option<&Path>) -> Result<(Option<Vec<u8>>, Option<String>)> {
    let id = config.data.tokenizer.as_str();
    match id {
        "bytes" => Ok((Some(serde_json::to_vec(&hf::bytes_tokenizer())?), None)),
        "gpt2" => Ok((Some(serde_json::to_vec(&gpt2_tokenizer()?)?), None)),
        _ => {
            let Some(hash) = id.strip_prefix("hf:") else { bail!("data.tokenizer {id}: unknown tokenizer") };
            let Some(path) = given else {
                return Ok((
                    None,
                    Some(format!("the config's tokenizer is {id}: pass its tokenizer.json with --tokenizer")),
                ));
            };
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let found = hex::encode(blake3::hash(&bytes).as_bytes());
            if found != hash {
                bail!("{} hashes to {found}, the config's tokenizer is hf:{hash}", path.display());
            }
            Ok((Some(bytes), None))
        }
    }
}

/// GPT-2's BPE (tiktoken's r50k ranks) as a Hugging Face byte-level BPE: each token's merge is
/// the split into two tokens that the ranks allow, ordered by the merged token's rank (the
/// conversion `transformers` uses for tiktoken vocabularies).
pub fn gpt2_tokenizer() -> Result<serde_json::Value> {
    let bpe = tiktoken_rs::r50k_base().map_err(|e| anyhow::anyhow!("loading GPT-2 BPE: {e}"))?;
    let vocab: Vec<Vec<u8>> = (0..50256u32)
        .map(|id| bpe.decode_bytes(&[id]).map_err(|e| anyhow::anyhow!("GPT-2 token {id}: {e}")))
        .collect::<Result<_>>()?;
    let rank: HashMap<&[u8], usize> = vocab.iter().enumerate().map(|(i, t)| (t.as_slice(), i)).collect();
    let mut merges: Vec<(usize, usize, usize)> = Vec::new();
    for (merged, token) in vocab.iter().enumerate().filter(|(_, t)| t.len() > 1) {
        let mut local: Vec<(usize, usize, usize)> =
            (1..token.len()).filter_map(|i| Some((*rank.get(&token[..i])?, *rank.get(&token[i..])?, merged))).collect();
        local.sort_unstable();
        merges.extend(local);
    }
    merges.sort_by_key(|m| m.2);
    let pairs: Vec<(Vec<u8>, Vec<u8>)> =
        merges.iter().map(|(a, b, _)| (vocab[*a].clone(), vocab[*b].clone())).collect();
    Ok(hf::byte_level_tokenizer(&vocab, &pairs, 50256, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(v: &serde_json::Value) -> tokenizers::Tokenizer {
        tokenizers::Tokenizer::from_bytes(serde_json::to_vec(v).expect("json")).expect("tokenizer.json loads")
    }

    const TEXT: &str = "Hello, world! It's 2026; naïve café — 12345 tokens\n\n  indented\tline's end.<|endoftext|>Next";

    #[test]
    fn the_bytes_tokenizer_gives_the_bytes_and_eos() {
        let t = load(&hf::bytes_tokenizer());
        let ids = t.encode(TEXT, false).expect("encode").get_ids().to_vec();
        let (body, tail) = TEXT.split_once("<|endoftext|>").expect("eos in text");
        let mut expected: Vec<u32> = body.bytes().map(u32::from).collect();
        expected.push(256);
        expected.extend(tail.bytes().map(u32::from));
        assert_eq!(ids, expected);
        assert_eq!(t.decode(&ids[..body.len()], false).expect("decode"), body);
    }

    #[test]
    fn the_gpt2_tokenizer_matches_tiktoken() {
        let t = load(&gpt2_tokenizer().expect("gpt2"));
        let bpe = tiktoken_rs::r50k_base().expect("r50k");
        let corpus = crate::synth::text(64 << 10, 7);
        for text in [TEXT.replace("<|endoftext|>", ""), corpus] {
            let ours = t.encode(text.as_str(), false).expect("encode").get_ids().to_vec();
            assert_eq!(ours, bpe.encode_ordinary(&text), "on {:?}…", &text[..40]);
        }
        assert_eq!(t.encode("a<|endoftext|>", false).expect("encode").get_ids(), &[64, 50256]);
    }
}
