//! `serve` and `loadgen`: the HTTP API with dynamic batching, and the load generator (thin
//! wrappers over `encore_serve`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use encore::gpu::DeviceChoice;
use encore_serve::batcher::BatchConfig;
use encore_serve::{Limits, Log, ModelSource, ServeConfig, serve, state};

use crate::model::load_recommender;

/// Seconds as a `Duration` (fractions allowed), for clap.
fn seconds(s: &str) -> std::result::Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=1e9).contains(&v) {
        return Err(format!("{s} is not a number of seconds in 0..=1e9"));
    }
    Ok(Duration::from_secs_f64(v))
}

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
    /// Queries (one per user asked for) that may wait for the scorer; a request that would
    /// overfill it gets 503 with Retry-After. At least --max-in-flight, so the in-flight bound,
    /// not this queue, decides what is admitted.
    #[arg(long, default_value_t = encore_serve::default_batch().queue)]
    pub queue: usize,
    /// Requests at once in the /v1 routes. One more is answered 503 with Retry-After at once,
    /// never queued: this bounds the latency of admitted requests to about this many divided
    /// by the server's throughput (512 at 100,000 requests/s: ~5 ms), so set it to roughly
    /// throughput x the latency you accept. /healthz, /metrics and /admin/reload are outside it.
    #[arg(long, default_value_t = Limits::default().max_in_flight)]
    pub max_in_flight: usize,
    /// Connections at once. The next ones are answered 503 (Connection: close), up to an
    /// eighth more (16..=1,024), and beyond that closed at once. Capped below the open-file
    /// limit, which is raised to its hard limit at start.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers (slowloris protection), counted from
    /// when the connection is ready for them; then it is closed.
    #[arg(long, value_parser = seconds, value_name = "SECONDS", default_value = "10")]
    pub header_timeout: Duration,
    /// Seconds a keep-alive connection may sit without a request before it is closed.
    #[arg(long, value_parser = seconds, value_name = "SECONDS", default_value = "30")]
    pub idle_timeout: Duration,
    /// Seconds an admitted request may take, reading its body included; then it is answered
    /// 503 and its slot freed.
    #[arg(long, value_parser = seconds, value_name = "SECONDS", default_value = "30")]
    pub request_timeout: Duration,
    /// After SIGTERM or Ctrl-C: seconds in-flight requests get to finish. Then every
    /// connection still open is closed and the process exits.
    #[arg(long, value_parser = seconds, value_name = "SECONDS", default_value = "10")]
    pub drain_timeout: Duration,
    /// Bearer token for POST /admin/reload, which is then open to any address (without it
    /// the route answers only loopback clients). Read from the ENCORE_ADMIN_TOKEN environment
    /// variable when not given here, so it need not appear in the process list.
    #[arg(long, env = "ENCORE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub body_limit: usize,
}

pub fn cmd_serve(a: &ServeArgs) -> Result<()> {
    let log = Log::stderr("encore serve: ");
    match encore_serve::limits::raise_nofile_limit() {
        Ok(l) => eprintln!("encore serve: {}", l.describe()),
        Err(e) => eprintln!("encore serve: could not raise the open-file limit: {e}"),
    }
    let cfg = ServeConfig {
        addr: a.addr,
        batch: BatchConfig {
            max_batch: a.max_batch,
            max_wait: Duration::from_micros(a.max_wait_us),
            queue: a.queue,
        },
        body_limit: a.body_limit,
        limits: Limits {
            max_in_flight: a.max_in_flight,
            max_connections: a.max_connections,
            header_timeout: a.header_timeout,
            idle_timeout: a.idle_timeout,
            request_timeout: a.request_timeout,
            drain_timeout: a.drain_timeout,
        },
        source: Some(ModelSource {
            model: a.model.clone(),
            dataset: a.dataset.clone(),
        }),
        admin_token: a.admin_token.clone().filter(|t| !t.is_empty()),
        log,
    };
    cfg.validate()?;
    let rec = load_recommender(&a.model, a.dataset.as_deref(), a.device)?;
    let device = rec.scorer.name();
    let st = state(rec, &cfg)?;
    let version = st.version();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(st, &cfg, |addr| {
        println!(
            "encore serve: listening on http://{addr} (scoring on {device}; model {} trained {}); \
             SIGHUP reloads the model, Ctrl-C or SIGTERM stops",
            version.id, version.trained_at
        );
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
    /// Fixed pool of N keep-alive connections: each sends the next due request when it is free,
    /// so a slow server makes requests wait (counted in their latency) instead of making the
    /// client open more sockets. Without it the load is open-loop: every request is sent on
    /// time on its own task, over as many connections as that takes.
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
    /// Seconds to wait for an answer (in pool mode also for a free connection); then the
    /// request counts as a timeout.
    #[arg(long, value_parser = seconds, value_name = "SECONDS", default_value = "10")]
    pub timeout: Duration,
    /// Print JSON instead of a table (every field: elapsed time, errors by kind, 503
    /// latencies, the client's own lag and CPU).
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
    // A pool of thousands of connections, or an open loop against a slow server, needs more
    // descriptors than the common soft limit of 1,024.
    if let Err(e) = encore_serve::limits::raise_nofile_limit() {
        eprintln!("encore loadgen: could not raise the open-file limit: {e}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut steps = Vec::new();
    for (i, &rate) in a.rates.iter().enumerate() {
        let cfg = LoadConfig {
            k: a.k,
            seed: a.seed + i as u64,
            connections: a.connections,
            timeout: a.timeout,
            ..LoadConfig::new(
                a.url.clone(),
                users.clone(),
                rate,
                Duration::from_secs_f64(a.duration),
            )
        };
        let r = rt.block_on(run(&cfg))?;
        if !a.json {
            eprintln!(
                "rate {:>9.1}/s: sent {:>9.1}/s ok {:>9.1}/s over {:.2} s; shed {} (p99 {} µs, {} µs from send) errors {} [{}]  p50 {} µs p95 {} µs p99 {} µs p99.9 {} µs (p99 {} µs from send){}",
                r.target_rate,
                r.sent_rate,
                r.achieved_rate,
                r.elapsed_s,
                r.shed,
                r.shed_latency.p99_us,
                r.shed_service_latency.p99_us,
                r.errors,
                r.error_kinds.summary(),
                r.latency.p50_us,
                r.latency.p95_us,
                r.latency.p99_us,
                r.latency.p999_us,
                r.service_latency.p99_us,
                if r.client_saturated {
                    format!(
                        "\n  client saturated: {} of {} requests went out over 1 ms late (p99 {} µs; client CPU {:.2} cores): these latencies include the client's own delay",
                        r.late,
                        r.scheduled,
                        r.schedule_lag.p99_us,
                        r.client_cpu_cores.unwrap_or(f64::NAN)
                    )
                } else {
                    String::new()
                }
            );
        }
        steps.push(r);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&steps)?);
    }
    Ok(())
}
