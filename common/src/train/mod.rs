//! The training core on burn: the LLaMA-style model, the inner loop and evaluation.
//!
//! Parameters cross into and out of burn only as flat f32 buffers in `params::layout` order
//! (stable Hugging Face paths), never by burn's process-local parameter ids; the global model
//! itself is the plain-f32 [`MasterModel`](crate::model::MasterModel).
//!
//! The backend is picked at run time by the [`Device`]: `flex` (CPU) always; `wgpu` and `cuda`
//! with the cargo features of the same names (the `cuda` build downloads an LLVM bundle, so it
//! needs network access at build time).

mod fused;
mod inner;
mod kernels;
pub mod llama;
pub mod schedule;

pub use burn::tensor::Device;
pub use inner::{Evaluator, StepReport, Trainer};

/// Why training or evaluation cannot go on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainError {
    #[error("parameters do not match the config's model layout")]
    Layout,
    #[error("empty batch")]
    EmptyBatch,
    #[error("sample {index} has {got} tokens, the config's sequence length is {expected}")]
    SampleLength { index: usize, expected: usize, got: usize },
    #[error("sample {index} holds token {token}, outside the vocabulary of {vocab}")]
    Token { index: usize, token: u32, vocab: u32 },
    #[error("non-finite training state at step {step}: loss {loss}, gradient norm {grad_norm}")]
    NonFinite { step: u64, loss: f32, grad_norm: f32 },
    #[error("unknown device {0:?}: expected cpu{extra}", extra = BACKENDS_EXTRA)]
    UnknownBackend(String),
    #[error("backend error: {0}")]
    Backend(String),
    #[error("no {0} device works on this machine: {1}")]
    NoDevice(&'static str, String),
}

#[cfg(all(feature = "wgpu", feature = "cuda"))]
const BACKENDS_EXTRA: &str = ", wgpu or cuda";
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
const BACKENDS_EXTRA: &str = " or wgpu";
#[cfg(all(not(feature = "wgpu"), feature = "cuda"))]
const BACKENDS_EXTRA: &str = " or cuda";
#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
const BACKENDS_EXTRA: &str = " (this build has no GPU backend: build with --features wgpu or cuda)";

/// The device for a name: `cpu` (or `flex`, the CPU backend's name), `wgpu` or `cuda` (the
/// latter two need their feature). A GPU device is tried with one small computation first, so a
/// machine without one fails here with a reason rather than in the middle of a window.
pub fn device(backend: &str) -> Result<Device, TrainError> {
    match backend {
        b if is_cpu(b) => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        "wgpu" => probe("wgpu", Device::wgpu(burn::tensor::DeviceKind::default())),
        #[cfg(feature = "cuda")]
        "cuda" => probe("cuda", Device::cuda(0)),
        other => Err(TrainError::UnknownBackend(other.to_string())),
    }
}

/// Whether a device name means the CPU backend.
pub fn is_cpu(name: &str) -> bool {
    matches!(name, "cpu" | "flex")
}

/// `device` if `1 + 2` comes out as 3 on it. Backends report a missing adapter by panicking on
/// first use, so the panic is caught here and becomes the error.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn probe(name: &'static str, device: Device) -> Result<Device, TrainError> {
    let run = std::panic::AssertUnwindSafe(|| {
        burn::tensor::Tensor::<1>::from_floats([1.0, 2.0], &device).sum().into_scalar::<f32>()
    });
    match std::panic::catch_unwind(run) {
        Ok(3.0) => Ok(device),
        Ok(v) => Err(TrainError::NoDevice(name, format!("1 + 2 gave {v}"))),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the backend panicked".into());
            Err(TrainError::NoDevice(name, why))
        }
    }
}

/// Which compute paths training takes on this machine, for benchmark reports and logs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KernelPath {
    /// The f32 GEMM kernels of the `gemm` crate (0.19) under burn's CPU backend: its run-time
    /// rule is `avx512f` when the CPU has it (the workspace enables gemm's `x86-v4`), else
    /// `fma`, else `scalar`.
    pub gemm: &'static str,
    /// The vector path of Ferrum's fused kernels (norm, RoPE, attention softmax, cross-entropy).
    pub fused: &'static str,
    /// Threads of the pool the CPU backend runs on.
    pub threads: usize,
}

/// The paths training takes on this CPU.
pub fn kernel_path() -> KernelPath {
    #[cfg(target_arch = "x86_64")]
    let gemm = if std::arch::is_x86_feature_detected!("avx512f") {
        "avx512f"
    } else if std::arch::is_x86_feature_detected!("fma") {
        "fma"
    } else {
        "scalar"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let gemm = "portable";
    KernelPath { gemm, fused: crate::simd::widest_name(), threads: rayon::current_num_threads() }
}

#[cfg(test)]
mod tests;
