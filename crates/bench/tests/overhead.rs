//! `bench overhead` against a real in-process server on a tiny synthetic dataset.

use encore_serve::small_recommender;

/// `bench overhead` measures every part on a real server: each round is recorded, the server's
/// own figures are read back from `/metrics` (scoring inside the handler, so no longer than it),
/// the scorer's item count comes through, and the headline is recommend p50 − direct p50.
#[test]
fn the_overhead_benchmark_measures_every_part() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, rec) = small_recommender(dir.path()).unwrap();
    let n = 40.min(ds.user_ids.len());
    let rows: Vec<usize> = (0..n).collect();
    let users: Vec<String> = ds.user_ids.iter().take(n).map(|u| u.to_string()).collect();
    let o = encore_bench::overhead::measure(rec, &users, &rows, 5).unwrap();
    assert_eq!((o.requests, o.k), (n, 5));
    assert_eq!(o.round_overheads_us.len(), encore_bench::overhead::ROUNDS);
    assert_eq!(
        o.overhead_p50_us,
        o.http_p50_us as i64 - o.direct_p50_us as i64
    );
    for (what, v) in [
        ("direct", o.direct_p50_us),
        ("paced", o.direct_paced_p50_us),
        ("healthz", o.healthz_p50_us),
        ("recommend", o.http_p50_us),
        ("scoring inside", o.scoring_p50_us),
    ] {
        assert!(v >= 1, "{what} p50 {v}");
    }
    assert!(
        o.handler_mean_us.is_finite() && o.scoring_mean_us.is_finite(),
        "/metrics not read: handler {} scoring {}",
        o.handler_mean_us,
        o.scoring_mean_us
    );
    assert!(
        0.0 < o.scoring_mean_us && o.scoring_mean_us <= o.handler_mean_us,
        "scoring {} µs inside a handler of {} µs",
        o.scoring_mean_us,
        o.handler_mean_us
    );
    assert!(o.items_p50.is_some_and(|i| i >= 1) && o.items_p99 >= o.items_p50);
    let table = o.render(false).unwrap();
    assert!(table.contains("overhead (recommend − direct)"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&o.render(true).unwrap()).unwrap();
    assert_eq!(json["requests"], n);
}
