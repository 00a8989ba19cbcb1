//! `bench report` runs end to end on a tiny dataset (no GPU needed) and writes every file.

use encore::data::prep::{PrepConfig, prep};
use encore::synth::{Scale, SynthConfig, generate};
use encore_bench::report::{ReportOptions, report};

#[test]
fn the_report_runs_on_the_tiny_dataset_and_produces_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SynthConfig::from_scale(Scale::Tiny, 5);
    s.users = 200;
    s.tracks = 2_000;
    s.artists = 200;
    s.events = 40_000;
    generate(&s, &dir.path().join("raw"), false, true).unwrap();
    prep(&PrepConfig::new(
        dir.path().join("raw"),
        dir.path().join("ds"),
    ))
    .unwrap();
    let out = dir.path().join("report");
    // The shape scripts/compare_implicit.py --json writes.
    let implicit = dir.path().join("implicit.json");
    std::fs::write(
        &implicit,
        r#"{"args": {"threads": 2}, "rows": [
            {"name": "encore cg", "first_iteration_s": 0.01, "steady_iteration_s": 0.01},
            {"name": "implicit cg", "first_iteration_s": 0.05, "steady_iteration_s": 0.04,
             "metrics": {"precision": 0.18}}]}"#,
    )
    .unwrap();
    let r = report(&ReportOptions {
        dataset: dir.path().join("ds"),
        out: out.clone(),
        iterations: 2,
        factors: 8,
        start_rate: 40.0,
        max_steps: 2,
        step_seconds: 0.4,
        saturation_ms: 100.0,
        no_gpu: true,
        implicit_json: Some(implicit.clone()),
    })
    .unwrap();
    for f in [
        "report.md",
        "results.json",
        "train.svg",
        "p95-vs-rate.svg",
        "latency-cdf.svg",
    ] {
        let p = out.join(f);
        assert!(
            p.metadata().map(|m| m.len() > 100).unwrap_or(false),
            "{f} missing or empty"
        );
    }
    assert!(r.gpu.is_none());
    assert_eq!(r.train.runs.len(), 2, "CPU 1 thread and all threads");
    assert_eq!(r.serving.len(), 2);
    assert!(
        r.serving
            .iter()
            .all(|s| !s.steps.is_empty() && !s.cdf.is_empty())
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("the GPU column is absent"));
    assert!(md.contains("implicit cg (2 threads, separate run)"));
    assert_eq!(r.implicit.len(), 1);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert!(
        json["serving"][0]["steps"][0]["latency"]["p95_us"]
            .as_u64()
            .unwrap()
            > 0
    );
}
