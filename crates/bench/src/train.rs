//! `encore bench train`: training wall-clock for CPU 1 thread, CPU all threads and each GPU
//! solver, on one dataset, side by side in one process.
//!
//! Every run trains from the same seed on its own copy of the training matrix and reports the
//! first iteration (which includes the GPU's host→device upload), the steady-state iteration
//! (median of the rest), the end-to-end time (confidence transform and transpose, set-up, every
//! iteration and the copy back), and precision/nDCG@10 on a sample of validation users, so
//! speed is compared at equal quality. CPU runs may use fewer iterations (`--cpu-iterations`):
//! one thread at LFM-1b scale takes about a minute per iteration.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use serde::Serialize;

use encore::als::gpu::GpuOptions;
use encore::als::{AlsConfig, Precision, SolverKind};
use encore::data::dataset::Dataset;
use encore::error::{Error, Result};
use encore::eval::eval_users;
use encore::gpu::DeviceChoice;
use encore::sys::Machine;
use encore::train::{FitOptions, fit_with, make_backend, validate};

use crate::peaks::{CpuPeaks, share};

/// One configuration to measure: `cpu1:cg`, `cpu:cholesky`, `gpu:cg`, `gpu:1:lu`, ...; a
/// `+bf16` suffix (`gpu:cg+bf16`) trains with `--precision bf16`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    pub device: DeviceChoice,
    /// Threads for CPU runs (0 = all).
    pub threads: usize,
    pub solver: SolverKind,
    pub precision: Precision,
}

impl FromStr for RunSpec {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (dev, solver) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?}: expected DEVICE:SOLVER, e.g. cpu1:cg or gpu:lu"))?;
        let (solver, precision) = match solver.split_once('+') {
            Some((solver, "bf16")) => (solver, Precision::Bf16),
            Some((solver, "fp32")) => (solver, Precision::Fp32),
            Some((_, p)) => {
                return Err(format!(
                    "{s:?}: unknown precision {p:?}: use +bf16 or +fp32"
                ));
            }
            None => (solver, Precision::Fp32),
        };
        let solver = solver
            .parse::<SolverKind>()
            .map_err(|_| format!("{s:?}: unknown solver {solver:?}"))?;
        let (device, threads) = match dev {
            "cpu" => (DeviceChoice::Cpu, 0),
            d if d.starts_with("cpu") => {
                let n: usize = d[3..]
                    .parse()
                    .map_err(|_| format!("{s:?}: use cpu or cpuN (N threads)"))?;
                (DeviceChoice::Cpu, n.max(1))
            }
            d => (d.parse::<DeviceChoice>()?, 0),
        };
        Ok(Self {
            device,
            threads,
            solver,
            precision,
        })
    }
}

/// Arguments of `encore bench train`.
#[derive(Debug, Clone)]
pub struct TrainBenchOptions {
    /// Dataset directory written by `encore prep`.
    pub dataset: PathBuf,
    /// Runs, comma-separated DEVICE:SOLVER (DEVICE = cpu1, cpuN, cpu, gpu, gpu:N).
    pub runs: Vec<RunSpec>,
    /// Iterations of GPU runs.
    pub iterations: usize,
    /// Iterations of CPU runs (steady state needs at least 2).
    pub cpu_iterations: usize,
    /// Latent factors k.
    pub factors: usize,
    /// Conjugate-gradient steps.
    pub cg_steps: usize,
    /// Validation users sampled for precision/nDCG@10 after training (0 = skip).
    pub eval_users: usize,
    /// Device memory to plan for (forces streaming when below the resident need), e.g. 4G.
    pub gpu_memory: Option<usize>,
    /// Write results.json and train.svg here.
    pub out: Option<PathBuf>,
    /// Print JSON instead of a table.
    pub json: bool,
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainRun {
    pub label: String,
    pub device: String,
    pub solver: String,
    pub threads: usize,
    pub iterations: usize,
    pub first_iteration_s: f64,
    /// Median of iterations 2.. (the first when there is only one).
    pub steady_iteration_s: f64,
    /// From the play counts to factors on the host, everything included.
    pub end_to_end_s: f64,
    /// `end_to_end_s` minus the iterations: confidence transform, transpose, set-up, copy back.
    pub overhead_s: f64,
    pub precision_at_10: Option<f64>,
    pub ndcg_at_10: Option<f64>,
    /// GPU runs: the user half-step's kernel rate against the device's peak (see [`kernel_rate`]).
    pub kernel_rate: Option<String>,
    /// CPU runs: the steady iteration's rate against this machine's measured peaks for the
    /// run's threads (see [`cpu_rate`]).
    pub cpu_rate: Option<String>,
    pub details: serde_json::Value,
}

/// The achieved rate of the user half-step (the side with long rows, where the per-row solve is
/// a small share): for `cg`, the factor rows it gathers — (steps + 1) passes over every
/// non-zero's k values (4 bytes each, 2 in bf16) — per second against DRAM bandwidth (above
/// 100% means L2 hits); for the exact solvers, the 2·nnz·k² FLOPs of building the systems per
/// second against FP32 peak. The item half-step's time follows.
pub fn kernel_rate(
    solver: SolverKind,
    precision: Precision,
    cg_steps: usize,
    nnz: usize,
    k: usize,
    details: &serde_json::Value,
) -> Option<String> {
    let ms = details.get("half_step_ms")?.get(0)?.as_f64()?;
    let items_ms = details
        .get("half_step_ms")
        .and_then(|h| h.get(1))
        .and_then(|v| v.as_f64())
        .unwrap_or(f64::NAN);
    let secs = ms / 1e3;
    if secs.is_nan() || secs <= 0.0 {
        return None;
    }
    let (nnz, k) = (nnz as f64, k as f64);
    if solver == SolverKind::Cg {
        let peak = details.get("peak_gb_per_s")?.as_f64()?;
        let bytes = if precision == Precision::Bf16 {
            2.0
        } else {
            4.0
        };
        let gbs = (cg_steps as f64 + 1.0) * nnz * k * bytes / secs / 1e9;
        Some(format!(
            "users half-step {ms:.1} ms: {gbs:.0} GB/s of factor gathers, {:.0}% of {peak:.0} GB/s DRAM peak; items half-step {items_ms:.1} ms",
            100.0 * gbs / peak
        ))
    } else {
        let peak = details.get("peak_fp32_tflops")?.as_f64()?;
        let tf = 2.0 * nnz * k * k / secs / 1e12;
        Some(format!(
            "users half-step {ms:.1} ms: {tf:.1} TFLOP/s building systems, {:.0}% of {peak:.1} TFLOP/s FP32 peak; items half-step {items_ms:.1} ms",
            100.0 * tf / peak
        ))
    }
}

/// The achieved rate of a CPU steady iteration (both half-steps): for `cg`, its factor-row
/// gathers — (steps + 1) passes over every non-zero's k floats per half-step — per second
/// against the measured read bandwidth for `threads` (above 100% means cache hits); for the
/// exact solvers, the 2·nnz·k² FLOPs per half-step of building the systems per second against
/// the measured FMA peak.
pub fn cpu_rate(
    solver: SolverKind,
    cg_steps: usize,
    nnz: usize,
    k: usize,
    steady_s: f64,
    threads: usize,
    peaks: &CpuPeaks,
) -> Option<String> {
    if !(steady_s.is_finite() && steady_s > 0.0) {
        return None;
    }
    let (nnz, k) = (nnz as f64, k as f64);
    let (read, fma) = peaks.for_threads(threads);
    Some(if solver == SolverKind::Cg {
        let gbs = 2.0 * (cg_steps as f64 + 1.0) * nnz * k * 4.0 / steady_s / 1e9;
        format!("iteration: factor gathers {}", share(gbs, read, "GB/s"))
    } else {
        let gf = 2.0 * 2.0 * nnz * k * k / steady_s / 1e9;
        format!("iteration: building systems {}", share(gf, fma, "GFLOP/s"))
    })
}

/// All runs of one `bench train`.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub dataset: PathBuf,
    pub users: usize,
    pub items: usize,
    pub pairs: usize,
    pub factors: usize,
    pub machine: Machine,
    pub runs: Vec<TrainRun>,
    /// Measured when a CPU run was asked for.
    pub cpu_peaks: Option<CpuPeaks>,
    /// Runs that were skipped, and why (a GPU run on a host with no usable GPU).
    pub notes: Vec<String>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// Runs every spec on the dataset; progress goes to stderr.
pub fn train_bench(a: &TrainBenchOptions) -> Result<TrainReport> {
    let ds = Dataset::load(&a.dataset)?;
    let mut sample = eval_users(&ds.valid);
    sample.truncate(a.eval_users);
    let mut runs = Vec::new();
    let mut notes = Vec::new();
    let mut gpu = crate::probe::GpuProbe::default();
    let cpu_peaks = a
        .runs
        .iter()
        .any(|r| r.device == DeviceChoice::Cpu)
        .then(|| {
            eprintln!("bench train: measuring this machine's CPU peaks ...");
            let p = CpuPeaks::measure();
            eprintln!("  {}", p.describe());
            p
        });
    for spec in &a.runs {
        let cpu = spec.device == DeviceChoice::Cpu;
        if !cpu && let Some(why) = gpu.unusable() {
            notes.push(format!(
                "bench train: skipped {}:{} ({why})",
                spec.device,
                spec.solver.as_str()
            ));
            continue;
        }
        let cfg = AlsConfig {
            factors: a.factors,
            iterations: if cpu { a.cpu_iterations } else { a.iterations },
            solver: spec.solver,
            cg_steps: a.cg_steps,
            precision: spec.precision,
            ..AlsConfig::default()
        };
        let solver = match spec.precision {
            Precision::Fp32 => spec.solver.as_str().to_string(),
            p => format!("{} {}", spec.solver.as_str(), p.as_str()),
        };
        let label = match (spec.device, spec.threads) {
            (DeviceChoice::Cpu, 0) => format!("cpu (all) {solver}"),
            (DeviceChoice::Cpu, n) => format!("cpu ({n}T) {solver}"),
            (d, _) => format!("{d} {solver}"),
        };
        eprintln!("bench train: {label} ...");
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(spec.threads)
            .build()
            .map_err(|e| Error::Runtime(format!("thread pool: {e}")))?;
        let run = pool.install(|| -> Result<TrainRun> {
            let (mut backend, _) = make_backend(
                &cfg,
                spec.device,
                GpuOptions {
                    memory_budget: a.gpu_memory,
                },
            )?;
            let copy = ds.clone();
            let opts = FitOptions {
                quiet: true,
                ..FitOptions::default()
            };
            let t = Instant::now();
            let model = fit_with(copy, &cfg, backend.as_mut(), &opts, |_| {})?;
            let end_to_end_s = t.elapsed().as_secs_f64();
            let its: Vec<f64> = model.meta.iterations.iter().map(|s| s.seconds).collect();
            let first = its.first().copied().unwrap_or(f64::NAN);
            let mut rest: Vec<f64> = its.iter().skip(1).copied().collect();
            let steady = if rest.is_empty() {
                first
            } else {
                median(&mut rest)
            };
            let quality = if sample.is_empty() {
                None
            } else {
                Some(validate(
                    &ds.train,
                    &ds.valid,
                    &sample,
                    &model.users,
                    &model.items,
                    10,
                )?)
            };
            let threads = if cpu { rayon::current_num_threads() } else { 0 };
            Ok(TrainRun {
                cpu_rate: cpu_peaks.as_ref().filter(|_| cpu).and_then(|p| {
                    cpu_rate(
                        spec.solver,
                        cfg.cg_steps,
                        ds.train.nnz(),
                        cfg.factors,
                        steady,
                        threads,
                        p,
                    )
                }),
                label: label.clone(),
                device: backend.device(),
                solver: backend.name(),
                threads,
                iterations: its.len(),
                first_iteration_s: first,
                steady_iteration_s: steady,
                end_to_end_s,
                overhead_s: end_to_end_s - its.iter().sum::<f64>(),
                precision_at_10: quality.map(|q| q.precision),
                ndcg_at_10: quality.map(|q| q.ndcg),
                kernel_rate: kernel_rate(
                    spec.solver,
                    spec.precision,
                    cfg.cg_steps,
                    ds.train.nnz(),
                    cfg.factors,
                    &backend.details(),
                ),
                details: backend.details(),
            })
        })?;
        eprintln!(
            "  first {:.3} s, steady {:.3} s/iteration, end to end {:.2} s",
            run.first_iteration_s, run.steady_iteration_s, run.end_to_end_s
        );
        runs.push(run);
    }
    if runs.is_empty() {
        return Err(Error::Config(format!(
            "bench train: no run could be made ({})",
            notes.join("; ")
        )));
    }
    Ok(TrainReport {
        dataset: a.dataset.clone(),
        users: ds.train.n_rows,
        items: ds.train.n_cols,
        pairs: ds.train.nnz(),
        factors: a.factors,
        machine: Machine::detect(),
        runs,
        cpu_peaks,
        notes,
    })
}

impl TrainReport {
    /// A table with each run's speed-up over the first run, or JSON.
    pub fn render(&self, json: bool) -> Result<String> {
        if json {
            return serde_json::to_string_pretty(self)
                .map_err(|e| Error::Runtime(format!("serialising the report: {e}")));
        }
        let mut out = format!(
            "bench train: {} users x {} tracks, {} pairs, k={} on {} ({} cores)\n",
            self.users, self.items, self.pairs, self.factors, self.machine.cpu, self.machine.cores
        );
        out += &format!(
            "{:<26} {:>5} {:>10} {:>10} {:>11} {:>9} {:>8} {:>8}\n",
            "run", "iters", "first s", "steady s", "end-to-end", "speed-up", "p@10", "nDCG@10"
        );
        let base = self.runs.first().map(|r| r.steady_iteration_s);
        for r in &self.runs {
            let q = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
            out += &format!(
                "{:<26} {:>5} {:>10.3} {:>10.3} {:>11.2} {:>8.1}x {:>8} {:>8}\n",
                r.label,
                r.iterations,
                r.first_iteration_s,
                r.steady_iteration_s,
                r.end_to_end_s,
                base.map(|b| b / r.steady_iteration_s).unwrap_or(f64::NAN),
                q(r.precision_at_10),
                q(r.ndcg_at_10)
            );
        }
        if let Some(p) = &self.cpu_peaks {
            out += &format!("{}\n", p.describe());
            for r in &self.runs {
                if let Some(rate) = &r.cpu_rate {
                    out += &format!("  {} ({} threads): {rate}\n", r.label, r.threads);
                }
            }
        }
        for r in self.runs.iter().filter(|r| r.device != "cpu") {
            out += &format!("{}: {}\n", r.label, r.device);
            if let Some(rate) = &r.kernel_rate {
                out += &format!("  {rate}\n");
            }
        }
        Ok(out)
    }
}
