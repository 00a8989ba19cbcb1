//! `encore loadgen`: open-loop load against a running server.
//!
//! Requests are sent on a Poisson schedule fixed in advance (exponential gaps at the target
//! rate, seeded), each on its own task, whether or not earlier ones have answered; a request's
//! latency counts from its *intended* send time, so a server that stalls is charged for every
//! request that should have gone out meanwhile (no coordinated omission). Latencies go into an
//! HdrHistogram (1 µs to 60 s, 3 significant digits). 503 answers (load shed) and other failures
//! are counted apart from successes, and only successes enter the histogram. Sends keep to the
//! schedule within microseconds (`pace_until`), not the 1 ms of tokio's timer.

use std::sync::{Arc, Mutex};
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

use encore::error::{Error, Result};

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

/// Results of one load step.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    pub target_rate: f64,
    /// Requests sent per second of the step.
    pub sent_rate: f64,
    /// Successful answers per second of the step.
    pub achieved_rate: f64,
    pub sent: u64,
    pub ok: u64,
    /// 503 answers (load shedding).
    pub shed: u64,
    /// Other statuses and connection failures.
    pub errors: u64,
    pub latency: Percentiles,
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

/// Waits until `t` to within microseconds. Tokio's timer rounds sleeps up to whole milliseconds,
/// which would send each request up to 1 ms late and charge that to the server; so it sleeps to
/// about 2 ms before and yields in a loop for the rest. At rates above ~500/s the pacing task
/// therefore keeps one runtime thread busy: the price of an honest schedule.
async fn pace_until(t: tokio::time::Instant) {
    let coarse = Duration::from_millis(2);
    if let Some(early) = t.checked_sub(coarse)
        && early > tokio::time::Instant::now()
    {
        tokio::time::sleep_until(early).await;
    }
    while tokio::time::Instant::now() < t {
        tokio::task::yield_now().await;
    }
}

/// Runs one open-loop step; call inside a tokio runtime.
pub async fn run(cfg: &LoadConfig) -> Result<LoadResult> {
    if !(cfg.rate > 0.0 && cfg.rate.is_finite()) {
        return Err(Error::Config(format!(
            "--rate must be > 0, got {}",
            cfg.rate
        )));
    }
    if cfg.users.is_empty() {
        return Err(Error::Config("no user ids to ask for".into()));
    }
    let requests = cfg.rate * cfg.duration.as_secs_f64();
    if !(requests > 0.0 && requests <= 1e8) {
        return Err(Error::Config(format!(
            "rate x duration must give 1..=100,000,000 requests, got {requests}"
        )));
    }
    let base = cfg.url.trim_end_matches('/').to_string();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build_http();
    let gaps = Exp::new(cfg.rate).map_err(|e| Error::Config(format!("rate: {e}")))?;
    let mut rng = Pcg64Mcg::seed_from_u64(cfg.seed);
    // The whole schedule first: intended send offsets and users.
    let mut schedule = Vec::new();
    let mut t = 0.0f64;
    let end = cfg.duration.as_secs_f64();
    loop {
        t += gaps.sample(&mut rng);
        if t >= end {
            break;
        }
        let user = url_encode(&cfg.users[rng.random_range(0..cfg.users.len())]);
        schedule.push((Duration::from_secs_f64(t), user));
    }
    let hist = Arc::new(Mutex::new(latency_histogram()?));
    let counts = Arc::new(Mutex::new((0u64, 0u64, 0u64))); // ok, shed, errors
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (offset, user) in &schedule {
        // Reap finished tasks as we go so a long run does not hold every one of them.
        while tasks.try_join_next().is_some() {}
        let intended = start + *offset;
        pace_until(intended).await;
        let uri: hyper::Uri = format!("{base}/v1/recommend?user={user}&k={}", cfg.k)
            .parse()
            .map_err(|e| Error::Config(format!("bad --url {base}: {e}")))?;
        let (client, hist, counts) = (client.clone(), hist.clone(), counts.clone());
        let intended = intended.into_std();
        tasks.spawn(async move {
            let status = match client.get(uri).await {
                Ok(resp) => {
                    let s = resp.status().as_u16();
                    // Read the whole answer: latency ends when the client has it.
                    let _ = resp.into_body().collect().await;
                    Some(s)
                }
                Err(_) => None,
            };
            let us = Instant::now()
                .saturating_duration_since(intended)
                .as_micros() as u64;
            let Ok(mut c) = counts.lock() else { return };
            match status {
                Some(200) => {
                    c.0 += 1;
                    if let Ok(mut h) = hist.lock() {
                        record_us(&mut h, us);
                    }
                }
                Some(503) => c.1 += 1,
                _ => c.2 += 1,
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = cfg.duration.as_secs_f64();
    let (ok, shed, errors) = *counts
        .lock()
        .map_err(|_| Error::Runtime("counter lock poisoned".into()))?;
    let histogram = hist
        .lock()
        .map_err(|_| Error::Runtime("histogram lock poisoned".into()))?
        .clone();
    Ok(LoadResult {
        target_rate: cfg.rate,
        sent_rate: schedule.len() as f64 / elapsed,
        achieved_rate: ok as f64 / elapsed,
        sent: schedule.len() as u64,
        ok,
        shed,
        errors,
        latency: Percentiles::from_histogram(&histogram),
        histogram,
    })
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
