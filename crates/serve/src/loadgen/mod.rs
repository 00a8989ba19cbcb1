//! `encore loadgen`: load against a running server, open-loop or over a fixed connection pool.
//!
//! Requests follow a Poisson schedule fixed in advance (exponential gaps at the target rate,
//! seeded). A request's latency counts from its *intended* send time, so a server that stalls is
//! charged for every request that should have gone out meanwhile (no coordinated omission).
//! Latencies go into HdrHistograms (1 µs to 60 s, 3 significant digits): successes and 503s
//! (load shed) apart; every other outcome is counted by kind ([`outcome`]). Sends keep to the
//! schedule within microseconds ([`pace`]), not the 1 ms of tokio's timer.
//!
//! Two modes: **open loop** (the default) sends each request on its own task, whether or not
//! earlier ones have answered, over as many connections as that takes; **pool** (`connections:
//! Some(n)`, [`pool`]) keeps exactly n keep-alive connections, each sending the next due request
//! when it is free, so a slow server makes requests wait (charged as latency) instead of making
//! the client open more sockets.
//!
//! Issue 14's corrections: rates are divided by the real elapsed time of the step (a 10 s step
//! that took 37 s once reported 3.7× its true throughput), and the client says when it fell
//! behind its own schedule (`client_saturated`) and how much CPU it used, so a client
//! bottleneck is never blamed on the server.

pub mod outcome;
pub mod pace;
pub mod pool;

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use rand_pcg::Pcg64Mcg;
use serde::Serialize;
use tokio::sync::mpsc;

use encore::error::{Error, Result};
pub use outcome::{ErrorKinds, Outcome};
use outcome::{Sample, Tally, classify};

/// One load step.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// User ids to ask for, as text (chosen uniformly at random per request; URL-encoded when
    /// sent).
    pub users: Vec<String>,
    pub k: usize,
    /// Target requests per second.
    pub rate: f64,
    pub duration: Duration,
    pub seed: u64,
    /// `None`: open loop. `Some(n)`: exactly n keep-alive connections (see the module doc).
    pub connections: Option<usize>,
    /// Longest wait for an answer once sent (and, in pool mode, for a free connection).
    pub timeout: Duration,
}

impl LoadConfig {
    /// Open loop at `rate` for `duration`: k = 10, seed 1, a 10 s timeout.
    pub fn new(url: impl Into<String>, users: Vec<String>, rate: f64, duration: Duration) -> Self {
        Self {
            url: url.into(),
            users,
            k: 10,
            rate,
            duration,
            seed: 1,
            connections: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Percentiles {
    /// From a histogram of microseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        Self {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Longest latency a [`latency_histogram`] holds: 60 s in microseconds.
const MAX_US: u64 = 60_000_000;

/// A histogram for latencies from 1 µs to 60 s at 3 significant digits.
pub fn latency_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_US, 3)
        .map_err(|e| Error::Runtime(format!("latency histogram: {e}")))
}

/// Records `us` microseconds into a [`latency_histogram`], clamped to its range.
pub fn record_us(h: &mut Histogram<u64>, us: u64) {
    let _ = h.record(us.clamp(1, MAX_US));
}

/// Records the microseconds since `t` into a [`latency_histogram`].
pub fn record_since(h: &mut Histogram<u64>, t: Instant) {
    record_us(h, t.elapsed().as_micros() as u64);
}

/// A request is *late* when the client itself sent it this many microseconds after its
/// intended time; more than [`LATE_SHARE`] of a step late means the client could not keep to
/// its schedule.
pub const LATE_US: u64 = 1_000;
/// See [`LATE_US`].
pub const LATE_SHARE: f64 = 0.01;

/// Whether `late` of `scheduled` requests means the client fell behind (see [`LATE_US`]).
pub fn saturated(late: u64, scheduled: u64) -> bool {
    late as f64 > LATE_SHARE * scheduled as f64
}

/// Results of one load step.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    /// `open-loop` or `pool`.
    pub mode: String,
    /// Connections of the pool (pool mode).
    pub connections: Option<usize>,
    /// Connections the pool opened (pool mode; more than `connections` when the server closed
    /// some).
    pub connections_opened: Option<u64>,
    pub target_rate: f64,
    /// The step's nominal length.
    pub duration_s: f64,
    /// From the first intended send to the last request's end: what rates are divided by.
    pub elapsed_s: f64,
    /// From the first intended send to the last send.
    pub send_elapsed_s: f64,
    /// Requests in the schedule.
    pub scheduled: u64,
    /// Requests that went to a connection (pool mode: less than `scheduled` when some timed
    /// out waiting for one).
    pub sent: u64,
    /// `sent` over `send_elapsed_s`.
    pub sent_rate: f64,
    /// Successful (2xx) answers over `elapsed_s`.
    pub achieved_rate: f64,
    /// Every answer (any status) over `elapsed_s`.
    pub answered_rate: f64,
    pub ok: u64,
    /// 503 answers (load shed).
    pub shed: u64,
    /// Every other failure: `error_kinds` less the 503s.
    pub errors: u64,
    pub error_kinds: ErrorKinds,
    /// Latency of the successes, from the intended send time.
    pub latency: Percentiles,
    /// Latency of the 503s, from the intended send time.
    pub shed_latency: Percentiles,
    /// Latency of the successes from the moment each went to its connection (pool mode: the
    /// wait for a free connection left out; open loop: the connect included).
    pub service_latency: Percentiles,
    /// The same for the 503s: how fast the server sheds.
    pub shed_service_latency: Percentiles,
    /// How late requests went to their connection, from the intended time (pool mode: waiting
    /// for a free connection included).
    pub send_lag: Percentiles,
    /// How late the client's own scheduler was: the pacing loop in pool mode, a request's task
    /// starting in open-loop mode.
    pub schedule_lag: Percentiles,
    /// Requests whose `schedule_lag` exceeded [`LATE_US`].
    pub late: u64,
    /// More than [`LATE_SHARE`] of the requests were late: the client, not the server, could
    /// not keep up, and latencies include the client's delay.
    pub client_saturated: bool,
    /// CPU seconds this process used during the step (the whole process: the server too, when
    /// it runs in the same one) and that over `elapsed_s`, in cores.
    pub client_cpu_s: Option<f64>,
    pub client_cpu_cores: Option<f64>,
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

/// Microseconds from `from` to `to` (0 when `to` is earlier).
fn us_between(from: Instant, to: Instant) -> u64 {
    to.saturating_duration_since(from)
        .as_micros()
        .min(u64::MAX as u128) as u64
}

/// The schedule: intended offsets from the start and URL-encoded user ids.
fn schedule(cfg: &LoadConfig) -> Result<Vec<(Duration, String)>> {
    if !(cfg.rate > 0.0 && cfg.rate.is_finite()) {
        return Err(Error::Config(format!(
            "--rate must be > 0, got {}",
            cfg.rate
        )));
    }
    if cfg.users.is_empty() {
        return Err(Error::Config("no user ids to ask for".into()));
    }
    if cfg.connections == Some(0) {
        return Err(Error::Config("--connections must be >= 1".into()));
    }
    if cfg.timeout.is_zero() {
        return Err(Error::Config("--timeout must be > 0".into()));
    }
    let requests = cfg.rate * cfg.duration.as_secs_f64();
    if !(requests > 0.0 && requests <= 1e8) {
        return Err(Error::Config(format!(
            "rate x duration must give 1..=100,000,000 requests, got {requests}"
        )));
    }
    let gaps = Exp::new(cfg.rate).map_err(|e| Error::Config(format!("rate: {e}")))?;
    let mut rng = Pcg64Mcg::seed_from_u64(cfg.seed);
    let mut out = Vec::with_capacity(requests.ceil() as usize + 16);
    let mut t = 0.0f64;
    let end = cfg.duration.as_secs_f64();
    loop {
        t += gaps.sample(&mut rng);
        if t >= end {
            break;
        }
        let user = url_encode(&cfg.users[rng.random_range(0..cfg.users.len())]);
        out.push((Duration::from_secs_f64(t), user));
    }
    Ok(out)
}

/// The path and query of one request.
fn path_for(user: &str, k: usize) -> String {
    format!("/v1/recommend?user={user}&k={k}")
}

/// Runs one step (open loop or pool, per `cfg.connections`); call inside a tokio runtime.
pub async fn run(cfg: &LoadConfig) -> Result<LoadResult> {
    let plan = schedule(cfg)?;
    let scheduled = plan.len() as u64;
    let cpu0 = crate::limits::process_cpu_seconds();
    let (tx, mut rx) = mpsc::unbounded_channel::<Sample>();
    let collector = tokio::spawn(async move {
        let mut t = Tally::new()?;
        while let Some(s) = rx.recv().await {
            t.add(s);
        }
        Ok::<_, Error>(t)
    });
    let start = Instant::now();
    let timing = match cfg.connections {
        None => open_loop(cfg, plan, start, tx).await?,
        Some(n) => pool::run(cfg, n, plan, start, tx).await?,
    };
    let tally = collector
        .await
        .map_err(|e| Error::Runtime(format!("load generator: {e}")))??;
    let end = Instant::now();
    let cpu = match (cpu0, crate::limits::process_cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    Ok(finish(cfg, scheduled, start, end, timing, tally, cpu))
}

/// What a mode's driver measured besides the samples.
pub(crate) struct Timing {
    /// When the last request was handed on.
    pub last_send: Instant,
    /// The client's own lateness per request (see [`LoadResult::schedule_lag`]); `None`: the
    /// samples' send lags are that.
    pub schedule_lag: Option<Histogram<u64>>,
    /// Requests whose schedule lag exceeded [`LATE_US`].
    pub late: u64,
    pub connections_opened: Option<u64>,
}

fn finish(
    cfg: &LoadConfig,
    scheduled: u64,
    start: Instant,
    end: Instant,
    timing: Timing,
    t: Tally,
    cpu: Option<f64>,
) -> LoadResult {
    let elapsed = end.duration_since(start).as_secs_f64().max(1e-9);
    let send_elapsed = timing
        .last_send
        .saturating_duration_since(start)
        .as_secs_f64()
        .max(1e-9);
    let shed = t.kinds.status.get(&503).copied().unwrap_or(0);
    let answered = t.ok.len() + t.kinds.status.values().sum::<u64>();
    // Open loop: the client's lateness is when each request's task started (the runtime's own
    // delay); pool mode: when the pacer handed it on (waiting for a free connection is not the
    // client's fault).
    let (lag, late) = match timing.schedule_lag.as_ref() {
        Some(l) => (l, timing.late),
        None => (&t.send_lag, t.send_late),
    };
    LoadResult {
        mode: if cfg.connections.is_some() {
            "pool".into()
        } else {
            "open-loop".into()
        },
        connections: cfg.connections,
        connections_opened: timing.connections_opened,
        target_rate: cfg.rate,
        duration_s: cfg.duration.as_secs_f64(),
        elapsed_s: elapsed,
        send_elapsed_s: send_elapsed,
        scheduled,
        sent: t.sent,
        sent_rate: t.sent as f64 / send_elapsed,
        achieved_rate: t.ok.len() as f64 / elapsed,
        answered_rate: answered as f64 / elapsed,
        ok: t.ok.len(),
        shed,
        errors: t.kinds.errors(),
        latency: Percentiles::from_histogram(&t.ok),
        shed_latency: Percentiles::from_histogram(&t.shed),
        service_latency: Percentiles::from_histogram(&t.ok_service),
        shed_service_latency: Percentiles::from_histogram(&t.shed_service),
        send_lag: t.send_lag(),
        schedule_lag: Percentiles::from_histogram(lag),
        late,
        client_saturated: saturated(late, scheduled),
        client_cpu_s: cpu,
        client_cpu_cores: cpu.map(|c| c / elapsed),
        error_kinds: t.kinds,
        histogram: t.ok,
    }
}

/// Open loop: every request on its own task, started by the pacing thread at its intended
/// time, over connections from hyper's pool as needed.
async fn open_loop(
    cfg: &LoadConfig,
    plan: Vec<(Duration, String)>,
    start: Instant,
    tx: mpsc::UnboundedSender<Sample>,
) -> Result<Timing> {
    let base = cfg.url.trim_end_matches('/').to_string();
    let _: hyper::Uri = format!("{base}{}", path_for("1", cfg.k))
        .parse()
        .map_err(|e| Error::Config(format!("bad --url {base}: {e}")))?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(4096)
        .build_http();
    let (k, timeout) = (cfg.k, cfg.timeout);
    let rt = tokio::runtime::Handle::current();
    let done = pace::pace(plan, start, move |intended, user| {
        let (client, tx) = (client.clone(), tx.clone());
        let uri = format!("{base}{}", path_for(&user, k));
        rt.spawn(async move {
            let lag = us_between(intended, Instant::now());
            let outcome = match tokio::time::timeout(timeout, async {
                let uri: hyper::Uri = uri.parse()?;
                let resp = client.get(uri).await?;
                let s = resp.status();
                // Read the whole answer: latency ends when the client has it.
                resp.into_body().collect().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(s)
            })
            .await
            {
                Ok(Ok(s)) if s.is_success() => Outcome::Ok,
                Ok(Ok(s)) => Outcome::Status(s.as_u16()),
                Ok(Err(e)) => {
                    let connecting = e
                        .downcast_ref::<hyper_util::client::legacy::Error>()
                        .is_some_and(|e| e.is_connect());
                    classify(e.as_ref(), connecting)
                }
                Err(_) => Outcome::Timeout,
            };
            let _ = tx.send(Sample {
                outcome,
                latency_us: us_between(intended, Instant::now()),
                send_lag_us: Some(lag),
            });
        });
    })?;
    let paced = done
        .await
        .map_err(|_| Error::Runtime("the pacing thread stopped".into()))??;
    Ok(Timing {
        last_send: paced.last,
        schedule_lag: None,
        late: 0,
        connections_opened: None,
    })
}

/// The client's own lateness: a histogram and the count over [`LATE_US`].
pub(crate) struct LagTally {
    pub hist: Histogram<u64>,
    pub late: u64,
}

impl LagTally {
    pub fn new() -> Result<Self> {
        Ok(Self {
            hist: latency_histogram()?,
            late: 0,
        })
    }

    pub fn add(&mut self, us: u64) {
        record_us(&mut self.hist, us);
        self.late += u64::from(us > LATE_US);
    }
}

/// Closed loop, one GET at a time over one keep-alive connection: the latency of each of
/// `paths` (relative to `url`) in order, in microseconds. Any status but 200 is an error. Used
/// to measure the server's own overhead over the scoring call.
pub async fn sequential_paths(url: &str, paths: &[String]) -> Result<Histogram<u64>> {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let mut h = latency_histogram()?;
    for path in paths {
        let t = Instant::now();
        get(&client, url, path).await?;
        record_since(&mut h, t);
    }
    Ok(h)
}

/// The body of `GET url+path` as text; any status but 200 is an error.
pub async fn get_text(url: &str, path: &str) -> Result<String> {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let body = get(&client, url, path).await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// `GET url+path` on `client`: the body of a 200 answer, an error otherwise.
async fn get(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    url: &str,
    path: &str,
) -> Result<Bytes> {
    let base = url.trim_end_matches('/');
    let uri: hyper::Uri = format!("{base}{path}")
        .parse()
        .map_err(|e| Error::Config(format!("bad url {base}{path}: {e}")))?;
    let resp = client
        .get(uri)
        .await
        .map_err(|e| Error::Runtime(format!("GET {path}: {e}")))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| Error::Runtime(format!("GET {path}: {e}")))?
        .to_bytes();
    if status != 200 {
        return Err(Error::Runtime(format!("GET {path}: status {status}")));
    }
    Ok(body)
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a query value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_keeps_unreserved_characters_only() {
        assert_eq!(url_encode("Zoë Smith/1"), "Zo%C3%AB%20Smith%2F1");
        assert_eq!(url_encode("SOab-1._~"), "SOab-1._~");
    }

    #[test]
    fn the_client_is_saturated_when_over_one_percent_is_late() {
        assert!(!saturated(0, 1000));
        assert!(!saturated(10, 1000), "exactly 1% is still on time");
        assert!(saturated(11, 1000));
        assert!(saturated(1, 10));
        assert!(!saturated(0, 0));
    }

    #[test]
    fn lateness_counts_lags_over_a_millisecond() {
        let mut t = LagTally::new().unwrap();
        for us in [0, 999, 1000, 1001, 50_000] {
            t.add(us);
        }
        assert_eq!(t.late, 2);
        assert_eq!(t.hist.len(), 5);
    }

    #[test]
    fn percentiles_of_known_samples() {
        let mut h = latency_histogram().unwrap();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let p = Percentiles::from_histogram(&h);
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50_us, 500);
        assert_eq!(p.p95_us, 950);
        assert_eq!(p.p99_us, 990);
        assert_eq!(p.p999_us, 999);
        assert_eq!(p.max_us, 1000);
        assert!((p.mean_us - 500.5).abs() < 0.5);
    }
}
