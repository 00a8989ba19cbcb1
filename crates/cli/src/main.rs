//! The `encore` command line: a thin layer over Encore's libraries that parses flags, prints
//! results and maps errors to exit codes (1 for a failure, 2 for bad usage via clap).
//!
//! All argument parsing lives in this crate: one module per pipeline stage turns its clap
//! arguments into the libraries' configuration types ([`values`] mirrors their choice enums),
//! calls the library, and prints.

mod bench;
mod data;
mod demo;
mod dist;
mod fmt;
mod model;
mod note;
mod serve;
mod tune;
mod values;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use bench::BenchCommand;
use data::{PrepArgs, SynthArgs};
use demo::DemoArgs;
use model::{EvalArgs, RecommendArgs, SimilarArgs, TrainArgs};

/// Encore: a GPU-accelerated implicit-feedback (ALS) music recommender for LFM-1b-scale logs.
///
/// Pipeline: `synth` (or your own LFM-1b / LFM-2b / HetRec / CSV logs) → `prep` → dataset.
/// `demo` runs the whole pipeline on a small synthetic set.
#[derive(Parser, Debug)]
#[command(name = "encore", version, about, long_about = None)]
struct Cli {
    /// Worker threads (default: all cores). 1 gives the single-thread baseline. At most 4x the
    /// available cores: more is capped, with a note.
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// No progress bars or notes (errors are still printed).
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate synthetic listening logs in the exact LFM-1b file format.
    Synth(SynthArgs),
    /// Turn raw listening logs into a dataset (aggregate, filter, re-index, split).
    Prep(PrepArgs),
    /// Train an implicit-feedback ALS model on a dataset's train.npz (CPU or GPU).
    Train(TrainArgs),
    /// Search λ, α, confidence, k and ν (successive halving on a hold-out inside train.npz), then
    /// score the best on valid.npz and print the `encore train` command that reproduces it.
    Tune(tune::TuneArgs),
    /// Ranking quality (precision, recall, nDCG, MAP, coverage @K) against held-out listens,
    /// beside the popularity baseline.
    Eval(EvalArgs),
    /// Top-K tracks for a user (or many users, as JSON lines).
    Recommend(RecommendArgs),
    /// Tracks most similar to a track (cosine over item factors).
    Similar(SimilarArgs),
    /// Run the pipeline end to end on built-in synthetic data (no arguments needed).
    Demo(DemoArgs),
    /// Serve recommendations over HTTP (JSON API, dynamic batching, Prometheus metrics).
    Serve(serve::ServeArgs),
    /// Open-loop load (Poisson arrivals) against a running server; latency percentiles from
    /// each request's intended send time.
    Loadgen(serve::LoadgenArgs),
    /// Measure Encore itself.
    #[command(subcommand)]
    Bench(BenchCommand),
}

fn main() -> ExitCode {
    restore_sigpipe();
    report_panics();
    let cli = Cli::parse();
    // A panic is a bug, but the exit code stays one of ours (0, 1, 2), never Rust's 101: the
    // hook has printed it, and unwinding to here turns it into a failure (issue 13).
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli))) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::FAILURE,
    }
}

/// Replaces Rust's panic message (`thread 'main' panicked at ...`, then exit 101) with one that
/// says it is Encore's fault. A panic on a worker thread is printed here too; rayon carries it
/// to the calling thread, where `main` catches it.
fn report_panics() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "internal error: {msg}{at} (please report, with the command; \
             RUST_BACKTRACE=1 adds a backtrace)"
        );
        let bt = std::backtrace::Backtrace::capture();
        if bt.status() == std::backtrace::BacktraceStatus::Captured {
            eprintln!("{bt}");
        }
    }));
}

/// `ENCORE_TEST_PANIC=1` panics on a worker thread before any work: the only way for the tests
/// to see that a panic still ends with the internal-error message and exit code 1.
fn panic_if_asked() {
    if std::env::var_os("ENCORE_TEST_PANIC").is_some() {
        rayon::scope(|s| s.spawn(|_| panic!("ENCORE_TEST_PANIC is set")));
    }
}

/// The most worker threads `--threads` may ask for: 4x the cores this process may use. Every
/// stage is CPU-bound, so threads beyond the cores only time-slice; 4x still leaves room to
/// study oversubscription, while `--threads 5000` on a 2-core host (5,000 spinning rayon
/// workers: a 6 KB prep took over 100 s at load average 680, issue 13) cannot happen.
fn max_threads() -> usize {
    4 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Rust ignores SIGPIPE, so `encore ... | head` would panic inside `println!` once the reader
/// goes away. Like other command-line tools, end quietly instead.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let io = c
            .downcast_ref::<std::io::Error>()
            .or_else(|| c.downcast_ref::<encore::Error>().and_then(|e| e.io_error()));
        io.is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> Result<()> {
    note::set_quiet(cli.quiet);
    if let Some(asked) = cli.threads {
        anyhow::ensure!(asked >= 1, "--threads must be at least 1");
        let cap = max_threads();
        let n = asked.min(cap);
        if n < asked {
            note::note(&format!(
                "--threads {asked} capped at {cap} (4x the {} available cores)",
                cap / 4
            ));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("setting up the thread pool")?;
    }
    panic_if_asked();
    match cli.cmd {
        Command::Synth(a) => data::cmd_synth(&a, cli.quiet),
        Command::Prep(a) => data::cmd_prep(&a, cli.quiet),
        Command::Train(a) => model::cmd_train(&a, cli.quiet).map(|_| ()),
        Command::Tune(a) => tune::cmd_tune(&a, cli.quiet),
        Command::Eval(a) => model::cmd_eval(&a),
        Command::Recommend(a) => model::cmd_recommend(&a),
        Command::Similar(a) => model::cmd_similar(&a),
        Command::Demo(a) => demo::cmd_demo(&a, cli.quiet),
        Command::Serve(a) => serve::cmd_serve(&a),
        Command::Loadgen(a) => serve::cmd_loadgen(&a),
        Command::Bench(b) => bench::run(b),
    }
}
