//! The fuzz corpus in `cargo test`: every seed (`fuzz/corpus/<target>/`) and every minimized
//! crash (`fuzz/regressions/<target>/`) goes once through the same function the fuzz target
//! runs (`fuzz/src/targets.rs`, included here with `#[path]`), so a fixed finding that comes
//! back fails the ordinary test suite, without libFuzzer or a nightly feature.
//!
//! A finding is a panic (caught per input, so every failing file is named) or an abort (for
//! example an allocation failure, which ends this test binary, failing it just the same).
//! Errors returned by the library are fine. `serve_requests` needs `encore-serve` and is
//! replayed by `crates/serve/tests/fuzz_regressions.rs`.

#[path = "../fuzz/src/helpers.rs"]
mod helpers;
#[path = "../fuzz/src/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};

/// Targets whose inputs another crate's test replays.
const ELSEWHERE: &[&str] = &["serve_requests"];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files directly under `dir` (none when it does not exist), sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Runs `body` on every file of `dirs`; returns how many ran and the ones that panicked.
fn replay(dirs: &[PathBuf], body: fn(&[u8])) -> (usize, Vec<String>) {
    let mut n = 0;
    let mut panicked = Vec::new();
    for f in dirs.iter().flat_map(|d| files(d)) {
        let data = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        n += 1;
        if std::panic::catch_unwind(|| body(&data)).is_err() {
            panicked.push(f.display().to_string());
        }
    }
    (n, panicked)
}

fn target_dirs(target: &str) -> Vec<PathBuf> {
    let f = fuzz_dir();
    vec![
        f.join("corpus").join(target),
        f.join("regressions").join(target),
    ]
}

#[test]
fn every_seed_and_regression_replays_without_a_panic() {
    let mut failed = Vec::new();
    let mut total = 0;
    for &(target, body) in targets::ALL {
        let (n, panicked) = replay(&target_dirs(target), body);
        assert!(n > 0, "no seeds or regressions for fuzz target {target}");
        eprintln!("{target}: {n} inputs, {} panicked", panicked.len());
        total += n;
        failed.extend(panicked);
    }
    assert!(
        failed.is_empty(),
        "fuzz inputs that panic again:\n  {}",
        failed.join("\n  ")
    );
    // 16 targets with at least 2 seeds each; the known crashes are among them.
    assert!(total >= 32, "only {total} inputs replayed");
}

#[test]
fn the_known_findings_are_replayed() {
    // The two findings fixed in the library (csr: indptr past nnz; npy: huge declared shape)
    // must stay in the replay: a missing file would silently drop the check.
    let r = fuzz_dir().join("regressions");
    for f in [
        "npz_csr/indptr-overshoots-nnz.npz",
        "npz_csr/huge-shape-oom.npz",
        "npy_ids/huge-shape-oom.npy",
        "npy_factors/huge-shape-oom.npy",
    ] {
        assert!(r.join(f).is_file(), "missing regression input {f}");
    }
}

#[test]
fn every_corpus_directory_has_a_replayed_target() {
    let f = fuzz_dir();
    let known: Vec<&str> = targets::ALL
        .iter()
        .map(|&(t, _)| t)
        .chain(ELSEWHERE.iter().copied())
        .collect();
    for kind in ["corpus", "regressions"] {
        for e in std::fs::read_dir(f.join(kind))
            .expect("fuzz directory")
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                known.contains(&name.as_str()),
                "fuzz/{kind}/{name} is not replayed by any test"
            );
        }
    }
}

#[test]
fn a_panicking_input_is_reported_by_name() {
    // The harness itself: a body that panics on every input must fail every file, named.
    fn always_panics(_: &[u8]) {
        panic!("deliberate");
    }
    fn never_panics(_: &[u8]) {}
    let dirs = target_dirs("npz_csr");
    let (n, panicked) = replay(&dirs, always_panics);
    assert!(n > 0);
    assert_eq!(panicked.len(), n);
    assert!(
        panicked
            .iter()
            .any(|p| p.ends_with("indptr-overshoots-nnz.npz")),
        "{panicked:?}"
    );
    assert_eq!(replay(&dirs, never_panics), (n, vec![]));
}
