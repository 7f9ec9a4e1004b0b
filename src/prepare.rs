//! `ferrum data prepare`: text and JSON-lines files → tokenized shards + manifest, streaming.
//!
//! Inputs are read in the order given (directories expanded in sorted order), tokenized in
//! parallel batches, concatenated with an EOS after each document, and cut into samples of
//! `sequence_length` tokens. Shards are uploaded as they fill; the manifest goes last, so a
//! reader never sees a dataset with missing shards. Up to `sequence_length − 1` trailing tokens
//! that do not fill a sample are dropped. The output is a pure function of the input bytes, the
//! tokenizer, the sequence length and the shard size.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ferrum_common::data::shard::{ShardSummary, ShardWriter};
use ferrum_common::data::{DatasetId, MANIFEST_FORMAT, MANIFEST_VERSION, Manifest, ShardEntry};
use ferrum_common::keys;
use ferrum_common::storage::Store;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;

use crate::tokenizer::Tokenizer;

/// Text handed to the tokenizer in one parallel batch.
const BATCH_BYTES: usize = 4 << 20;
/// Plain-text documents are tokenized in pieces of about this size, cut at blank lines.
const PIECE_BYTES: usize = 64 << 10;

/// What to prepare.
pub struct PrepareJob {
    pub inputs: Vec<PathBuf>,
    pub tokenizer: Tokenizer,
    pub sequence_length: u32,
    pub samples_per_shard: u64,
    /// JSON field holding the text in `.jsonl` inputs.
    pub text_field: String,
    pub threads: usize,
    pub progress: bool,
}

/// What was written.
#[derive(Debug)]
pub struct PrepareReport {
    pub id: DatasetId,
    pub manifest: Manifest,
    pub documents: u64,
    pub dropped_tokens: u64,
}

/// A piece of input: text, or the end of a document.
enum Item {
    Text(String),
    EndOfDocument,
}

struct Finished {
    path: PathBuf,
    summary: ShardSummary,
}

struct Stats {
    documents: u64,
    dropped_tokens: u64,
}

/// Runs a job, writing into `out`.
pub async fn prepare(job: PrepareJob, out: &Store) -> Result<PrepareReport> {
    if job.sequence_length < 2 {
        bail!("--sequence-length must be at least 2");
    }
    if job.samples_per_shard == 0 {
        bail!("--samples-per-shard must be at least 1");
    }
    let files = expand_inputs(&job.inputs)?;
    let info = job.tokenizer.info();
    let width: u8 = if info.vocab_size <= 1 << 16 { 2 } else { 4 };
    let staging = tempfile::tempdir().context("creating a staging directory")?;
    let staging_path = staging.path().to_path_buf();
    let seq = job.sequence_length;

    let (tx, mut rx) = mpsc::channel::<Finished>(2);
    let producer = tokio::task::spawn_blocking(move || produce(&job, &files, &staging_path, width, tx));

    let mut entries = Vec::new();
    while let Some(shard) = rx.recv().await {
        let key = keys::dataset_shard(entries.len());
        out.put_file(&key, &shard.path).await.with_context(|| format!("uploading {key}"))?;
        std::fs::remove_file(&shard.path).ok();
        entries.push(ShardEntry {
            key,
            samples: shard.summary.header.samples(),
            bytes: shard.summary.bytes,
            header_blake3: hex::encode(shard.summary.header_blake3),
        });
    }
    let stats = producer.await.context("tokenizer thread panicked")??;
    if entries.is_empty() {
        bail!("the inputs hold fewer than {seq} tokens: nothing to write");
    }
    let total_samples: u64 = entries.iter().map(|e| e.samples).sum();
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        version: MANIFEST_VERSION,
        tokenizer: info,
        sequence_length: seq,
        token_width: width,
        total_samples,
        total_tokens: total_samples * u64::from(seq),
        shards: entries,
    };
    manifest.check().map_err(|e| anyhow::anyhow!("internal error: manifest inconsistent: {e}"))?;
    let bytes = manifest.to_bytes();
    let id = DatasetId::of_manifest(&bytes);
    out.put(keys::DATASET_MANIFEST, bytes.into()).await.context("uploading the manifest")?;
    Ok(PrepareReport { id, manifest, documents: stats.documents, dropped_tokens: stats.dropped_tokens })
}

/// Files to read, in order: each argument as given; a directory's files in sorted path order.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        let meta = std::fs::metadata(p).with_context(|| format!("input {}", p.display()))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    if out.is_empty() {
        bail!("no input files");
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("txt" | "text" | "md" | "rst" | "jsonl")) {
            out.push(path);
        }
    }
    Ok(())
}

fn is_jsonl(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "jsonl")
}

/// Blocking side: read, tokenize in batches, fill shards, hand each finished shard over.
fn produce(
    job: &PrepareJob,
    files: &[PathBuf],
    staging: &Path,
    width: u8,
    tx: mpsc::Sender<Finished>,
) -> Result<Stats> {
    let total: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    let bar = if job.progress {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let eos = job.tokenizer.info().eos_token;
    let mut sink = Sink::new(staging, width, job.sequence_length, job.samples_per_shard, tx);
    let mut batch: Vec<Item> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut documents = 0u64;
    for file in files {
        let mut emit = |item: Item, len: usize| -> Result<()> {
            if matches!(item, Item::EndOfDocument) {
                documents += 1;
            }
            batch.push(item);
            batch_bytes += len;
            bar.inc(len as u64);
            if batch_bytes >= BATCH_BYTES {
                flush(&mut batch, &job.tokenizer, job.threads, eos, &mut sink)?;
                batch_bytes = 0;
                bar.set_message(format!("{} shards", sink.index));
            }
            Ok(())
        };
        read_items(file, &job.text_field, &mut emit)?;
    }
    flush(&mut batch, &job.tokenizer, job.threads, eos, &mut sink)?;
    let dropped_tokens = sink.finish()?;
    bar.finish_and_clear();
    Ok(Stats { documents, dropped_tokens })
}

/// Streams one file's documents as items.
fn read_items(path: &Path, field: &str, emit: &mut dyn FnMut(Item, usize) -> Result<()>) -> Result<()> {
    let reader =
        BufReader::with_capacity(1 << 20, File::open(path).with_context(|| format!("opening {}", path.display()))?);
    if is_jsonl(path) {
        for (n, line) in reader.lines().enumerate() {
            let line = line.with_context(|| format!("{}:{}: not UTF-8 text", path.display(), n + 1))?;
            let len = line.len() + 1;
            if line.trim().is_empty() {
                continue;
            }
            let value: serde_json::Value = serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: not a JSON object", path.display(), n + 1))?;
            let text = value
                .get(field)
                .and_then(|v| v.as_str())
                .with_context(|| format!("{}:{}: no string field `{field}`", path.display(), n + 1))?;
            emit(Item::Text(text.to_string()), len)?;
            emit(Item::EndOfDocument, 0)?;
        }
    } else {
        // The whole file is one document, tokenized in pieces cut after blank lines.
        let mut piece = String::new();
        for line in reader.lines() {
            let line = line.with_context(|| format!("{}: not UTF-8 text", path.display()))?;
            let blank = line.trim().is_empty();
            piece.push_str(&line);
            piece.push('\n');
            if blank && piece.len() >= PIECE_BYTES {
                let len = piece.len();
                emit(Item::Text(std::mem::take(&mut piece)), len)?;
            }
        }
        if !piece.is_empty() {
            let len = piece.len();
            emit(Item::Text(piece), len)?;
        }
        emit(Item::EndOfDocument, 0)?;
    }
    Ok(())
}

/// Tokenizes a batch on `threads` threads and feeds the tokens to the sink in input order.
fn flush(batch: &mut Vec<Item>, tok: &Tokenizer, threads: usize, eos: u32, sink: &mut Sink) -> Result<()> {
    let texts: Vec<&str> = batch
        .iter()
        .filter_map(|i| match i {
            Item::Text(t) => Some(t.as_str()),
            Item::EndOfDocument => None,
        })
        .collect();
    let per = texts.len().div_ceil(threads.max(1)).max(1);
    let encoded: Vec<Vec<u32>> = std::thread::scope(|s| {
        let handles: Vec<_> = texts
            .chunks(per)
            .map(|chunk| s.spawn(move || chunk.iter().map(|t| tok.encode(t)).collect::<Result<Vec<_>>>()))
            .collect();
        let mut all = Vec::with_capacity(texts.len());
        for h in handles {
            all.extend(h.join().map_err(|_| anyhow::anyhow!("tokenizer thread panicked"))??);
        }
        Ok::<_, anyhow::Error>(all)
    })?;
    let mut encoded = encoded.into_iter();
    for item in batch.drain(..) {
        match item {
            Item::Text(_) => sink.push(&encoded.next().unwrap_or_default())?,
            Item::EndOfDocument => sink.push(&[eos])?,
        }
    }
    Ok(())
}

/// Cuts the token stream into samples and samples into shards.
struct Sink {
    staging: PathBuf,
    width: u8,
    seq: usize,
    per_shard: u64,
    pending: Vec<u32>,
    writer: Option<ShardWriter>,
    index: usize,
    tx: mpsc::Sender<Finished>,
}

impl Sink {
    fn new(staging: &Path, width: u8, seq: u32, per_shard: u64, tx: mpsc::Sender<Finished>) -> Self {
        Sink {
            staging: staging.to_path_buf(),
            width,
            seq: seq as usize,
            per_shard,
            pending: Vec::with_capacity(seq as usize * 2),
            writer: None,
            index: 0,
            tx,
        }
    }

    fn push(&mut self, tokens: &[u32]) -> Result<()> {
        self.pending.extend_from_slice(tokens);
        let whole = self.pending.len() / self.seq * self.seq;
        for start in (0..whole).step_by(self.seq) {
            if self.writer.is_none() {
                let path = self.staging.join(format!("{:05}.fts", self.index));
                self.writer = Some(ShardWriter::create(&path, self.width, self.seq as u32)?);
            }
            let w = self.writer.as_mut().expect("writer just created");
            w.push_sample(&self.pending[start..start + self.seq])?;
            if w.samples() >= self.per_shard {
                self.close()?;
            }
        }
        self.pending.drain(..whole);
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some(w) = self.writer.take() {
            let summary = w.finish()?;
            let path = self.staging.join(format!("{:05}.fts", self.index));
            self.index += 1;
            self.tx.blocking_send(Finished { path, summary }).map_err(|_| anyhow::anyhow!("upload side stopped"))?;
        }
        Ok(())
    }

    /// Closes the last shard; returns the tokens dropped for not filling a sample.
    fn finish(mut self) -> Result<u64> {
        self.close()?;
        Ok(self.pending.len() as u64)
    }
}
