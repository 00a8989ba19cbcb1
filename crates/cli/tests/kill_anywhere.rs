//! Kill-anywhere harness (issue 13): `encore prep`, `encore train` and `encore tune --out` are
//! SIGKILLed at seeded
//! random moments spread over their measured run time, dozens of times each, and after every
//! kill the output directory must be either the previous output, untouched, or a new complete
//! one — never missing, never half-written — and nothing else beside it may look like an output.
//!
//! A kill skips every destructor, so the hidden temporary directory the run was writing into
//! (`.NAME.tmp-PID`, see `encore::util::AtomicDir`) stays behind; the next run of the same
//! destination removes it. The harness checks both: at most the last killed run's temporary
//! directory is ever left, and a run to completion leaves none.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use encore::als::model::{MODEL_JSON, Model};
use encore::data::dataset::{self, Dataset};

/// Kills per command; with runs of a fraction of a second (prep about 0.2 s, train 0.1 s on
/// two cores) the whole test takes well under 30 s.
const KILLS: usize = 30;

fn encore() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_encore"));
    c.arg("--quiet")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Runs to completion and fails the test (with stderr) unless it succeeded.
fn run_ok(args: &[&str]) -> Duration {
    let t = Instant::now();
    let out = encore().args(args).stderr(Stdio::piped()).output().unwrap();
    assert!(
        out.status.success(),
        "encore {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

/// SplitMix64: seeded, so the kill moments are the same on every run of the test.
struct Moments(u64);

impl Moments {
    /// A fraction in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Starts `args`, SIGKILLs it after `delay` unless it has ended by then, and returns how it
/// ended and its process id.
fn run_and_kill(args: &[&str], delay: Duration) -> (ExitStatus, u32) {
    let mut child = encore().args(args).spawn().unwrap();
    let pid = child.id();
    let deadline = Instant::now() + delay;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, pid);
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(2)));
    }
    // `Child::kill` is SIGKILL on unix: no destructor, no cleanup, like the OOM killer.
    let _ = child.kill();
    (child.wait().unwrap(), pid)
}

fn was_killed(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(libc::SIGKILL)
}

/// The process id in `entry` when it is the name of one of `dest_name`'s temporary directories.
fn temp_pid(entry: &str, dest_name: &str) -> Option<u32> {
    let rest = entry.strip_prefix(&format!(".{dest_name}.tmp-"))?;
    rest.strip_suffix(".old").unwrap_or(rest).parse().ok()
}

/// Checks what lies beside the output `dest` in its parent: `dest`, the entries of
/// `expected`, and at most one hidden temporary directory of `dest`'s, belonging to one of the
/// `killed` runs (each run sweeps those of the runs before it, so they never pile up).
fn check_neighbours(dest: &Path, expected: &[&str], killed: &[u32]) {
    let parent = dest.parent().unwrap();
    let dest_name = dest.file_name().unwrap().to_str().unwrap();
    let mut temps = Vec::new();
    for entry in std::fs::read_dir(parent).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name == dest_name || expected.contains(&name.as_str()) {
            continue;
        }
        match temp_pid(&name, dest_name) {
            Some(pid) if killed.contains(&pid) => temps.push(name),
            _ => panic!("unexpected {name} beside {}", dest.display()),
        }
    }
    assert!(temps.len() <= 1, "temporary directories pile up: {temps:?}");
}

/// The dataset in `dir` loads and its content hash checks out.
fn check_dataset(dir: &Path) {
    let ds = Dataset::load(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    ds.verify()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
}

/// The model in `dir` loads (shapes and factor checksums) and was trained on `ds`.
fn check_model(dir: &Path, ds: &Dataset) {
    let m = Model::load(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    m.check_dataset(ds).unwrap();
}

/// Kills `args` (which write `dest`, whose marker file is `marker`) `KILLS` times and checks
/// `dest` after each kill with `check`; then runs it to completion.
fn kill_repeatedly(
    args: &[&str],
    dest: &Path,
    marker: &str,
    neighbours: &[&str],
    seed: u64,
    check: impl Fn(&Path),
) {
    // The measured run time (the median of three: one run slowed by other work on the machine
    // must not stretch the kill moments so far that most runs finish first, as the longest of
    // three once did in CI-like load): kill moments are spread over 1.2× of it, start-up
    // included, so they still reach the end.
    let mut runs: Vec<_> = (0..3).map(|_| run_ok(args)).collect();
    runs.sort();
    let full = runs[1];
    check(dest);
    let mut previous = std::fs::read(dest.join(marker)).unwrap();
    let mut moments = Moments(seed);
    let (mut killed, mut replaced) = (Vec::new(), 0);
    for i in 0..KILLS {
        let delay = full.mul_f64(1.2 * moments.next());
        let (status, pid) = run_and_kill(args, delay);
        if was_killed(status) {
            killed.push(pid);
        } else {
            assert!(status.success(), "run {i} (not killed) failed: {status}");
        }
        // The output is always there and complete: the old one or, when the kill came after
        // the rename, the new one.
        check(dest);
        let now = std::fs::read(dest.join(marker)).unwrap();
        if now != previous {
            replaced += 1;
            previous = now;
        }
        // Whatever a kill left is a killed run's hidden temporary directory, never a second
        // output.
        check_neighbours(dest, neighbours, &killed);
    }
    eprintln!(
        "{args:?}: full run {full:?}; {} of {KILLS} runs killed, {replaced} replaced the output",
        killed.len()
    );
    // Enough kills that the harness tests something; a slower machine only kills more.
    assert!(
        killed.len() >= KILLS / 3,
        "only {} of {KILLS} runs were killed",
        killed.len()
    );
    // A run to completion replaces the output and sweeps what the kills left.
    run_ok(args);
    check(dest);
    check_neighbours(dest, neighbours, &[]);
}

/// The tune output in `dir` is complete: its JSON parses and names the chosen configuration,
/// and both figures are there.
fn check_tune(dir: &Path) {
    let text = std::fs::read_to_string(dir.join("tune.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        v["train_command"]
            .as_str()
            .unwrap()
            .starts_with("encore train ")
    );
    for f in ["tune.svg", "tune.png"] {
        assert!(
            std::fs::metadata(dir.join(f)).unwrap().len() > 0,
            "{f} empty"
        );
    }
}

#[test]
fn killed_prep_train_and_tune_never_leave_a_missing_or_partial_output() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path();
    let raw = work.join("raw");
    let ds = work.join("ds");
    let model = work.join("model");
    let (raw_s, ds_s, model_s) = (
        raw.to_str().unwrap(),
        ds.to_str().unwrap(),
        model.to_str().unwrap(),
    );
    run_ok(&[
        "synth", "--scale", "tiny", "--users", "2000", "--tracks", "20000", "--events", "400000",
        "-o", raw_s,
    ]);

    let prep = ["prep", raw_s, "-o", ds_s, "--force"];
    kill_repeatedly(&prep, &ds, dataset::MANIFEST, &["raw"], 13, check_dataset);

    let dataset = Dataset::load(&ds).unwrap();
    let train = [
        "train",
        ds_s,
        "-o",
        model_s,
        "--force",
        "--iterations",
        "2",
        "--factors",
        "8",
        "--device",
        "cpu",
    ];
    kill_repeatedly(&train, &model, MODEL_JSON, &["raw", "ds"], 31, |dir| {
        check_model(dir, &dataset)
    });

    let tuned = work.join("tuned");
    let tune = [
        "tune",
        ds_s,
        "-o",
        tuned.to_str().unwrap(),
        "--force",
        "--trials",
        "3",
        "--factors",
        "8",
        "--iterations",
        "2",
        "--min-iterations",
        "1",
        "--no-defaults",
        "--device",
        "cpu",
    ];
    kill_repeatedly(
        &tune,
        &tuned,
        "tune.json",
        &["raw", "ds", "model"],
        47,
        check_tune,
    );
}
