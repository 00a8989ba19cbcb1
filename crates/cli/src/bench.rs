//! `bench`: Encore measuring itself.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use encore::als::AlsConfig;
use encore::gpu::DeviceChoice;
use encore::sys::Machine;
use encore_bench as bench;
use encore_bench::train::RunSpec;

use crate::model::load_recommender;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Ingest throughput (MB/s) and peak memory of `prep`, per thread count, each run in a fresh
    /// process so peak RSS is its own.
    Ingest(IngestArgs),
    /// Training wall-clock: CPU 1 thread, CPU all threads and each GPU solver on one dataset,
    /// at equal quality (p@10 and nDCG@10 on sampled validation users). JSON and an SVG chart
    /// with --out.
    Train(TrainBenchArgs),
    /// Top-K latency per batch size (1, 10, 100, 1000 users; K = 10, filtering on) for CPU 1
    /// thread, CPU all threads and the GPU, each answer checked against the CPU's. JSON and an
    /// SVG chart with --out.
    Infer(InferBenchArgs),
    /// The three experiments end to end on one dataset: training wall-clock (CPU 1 thread, all
    /// threads, GPU), p95 latency against request rate (an in-process server per backend under
    /// an open-loop ramp) and the latency distribution at a common rate. Writes report.md,
    /// results.json and SVG figures.
    Report(ReportArgs),
    /// What the HTTP server adds to a lone request at low load: one-at-a-time GET
    /// /v1/recommend over loopback against the same users' direct top-K calls, with the parts
    /// (healthz round trip, paced direct calls, the server's own handler and scoring means).
    Overhead(OverheadArgs),
    /// Top-K latency for a batch of users (the first N users with held-out tracks), with
    /// already-listened filtering, median of repeated runs after a warm-up: the library's batch
    /// recommend (exclusion lists, scoring, selection) on the CPU or, with --device, the GPU.
    Recommend(RecommendBenchArgs),
}

/// Creates `dir` and writes `json` to `dir/results.json`; returns that path.
fn write_results(dir: &std::path::Path, json: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("results.json");
    encore::util::write_atomic(&path, json.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Runs one benchmark subcommand.
pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Ingest(a) => {
            let json = a.json;
            let exe = std::env::current_exe().context("finding the encore executable")?;
            let report = bench::ingest(&a.options(exe))?;
            println!("{}", report.render(json)?);
            Ok(())
        }
        BenchCommand::Recommend(a) => bench_recommend(&a),
        BenchCommand::Overhead(a) => {
            anyhow::ensure!(a.requests >= 1, "--requests must be at least 1");
            let rec = load_recommender(&a.model, a.dataset.as_deref(), a.device)?;
            let n = a.requests.min(rec.dataset.user_ids.len());
            let rows: Vec<usize> = (0..n).collect();
            let users: Vec<String> = rec
                .dataset
                .user_ids
                .iter()
                .take(n)
                .map(|u| u.to_string())
                .collect();
            let o = bench::overhead::measure(rec, &users, &rows, a.k)?;
            println!("{}", o.render(a.json)?);
            Ok(())
        }
        BenchCommand::Report(a) => {
            let a: bench::report::ReportOptions = a.into();
            let r = bench::report::report(&a)?;
            println!(
                "bench report: wrote {} (report.md, results.json, and train, p95-vs-rate and latency-cdf as SVG and PNG){}",
                a.out.display(),
                if r.gpu.is_none() {
                    "; no GPU: the GPU column is absent"
                } else {
                    ""
                }
            );
            Ok(())
        }
        BenchCommand::Infer(a) => {
            let a: bench::infer::InferOptions = a.into();
            let report = bench::infer::infer_bench(&a)?;
            report.notes.iter().for_each(|n| crate::note::note(n));
            println!("{}", report.render(a.json)?);
            if let Some(dir) = &a.out {
                let path = write_results(dir, &report.render(true)?)?;
                let bars: Vec<encore_bench::chart::Bar> = report
                    .runs
                    .iter()
                    .map(|r| encore_bench::chart::Bar {
                        label: format!("{} B={}", r.backend, r.batch),
                        value: r.median_ms,
                    })
                    .collect();
                encore_bench::chart::bar_chart_svg(
                    &dir.join("infer.svg"),
                    &format!(
                        "Top-{} latency, {} items x {} factors, filtering on",
                        report.k, report.items, report.factors
                    ),
                    "milliseconds per call (median)",
                    &bars,
                )?;
                eprintln!("bench infer: wrote {} and infer.svg", path.display());
            }
            Ok(())
        }
        BenchCommand::Train(a) => {
            let a: bench::train::TrainBenchOptions = a.into();
            let report = bench::train::train_bench(&a)?;
            report.notes.iter().for_each(|n| crate::note::note(n));
            println!("{}", report.render(a.json)?);
            if let Some(dir) = &a.out {
                let path = write_results(dir, &report.render(true)?)?;
                use encore_bench::chart::{Bar, bar_chart_svg};
                let bars = |f: fn(&encore_bench::train::TrainRun) -> f64| -> Vec<Bar> {
                    report
                        .runs
                        .iter()
                        .map(|r| Bar {
                            label: r.label.clone(),
                            value: f(r),
                        })
                        .collect()
                };
                let shape = format!(
                    "{} x {}, {} pairs, k={}",
                    report.users, report.items, report.pairs, report.factors
                );
                bar_chart_svg(
                    &dir.join("train.svg"),
                    &format!("ALS steady-state iteration ({shape})"),
                    "seconds per iteration",
                    &bars(|r| r.steady_iteration_s),
                )?;
                bar_chart_svg(
                    &dir.join("train-end-to-end.svg"),
                    &format!("ALS end to end, all iterations ({shape})"),
                    "seconds",
                    &bars(|r| r.end_to_end_s),
                )?;
                eprintln!(
                    "bench train: wrote {}, train.svg, train-end-to-end.svg",
                    path.display()
                );
            }
            Ok(())
        }
    }
}

#[derive(Args, Debug)]
pub struct RecommendBenchArgs {
    /// Model directory.
    pub model: PathBuf,
    /// Dataset directory the model was trained on.
    pub dataset: PathBuf,
    /// Batch size (users per call).
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Tracks per user.
    #[arg(long, short, default_value_t = 10)]
    pub k: usize,
    /// Timed repetitions (after one warm-up).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Keep already-listened tracks.
    #[arg(long)]
    pub no_filter: bool,
    /// Where to score: cpu, gpu, gpu:N or auto (the GPU when usable, else the CPU).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn bench_recommend(a: &RecommendBenchArgs) -> Result<()> {
    anyhow::ensure!(a.repeats >= 1, "--repeats must be at least 1");
    let rec = load_recommender(&a.model, Some(&a.dataset), a.device)?;
    let mut users = rec.benchmark_users();
    users.truncate(a.users);
    let filter = !a.no_filter;
    rec.recommend_rows(&users, a.k, filter)?;
    let mut runs = Vec::with_capacity(a.repeats);
    for _ in 0..a.repeats {
        let t = Instant::now();
        let r = rec.recommend_rows(&users, a.k, filter)?;
        runs.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(r);
    }
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let v = serde_json::json!({
        "users": users.len(), "k": a.k, "filter": filter, "threads": rayon::current_num_threads(),
        "items": rec.dataset.train.n_cols, "factors": rec.model.users.k,
        "scorer": rec.scorer.name(), "device": rec.device.to_string(), "median_ms": median, "runs_ms": runs, "machine": Machine::detect(),
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "bench recommend: {} users x {} tracks (k={}), K={}, filter {}, {} threads, scorer {}: \
             median {:.2} ms over {} runs ({:.1} µs/user)",
            users.len(),
            rec.dataset.train.n_cols,
            rec.model.users.k,
            a.k,
            filter,
            rayon::current_num_threads(),
            rec.scorer.name(),
            median,
            a.repeats,
            median * 1e3 / users.len().max(1) as f64
        );
    }
    Ok(())
}

/// Arguments of `encore bench ingest`.
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// The input to prepare (anything `encore prep` accepts).
    pub input: PathBuf,
    /// A second input measured side by side (each thread count runs INPUT, then this, with
    /// the same flags); the report gives its MB/s and records/s per thread relative to INPUT's,
    /// e.g. the same listens with string ids against integer ids.
    #[arg(long, value_name = "INPUT2")]
    pub compare: Option<PathBuf>,
    /// Thread counts to measure, comma-separated (default: 1 and all cores).
    #[arg(long, value_delimiter = ',')]
    pub thread_counts: Vec<usize>,
    /// Where the temporary datasets go (removed after each run).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Extra `encore prep` flags, after `--` (e.g. `-- --min-track-users 1`).
    #[arg(last = true)]
    pub prep_args: Vec<String>,
}

impl IngestArgs {
    /// The library's options, with `exe` the binary whose `prep` each run executes.
    fn options(self, exe: PathBuf) -> bench::IngestOptions {
        let a = self;
        bench::IngestOptions {
            exe,
            input: a.input,
            compare: a.compare,
            thread_counts: a.thread_counts,
            work_dir: a.work_dir,
            json: a.json,
            prep_args: a.prep_args,
        }
    }
}

/// Arguments of `encore bench train`.
#[derive(Debug, Clone, Args)]
pub struct TrainBenchArgs {
    /// Dataset directory written by `encore prep`.
    pub dataset: PathBuf,
    /// Runs, comma-separated DEVICE:SOLVER[+bf16] (DEVICE = cpu1, cpuN, cpu, gpu, gpu:N; +bf16
    /// trains with --precision bf16). GPU runs are
    /// skipped, with a note, when the host has no usable GPU.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "cpu1:cg,cpu:cg,gpu:cg,gpu:cholesky-fused,gpu:lu"
    )]
    pub runs: Vec<RunSpec>,
    /// Iterations of GPU runs.
    #[arg(long, default_value_t = 15)]
    pub iterations: usize,
    /// Iterations of CPU runs (steady state needs at least 2).
    #[arg(long, default_value_t = 3)]
    pub cpu_iterations: usize,
    /// Latent factors k.
    #[arg(long, default_value_t = 64)]
    pub factors: usize,
    /// Conjugate-gradient steps.
    #[arg(long, default_value_t = AlsConfig::default().cg_steps)]
    pub cg_steps: usize,
    /// Validation users sampled for precision/nDCG@10 after training (0 = skip).
    #[arg(long, default_value_t = 2000)]
    pub eval_users: usize,
    /// Device memory to plan for (forces streaming when below the resident need), e.g. 4G.
    #[arg(long, value_name = "BYTES", value_parser = encore::util::parse_bytes)]
    pub gpu_memory: Option<usize>,
    /// Write results.json and train.svg here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl From<TrainBenchArgs> for bench::train::TrainBenchOptions {
    fn from(a: TrainBenchArgs) -> Self {
        Self {
            dataset: a.dataset,
            runs: a.runs,
            iterations: a.iterations,
            cpu_iterations: a.cpu_iterations,
            factors: a.factors,
            cg_steps: a.cg_steps,
            eval_users: a.eval_users,
            gpu_memory: a.gpu_memory,
            out: a.out,
            json: a.json,
        }
    }
}

/// Arguments of `encore bench infer`.
#[derive(Debug, Clone, Args)]
pub struct InferBenchArgs {
    /// Model directory.
    pub model: PathBuf,
    /// Dataset directory the model was trained on (its training listens are filtered out).
    pub dataset: PathBuf,
    /// Batch sizes, comma-separated; sizes above the dataset's users are clamped to them, with
    /// a note.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,1000")]
    pub batches: Vec<usize>,
    /// Backends, comma-separated: cpu1, cpuN, cpu (all threads), gpu (TF32 screening),
    /// gpu-fp32, gpu:N[-fp32]; a `-noprune` suffix visits every item (no norm pruning). GPU
    /// backends are skipped, with a note, when the host has no usable GPU.
    #[arg(long, value_delimiter = ',', default_value = "cpu1,cpu,gpu,gpu-fp32")]
    pub backends: Vec<String>,
    /// Tracks per user.
    #[arg(long, short, default_value_t = 10)]
    pub k: usize,
    /// Timed calls per batch size (after a warm-up).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Write results.json and infer.svg here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl From<InferBenchArgs> for bench::infer::InferOptions {
    fn from(a: InferBenchArgs) -> Self {
        Self {
            model: a.model,
            dataset: a.dataset,
            batches: a.batches,
            backends: a.backends,
            k: a.k,
            repeats: a.repeats,
            out: a.out,
            json: a.json,
        }
    }
}

/// Arguments of `encore bench report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Dataset directory written by `encore prep`.
    pub dataset: PathBuf,
    /// Report directory (created; files inside are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Training iterations for every backend.
    #[arg(long, default_value_t = 5)]
    pub iterations: usize,
    /// Latent factors k.
    #[arg(long, default_value_t = 64)]
    pub factors: usize,
    /// First rate of each ramp (requests per second); it doubles every step.
    #[arg(long, default_value_t = 50.0)]
    pub start_rate: f64,
    /// Most steps per ramp.
    #[arg(long, default_value_t = 10)]
    pub max_steps: usize,
    /// Seconds per ramp step.
    #[arg(long, default_value_t = 3.0)]
    pub step_seconds: f64,
    /// A ramp stops once p95 exceeds this many milliseconds.
    #[arg(long, default_value_t = 100.0)]
    pub saturation_ms: f64,
    /// Leave the GPU out even when one is usable.
    #[arg(long)]
    pub no_gpu: bool,
    /// Results of `scripts/compare_implicit.py --json` on this dataset: implicit's training time
    /// is drawn beside Encore's (a separate run, labelled as such).
    #[arg(long)]
    pub implicit_json: Option<PathBuf>,
}

impl From<ReportArgs> for bench::report::ReportOptions {
    fn from(a: ReportArgs) -> Self {
        Self {
            dataset: a.dataset,
            out: a.out,
            iterations: a.iterations,
            factors: a.factors,
            start_rate: a.start_rate,
            max_steps: a.max_steps,
            step_seconds: a.step_seconds,
            saturation_ms: a.saturation_ms,
            no_gpu: a.no_gpu,
            implicit_json: a.implicit_json,
        }
    }
}

/// Arguments of `encore bench overhead`.
#[derive(Debug, Clone, Args)]
pub struct OverheadArgs {
    /// Model directory written by `encore train`.
    pub model: PathBuf,
    /// Dataset directory (default: the one recorded in the model's model.json).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Where to score: auto, cpu, gpu or gpu:N.
    #[arg(long, default_value = "cpu")]
    pub device: encore::gpu::DeviceChoice,
    /// Requests per measurement (the first N users, one request each).
    #[arg(long, default_value_t = 1000)]
    pub requests: usize,
    /// Tracks per request.
    #[arg(long, short, default_value_t = 10)]
    pub k: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
