//! The `encore` binary as a user runs it: exit codes, what reaches stdout and stderr, and the
//! issue 13 regressions (thread cap, per-line `--users-file` answers, the CPU-fallback note once
//! and silent under `-q`, benchmarks with their default flags on a CPU-only host and a tiny
//! dataset, panics mapped to exit code 1), and `encore serve` as a process (`cli/serve.rs`).

#[path = "cli/serve.rs"]
mod serve;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn encore(args: &[&str]) -> Output {
    encore_env(args, &[])
}

fn encore_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_encore"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("running the encore binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `args`, failing the test with both streams when the exit code is not 0.
fn ok(args: &[&str]) -> Output {
    let o = encore(args);
    assert!(
        o.status.success(),
        "encore {args:?} exited {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    o
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// A tiny synthetic dataset and a model trained on it, built once for the whole binary.
struct Fixture {
    _dir: tempfile::TempDir,
    dataset: PathBuf,
    model: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let raw = dir.path().join("raw");
        let dataset = dir.path().join("dataset");
        let model = dir.path().join("model");
        ok(&[
            "-q",
            "synth",
            "--scale",
            "tiny",
            "--users",
            "120",
            "--tracks",
            "600",
            "--events",
            "20000",
            "-o",
            s(&raw),
        ]);
        ok(&["-q", "prep", s(&raw), "-o", s(&dataset)]);
        ok(&[
            "-q",
            "train",
            s(&dataset),
            "-o",
            s(&model),
            "--iterations",
            "2",
            "--factors",
            "8",
            "--device",
            "cpu",
        ]);
        Fixture {
            _dir: dir,
            dataset,
            model,
        }
    })
}

/// The dataset's original user ids, in row order.
fn user_ids(dataset: &Path) -> Vec<u64> {
    encore::data::npz::read_ids(&dataset.join(encore::data::dataset::USER_IDS))
        .expect("reading the fixture's user ids")
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect()
}

fn cpu_fallback_notes(err: &str) -> usize {
    err.lines().filter(|l| l.contains("using the CPU")).count()
}

#[test]
fn threads_far_above_the_cores_are_capped_with_a_note_and_prep_stays_fast() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let input = dir.path().join("plays.csv");
    // About 6 KB: the input of the issue-13 report (over 100 s at load average 680).
    let mut text = String::from("user,item,count\n");
    for u in 0..40 {
        for i in 0..12 {
            text += &format!("{u},{},{}\n", (u * 7 + i) % 50, 1 + i);
        }
    }
    std::fs::write(&input, text).expect("writing the input");
    let out = dir.path().join("ds");
    let t = Instant::now();
    let o = ok(&["--threads", "5000", "prep", s(&input), "-o", s(&out)]);
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "prep took {:?}",
        t.elapsed()
    );
    let err = stderr(&o);
    assert!(
        err.contains("--threads 5000 capped at"),
        "no cap note in:\n{err}"
    );
    let quiet = ok(&[
        "-q",
        "--threads",
        "5000",
        "prep",
        s(&input),
        "-o",
        s(&out),
        "--force",
    ]);
    assert!(!stderr(&quiet).contains("capped"), "{}", stderr(&quiet));
    let one = ok(&[
        "--threads",
        "1",
        "prep",
        s(&input),
        "-o",
        s(&out),
        "--force",
    ]);
    assert!(!stderr(&one).contains("capped"), "{}", stderr(&one));
}

#[test]
fn users_file_answers_every_line_with_errors_inline_and_exits_0() {
    let f = fixture();
    let ids = user_ids(&f.dataset);
    let unknown = ids.iter().max().copied().unwrap_or(0) + 1;
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("users.txt");
    std::fs::write(
        &file,
        format!("{}\nabc\n\n-5\n{unknown}\n  {}  \n", ids[0], ids[1]),
    )
    .expect("writing the users file");
    let o = ok(&[
        "recommend",
        s(&f.model),
        "--users-file",
        s(&file),
        "-k",
        "3",
    ]);
    let got = json_lines(&o);
    assert_eq!(got.len(), 5, "one answer per non-blank line: {got:?}");
    let lines: Vec<u64> = got
        .iter()
        .map(|v| v["line"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(lines, [1, 2, 4, 5, 6]);
    assert_eq!(got[0]["user"], ids[0]);
    assert_eq!(got[0]["tracks"].as_array().map(Vec::len), Some(3));
    assert_eq!(got[1]["user"], "abc");
    assert_eq!(got[1]["error"], "not a user id");
    assert_eq!(got[2]["user"], "-5");
    assert_eq!(got[2]["error"], "not a user id");
    assert_eq!(got[3]["user"], unknown);
    assert_eq!(got[3]["error"], "unknown user id");
    assert_eq!(got[4]["user"], ids[1]);
    assert_eq!(got[4]["tracks"].as_array().map(Vec::len), Some(3));
    assert!(stderr(&o).contains("3 of 5 lines"), "{}", stderr(&o));
}

#[test]
fn users_file_with_no_known_user_prints_its_errors_and_exits_1() {
    let f = fixture();
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("users.txt");
    std::fs::write(&file, "abc\n-5\n").expect("writing the users file");
    let o = encore(&["recommend", s(&f.model), "--users-file", s(&file)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let got = json_lines(&o);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|v| v["error"] == "not a user id"), "{got:?}");
}

#[test]
fn cpu_fallback_note_is_printed_at_most_once_and_never_under_quiet() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let demo = dir.path().join("demo");
    // The demo resolves --device auto three times (train, eval, recommend).
    let o = ok(&["demo", "--dir", s(&demo)]);
    let on_cpu = stdout(&o).contains(", on cpu");
    let notes = cpu_fallback_notes(&stderr(&o));
    assert_eq!(
        notes,
        usize::from(on_cpu),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&o),
        stderr(&o)
    );
    let q = ok(&["-q", "demo", "--dir", s(&demo)]);
    assert_eq!(cpu_fallback_notes(&stderr(&q)), 0, "{}", stderr(&q));
}

#[test]
fn bench_train_with_default_flags_runs_on_the_tiny_set() {
    let f = fixture();
    let o = ok(&["bench", "train", s(&f.dataset), "--json"]);
    let report: serde_json::Value =
        serde_json::from_str(&stdout(&o)).expect("bench train --json prints JSON");
    let runs = report["runs"].as_array().cloned().unwrap_or_default();
    assert!(runs.iter().any(|r| r["device"] == "cpu"), "{report}");
    let gpu_runs = runs.iter().filter(|r| r["device"] != "cpu").count();
    let skipped = report["notes"].as_array().map_or(0, Vec::len);
    // The defaults ask for three GPU runs: each either ran or was skipped with a note.
    assert_eq!(gpu_runs + skipped, 3, "{report}");
    if skipped > 0 {
        assert!(stderr(&o).contains("skipped gpu"), "{}", stderr(&o));
    }
}

#[test]
fn bench_infer_with_default_flags_clamps_batches_to_the_users_there_are() {
    let f = fixture();
    let o = ok(&["bench", "infer", s(&f.model), s(&f.dataset), "--json"]);
    let report: serde_json::Value =
        serde_json::from_str(&stdout(&o)).expect("bench infer --json prints JSON");
    let runs = report["runs"].as_array().cloned().unwrap_or_default();
    let users = user_ids(&f.dataset).len() as u64;
    assert!(
        users < 1000,
        "the fixture must have fewer users than the default batch"
    );
    let batches: Vec<u64> = runs.iter().filter_map(|r| r["batch"].as_u64()).collect();
    assert!(batches.iter().all(|&b| b <= users), "{batches:?}");
    assert!(batches.iter().any(|&b| b > 100), "{batches:?}");
    assert!(runs.iter().all(|r| r["matches_cpu"] == true), "{report}");
    let err = stderr(&o);
    assert!(err.contains("clamped"), "{err}");
    let gpu_ran = runs
        .iter()
        .any(|r| r["backend"].as_str().is_some_and(|b| b.starts_with("gpu")));
    assert!(gpu_ran || err.contains("skipped backend gpu"), "{err}");
}

#[test]
fn a_panic_is_reported_as_an_internal_error_with_exit_code_1() {
    let o = encore_env(
        &["synth", "-o", "/nonexistent/never-written"],
        &[("ENCORE_TEST_PANIC", "1")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("internal error: ENCORE_TEST_PANIC is set"),
        "{err}"
    );
    assert!(err.contains("please report"), "{err}");
    assert!(!err.contains("panicked at"), "{err}");
}

#[test]
fn tune_prints_a_train_command_that_reproduces_its_score_on_valid() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tuned");
    let o = ok(&[
        "-q",
        "tune",
        s(&f.dataset),
        "--json",
        "--trials",
        "4",
        "--factors",
        "4,8",
        "--iterations",
        "3",
        "--min-iterations",
        "1",
        "--device",
        "cpu",
        "-o",
        s(&out),
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["trials"].as_array().unwrap().len(), 4);
    let cmd = v["train_command"].as_str().unwrap().to_string();
    // The same report landed in the output directory, beside both figures.
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tune.json")).unwrap()).unwrap();
    assert_eq!(saved["train_command"], v["train_command"]);
    assert!(std::fs::metadata(out.join("tune.png")).unwrap().len() > 1000);
    assert!(
        std::fs::read_to_string(out.join("tune.svg"))
            .unwrap()
            .contains("nDCG@10")
    );
    // Run the printed command (into a scratch model directory), then eval: the same nDCG@10.
    let model = dir.path().join("model");
    let words: Vec<String> = cmd
        .split_whitespace()
        .skip(1)
        .map(|w| {
            if w == "tuned-model" {
                s(&model).to_string()
            } else {
                w.to_string()
            }
        })
        .collect();
    assert_eq!(words[0], "train");
    let mut args: Vec<&str> = vec!["-q"];
    args.extend(words.iter().map(String::as_str));
    args.extend(["--device", "cpu"]);
    ok(&args);
    let e = ok(&[
        "-q",
        "eval",
        s(&f.dataset),
        s(&model),
        "--json",
        "--device",
        "cpu",
    ]);
    let e: serde_json::Value = serde_json::from_str(&stdout(&e)).unwrap();
    assert_eq!(e["model"]["ndcg"], v["on_valid"]["best"]["ndcg"]);
    assert_eq!(e["popularity"]["ndcg"], v["on_valid"]["popularity"]["ndcg"]);
    // An existing output is only replaced with --force, and never a non-tune directory.
    let again = encore(&["-q", "tune", s(&f.dataset), "-o", s(&out), "--trials", "1"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("exists"), "{}", stderr(&again));
    let onto = encore(&["-q", "tune", s(&f.dataset), "-o", s(&f.model), "--force"]);
    assert_eq!(onto.status.code(), Some(1));
    assert!(
        stderr(&onto).contains("not a tuning result"),
        "{}",
        stderr(&onto)
    );
}
