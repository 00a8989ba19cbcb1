//! The `encore` command line: a thin layer over the library that parses flags, prints results
//! and maps errors to exit codes (1 for a failure, 2 for bad usage via clap).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use encore::als::fit::fit;
use encore::als::model::Model;
use encore::als::{AlsConfig, Confidence, SolverKind};
use encore::bench;
use encore::data::dataset::Dataset;
use encore::data::dataset::Manifest;
use encore::data::filter::FilterMode;
use encore::data::formats::{Delimiter, Format, HeaderMode};
use encore::data::prep::{PrepConfig, prep};
use encore::data::split::Split;
use encore::synth::{self, Scale, SynthConfig};
use encore::util::human_bytes;

/// Encore: a GPU-accelerated implicit-feedback (ALS) music recommender for LFM-1b-scale logs.
///
/// Pipeline: `synth` (or your own LFM-1b / LFM-2b / HetRec / CSV logs) → `prep` → dataset.
/// `demo` runs the whole pipeline on a small synthetic set.
#[derive(Parser, Debug)]
#[command(name = "encore", version, about, long_about = None)]
struct Cli {
    /// Worker threads (default: all cores). 1 gives the single-thread baseline.
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// No progress bars.
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
    /// Train an implicit-feedback ALS model on a dataset's train.npz (CPU).
    Train(TrainArgs),
    /// Run the pipeline end to end on built-in synthetic data (no arguments needed).
    Demo(DemoArgs),
    /// Measure Encore itself.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Args, Debug)]
struct SynthArgs {
    /// Output directory (LFM-1b_LEs.txt, LFM-1b_tracks.txt, LFM-1b_artists.txt, ...).
    #[arg(long, short)]
    out: PathBuf,
    /// Preset size: tiny (1 K users, 0.5 M events), small, medium, lfm1b (120 K users, 1.09 B events).
    #[arg(long, value_enum, default_value = "tiny")]
    scale: Scale,
    /// Override the preset's number of users.
    #[arg(long)]
    users: Option<u32>,
    /// Override the preset's number of tracks (artists scale with it).
    #[arg(long)]
    tracks: Option<u32>,
    /// Override the preset's number of listening events.
    #[arg(long)]
    events: Option<u64>,
    /// Random seed: the same seed gives byte-identical files on any number of threads.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Replace the output directory if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SplitKind {
    /// A random fraction of each user's tracks (--valid-fraction, --seed).
    Random,
    /// Tracks first played within each user's last N listens (--last-n; needs timestamps).
    Time,
}

#[derive(Args, Debug, Clone)]
struct PrepArgs {
    /// An LFM-1b directory (or LFM-1b_LEs.txt), an LFM-2b listening-counts file, a HetRec 2011
    /// Last.fm directory (or user_artists.dat), or a user,item,count file. `.gz` is fine.
    input: PathBuf,
    /// Output dataset directory.
    #[arg(long, short)]
    out: PathBuf,
    /// Input format (auto: decided by file and directory names).
    #[arg(long, value_enum, default_value = "auto")]
    format: Format,
    /// Field delimiter for `triples` files.
    #[arg(long, value_enum, default_value = "auto")]
    delimiter: Delimiter,
    /// Whether the first line is a header (auto: a non-numeric first line containing letters).
    #[arg(long, value_enum, default_value = "auto")]
    header: HeaderMode,
    /// Drop users with fewer distinct tracks than this.
    #[arg(long, default_value_t = 5)]
    min_user_tracks: u32,
    /// Drop tracks with fewer distinct listeners than this.
    #[arg(long, default_value_t = 2)]
    min_track_users: u32,
    /// Apply the two thresholds until nothing changes (fixed-point), or one pass each (once).
    #[arg(long, value_enum, default_value = "fixed-point")]
    filter: FilterMode,
    /// How validation listens are held out.
    #[arg(long, value_enum, default_value = "random")]
    split: SplitKind,
    /// Random split: fraction of each user's tracks held out for validation.
    #[arg(long, default_value_t = 0.2)]
    valid_fraction: f64,
    /// Time split: hold out tracks first played within each user's last N listens.
    #[arg(long, default_value_t = 50)]
    last_n: u32,
    /// Seed of the random split.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Skip malformed lines (counted, with examples, in manifest.json) instead of stopping.
    #[arg(long)]
    skip_bad_lines: bool,
    /// Replace the output directory if it exists.
    #[arg(long)]
    force: bool,
}

impl PrepArgs {
    fn config(&self, quiet: bool) -> PrepConfig {
        let mut c = PrepConfig::new(&self.input, &self.out);
        c.format = self.format;
        c.delimiter = self.delimiter;
        c.header = self.header;
        c.min_user_tracks = self.min_user_tracks;
        c.min_track_users = self.min_track_users;
        c.filter_mode = self.filter;
        c.split = match self.split {
            SplitKind::Random => Split::Random {
                fraction: self.valid_fraction,
                seed: self.seed,
            },
            SplitKind::Time => Split::Time {
                last_n: self.last_n,
            },
        };
        c.skip_bad_lines = self.skip_bad_lines;
        c.force = self.force;
        c.quiet = quiet;
        c
    }
}

#[derive(Args, Debug, Clone)]
struct TrainArgs {
    /// Dataset directory written by `encore prep`.
    dataset: PathBuf,
    /// Output model directory (user_factors.npy, item_factors.npy, model.json).
    #[arg(long, short)]
    out: PathBuf,
    /// Latent factors k.
    #[arg(long, default_value_t = 64)]
    factors: usize,
    /// ALS iterations (each solves all users, then all items).
    #[arg(long, default_value_t = 15)]
    iterations: usize,
    /// L2 regularization λ.
    #[arg(long, default_value_t = 0.1)]
    regularization: f32,
    /// Confidence scale α: c = 1 + α·f(plays).
    #[arg(long, default_value_t = 2.0)]
    alpha: f32,
    /// f(plays): log = log(1 + plays/ε), linear = plays.
    #[arg(long, value_enum, default_value = "log")]
    confidence: Confidence,
    /// ε of the log confidence.
    #[arg(long, default_value_t = 1.0)]
    epsilon: f32,
    /// Per-row solver: cholesky (exact reference) or cg (conjugate gradient, warm-started).
    #[arg(long, value_enum, default_value = "cg")]
    solver: SolverKind,
    /// Conjugate-gradient steps per row and half-step.
    #[arg(long, default_value_t = 3)]
    cg_steps: usize,
    /// Seed of the factor initialization.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Compute the exact training loss after every iteration (costs about one CG half-step).
    #[arg(long)]
    loss: bool,
    /// Replace the output directory if it exists.
    #[arg(long)]
    force: bool,
}

impl TrainArgs {
    fn config(&self) -> AlsConfig {
        AlsConfig {
            factors: self.factors,
            iterations: self.iterations,
            regularization: self.regularization,
            alpha: self.alpha,
            confidence: self.confidence,
            epsilon: self.epsilon,
            solver: self.solver,
            cg_steps: self.cg_steps,
            seed: self.seed,
            compute_loss: self.loss,
        }
    }
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Working directory for the demo's files (replaced on each run).
    #[arg(long, default_value = "encore-demo")]
    dir: PathBuf,
    /// Size of the synthetic data.
    #[arg(long, value_enum, default_value = "tiny")]
    scale: Scale,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Ingest throughput (MB/s) and peak memory of `prep`, per thread count, each run in a fresh
    /// process so peak RSS is its own.
    Ingest(bench::IngestArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> Result<()> {
    if let Some(n) = cli.threads {
        anyhow::ensure!(n >= 1, "--threads must be at least 1");
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("setting up the thread pool")?;
    }
    match cli.cmd {
        Command::Synth(a) => cmd_synth(&a, cli.quiet),
        Command::Prep(a) => cmd_prep(&a, cli.quiet),
        Command::Train(a) => cmd_train(&a, cli.quiet).map(|_| ()),
        Command::Demo(a) => cmd_demo(&a, cli.quiet),
        Command::Bench(BenchCommand::Ingest(a)) => {
            let report = bench::ingest(&a)?;
            println!("{}", report.render(a.json)?);
            Ok(())
        }
    }
}

fn cmd_synth(a: &SynthArgs, quiet: bool) -> Result<()> {
    let mut cfg = SynthConfig::from_scale(a.scale, a.seed);
    if let Some(u) = a.users {
        cfg.users = u;
    }
    if let Some(t) = a.tracks {
        cfg.tracks = t;
        cfg.artists = (t / 10).max(1);
    }
    if let Some(e) = a.events {
        cfg.events = e;
    }
    let r = synth::generate(&cfg, &a.out, a.force, quiet)
        .with_context(|| format!("generating synthetic data into {}", a.out.display()))?;
    println!(
        "synth: wrote {} ({} users, {} tracks, {} artists, {} events, {} distinct user-track pairs, \
         {} users capped at 20,000)",
        a.out.display(),
        thousands(r.users),
        thousands(r.tracks),
        thousands(r.artists),
        thousands(r.events),
        thousands(r.distinct_pairs),
        thousands(r.capped_users),
    );
    println!(
        "synth: {} in {:.2} s = {:.0} MB/s, {:.1} M events/s on {} threads",
        human_bytes(r.bytes_written),
        r.seconds,
        r.mb_per_second(),
        r.events_per_second() / 1e6,
        rayon::current_num_threads()
    );
    Ok(())
}

fn cmd_prep(a: &PrepArgs, quiet: bool) -> Result<()> {
    let m = prep(&a.config(quiet))
        .with_context(|| format!("preparing {} into {}", a.input.display(), a.out.display()))?;
    print_manifest(&m, &a.out);
    Ok(())
}

fn cmd_train(a: &TrainArgs, quiet: bool) -> Result<Model> {
    let ds = Dataset::load(&a.dataset)
        .with_context(|| format!("loading dataset {}", a.dataset.display()))?;
    if a.out.exists() && !a.force {
        anyhow::bail!(
            "{} already exists (pass --force to replace it)",
            a.out.display()
        );
    }
    let cfg = a.config();
    println!(
        "train: {} users x {} tracks, {} pairs; k={} {} iterations, solver {:?}{}, {} threads",
        thousands(ds.train.n_rows as u64),
        thousands(ds.train.n_cols as u64),
        thousands(ds.train.nnz() as u64),
        cfg.factors,
        cfg.iterations,
        cfg.solver,
        if cfg.solver == SolverKind::Cg {
            format!(" ({} steps)", cfg.cg_steps)
        } else {
            String::new()
        },
        rayon::current_num_threads()
    );
    let model = fit(&ds, &cfg, quiet, |s| {
        if quiet {
            return;
        }
        let loss = s
            .loss
            .map(|l| format!("  loss {l:.6e}"))
            .unwrap_or_default();
        eprintln!("  iteration {:>3}  {:>8.3} s{loss}", s.iteration, s.seconds);
    })?;
    model
        .save(&a.out, a.force)
        .with_context(|| format!("saving the model to {}", a.out.display()))?;
    let its = &model.meta.iterations;
    let steady: Vec<f64> = its.iter().skip(1).map(|s| s.seconds).collect();
    println!(
        "train: {:.2} s total, first iteration {:.3} s, steady {:.3} s/iteration; wrote {}",
        model.meta.train_seconds,
        its.first().map(|s| s.seconds).unwrap_or(0.0),
        if steady.is_empty() {
            0.0
        } else {
            steady.iter().sum::<f64>() / steady.len() as f64
        },
        a.out.display()
    );
    Ok(model)
}

fn cmd_demo(a: &DemoArgs, quiet: bool) -> Result<()> {
    let raw = a.dir.join("raw");
    let data = a.dir.join("dataset");
    println!("== 1/2 synth: {:?} synthetic LFM-1b logs", a.scale);
    cmd_synth(
        &SynthArgs {
            out: raw.clone(),
            scale: a.scale,
            users: None,
            tracks: None,
            events: None,
            seed: 42,
            force: true,
        },
        quiet,
    )?;
    println!("\n== 2/2 prep: aggregate, filter, re-index, split");
    let mut cfg = PrepConfig::new(&raw, &data);
    cfg.force = true;
    cfg.quiet = quiet;
    let m = prep(&cfg).with_context(|| format!("preparing {}", raw.display()))?;
    print_manifest(&m, &data);
    println!(
        "\nNext: train, evaluate and recommend arrive with the ALS stages; the dataset above is \
         ready for them (scipy.sparse.load_npz reads {}/train.npz).",
        data.display()
    );
    Ok(())
}

fn print_manifest(m: &Manifest, out: &Path) {
    let parse = m.timings_s.get("parse").copied().unwrap_or(0.0);
    let total = m.timings_s.get("total").copied().unwrap_or(0.0);
    println!(
        "prep: {:?} input {} ({}), parsed in {:.2} s ({:.0} MB/s), total {:.2} s, peak RSS {}",
        m.input.format,
        m.input.data_file.display(),
        human_bytes(m.input.bytes),
        parse,
        m.timings_s.get("parse_mb_per_s").copied().unwrap_or(0.0),
        total,
        m.peak_rss_bytes
            .map(human_bytes)
            .unwrap_or_else(|| "n/a".into()),
    );
    let l = &m.lines;
    println!(
        "lines: {} total, {} records, {} header, {} blank, {} zero-count, {} bad skipped{}",
        thousands(l.total),
        thousands(l.records),
        l.header,
        thousands(l.blank),
        thousands(l.zero_count),
        thousands(l.bad_skipped),
        if l.regrouped {
            " (input was not grouped by user: regrouped)"
        } else {
            ""
        }
    );
    for ex in &l.bad_examples {
        println!("  skipped {ex}");
    }
    println!(
        "{:<14} {:>12} {:>12} {:>14} {:>16}",
        "stage", "users", "tracks", "pairs", "plays"
    );
    let row = |name: &str, t: &encore::data::filter::Tally| {
        println!(
            "{:<14} {:>12} {:>12} {:>14} {:>16}",
            name,
            thousands(t.users),
            thousands(t.items),
            thousands(t.pairs),
            thousands(t.events)
        );
    };
    let c = &m.counts;
    row("raw", &c.raw);
    for (i, r) in c.filter_rounds.iter().enumerate() {
        row(&format!("filter round {}", i + 1), r);
    }
    row("kept", &c.kept);
    row("train", &c.train);
    row("valid", &c.valid);
    println!(
        "wrote {} ({}; offsets {}; {})",
        out.display(),
        m.files.join(", "),
        m.indptr_dtype,
        m.content_hash
    );
}

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
