//! `serve`: the HTTP API with dynamic batching (thin wrapper over `encore_serve`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use encore::gpu::DeviceChoice;
use encore_serve::batcher::BatchConfig;
use encore_serve::{ServeConfig, serve, state};

use crate::model::load_recommender;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Model directory written by `encore train`.
    pub model: PathBuf,
    /// Dataset directory (default: the one recorded in the model's model.json).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Where to score: auto, cpu, gpu or gpu:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Address to listen on (port 0 picks a free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Most queries scored together in one batch.
    #[arg(long, default_value_t = 1024)]
    pub max_batch: usize,
    /// Longest a query waits for its batch to fill, in microseconds. 0 (the default) batches
    /// greedily: a batch is whatever has queued while the previous one was scored, so a lone
    /// request never waits and batches grow with the load by themselves.
    #[arg(long, default_value_t = 0)]
    pub max_wait_us: u64,
    /// Queries that may wait; beyond that requests get 503 with Retry-After.
    #[arg(long, default_value_t = 4096)]
    pub queue: usize,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub body_limit: usize,
}

pub fn cmd_serve(a: &ServeArgs) -> Result<()> {
    let rec = load_recommender(&a.model, a.dataset.as_deref(), a.device)?;
    let cfg = ServeConfig {
        addr: a.addr,
        batch: BatchConfig {
            max_batch: a.max_batch,
            max_wait: Duration::from_micros(a.max_wait_us),
            queue: a.queue,
        },
        body_limit: a.body_limit,
    };
    let device = rec.scorer.name();
    let st = state(rec, &cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(st, &cfg, |addr| {
        println!("encore serve: listening on http://{addr} (scoring on {device}); Ctrl-C or SIGTERM stops");
    }))?;
    println!("encore serve: stopped");
    Ok(())
}

#[derive(Args, Debug)]
pub struct LoadgenArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Dataset whose user ids are asked for (uniformly at random).
    #[arg(long)]
    pub dataset: PathBuf,
    /// Target request rates per second, comma-separated: one step each, in order.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    pub rates: Vec<f64>,
    /// Seconds per step.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Tracks per request.
    #[arg(long, short, default_value_t = 10)]
    pub k: usize,
    /// Seed of the arrival schedule and user choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn cmd_loadgen(a: &LoadgenArgs) -> Result<()> {
    use encore_serve::loadgen::{LoadConfig, run};
    anyhow::ensure!(
        a.duration > 0.0 && a.duration.is_finite(),
        "--duration must be > 0"
    );
    let users: Vec<String> =
        encore::data::ids::read(&a.dataset.join(encore::data::dataset::USER_IDS))
            .with_context(|| format!("reading user ids of {}", a.dataset.display()))?
            .iter()
            .map(|id| id.to_string())
            .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut steps = Vec::new();
    for (i, &rate) in a.rates.iter().enumerate() {
        let cfg = LoadConfig {
            url: a.url.clone(),
            users: users.clone(),
            k: a.k,
            rate,
            duration: Duration::from_secs_f64(a.duration),
            seed: a.seed + i as u64,
        };
        let r = rt.block_on(run(&cfg))?;
        if !a.json {
            eprintln!(
                "rate {:>9.1}/s: sent {:>9.1}/s ok {:>9.1}/s shed {} errors {}  p50 {} µs p95 {} µs p99 {} µs p99.9 {} µs",
                r.target_rate,
                r.sent_rate,
                r.achieved_rate,
                r.shed,
                r.errors,
                r.latency.p50_us,
                r.latency.p95_us,
                r.latency.p99_us,
                r.latency.p999_us
            );
        }
        steps.push(r);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&steps)?);
    }
    Ok(())
}
