//! Run-time choice of vector width for the codec's hot loops, so one x86-64 binary uses
//! AVX-512 or AVX2 where the CPU has them and still runs on a CPU that has neither.
//!
//! This is the workspace's one exception to "no `unsafe`": calling a function compiled for
//! features the CPU might lack is `unsafe`, and each call here is guarded by the run-time check
//! for exactly those features. Enabling them never changes a result: Rust does not contract a
//! multiply and an add into a fused one, nor reorder float sums, whatever the target features;
//! FMA only makes an explicit `mul_add` (one rounding everywhere) a single instruction.
#![allow(unsafe_code)]

/// The vector paths [`widest`] chooses between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Avx512,
    Avx2,
    Baseline,
}

/// What this CPU has (the standard library caches the CPUID answers).
fn level() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512vl")
        {
            return Level::Avx512;
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Level::Avx2;
        }
    }
    Level::Baseline
}

/// Runs `f` compiled for the widest vector unit this CPU has. `f` should be a closure marked
/// `#[inline(always)]` that calls `#[inline(always)]` code, so that all of it is compiled
/// inside the wrapper for the chosen features (code it merely calls runs as compiled).
#[inline(always)]
pub fn widest<R>(f: impl FnOnce() -> R) -> R {
    match level() {
        // SAFETY: `level` found every feature `avx512` is compiled for on this CPU.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { avx512(f) },
        // SAFETY: `level` found AVX2 and FMA on this CPU.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { avx2(f) },
        _ => f(),
    }
}

/// The name of the path [`widest`] takes on this CPU, for benchmark reports.
pub fn widest_name() -> &'static str {
    match level() {
        Level::Avx512 => "avx512",
        Level::Avx2 => "avx2",
        Level::Baseline => "baseline",
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_path_gives_the_same_bits() {
        let x: Vec<f32> = (0..4099).map(|i| ((i * 7919 % 1013) as f32 - 506.0) * 1e-3).collect();
        #[inline(always)]
        fn work(x: &[f32]) -> Vec<u32> {
            let mut acc = 0f32;
            x.iter()
                .map(|&v| {
                    acc = 0.95 * acc + v * 1.5;
                    (acc - v).to_bits()
                })
                .collect()
        }
        let plain = work(&x);
        assert_eq!(
            super::widest(
                #[inline(always)]
                || work(&x)
            ),
            plain,
            "{}",
            super::widest_name()
        );
    }
}
