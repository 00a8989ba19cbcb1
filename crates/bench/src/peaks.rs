//! This machine's measured CPU peaks, the yardstick for the CPU rows of `bench train` and
//! `bench infer`: how fast one core and all cores can stream memory, and how many FP32
//! fused multiply-adds they can retire. Vendor peaks are not what a process gets on a shared VM
//! or under a frequency cap, so each benchmark measures its own, once, in about a second.
//!
//! - **Read bandwidth**: a sum over a buffer of [`READ_BYTES`] (far larger than any last-level
//!   cache), eight independent vector accumulators, best of three; all cores each sum their own
//!   contiguous slice at once.
//! - **FMA throughput**: 96 independent `a ← a·b + c` chains (twelve 8-lane vectors: enough to
//!   cover the FMA latency of two pipes), compiled for AVX2+FMA where the CPU has it
//!   (`multiversion`, as the scorer's kernels are) and portable code elsewhere, so the peak is
//!   what Encore's own kernels can reach on this CPU, not what an instruction set could.

use std::time::Instant;

use multiversion::multiversion;
use rayon::prelude::*;
use serde::Serialize;

/// Bytes the read-bandwidth probe streams (per pass; all threads share one buffer this size).
pub const READ_BYTES: usize = 512 << 20;
/// Independent FMA chains of the compute probe (twelve 8-lane vectors).
const CHAINS: usize = 96;
/// Iterations of the compute probe per thread.
const FMA_ROUNDS: usize = 2_000_000;

/// Measured peaks, one core and all cores.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct CpuPeaks {
    /// Threads of the "all cores" measurement.
    pub threads: usize,
    pub read_gb_per_s_1: f64,
    pub read_gb_per_s_all: f64,
    pub fma_gflops_1: f64,
    pub fma_gflops_all: f64,
}

impl CpuPeaks {
    /// Measures both peaks on one thread and on every thread of the current rayon pool.
    pub fn measure() -> Self {
        let threads = rayon::current_num_threads().max(1);
        let buf = vec![1.0f32; READ_BYTES / 4];
        let best = |f: &dyn Fn() -> f64| (0..3).map(|_| f()).fold(0.0, f64::max);
        let read_1 = best(&|| {
            let t = Instant::now();
            std::hint::black_box(sum(std::hint::black_box(&buf)));
            READ_BYTES as f64 / t.elapsed().as_secs_f64() / 1e9
        });
        let part = buf.len().div_ceil(threads);
        let read_all = best(&|| {
            let t = Instant::now();
            let s: f32 = buf.par_chunks(part).map(sum).sum();
            std::hint::black_box(s);
            READ_BYTES as f64 / t.elapsed().as_secs_f64() / 1e9
        });
        let flops = (2 * CHAINS * FMA_ROUNDS) as f64;
        let fma_1 = best(&|| {
            let t = Instant::now();
            std::hint::black_box(fma_chains(std::hint::black_box(FMA_ROUNDS)));
            flops / t.elapsed().as_secs_f64() / 1e9
        });
        let fma_all = best(&|| {
            let t = Instant::now();
            let s: f32 = (0..threads)
                .into_par_iter()
                .map(|_| fma_chains(std::hint::black_box(FMA_ROUNDS)))
                .sum();
            std::hint::black_box(s);
            threads as f64 * flops / t.elapsed().as_secs_f64() / 1e9
        });
        Self {
            threads,
            read_gb_per_s_1: read_1,
            read_gb_per_s_all: read_all,
            fma_gflops_1: fma_1,
            fma_gflops_all: fma_all,
        }
    }

    /// The peaks for `threads` threads: the one-core figure times the threads, capped at the
    /// all-core figure (bandwidth saturates before the cores run out).
    pub fn for_threads(&self, threads: usize) -> (f64, f64) {
        let t = threads.max(1) as f64;
        (
            (self.read_gb_per_s_1 * t).min(self.read_gb_per_s_all.max(self.read_gb_per_s_1)),
            (self.fma_gflops_1 * t).min(self.fma_gflops_all.max(self.fma_gflops_1)),
        )
    }

    /// One line for a report.
    pub fn describe(&self) -> String {
        format!(
            "CPU peaks (measured): memory read {:.1} GB/s on 1 core, {:.1} GB/s on {}; FP32 FMA {:.1} GFLOP/s on 1 core, {:.1} GFLOP/s on {}",
            self.read_gb_per_s_1,
            self.read_gb_per_s_all,
            self.threads,
            self.fma_gflops_1,
            self.fma_gflops_all,
            self.threads
        )
    }
}

/// An achieved rate against a peak: "12.3 GB/s (41% of 30.0)".
pub fn share(achieved: f64, peak: f64, unit: &str) -> String {
    if peak > 0.0 && achieved.is_finite() {
        format!(
            "{achieved:.1} {unit} ({:.0}% of {peak:.1})",
            100.0 * achieved / peak
        )
    } else {
        format!("{achieved:.1} {unit}")
    }
}

/// Sum of `v` with eight independent 8-lane accumulators (vectorised; memory-bound).
#[multiversion(targets("x86_64+avx2+fma"))]
fn sum(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; 64];
    let mut chunks = v.chunks_exact(64);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// `rounds` steps of [`CHAINS`] independent fused multiply-adds; returns their sum so nothing is
/// optimised away.
#[multiversion(targets("x86_64+avx2+fma"))]
fn fma_chains(rounds: usize) -> f32 {
    let mut a = [0.5f32; CHAINS];
    let (b, c) = (0.999_999f32, 1e-7f32);
    for _ in 0..rounds {
        for x in a.iter_mut() {
            *x = x.mul_add(b, c);
        }
    }
    a.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probes_compute_what_they_claim() {
        let v: Vec<f32> = (0..1000).map(|i| (i % 7) as f32).collect();
        let want: f32 = v.iter().sum();
        assert_eq!(sum(&v), want);
        // a ← a·b + c from 0.5, twice: (0.5·b + c)·b + c.
        let (b, c) = (0.999_999f32, 1e-7f32);
        let one = 0.5f32.mul_add(b, c).mul_add(b, c);
        assert!((fma_chains(2) - CHAINS as f32 * one).abs() < 1e-3);
    }

    #[test]
    fn peaks_for_a_thread_count_scale_from_one_core_and_cap_at_all() {
        let p = CpuPeaks {
            threads: 8,
            read_gb_per_s_1: 10.0,
            read_gb_per_s_all: 40.0,
            fma_gflops_1: 50.0,
            fma_gflops_all: 380.0,
        };
        assert_eq!(p.for_threads(1), (10.0, 50.0));
        assert_eq!(p.for_threads(2), (20.0, 100.0));
        assert_eq!(p.for_threads(8), (40.0, 380.0));
        assert_eq!(p.for_threads(0), (10.0, 50.0));
        assert_eq!(share(15.0, 30.0, "GB/s"), "15.0 GB/s (50% of 30.0)");
    }
}
