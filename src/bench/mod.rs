//! `ferrum bench`: throughput of the codec and of training. Build with `--release`: debug
//! timings mean nothing.

mod codec;
mod converge;
mod train;

pub use codec::{CodecBench, CodecReport, ModelResult, ShapeResult, codec};
pub use converge::{ConvergeBench, ConvergeReport, converge};
pub use train::{TrainBench, TrainReport, train};

/// Peak resident set size of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The CPU model name (Linux), for the record.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
