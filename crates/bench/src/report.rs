//! `encore bench report`: the three experiments on one dataset, end to end, into one directory.
//!
//! 1. Training wall-clock, CPU 1 thread vs all threads vs GPU (`bench train`'s runs).
//! 2. p95 latency against request rate: for each backend an in-process server on a loopback port
//!    and an open-loop rate ramp (doubling) until the server saturates — p95 above
//!    `saturation_ms`, any request shed, or fewer answers than sent.
//! 3. The per-request latency distribution of each backend at a common rate (the ramp's first).
//!
//! Writes `report.md`, `results.json` (every number, machine and device) and the figures as SVG
//! and PNG (the SVG rendered by resvg).
//! Without a usable GPU the GPU runs are left out and the report says so.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::chart::{
    Axis, Bar, Series, bar_chart_svg, line_chart_svg, percentile_chart_svg, svg_to_png, tick,
};
use crate::overhead::Overhead;
use crate::train::{RunSpec, TrainBenchOptions, TrainReport, train_bench};
use encore::als::AlsConfig;
use encore::data::dataset::Dataset;
use encore::error::{Error, IoContext, Result};
use encore::gpu::DeviceChoice;
use encore::infer::{Ranked, Scorer};
use encore::recommend::Recommender;
use encore::sys::Machine;
use encore::train::{FitOptions, fit};
use encore_serve::batcher::BatchConfig;
use encore_serve::loadgen::{LoadConfig, LoadResult};

/// Arguments of `encore bench report`.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Dataset directory written by `encore prep`.
    pub dataset: PathBuf,
    /// Report directory (created; files inside are replaced).
    pub out: PathBuf,
    /// Training iterations for every backend.
    pub iterations: usize,
    /// Latent factors k.
    pub factors: usize,
    /// First rate of each ramp (requests per second); it doubles every step.
    pub start_rate: f64,
    /// Most steps per ramp.
    pub max_steps: usize,
    /// Seconds per ramp step.
    pub step_seconds: f64,
    /// A ramp stops once p95 exceeds this many milliseconds.
    pub saturation_ms: f64,
    /// Leave the GPU out even when one is usable.
    pub no_gpu: bool,
    /// Results of `scripts/compare_implicit.py --json` on this dataset: implicit's training time
    /// is drawn beside Encore's (a separate run, labelled as such).
    pub implicit_json: Option<PathBuf>,
}

/// implicit's training time, from `scripts/compare_implicit.py --json`.
#[derive(Debug, Clone, Serialize)]
pub struct ImplicitRun {
    pub label: String,
    pub threads: Option<u64>,
    pub first_iteration_s: f64,
    pub steady_iteration_s: f64,
    pub precision_at_10: Option<f64>,
}

fn read_implicit(path: &Path) -> Result<Vec<ImplicitRun>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::bad_input(path, format!("not JSON: {e}")))?;
    let threads = v["args"]["threads"].as_u64();
    let rows = v["rows"].as_array().ok_or_else(|| {
        Error::bad_input(
            path,
            "no \"rows\" array (expected compare_implicit.py --json output)",
        )
    })?;
    let mut out = Vec::new();
    for r in rows {
        let name = r["name"].as_str().unwrap_or_default();
        if !name.starts_with("implicit") {
            continue;
        }
        let num = |key: &str| {
            r[key].as_f64().ok_or_else(|| {
                Error::bad_input(path, format!("row {name:?} lacks a numeric {key:?}"))
            })
        };
        out.push(ImplicitRun {
            label: format!(
                "{name} ({} threads, separate run)",
                threads.map(|t| t.to_string()).unwrap_or_else(|| "?".into())
            ),
            threads,
            first_iteration_s: num("first_iteration_s")?,
            steady_iteration_s: num("steady_iteration_s")?,
            precision_at_10: r["metrics"]["precision"].as_f64(),
        });
    }
    if out.is_empty() {
        return Err(Error::bad_input(path, "no implicit rows"));
    }
    Ok(out)
}

/// One backend's serving ramp.
#[derive(Debug, Clone, Serialize)]
pub struct Ramp {
    pub backend: String,
    pub device: String,
    pub steps: Vec<LoadResult>,
    /// (latency in ms, fraction of requests at or below it) at the common rate: the 1st to
    /// the 99.99th percentile and the maximum (fraction 1).
    pub cdf: Vec<(f64, f64)>,
}

/// Everything the report measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dataset: PathBuf,
    pub machine: Machine,
    pub gpu: Option<String>,
    pub train: TrainReport,
    pub serving: Vec<Ramp>,
    pub common_rate: f64,
    /// Server overhead at low load (CPU, all threads).
    pub overhead: Overhead,
    /// implicit's training runs, when given.
    pub implicit: Vec<ImplicitRun>,
}

/// A scorer run inside its own thread pool (the 1-thread CPU backend).
struct Pooled {
    inner: Box<dyn Scorer>,
    pool: rayon::ThreadPool,
}

impl Scorer for Pooled {
    fn name(&self) -> String {
        format!(
            "{} ({} thread)",
            self.inner.name(),
            self.pool.current_num_threads()
        )
    }
    fn n_items(&self) -> usize {
        self.inner.n_items()
    }
    fn n_factors(&self) -> usize {
        self.inner.n_factors()
    }
    fn top_k(&self, q: &[f32], ex: Option<&[&[u32]]>, k: usize) -> Result<Vec<Ranked>> {
        self.pool.install(|| self.inner.top_k(q, ex, k))
    }
}

/// The serving batch settings of the ramps: the server's defaults (greedy batching).
fn ramp_batch() -> BatchConfig {
    encore_serve::default_batch()
}

/// Runs the open-loop ramp against a server of `rec`.
fn ramp(rec: Recommender, a: &ReportOptions, users: &[String]) -> Result<Vec<LoadResult>> {
    encore_serve::with_server(rec, ramp_batch(), |rt, addr, _| {
        let mut steps = Vec::new();
        let mut rate = a.start_rate;
        for i in 0..a.max_steps {
            let r = rt.block_on(encore_serve::loadgen::run(&LoadConfig {
                seed: 7 + i as u64,
                ..LoadConfig::new(
                    format!("http://{addr}"),
                    users.to_vec(),
                    rate,
                    Duration::from_secs_f64(a.step_seconds),
                )
            }))?;
            let saturated = r.latency.p95_us as f64 / 1e3 > a.saturation_ms
                || r.shed > 0
                || r.errors > 0
                || (r.ok as f64) < 0.9 * r.sent as f64;
            eprintln!(
                "  rate {:.0}/s: {:.0}/s answered over {:.2} s, p95 {:.2} ms{}{}",
                rate,
                r.achieved_rate,
                r.elapsed_s,
                r.latency.p95_us as f64 / 1e3,
                if saturated { " (saturated)" } else { "" },
                if r.client_saturated {
                    " (the client fell behind its schedule)"
                } else {
                    ""
                }
            );
            steps.push(r);
            if saturated {
                break;
            }
            rate *= 2.0;
        }
        Ok(steps)
    })
}

/// (ms, fraction) points of a step's latency distribution.
fn cdf(step: &LoadResult) -> Vec<(f64, f64)> {
    let h = &step.histogram;
    if h.is_empty() {
        return Vec::new();
    }
    [
        0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0,
    ]
    .iter()
    .map(|&q| (h.value_at_quantile(q) as f64 / 1e3, q))
    .collect()
}

/// Runs all three experiments and writes the report directory.
pub fn report(a: &ReportOptions) -> Result<Report> {
    let rate_ok = a.start_rate > 0.0 && a.start_rate.is_finite();
    let step_ok = a.step_seconds > 0.0 && a.step_seconds <= 3600.0;
    if !rate_ok || !step_ok || a.max_steps == 0 {
        return Err(Error::Config(
            "--start-rate and --max-steps must be > 0, --step-seconds in (0, 3600]".into(),
        ));
    }
    let implicit = match &a.implicit_json {
        Some(p) => read_implicit(p)?,
        None => Vec::new(),
    };
    std::fs::create_dir_all(&a.out).at(&a.out)?;
    let gpu = if a.no_gpu {
        None
    } else {
        encore::gpu::resolve(DeviceChoice::Auto)?
            .0
            .map(|g| g.describe())
    };
    eprintln!("bench report: 1/3 training wall-clock");
    let mut runs: Vec<RunSpec> = vec!["cpu1:cg".parse(), "cpu:cg".parse()]
        .into_iter()
        .collect::<std::result::Result<_, _>>()
        .map_err(Error::Config)?;
    if gpu.is_some() {
        runs.push("gpu:cg".parse().map_err(Error::Config)?);
    }
    let train = train_bench(&TrainBenchOptions {
        dataset: a.dataset.clone(),
        runs,
        iterations: a.iterations,
        cpu_iterations: a.iterations,
        factors: a.factors,
        cg_steps: AlsConfig::default().cg_steps,
        eval_users: 500,
        gpu_memory: None,
        out: None,
        json: false,
    })?;
    eprintln!("bench report: 2/3 serving ramps");
    let ds = Dataset::load(&a.dataset)?;
    let cfg = AlsConfig {
        factors: a.factors,
        iterations: a.iterations,
        ..AlsConfig::default()
    };
    let opts = FitOptions {
        device: if gpu.is_some() {
            DeviceChoice::Gpu(0)
        } else {
            DeviceChoice::Cpu
        },
        quiet: true,
        ..FitOptions::default()
    };
    let model = fit(ds.clone(), &cfg, &opts, |_| {})?;
    let users: Vec<String> = ds.user_ids.iter().map(|u| u.to_string()).collect();
    // Overhead first, on a quiet machine: the first 300 users (or all), one call each.
    let n_over = users.len().min(1000);
    let rows: Vec<usize> = (0..n_over).collect();
    let (rec, _) = Recommender::on_device(model.clone(), ds.clone(), DeviceChoice::Cpu)?;
    let overhead = crate::overhead::measure(rec, &users[..n_over], &rows, 10)?;
    eprintln!(
        " server overhead at low load: p50 {} µs over HTTP vs {} µs direct",
        overhead.http_p50_us, overhead.direct_p50_us
    );
    let mut backends: Vec<(&str, DeviceChoice, usize)> = vec![
        ("cpu (1 thread)", DeviceChoice::Cpu, 1),
        ("cpu (all threads)", DeviceChoice::Cpu, 0),
    ];
    if gpu.is_some() {
        backends.push(("gpu", DeviceChoice::Gpu(0), 0));
    }
    let mut serving = Vec::new();
    for (name, device, threads) in backends {
        eprintln!(" {name}");
        let (mut rec, _) = Recommender::on_device(model.clone(), ds.clone(), device)?;
        if threads > 0 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| Error::Runtime(format!("thread pool: {e}")))?;
            let inner: Box<dyn Scorer> = Box::new(encore::infer::CpuScorer::new(&rec.model.items)?);
            rec.scorer = Box::new(Pooled { inner, pool });
        }
        let device_name = rec.scorer.name();
        let steps = ramp(rec, a, &users)?;
        let cdf = steps.first().map(cdf).unwrap_or_default();
        serving.push(Ramp {
            backend: name.to_string(),
            device: device_name,
            steps,
            cdf,
        });
    }
    let report = Report {
        dataset: a.dataset.clone(),
        machine: Machine::detect(),
        gpu,
        train,
        serving,
        common_rate: a.start_rate,
        overhead,
        implicit,
    };
    eprintln!("bench report: 3/3 figures and report.md");
    write(&report, &a.out)?;
    Ok(report)
}

fn write(r: &Report, dir: &Path) -> Result<()> {
    let json =
        serde_json::to_string_pretty(r).map_err(|e| Error::Config(format!("results.json: {e}")))?;
    encore::util::write_atomic(&dir.join("results.json"), json.as_bytes())?;
    let bars: Vec<Bar> = r
        .train
        .runs
        .iter()
        .map(|x| Bar {
            label: x.label.clone(),
            value: x.steady_iteration_s,
        })
        .chain(r.implicit.iter().map(|x| Bar {
            label: x.label.clone(),
            value: x.steady_iteration_s,
        }))
        .collect();
    bar_chart_svg(
        &dir.join("train.svg"),
        "ALS training: seconds per iteration (steady state)",
        "seconds per iteration",
        &bars,
    )?;
    let p95: Vec<Series> = r
        .serving
        .iter()
        .map(|s| Series {
            name: s.backend.clone(),
            points: s
                .steps
                .iter()
                .map(|x| (x.target_rate, x.latency.p95_us as f64 / 1e3))
                .collect(),
        })
        .collect();
    line_chart_svg(
        &dir.join("p95-vs-rate.svg"),
        "p95 latency against request rate",
        &Axis {
            label: "requests per second (offered)",
            unit: "",
        },
        &Axis {
            label: "p95 latency",
            unit: "ms",
        },
        &p95,
    )?;
    let dists: Vec<Series> = r
        .serving
        .iter()
        .map(|s| Series {
            name: s.backend.clone(),
            points: s.cdf.iter().map(|&(ms, q)| (q, ms)).collect(),
        })
        .collect();
    percentile_chart_svg(
        &dir.join("latency-cdf.svg"),
        &format!(
            "Latency by percentile at {} requests/s",
            tick(r.common_rate, "")
        ),
        "ms",
        &dists,
    )?;
    let mut fonts = true;
    for f in ["train", "p95-vs-rate", "latency-cdf"] {
        fonts &= svg_to_png(
            &dir.join(format!("{f}.svg")),
            &dir.join(format!("{f}.png")),
            1.5,
        )?;
    }
    let mut md = String::new();
    md += "# Encore benchmark report\n\n";
    if !fonts {
        md += "(No fonts were found, so the PNG figures have no text; the SVG ones do. Install a \
               sans font or set ENCORE_FONT_DIR to a folder of .ttf files.)\n\n";
    }
    md += &format!(
        "Dataset `{}`; machine {} ({} cores); GPU: {}.\n\n",
        r.dataset.display(),
        r.machine.cpu,
        r.machine.cores,
        r.gpu
            .clone()
            .unwrap_or_else(|| "none usable — the GPU column is absent".into())
    );
    md += "## 1. Training wall-clock\n\n![training](train.svg)\n\n| run | first iteration (s) | steady iteration (s) | end to end (s) | p@10 |\n| --- | ---: | ---: | ---: | ---: |\n";
    for t in &r.train.runs {
        md += &format!(
            "| {} | {:.3} | {:.3} | {:.2} | {} |\n",
            t.label,
            t.first_iteration_s,
            t.steady_iteration_s,
            t.end_to_end_s,
            t.precision_at_10
                .map(|p| format!("{p:.4}"))
                .unwrap_or_else(|| "-".into())
        );
    }
    for t in &r.implicit {
        md += &format!(
            "| {} | {:.3} | {:.3} | - | {} |\n",
            t.label,
            t.first_iteration_s,
            t.steady_iteration_s,
            t.precision_at_10
                .map(|p| format!("{p:.4}"))
                .unwrap_or_else(|| "-".into())
        );
    }
    md += "\n## 2. p95 latency against request rate\n\n![p95](p95-vs-rate.svg)\n\nAnswered rates are over each step's real elapsed time (until its last answer), not its nominal length. A step marked *client behind* had over 1% of its requests sent more than 1 ms late by the load generator itself: its latencies include the client's delay.\n\n| backend | offered (req/s) | answered (req/s) | elapsed (s) | shed | errors | p50 (ms) | p95 (ms) | p99 (ms) | client |\n| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |\n";
    for s in &r.serving {
        for x in &s.steps {
            md += &format!(
                "| {} | {:.0} | {:.0} | {:.2} | {} | {} | {:.2} | {:.2} | {:.2} | {} |\n",
                s.backend,
                x.target_rate,
                x.achieved_rate,
                x.elapsed_s,
                x.shed,
                x.error_kinds.summary(),
                x.latency.p50_us as f64 / 1e3,
                x.latency.p95_us as f64 / 1e3,
                x.latency.p99_us as f64 / 1e3,
                if x.client_saturated {
                    "behind"
                } else {
                    "on time"
                }
            );
        }
    }
    md += &format!(
        "\n## 3. Latency distribution at {:.0} requests/s\n\n![cdf](latency-cdf.svg)\n",
        r.common_rate
    );
    let o = &r.overhead;
    md += &format!(
        "\n## Server overhead at low load\n\n{} requests one at a time, no batching wait, {}: p50 {} µs over HTTP against {} µs for the direct top-K call back to back — {} µs of server overhead.\n\n\
         Its parts (same run): a `GET /healthz` round trip takes {} µs at p50; the direct call made once per {} µs idle gap, as a server at low load makes it, {} µs; inside the server the recommend handler takes {:.0} µs on average, {:.0} µs of it scoring.\n",
        o.requests,
        o.backend,
        o.http_p50_us,
        o.direct_p50_us,
        o.overhead_p50_us,
        o.healthz_p50_us,
        o.idle_gap_us,
        o.direct_paced_p50_us,
        o.handler_mean_us,
        o.scoring_mean_us
    );
    encore::util::write_atomic(&dir.join("report.md"), md.as_bytes())?;
    Ok(())
}
