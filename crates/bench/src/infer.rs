//! `encore bench infer`: top-K latency per batch size for CPU 1 thread, CPU all threads and the
//! GPU (TF32 and FP32 screening), on one model, with already-listened filtering.
//!
//! Each timed call is the whole `Scorer::top_k` — building the exclusion lists, host↔device
//! copies, scoring and selection — for the first B validation users, after one warm-up call
//! (a warm-up slower than 2 s is kept as the only sample: one thread at LFM-1b scale needs about
//! ten seconds per 1,000 users). Every backend's answer is checked against the CPU's, so a speed
//! is never reported for a wrong result.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use encore::error::{Error, Result};
use encore::gpu::{DeviceChoice, Gpu};
use encore::infer::{CpuScorer, GpuScorer, GpuScorerOptions, Ranked, Scorer};
use encore::recommend::Recommender;
use encore::sys::Machine;

use crate::peaks::{CpuPeaks, share};

/// Arguments of `encore bench infer`.
#[derive(Debug, Clone)]
pub struct InferOptions {
    /// Model directory.
    pub model: PathBuf,
    /// Dataset directory the model was trained on (its training listens are filtered out).
    pub dataset: PathBuf,
    /// Batch sizes, comma-separated.
    pub batches: Vec<usize>,
    /// Backends, comma-separated: cpu1, cpuN, cpu (all threads), gpu (TF32 screening),
    /// gpu-fp32, gpu:N[-fp32]; a `-noprune` suffix visits every item (no norm pruning).
    pub backends: Vec<String>,
    /// Tracks per user.
    pub k: usize,
    /// Timed calls per batch size (after a warm-up).
    pub repeats: usize,
    /// Write results.json and infer.svg here.
    pub out: Option<PathBuf>,
    /// Print JSON instead of a table.
    pub json: bool,
}

/// One backend at one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct InferRun {
    pub backend: String,
    pub batch: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub samples: usize,
    /// Queries × items answered per second (batch · items / median), as if every item were
    /// scored.
    pub scores_per_s: f64,
    /// Share of the batch × items dot products actually computed (norm pruning skips the rest).
    pub scored_fraction: f64,
    /// 2 · (dot products computed) · k / median, in TFLOP/s: the arithmetic rate achieved.
    pub tflops: f64,
    /// Bytes of item factors the scoring read per second, once per visited item per call
    /// (GB/s): the DRAM-bound view for small batches.
    pub factor_gb_per_s: f64,
    /// Whether the answer equals the CPU scorer's (ids and scores).
    pub matches_cpu: bool,
    /// CPU backends: the threads it ran on, and its arithmetic and factor-read rates against
    /// this machine's measured peaks for that many threads (see [`CpuPeaks`]).
    pub threads: Option<usize>,
    pub cpu_rate: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct InferReport {
    pub model: PathBuf,
    pub items: usize,
    pub factors: usize,
    pub k: usize,
    pub machine: Machine,
    pub devices: Vec<String>,
    pub runs: Vec<InferRun>,
    /// Measured when a CPU backend ran.
    pub cpu_peaks: Option<CpuPeaks>,
    /// What was adjusted or skipped, and why (batches clamped to the users there are, GPU
    /// backends on a host with no usable GPU).
    pub notes: Vec<String>,
}

/// A backend and the thread count to run it with (0 = all).
fn backend(name: &str, items: &encore::als::Factors) -> Result<(Box<dyn Scorer>, usize)> {
    let bad = || {
        Error::Config(format!(
            "unknown backend {name:?}: use cpu1, cpuN, cpu, gpu, gpu-fp32 or gpu:N, \
             each optionally with -noprune"
        ))
    };
    let (name, prune) = match name.strip_suffix("-noprune") {
        Some(base) => (base, false),
        None => (name, true),
    };
    if let Some(rest) = name.strip_prefix("cpu") {
        let threads = if rest.is_empty() {
            0
        } else {
            rest.parse().map_err(|_| bad())?
        };
        let tile = CpuScorer::default_tile(items.k);
        return Ok((
            Box::new(CpuScorer::with_options(items, tile, prune)?),
            threads,
        ));
    }
    let (dev, tf32) = match name.strip_suffix("-fp32") {
        Some(d) => (d, false),
        None => (name, true),
    };
    let DeviceChoice::Gpu(n) = dev.parse::<DeviceChoice>().map_err(|_| bad())? else {
        return Err(bad());
    };
    let options = GpuScorerOptions {
        tf32,
        prune,
        ..GpuScorerOptions::default()
    };
    Ok((Box::new(GpuScorer::new(Gpu::open(n)?, items, options)?), 0))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Runs every backend at every batch size.
pub fn infer_bench(a: &InferOptions) -> Result<InferReport> {
    if a.repeats == 0 || a.batches.contains(&0) {
        return Err(Error::Config(
            "--repeats and every batch size must be >= 1".into(),
        ));
    }
    let model = encore::als::model::Model::load(&a.model)?;
    let ds = encore::data::dataset::Dataset::load(&a.dataset)?;
    let rec = Recommender::cpu(model, ds)?;
    let users = rec.benchmark_users();
    if users.is_empty() {
        return Err(Error::Config("the dataset has no users to query".into()));
    }
    let mut notes = Vec::new();
    let batches = clamp_batches(&a.batches, users.len());
    if a.batches.iter().any(|&b| b > users.len()) {
        notes.push(format!(
            "bench infer: batch sizes above the {} users there are clamped to {} (asked {:?}, ran {batches:?})",
            users.len(),
            users.len(),
            a.batches
        ));
    }
    let max_b = batches.iter().copied().max().unwrap_or(1);
    let kf = rec.model.users.k;
    let queries: Vec<f32> = users[..max_b]
        .iter()
        .flat_map(|&u| rec.model.users.row(u).to_vec())
        .collect();
    let exclude: Vec<&[u32]> = users[..max_b]
        .iter()
        .map(|&u| rec.dataset.train.row(u).0)
        .collect();
    // The oracle: the all-threads CPU answer for the largest batch (a prefix answers the rest:
    // a query's result does not depend on its batch).
    // The reference visits every item (no pruning), so pruning is checked, not trusted.
    eprintln!("bench infer: CPU reference (full scan) for {max_b} users ...");
    let reference = CpuScorer::unpruned(&rec.model.items)?.top_k(&queries, Some(&exclude), a.k)?;
    let n_items = rec.model.items.n;
    let mut runs = Vec::new();
    let mut devices = Vec::new();
    let mut gpu = crate::probe::GpuProbe::default();
    let cpu_peaks = a.backends.iter().any(|b| b.starts_with("cpu")).then(|| {
        eprintln!("bench infer: measuring this machine's CPU peaks ...");
        let p = CpuPeaks::measure();
        eprintln!("  {}", p.describe());
        p
    });
    for name in &a.backends {
        if !name.starts_with("cpu")
            && let Some(why) = gpu.unusable()
        {
            notes.push(format!("bench infer: skipped backend {name} ({why})"));
            continue;
        }
        let (scorer, threads) = backend(name, &rec.model.items)?;
        devices.push(format!("{name}: {}", scorer.name()));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| Error::Runtime(format!("thread pool: {e}")))?;
        for &b in &batches {
            let (q, ex) = (&queries[..b * kf], &exclude[..b]);
            let call = || -> Result<(f64, Vec<Ranked>)> {
                let t = Instant::now();
                let r = pool.install(|| scorer.top_k(q, Some(ex), a.k))?;
                Ok((t.elapsed().as_secs_f64() * 1e3, r))
            };
            let scored0 = scorer.items_scored();
            let (warm_ms, answer) = call()?;
            // Every call scores the same pairs: count them over the warm-up.
            let scored1 = scorer.items_scored();
            let matches_cpu = answer == reference[..b];
            let mut samples = Vec::new();
            if warm_ms > 2_000.0 {
                samples.push(warm_ms);
            } else {
                for _ in 0..a.repeats {
                    samples.push(call()?.0);
                }
            }
            let min_ms = samples.iter().copied().fold(f64::INFINITY, f64::min);
            // Without a counter, assume a full scan.
            let scored = match (scored0, scored1) {
                (Some(a), Some(z)) if z > a => (z - a) as f64,
                _ => (b * n_items) as f64,
            };
            let fraction = scored / (b * n_items) as f64;
            let med = median(&mut samples);
            let secs = med / 1e3;
            let tflops = 2.0 * scored * kf as f64 / secs / 1e12;
            // Items visited per call: the widest query's prefix, at least the scored share.
            let factor_gb_per_s = fraction * (n_items * kf * 4) as f64 / secs / 1e9;
            let cpu_threads = name.starts_with("cpu").then(|| pool.current_num_threads());
            let cpu_rate = cpu_threads.zip(cpu_peaks).map(|(t, p)| {
                let (read, fma) = p.for_threads(t);
                format!(
                    "{}, factor reads {}",
                    share(tflops * 1e3, fma, "GFLOP/s"),
                    share(factor_gb_per_s, read, "GB/s")
                )
            });
            let run = InferRun {
                backend: name.clone(),
                batch: b,
                median_ms: med,
                min_ms,
                samples: samples.len(),
                scores_per_s: (b * n_items) as f64 / secs,
                scored_fraction: fraction,
                tflops,
                factor_gb_per_s,
                matches_cpu,
                threads: cpu_threads,
                cpu_rate,
            };
            eprintln!(
                "  {name} batch {b}: median {med:.3} ms over {} calls{}",
                run.samples,
                if matches_cpu {
                    ""
                } else {
                    "  (ANSWER DIFFERS FROM THE CPU)"
                }
            );
            runs.push(run);
        }
    }
    if runs.is_empty() {
        return Err(Error::Config(format!(
            "bench infer: no backend could run ({})",
            notes.join("; ")
        )));
    }
    Ok(InferReport {
        model: a.model.clone(),
        items: n_items,
        factors: kf,
        k: a.k,
        machine: Machine::detect(),
        devices,
        runs,
        cpu_peaks,
        notes,
    })
}

/// The batch sizes with each capped at `users` (the default 1,000 exceeds a small dataset's
/// users, issue 13), in the order asked, each size once.
fn clamp_batches(asked: &[usize], users: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(asked.len());
    for b in asked.iter().map(|&b| b.min(users)) {
        if !out.contains(&b) {
            out.push(b);
        }
    }
    out
}

impl InferReport {
    /// A table (latency per backend and batch, speed-up over the first backend), or JSON.
    pub fn render(&self, json: bool) -> Result<String> {
        if json {
            return serde_json::to_string_pretty(self)
                .map_err(|e| Error::Runtime(format!("serialising the report: {e}")));
        }
        let mut out = format!(
            "bench infer: {} items x {} factors, k={}, filtering on, {} ({} cores)\n",
            self.items, self.factors, self.k, self.machine.cpu, self.machine.cores
        );
        out += &format!(
            "{:<12} {:>6} {:>12} {:>12} {:>9} {:>9} {:>9} {:>6}\n",
            "backend", "batch", "median ms", "min ms", "scored %", "TFLOP/s", "speed-up", "exact"
        );
        for r in &self.runs {
            let base = self
                .runs
                .iter()
                .find(|x| x.batch == r.batch)
                .map(|x| x.median_ms / r.median_ms)
                .unwrap_or(f64::NAN);
            out += &format!(
                "{:<12} {:>6} {:>12.3} {:>12.3} {:>9.3} {:>9.2} {:>8.1}x {:>6}\n",
                r.backend,
                r.batch,
                r.median_ms,
                r.min_ms,
                100.0 * r.scored_fraction,
                r.tflops,
                base,
                if r.matches_cpu { "yes" } else { "NO" }
            );
        }
        for d in &self.devices {
            out += &format!("{d}\n");
        }
        if let Some(p) = &self.cpu_peaks {
            out += &format!("{}\n", p.describe());
            for r in &self.runs {
                if let (Some(rate), Some(t)) = (&r.cpu_rate, r.threads) {
                    out += &format!("  {} batch {} ({t} threads): {rate}\n", r.backend, r.batch);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::clamp_batches;

    #[test]
    fn batches_above_the_users_are_clamped_once_in_order() {
        assert_eq!(clamp_batches(&[1, 10, 100, 1000], 42), vec![1, 10, 42]);
        assert_eq!(clamp_batches(&[1000, 1], 5), vec![5, 1]);
        assert_eq!(clamp_batches(&[1, 10], 10), vec![1, 10]);
    }
}
