//! `serve`: the HTTP API with dynamic batching (thin wrapper over `encore::serve`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use encore::gpu::DeviceChoice;
use encore::serve::batcher::BatchConfig;
use encore::serve::{ServeConfig, serve, state};

use super::model::load_recommender;

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
    #[arg(long, default_value_t = 256)]
    pub max_batch: usize,
    /// Longest a query waits for its batch to fill, in microseconds.
    #[arg(long, default_value_t = 500)]
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
