//! The `ferrum` tool's library: dataset preparation, tokenizers, the synthetic corpus, the
//! quick start and the devnet harness. The CLI in `main.rs` is a thin layer over these.

pub mod bench;
pub mod config_reference;
pub mod devnet;
pub mod export;
pub mod localnet;
pub mod metagraph;
pub mod prepare;
pub mod quickstart;
pub mod synth;
pub mod tokenizer;
