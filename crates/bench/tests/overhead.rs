//! `bench overhead` against a real in-process server on a tiny synthetic dataset.

use std::path::Path;

use encore::als::AlsConfig;
use encore::data::dataset::Dataset;
use encore::data::prep::{PrepConfig, prep};
use encore::gpu::DeviceChoice;
use encore::recommend::Recommender;
use encore::synth::{Scale, SynthConfig, generate};
use encore::train::{FitOptions, fit};

fn dataset(root: &Path) -> Dataset {
    let mut s = SynthConfig::from_scale(Scale::Tiny, 21);
    s.users = 150;
    s.tracks = 1_500;
    s.artists = 150;
    s.events = 40_000;
    generate(&s, &root.join("raw"), false, true).unwrap();
    prep(&PrepConfig::new(root.join("raw"), root.join("ds"))).unwrap();
    Dataset::load(&root.join("ds")).unwrap()
}

fn recommender(ds: &Dataset) -> Recommender {
    let cfg = AlsConfig {
        factors: 8,
        iterations: 3,
        ..AlsConfig::default()
    };
    let opts = FitOptions {
        device: DeviceChoice::Cpu,
        quiet: true,
        ..FitOptions::default()
    };
    let model = fit(ds.clone(), &cfg, &opts, |_| {}).unwrap();
    Recommender::cpu(model, ds.clone()).unwrap()
}

/// `bench overhead` measures every part on a real server: each round is recorded, the server's
/// own figures are read back from `/metrics` (scoring inside the handler, so no longer than it),
/// the scorer's item count comes through, and the headline is recommend p50 − direct p50.
#[test]
fn the_overhead_benchmark_measures_every_part() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let rec = recommender(&ds);
    let n = 40.min(ds.user_ids.len());
    let rows: Vec<usize> = (0..n).collect();
    let users = ds.user_ids[..n].to_vec();
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
