//! The edge under overload (issue 14): requests over the in-flight bound are answered 503 with
//! Retry-After before any admitted request is, a server far over its capacity answers only 200
//! and 503 with bounded latency, slowloris and idle connections are closed after their
//! timeouts, and connections over the limit are answered 503 and closed.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use encore_serve::batcher::BatchConfig;
use encore_serve::loadgen::{LoadConfig, run};
use encore_serve::small_recommender;

use crate::common::*;

/// Polls `/metrics` over `url` until `prefix` reads `want` (a counter lags its event a little).
fn wait_metric(s: &Server, prefix: &str, want: f64) -> f64 {
    let mut v = f64::NAN;
    for _ in 0..300 {
        v = metric_or_zero(&get(&s.url("/metrics")).1, prefix);
        if v == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    v
}

#[test]
fn requests_over_the_in_flight_bound_get_503_at_once_and_the_bound_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, rec) = small_recommender(dir.path()).unwrap();
    let (uids, _) = int_ids(&ds);
    // A 1 s batch window holds every admitted request for a second; two may be in flight.
    let s = Arc::new(start_with(rec, batch(1000, 1000, 64), |c| {
        c.limits.max_in_flight = 2;
    }));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let url = s.url(&format!("/v1/recommend?user={}", uids[i]));
            std::thread::spawn(move || {
                let t = Instant::now();
                let r = agent().get(&url).call().unwrap();
                (
                    r.status().as_u16(),
                    r.headers().get("retry-after").is_some(),
                    t.elapsed(),
                )
            })
        })
        .collect();
    let results: Vec<(u16, bool, Duration)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok: Vec<Duration> = results.iter().filter(|r| r.0 == 200).map(|r| r.2).collect();
    let shed: Vec<Duration> = results.iter().filter(|r| r.0 == 503).map(|r| r.2).collect();
    assert_eq!(ok.len() + shed.len(), 16, "only 200 and 503: {results:?}");
    assert!(!ok.is_empty() && !shed.is_empty(), "{results:?}");
    assert!(
        results.iter().all(|&(c, retry, _)| c != 503 || retry),
        "a 503 without Retry-After: {results:?}"
    );
    // Shed at once: every 503 came back before any admitted request was answered (those wait
    // out the 1 s window), i.e. the excess was never queued behind the admitted ones.
    let slowest_shed = shed.iter().max().unwrap();
    let fastest_ok = ok.iter().min().unwrap();
    assert!(
        slowest_shed < fastest_ok,
        "a 503 took {slowest_shed:?}, an admitted request {fastest_ok:?}"
    );
    let m = get(&s.url("/metrics")).1;
    assert!(
        metric(&m, "encore_in_flight_max") <= 2.0,
        "in flight exceeded the bound:\n{m}"
    );
    assert_eq!(
        metric(&m, "encore_shed_total{reason=\"in_flight\"}"),
        shed.len() as f64
    );
    assert!(t0.elapsed() < Duration::from_secs(60));
    Arc::try_unwrap(s).ok().unwrap().stop().unwrap();
}

#[test]
fn far_over_capacity_a_tiny_server_answers_only_200_and_503_with_bounded_latency() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, rec) = small_recommender(dir.path()).unwrap();
    let users: Vec<String> = ds.user_ids.iter().map(|u| u.to_string()).collect();
    // One query per batch, 2 ms each: about 500 answers a second. A 1 µs batch window keeps
    // every query on the batching thread (no inline scoring on the runtime's threads).
    let slow_batch = BatchConfig {
        max_batch: 1,
        max_wait: Duration::from_micros(1),
        queue: 4,
    };
    let s = start_with(slow(rec, Duration::from_millis(2)), slow_batch, |c| {
        c.limits.max_in_flight = 4;
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Three times the capacity for 2 s: an unbounded queue would end ~2.7 s behind.
    let r = rt
        .block_on(run(&LoadConfig::new(
            s.url(""),
            users,
            1500.0,
            Duration::from_secs(2),
        )))
        .unwrap();
    assert_eq!(
        r.error_kinds.connection_errors(),
        0,
        "connection errors: {}",
        r.error_kinds.summary()
    );
    assert!(
        r.error_kinds.status.keys().all(|&s| s == 503),
        "statuses other than 200 and 503: {:?}",
        r.error_kinds.status
    );
    assert_eq!(r.ok + r.shed, r.scheduled);
    assert!(r.ok > 100 && r.shed > 100, "ok {} shed {}", r.ok, r.shed);
    // Four admitted requests of ~2 ms each: their latency stays within a small multiple of
    // that; a generous 1 s still tells a bound from seconds of queueing.
    assert!(
        r.latency.max_us < 1_000_000,
        "an admitted request took {} µs",
        r.latency.max_us
    );
    s.stop().unwrap();
}

#[test]
fn a_partial_header_connection_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (_, rec) = small_recommender(dir.path()).unwrap();
    let s = start_with(rec, batch(64, 0, 64), |c| {
        c.limits.header_timeout = Duration::from_millis(300);
        c.limits.idle_timeout = Duration::from_secs(600);
    });
    let mut slow = TcpStream::connect(s.addr).unwrap();
    use std::io::Write;
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    assert!(
        closed_within(&mut slow, Duration::from_secs(20)),
        "a client that never finished its headers was not disconnected"
    );
    assert_eq!(
        wait_metric(
            &s,
            "encore_connections_total{reason=\"header_timeout\"}",
            1.0
        ),
        1.0
    );
    s.stop().unwrap();
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (_, rec) = small_recommender(dir.path()).unwrap();
    let s = start_with(rec, batch(64, 0, 64), |c| {
        c.limits.header_timeout = Duration::from_secs(600);
        c.limits.idle_timeout = Duration::from_millis(300);
    });
    let mut c = TcpStream::connect(s.addr).unwrap();
    let (head, _) = raw_request(&mut c, "/healthz");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        closed_within(&mut c, Duration::from_secs(20)),
        "an idle keep-alive connection stayed open"
    );
    assert_eq!(
        wait_metric(&s, "encore_connections_total{reason=\"idle_timeout\"}", 1.0),
        1.0
    );
    s.stop().unwrap();
}

#[test]
fn connections_over_the_limit_are_answered_503_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (_, rec) = small_recommender(dir.path()).unwrap();
    let s = start_with(rec, batch(64, 0, 64), |c| {
        c.limits.max_connections = 2;
    });
    let mut a = TcpStream::connect(s.addr).unwrap();
    let mut b = TcpStream::connect(s.addr).unwrap();
    for c in [&mut a, &mut b] {
        let (head, _) = raw_request(c, "/healthz");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    // Both stay open (keep-alive): a third connection is over the limit.
    let mut third = TcpStream::connect(s.addr).unwrap();
    let (head, body) = raw_request(&mut third, "/healthz");
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(lower.contains("retry-after: 1"), "{head}");
    assert!(lower.contains("connection: close"), "{head}");
    assert!(body.contains("too many connections"), "{body}");
    assert!(closed_within(&mut third, Duration::from_secs(20)));
    // The two served connections still work; one closing makes room for a new one.
    let (head, metrics) = raw_request(&mut b, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        metric(&metrics, "encore_connections_total{reason=\"refused\"}"),
        1.0
    );
    assert_eq!(metric(&metrics, "encore_connections_limit"), 2.0);
    drop(a);
    let mut served = false;
    for _ in 0..200 {
        let mut c = TcpStream::connect(s.addr).unwrap();
        if raw_request(&mut c, "/healthz")
            .0
            .starts_with("HTTP/1.1 200")
        {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        served,
        "a closed connection's place was never given to a new one"
    );
    drop(b);
    s.stop().unwrap();
}
