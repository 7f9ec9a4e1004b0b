//! A deterministic synthetic English-like corpus for the quick start and tests: no download.
//!
//! Documents are short stories from a small grammar (subjects, verbs, objects, places, with
//! agreement and recurring characters), so a model has real structure to learn. The stream of
//! choices comes from BLAKE3's output, seeded by `seed`: the same seed gives the same bytes on
//! every machine.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

const NAMES: &[&str] = &["Ada", "Bruno", "Chen", "Dara", "Emil", "Farah", "Goran", "Hana", "Ivo", "Jun"];
const ADJECTIVES: &[&str] =
    &["old", "quiet", "bright", "small", "heavy", "curious", "patient", "rusty", "golden", "narrow", "busy", "cold"];
const NOUNS: &[&str] = &[
    "miner",
    "validator",
    "river",
    "lantern",
    "bridge",
    "garden",
    "engine",
    "letter",
    "market",
    "forge",
    "window",
    "ledger",
    "harbor",
    "tower",
    "field",
    "kettle",
];
/// (third person singular, plural, past)
const VERBS: &[(&str, &str, &str)] = &[
    ("builds", "build", "built"),
    ("repairs", "repair", "repaired"),
    ("watches", "watch", "watched"),
    ("carries", "carry", "carried"),
    ("paints", "paint", "painted"),
    ("counts", "count", "counted"),
    ("opens", "open", "opened"),
    ("follows", "follow", "followed"),
    ("measures", "measure", "measured"),
    ("guards", "guard", "guarded"),
];
const PLACES: &[&str] = &[
    "near the harbor",
    "in the old town",
    "behind the forge",
    "under the bridge",
    "at the market",
    "by the river",
    "on the hill",
    "inside the tower",
];
const TIMES: &[&str] =
    &["In the morning", "At noon", "Every evening", "Later that day", "Before dawn", "After the rain"];

/// A stream of choices.
struct Choices(blake3::OutputReader);

impl Choices {
    fn new(seed: u64) -> Self {
        let mut h = blake3::Hasher::new_derive_key("ferrum 2026-11 synthetic corpus v1");
        h.update(&seed.to_le_bytes());
        Choices(h.finalize_xof())
    }

    fn below(&mut self, n: usize) -> usize {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        // n is tiny next to 2^32, so the modulo bias is negligible and it is deterministic anyway.
        (u32::from_le_bytes(b) as usize) % n
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

fn sentence(c: &mut Choices, hero: &str, past: bool) -> String {
    let (singular, plural, past_form) = VERBS[c.below(VERBS.len())];
    let verb = if past { past_form } else { singular };
    let adj = c.pick(ADJECTIVES);
    let noun = c.pick(NOUNS);
    let place = c.pick(PLACES);
    match c.below(4) {
        0 => format!("{hero} {verb} the {adj} {noun} {place}."),
        1 => format!("{} {hero} {verb} a {noun}.", c.pick(TIMES)),
        2 => {
            let other = c.pick(NAMES);
            let verb = if past { past_form } else { plural };
            format!("{hero} and {other} {verb} the {noun} together {place}.")
        }
        _ => {
            let n = 2 + c.below(9);
            format!("The {adj} {noun} was {} by {hero}, {n} times in all.", past_form)
        }
    }
}

/// One document: a few sentences about one character, in one tense.
fn document(c: &mut Choices) -> String {
    let hero = c.pick(NAMES);
    let past = c.below(2) == 0;
    let n = 3 + c.below(8);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(sentence(c, hero, past));
    }
    out.join(" ")
}

/// About `bytes` of generated documents, one per line.
pub fn text(bytes: usize, seed: u64) -> String {
    let mut c = Choices::new(seed);
    let mut out = String::with_capacity(bytes + 256);
    while out.len() < bytes {
        out.push_str(&document(&mut c));
        out.push('\n');
    }
    out
}

/// Writes about `bytes` of JSON-lines documents (`{"text": ...}`) to `path`; returns the count.
pub fn write_corpus(path: &Path, bytes: u64, seed: u64) -> Result<u64> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut c = Choices::new(seed);
    let (mut written, mut docs) = (0u64, 0u64);
    while written < bytes {
        let line = serde_json::json!({ "text": document(&mut c) }).to_string();
        writeln!(out, "{line}")?;
        written += line.len() as u64 + 1;
        docs += 1;
    }
    out.flush()?;
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
        write_corpus(&a, 20_000, 7).expect("a");
        write_corpus(&b, 20_000, 7).expect("b");
        write_corpus(&c, 20_000, 8).expect("c");
        let (a, b, c) = (std::fs::read(a).expect("a"), std::fs::read(b).expect("b"), std::fs::read(c).expect("c"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.len() >= 20_000);
        let first: serde_json::Value =
            serde_json::from_slice(a.split(|&x| x == b'\n').next().expect("line")).expect("json");
        assert!(first["text"].as_str().is_some_and(|t| t.ends_with('.')));
    }
}
