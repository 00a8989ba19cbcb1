//! `bench`: Encore measuring itself.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use encore::bench::{self, Machine};
use encore::gpu::DeviceChoice;

use super::model::load_recommender;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Ingest throughput (MB/s) and peak memory of `prep`, per thread count, each run in a fresh
    /// process so peak RSS is its own.
    Ingest(bench::IngestArgs),
    /// Training wall-clock: CPU 1 thread, CPU all threads and each GPU solver on one dataset,
    /// at equal quality (p@10 and nDCG@10 on sampled validation users). JSON and an SVG chart
    /// with --out.
    Train(bench::train::TrainBenchArgs),
    /// Top-K latency per batch size (1, 10, 100, 1000 users; K = 10, filtering on) for CPU 1
    /// thread, CPU all threads and the GPU, each answer checked against the CPU's. JSON and an
    /// SVG chart with --out.
    Infer(bench::infer::InferBenchArgs),
    /// The three experiments end to end on one dataset: training wall-clock (CPU 1 thread, all
    /// threads, GPU), p95 latency against request rate (an in-process server per backend under
    /// an open-loop ramp) and the latency distribution at a common rate. Writes report.md,
    /// results.json and SVG figures.
    Report(bench::report::ReportArgs),
    /// What the HTTP server adds to a lone request at low load: one-at-a-time GET
    /// /v1/recommend over loopback against the same users' direct top-K calls, with the parts
    /// (healthz round trip, paced direct calls, the server's own handler and scoring means).
    Overhead(bench::overhead::OverheadArgs),
    /// CPU top-K latency for a batch of users (the first N users with held-out tracks), with
    /// already-listened filtering, median of repeated runs after a warm-up.
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
            let report = bench::ingest(&a)?;
            println!("{}", report.render(a.json)?);
            Ok(())
        }
        BenchCommand::Recommend(a) => bench_recommend(&a),
        BenchCommand::Overhead(a) => {
            anyhow::ensure!(a.requests >= 1, "--requests must be at least 1");
            let rec = load_recommender(&a.model, a.dataset.as_deref(), a.device)?;
            let n = a.requests.min(rec.dataset.user_ids.len());
            let rows: Vec<usize> = (0..n).collect();
            let users = rec.dataset.user_ids[..n].to_vec();
            let o = bench::overhead::measure(rec, &users, &rows, a.k)?;
            println!("{}", o.render(a.json)?);
            Ok(())
        }
        BenchCommand::Report(a) => {
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
            let report = bench::infer::infer_bench(&a)?;
            println!("{}", report.render(a.json)?);
            if let Some(dir) = &a.out {
                let path = write_results(dir, &report.render(true)?)?;
                let bars: Vec<encore::bench::chart::Bar> = report
                    .runs
                    .iter()
                    .map(|r| encore::bench::chart::Bar {
                        label: format!("{} B={}", r.backend, r.batch),
                        value: r.median_ms,
                    })
                    .collect();
                encore::bench::chart::bar_chart_svg(
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
            let report = bench::train::train_bench(&a)?;
            println!("{}", report.render(a.json)?);
            if let Some(dir) = &a.out {
                let path = write_results(dir, &report.render(true)?)?;
                use encore::bench::chart::{Bar, bar_chart_svg};
                let bars = |f: fn(&encore::bench::train::TrainRun) -> f64| -> Vec<Bar> {
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
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn bench_recommend(a: &RecommendBenchArgs) -> Result<()> {
    anyhow::ensure!(a.repeats >= 1, "--repeats must be at least 1");
    let rec = load_recommender(&a.model, Some(&a.dataset), DeviceChoice::Cpu)?;
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
        "scorer": rec.scorer.name(), "median_ms": median, "runs_ms": runs, "machine": Machine::detect(),
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
