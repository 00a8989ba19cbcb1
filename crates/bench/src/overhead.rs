//! `encore bench overhead`: what the HTTP server adds to a lone request at low load, and where
//! that time goes.
//!
//! The figure is the p50 of one-at-a-time `GET /v1/recommend` requests over loopback
//! minus the p50 of the same users' direct `top_k` calls made back to back on the same scorer.
//! Beside it, the parts, each measured in the same run:
//! - the same direct calls made one per idle gap (the gap of an HTTP round trip), as a server
//!   at low load makes them: caches, thread pools and clocks have cooled between calls;
//! - `GET /healthz` round trips: the client, loopback TCP and the server's HTTP stack with no
//!   work behind them;
//! - the server's own means from `/metrics`: the recommend handler from arrival to response
//!   and the scoring call inside it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use serde::Serialize;

use encore::error::{Error, Result};
use encore::infer::{Ranked, Scorer};
use encore::recommend::Recommender;
use encore::sys::Machine;
use encore_serve::batcher::BatchConfig;
use encore_serve::loadgen::{get_text, latency_histogram, record_since, sequential_paths};

/// The server's cost at low load and its parts, in microseconds (p50 unless named a mean).
#[derive(Debug, Clone, Serialize)]
pub struct Overhead {
    pub backend: String,
    pub requests: usize,
    pub k: usize,
    /// Direct `top_k` calls back to back (the raw scoring call).
    pub direct_p50_us: u64,
    pub direct_p99_us: u64,
    /// Items scored per direct call (p50, p99), where the scorer counts them.
    pub items_p50: Option<u64>,
    pub items_p99: Option<u64>,
    /// Direct calls, one after each idle gap of `idle_gap_us`.
    pub direct_paced_p50_us: u64,
    pub idle_gap_us: u64,
    /// `GET /healthz` round trips.
    pub healthz_p50_us: u64,
    /// `GET /v1/recommend` round trips, one at a time.
    pub http_p50_us: u64,
    pub http_p99_us: u64,
    /// Server side, from `/metrics`: the recommend handler's mean time from arrival to
    /// response, and the mean scoring call inside it.
    pub handler_mean_us: f64,
    pub scoring_mean_us: f64,
    /// The scorer's own p50 per call inside the server (the same calls, timed around `top_k`).
    pub scoring_p50_us: u64,
    /// `http_p50_us − direct_p50_us`: the figure.
    pub overhead_p50_us: i64,
    /// The same difference within each round (see [`ROUNDS`]).
    pub round_overheads_us: Vec<i64>,
    pub machine: Machine,
}

/// The scorer with every `top_k` call timed (µs), to see the scoring inside the server.
struct Timed {
    inner: Box<dyn Scorer>,
    calls: Arc<Mutex<Histogram<u64>>>,
}

impl Scorer for Timed {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn n_items(&self) -> usize {
        self.inner.n_items()
    }
    fn n_factors(&self) -> usize {
        self.inner.n_factors()
    }
    fn top_k(&self, q: &[f32], ex: Option<&[&[u32]]>, k: usize) -> Result<Vec<Ranked>> {
        let t = Instant::now();
        let out = self.inner.top_k(q, ex, k);
        if let Ok(mut h) = self.calls.lock() {
            record_since(&mut h, t);
        }
        out
    }
    fn items_scored(&self) -> Option<u64> {
        self.inner.items_scored()
    }
}

/// Measures [`Overhead`] for the users at dense rows `rows` (ids `users`) with top-`k`.
pub fn measure(rec: Recommender, users: &[String], rows: &[usize], k: usize) -> Result<Overhead> {
    if rows.is_empty() || users.len() != rows.len() {
        return Err(Error::Config(
            "the overhead benchmark needs at least one user".into(),
        ));
    }
    let calls = Arc::new(Mutex::new(latency_histogram()?));
    let rec = rec.map_scorer(|inner| {
        Box::new(Timed {
            inner,
            calls: calls.clone(),
        })
    });
    let backend = rec.scorer.name();
    let n = rows.len();
    let batch = BatchConfig {
        max_wait: Duration::ZERO,
        ..encore_serve::default_batch()
    };
    let m = encore_serve::with_server(rec, batch, |_, addr, rec| {
        // The client drives its own I/O on this thread (a current-thread runtime), so its
        // round trips do not hop through the server's worker threads.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Runtime(format!("async runtime: {e}")))?;
        let url = format!("http://{addr}");
        let recs: Vec<String> = users
            .iter()
            .map(|u| {
                format!(
                    "/v1/recommend?user={}&k={k}",
                    encore_serve::loadgen::url_encode(u)
                )
            })
            .collect();
        let health = |count: usize| vec!["/healthz".to_string(); count];
        // Warm-up of every path; the idle gap is a warm healthz round trip.
        let warm = n.min(100);
        let gap = rt.block_on(sequential_paths(&url, &health(warm)))?;
        let gap = Duration::from_micros(gap.value_at_quantile(0.5));
        rt.block_on(sequential_paths(&url, &recs[..warm]))?;
        direct(rec, &rows[..warm], k, None)?;
        let mut m = Measured {
            hot: latency_histogram()?,
            items: match rec.scorer.items_scored() {
                Some(_) => Some(items_histogram()?),
                None => None,
            },
            paced: latency_histogram()?,
            healthz: latency_histogram()?,
            http: latency_histogram()?,
            inside: latency_histogram()?,
            rounds: Vec::new(),
            gap,
            metrics: (rt.block_on(get_text(&url, "/metrics"))?, String::new()),
        };
        // Rounds of each measurement in turn, so that drift in the machine's state (other
        // tenants, clocks) reaches all of them alike.
        for r in 0..ROUNDS {
            let part = r * n / ROUNDS..(r + 1) * n / ROUNDS;
            if part.is_empty() {
                continue;
            }
            let (hot, items) = direct(rec, &rows[part.clone()], k, None)?;
            let healthz = rt.block_on(sequential_paths(&url, &health(part.len())))?;
            if let Ok(mut h) = calls.lock() {
                h.reset();
            }
            let http = rt.block_on(sequential_paths(&url, &recs[part.clone()]))?;
            if let Ok(h) = calls.lock() {
                add(&mut m.inside, &h)?;
            }
            let (paced, _) = direct(rec, &rows[part], k, Some(gap))?;
            m.rounds
                .push(http.value_at_quantile(0.5) as i64 - hot.value_at_quantile(0.5) as i64);
            add(&mut m.hot, &hot)?;
            add(&mut m.paced, &paced)?;
            add(&mut m.healthz, &healthz)?;
            add(&mut m.http, &http)?;
            if let (Some(all), Some(i)) = (&mut m.items, &items) {
                add(all, i)?;
            }
        }
        m.metrics.1 = rt.block_on(get_text(&url, "/metrics"))?;
        Ok(m)
    })?;
    let text = &m.metrics;
    // Mean seconds → µs of histogram `name` (with `labels`) over the recommend requests.
    let mean = |name: &str, labels: &str| -> f64 {
        let delta = |key: &str| sample(&text.1, key) - sample(&text.0, key);
        let n = delta(&format!("{name}_count{labels}"));
        if n > 0.0 {
            delta(&format!("{name}_sum{labels}")) / n * 1e6
        } else {
            f64::NAN
        }
    };
    let (direct_p50_us, http_p50_us) =
        (m.hot.value_at_quantile(0.5), m.http.value_at_quantile(0.5));
    Ok(Overhead {
        backend,
        requests: n,
        k,
        direct_p50_us,
        direct_p99_us: m.hot.value_at_quantile(0.99),
        items_p50: m.items.as_ref().map(|h| h.value_at_quantile(0.5)),
        items_p99: m.items.as_ref().map(|h| h.value_at_quantile(0.99)),
        direct_paced_p50_us: m.paced.value_at_quantile(0.5),
        idle_gap_us: m.gap.as_micros() as u64,
        healthz_p50_us: m.healthz.value_at_quantile(0.5),
        http_p50_us,
        http_p99_us: m.http.value_at_quantile(0.99),
        handler_mean_us: mean("encore_request_seconds", "{route=\"/v1/recommend\"}"),
        scoring_mean_us: mean("encore_batch_seconds", ""),
        scoring_p50_us: m.inside.value_at_quantile(0.5),
        overhead_p50_us: http_p50_us as i64 - direct_p50_us as i64,
        round_overheads_us: m.rounds,
        machine: Machine::detect(),
    })
}

/// Rounds the requests are split into (see [`measure`]).
pub const ROUNDS: usize = 5;

/// What the rounds gathered.
struct Measured {
    hot: Histogram<u64>,
    items: Option<Histogram<u64>>,
    paced: Histogram<u64>,
    healthz: Histogram<u64>,
    http: Histogram<u64>,
    inside: Histogram<u64>,
    /// Each round's `http p50 − direct p50`.
    rounds: Vec<i64>,
    gap: Duration,
    /// `/metrics` before and after the rounds.
    metrics: (String, String),
}

/// Items scored per call (any count, 3 significant digits).
fn items_histogram() -> Result<Histogram<u64>> {
    Histogram::new(3).map_err(|e| Error::Runtime(format!("items histogram: {e}")))
}

fn add(to: &mut Histogram<u64>, from: &Histogram<u64>) -> Result<()> {
    to.add(from)
        .map_err(|e| Error::Runtime(format!("histogram: {e}")))
}

/// One direct `top_k` call per row (query and exclusions prepared beforehand, untimed), with
/// `gap` of idle sleep before each when given: microseconds per call, and the items each call
/// scored when the scorer counts them.
fn direct(
    rec: &Recommender,
    rows: &[usize],
    k: usize,
    gap: Option<Duration>,
) -> Result<(Histogram<u64>, Option<Histogram<u64>>)> {
    let mut h = latency_histogram()?;
    let mut items = items_histogram()?;
    let mut counted = true;
    for &r in rows {
        let q = rec.model.users.row(r).to_vec();
        let ex = rec.dataset.train.row(r).0.to_vec();
        let ex = [ex.as_slice()];
        if let Some(g) = gap {
            std::thread::sleep(g);
        }
        let before = rec.scorer.items_scored();
        let t = Instant::now();
        let out = rec.scorer.top_k(&q, Some(&ex), k)?;
        record_since(&mut h, t);
        std::hint::black_box(out);
        match (before, rec.scorer.items_scored()) {
            (Some(a), Some(b)) => {
                let _ = items.record(b.saturating_sub(a).max(1));
            }
            _ => counted = false,
        }
    }
    Ok((h, counted.then_some(items)))
}

/// The value of the Prometheus sample `key` (name with labels, as written) in `text`, 0 if
/// absent.
fn sample(text: &str, key: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

impl Overhead {
    /// A table (or JSON).
    pub fn render(&self, json: bool) -> Result<String> {
        if json {
            return serde_json::to_string_pretty(self)
                .map_err(|e| Error::Runtime(format!("JSON: {e}")));
        }
        Ok(format!(
            "bench overhead: {} requests, one at a time, K = {}, scorer {} ({} threads)\n\
             \x20 direct top_k, back to back      p50 {:>6} µs, p99 {:>6} µs; items scored p50 {}, p99 {}\n\
             \x20 direct top_k, {:>4} µs idle gaps p50 {:>6} µs\n\
             \x20 GET /healthz round trip         p50 {:>6} µs\n\
             \x20 GET /v1/recommend round trip    p50 {:>6} µs, p99 {:>6} µs\n\
             \x20 server: handler mean {:.1} µs, scoring mean {:.1} µs, scoring p50 {} µs\n\
             \x20 overhead (recommend − direct)   p50 {:>6} µs (by round: {:?})",
            self.requests,
            self.k,
            self.backend,
            rayon::current_num_threads(),
            self.direct_p50_us,
            self.direct_p99_us,
            self.items_p50.map_or("-".into(), |v| v.to_string()),
            self.items_p99.map_or("-".into(), |v| v.to_string()),
            self.idle_gap_us,
            self.direct_paced_p50_us,
            self.healthz_p50_us,
            self.http_p50_us,
            self.http_p99_us,
            self.handler_mean_us,
            self.scoring_mean_us,
            self.scoring_p50_us,
            self.overhead_p50_us,
            self.round_overheads_us,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::sample;

    #[test]
    fn prometheus_samples_by_name_and_labels() {
        let text = "# HELP x\nencore_batch_seconds_sum 0.25\nencore_batch_seconds_count 10\n\
                    encore_request_seconds_sum{route=\"/healthz\"} 1.5\n\
                    encore_request_seconds_sum{route=\"/v1/recommend\"} 2.5\n";
        assert_eq!(sample(text, "encore_batch_seconds_sum"), 0.25);
        assert_eq!(sample(text, "encore_batch_seconds_count"), 10.0);
        assert_eq!(
            sample(text, "encore_request_seconds_sum{route=\"/v1/recommend\"}"),
            2.5
        );
        assert_eq!(sample(text, "encore_batch_seconds"), 0.0);
        assert_eq!(sample(text, "missing"), 0.0);
    }
}
