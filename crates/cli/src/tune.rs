//! `tune`: flags into [`encore::tune::TuneOptions`], the search, then the table of trials, the
//! chosen configuration as an `encore train` command, and (with `--out`) `tune.json` and the
//! nDCG@K-over-λ×α figure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use encore::als::gpu::GpuOptions;
use encore::als::{AlsConfig, Confidence};
use encore::data::dataset::Dataset;
use encore::gpu::DeviceChoice;
use encore::tune::{Dim, Search, Space, TuneOptions, TuneReport, train_command, tune};
use encore::util::{AtomicDir, OutputKind};
use encore_bench::chart::{HeatPoint, heat_scatter_svg, svg_to_png};

use crate::fmt::thousands;
use crate::values::{ConfidenceArg, ShortRowsArg, SolverArg};

/// How configurations are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SearchArg {
    /// `--trials` configurations at random (log-uniform in each range), Encore's defaults first.
    Random,
    /// Every combination, each range at `--grid-points` log-spaced values.
    Grid,
}

#[derive(Args, Debug)]
#[command(after_long_help = TUNE_HELP)]
pub struct TuneArgs {
    /// Dataset directory written by `encore prep`.
    pub dataset: PathBuf,
    /// Write tune.json (every trial) and tune.png / tune.svg (nDCG@K over λ × α) into this
    /// directory, atomically.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Replace the --out directory if it exists (only a previous tune output).
    #[arg(long)]
    pub force: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// random or grid.
    #[arg(long, value_enum, default_value = "random")]
    pub search: SearchArg,
    /// Configurations a random search tries (the halving keeps about a third at each rung).
    #[arg(long, default_value_t = 30)]
    pub trials: usize,
    /// Values a grid search takes from each LO:HI range (log-spaced, ends included).
    #[arg(long, default_value_t = 4)]
    pub grid_points: usize,
    /// Seed of the random search.
    #[arg(long, default_value_t = 42)]
    pub search_seed: u64,
    /// λ to search: LO:HI (log-uniform) or a list V1,V2,...
    #[arg(long, default_value = "0.1:300", allow_hyphen_values = true)]
    pub regularization: String,
    /// α to search: LO:HI (log-uniform) or a list V1,V2,...
    #[arg(long, default_value = "0.1:30", allow_hyphen_values = true)]
    pub alpha: String,
    /// Confidence functions to search (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "log")]
    pub confidence: Vec<ConfidenceArg>,
    /// Latent factor counts k to search (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "32,64,128")]
    pub factors: Vec<usize>,
    /// ν of frequency-scaled regularisation to search (comma-separated): each user and track
    /// is penalised by λ·(n / n̄)^ν, n its entries and n̄ the mean of its side; 0 = plain λ.
    #[arg(long, value_delimiter = ',', default_value = "0.5")]
    pub reg_exponent: Vec<f32>,
    /// Iterations of the last rung: the count the chosen configuration trains with.
    #[arg(long, default_value_t = AlsConfig::default().iterations)]
    pub iterations: usize,
    /// Iterations of the first rung, where every trial is scored.
    #[arg(long, default_value_t = 2)]
    pub min_iterations: usize,
    /// Halving rate η: the best 1/η of each rung go on to η times the iterations.
    #[arg(long, default_value_t = 3)]
    pub eta: usize,
    /// Fraction of each user's training tracks held out for the search (valid.npz is never
    /// used by the search).
    #[arg(long, default_value_t = 0.2)]
    pub holdout: f64,
    /// Seed of that hold-out.
    #[arg(long, default_value_t = 42)]
    pub holdout_seed: u64,
    /// K of nDCG@K (the objective) and precision@K.
    #[arg(long, short, default_value_t = 10)]
    pub k: usize,
    /// Stop starting trials after this many seconds; the best so far is chosen.
    #[arg(long, value_name = "SECONDS")]
    pub time_budget: Option<f64>,
    /// Skip training Encore's defaults for the comparison on valid.npz.
    #[arg(long)]
    pub no_defaults: bool,
    /// Per-row solver, as for `train` (not searched).
    #[arg(long, value_enum, default_value = "cg")]
    pub solver: SolverArg,
    /// Conjugate-gradient steps per row and half-step (not searched).
    #[arg(long, default_value_t = AlsConfig::default().cg_steps)]
    pub cg_steps: usize,
    /// CPU cg: rows with at most --cg-steps tracks solved exactly or by CG, as for `train` (not
    /// searched).
    #[arg(long, value_enum, default_value = "exact")]
    pub cg_short_rows: ShortRowsArg,
    /// ε of the log confidence (not searched).
    #[arg(long, default_value_t = AlsConfig::default().epsilon)]
    pub epsilon: f32,
    /// Seed of the factor initialisation (not searched).
    #[arg(long, default_value_t = AlsConfig::default().seed)]
    pub seed: u64,
    /// Where to train: auto (the GPU when usable, else the CPU), cpu, gpu or gpu:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Device memory to plan for, as for `train`.
    #[arg(long, value_name = "BYTES", value_parser = encore::util::parse_bytes)]
    pub gpu_memory: Option<usize>,
}

const TUNE_HELP: &str = "\
How it works: the search holds out --holdout of each user's training tracks (train.npz) and
scores every trial on them; successive halving trains all trials --min-iterations, keeps the best
1/--eta, trains those --eta times longer, and so on up to --iterations. The chosen configuration
is then trained on all of train.npz, exactly as the printed `encore train` command does, and
scored on valid.npz, which the search never saw, beside Encore's defaults and the popularity
baseline: that score is the honest one. Failed trials (non-finite factors at an extreme α) are
listed and skipped.

Examples:
  encore tune ds                                  # 30 random trials over λ, α and k (ν = 0.5)
  encore tune ds --reg-exponent 0,0.5,1           # ν searched too
  encore tune ds --search grid --factors 64 --grid-points 5 --out tune-ds
  encore tune ds --regularization 1:300 --alpha 0.3:10 --time-budget 60";

impl TuneArgs {
    fn options(&self, quiet: bool) -> Result<TuneOptions> {
        let space = Space {
            regularization: Dim::parse(&self.regularization, "--regularization")?,
            alpha: Dim::parse(&self.alpha, "--alpha")?,
            confidence: self.confidence.iter().map(|&c| c.into()).collect(),
            factors: self.factors.clone(),
            reg_exponent: self.reg_exponent.clone(),
        };
        let search = match self.search {
            SearchArg::Random => Search::Random {
                trials: self.trials,
                seed: self.search_seed,
            },
            SearchArg::Grid => Search::Grid {
                points: self.grid_points,
            },
        };
        if let Some(b) = self.time_budget {
            anyhow::ensure!(
                b.is_finite() && b > 0.0,
                "--time-budget must be a positive number of seconds, got {b}"
            );
        }
        Ok(TuneOptions {
            space,
            search,
            base: AlsConfig {
                iterations: self.iterations,
                solver: self.solver.into(),
                cg_steps: self.cg_steps,
                cg_short_rows: self.cg_short_rows.into(),
                epsilon: self.epsilon,
                seed: self.seed,
                ..AlsConfig::default()
            },
            min_iterations: self.min_iterations,
            eta: self.eta,
            holdout: self.holdout,
            holdout_seed: self.holdout_seed,
            k: self.k,
            device: self.device,
            gpu: GpuOptions {
                memory_budget: self.gpu_memory,
            },
            time_budget_s: self.time_budget,
            compare_defaults: !self.no_defaults,
            quiet,
        })
    }
}

pub fn cmd_tune(a: &TuneArgs, quiet: bool) -> Result<()> {
    let opts = a.options(quiet)?;
    // Before any work: never replace the dataset or a directory that is not a tune output.
    if let Some(out) = &a.out {
        AtomicDir::check(out, a.force, OutputKind::Tune, &[&a.dataset])?;
    }
    let ds = Dataset::load(&a.dataset)
        .with_context(|| format!("loading dataset {}", a.dataset.display()))?;
    if !a.json {
        eprintln!(
            "tune: {} users x {} tracks, {} training pairs; {} of each user's tracks held out \
             for the search",
            thousands(ds.train.n_rows as u64),
            thousands(ds.train.n_cols as u64),
            thousands(ds.train.nnz() as u64),
            a.holdout
        );
    }
    let report = tune(&ds, &opts)?;
    if let Some(n) = &report.device_note {
        crate::note::note(n);
    }
    let command = train_command(
        &shell_word(&a.dataset.to_string_lossy()),
        "tuned-model",
        &report.best_config,
    );
    if let Some(out) = &a.out {
        save(out, a.force, &a.dataset, &report, &command)?;
    }
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["train_command"] = serde_json::Value::String(command);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print_report(&report, &command, a.out.as_deref());
    Ok(())
}

/// `s`, quoted for a POSIX shell when it needs to be.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:=@,".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn conf_name(c: Confidence) -> &'static str {
    match c {
        Confidence::Log => "log",
        Confidence::Linear => "linear",
    }
}

fn print_report(r: &TuneReport, command: &str, out: Option<&Path>) {
    let k = r.k;
    println!(
        "tune: {} trials on {}{}, {} threads; rungs at {} iterations (η = {}); search {:.1} s{}",
        r.trials.len(),
        r.device,
        if r.device == "cpu" { "" } else { " (GPU)" },
        r.threads,
        r.rungs
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        r.eta,
        r.search_seconds,
        if r.out_of_time {
            " (stopped by --time-budget)"
        } else {
            ""
        }
    );
    println!(
        "scored on the tuning hold-out: {} pairs of {} users ({} of each user's training tracks, \
         seed {}); valid.npz unseen",
        thousands(r.holdout.held_out_pairs as u64),
        thousands(r.holdout.users as u64),
        r.holdout.fraction,
        r.holdout.seed
    );
    let mut order: Vec<usize> = (0..r.trials.len()).collect();
    order.sort_by(|&a, &b| {
        let (ta, tb) = (&r.trials[a], &r.trials[b]);
        tb.scores
            .len()
            .cmp(&ta.scores.len())
            .then(tb.last_ndcg().total_cmp(&ta.last_ndcg()))
            .then(a.cmp(&b))
    });
    let mut head = format!(
        "{:>4} {:>5} {:>9} {:>9} {:>6} {:>4} {:>4}",
        "rank", "trial", "λ", "α", "conf", "k", "ν"
    );
    for it in &r.rungs {
        head += &format!(" {:>10}", format!("@{it} it"));
    }
    head += &format!(" {:>8} {:>7}", format!("p@{k}"), "s");
    println!("nDCG@{k} on the tuning hold-out after each rung's iterations:");
    println!("{head}");
    const SHOWN: usize = 40;
    for (rank, &t) in order.iter().enumerate().take(SHOWN) {
        let tr = &r.trials[t];
        let c = &tr.config;
        let mut line = format!(
            "{:>4} {:>5} {:>9} {:>9} {:>6} {:>4} {:>4}",
            rank + 1,
            tr.id,
            c.regularization,
            c.alpha,
            conf_name(c.confidence),
            c.factors,
            c.reg_exponent
        );
        for i in 0..r.rungs.len() {
            line += &match tr.scores.get(i) {
                Some(s) => format!(" {:>10.4}", s.ndcg),
                None => format!(" {:>10}", "-"),
            };
        }
        let secs: f64 = tr.scores.iter().map(|s| s.seconds).sum();
        match (&tr.error, tr.scores.last()) {
            (Some(e), _) => line += &format!("  failed: {e}"),
            (None, Some(s)) => line += &format!(" {:>8.4} {:>7.2}", s.precision, secs),
            (None, None) => line += "  not run (time budget)",
        }
        if t == r.best {
            line += "  <- best";
        }
        println!("{line}");
    }
    if order.len() > SHOWN {
        println!(
            "  ... {} more trials (all of them in --json{})",
            order.len() - SHOWN,
            if out.is_some() { " and tune.json" } else { "" }
        );
    }
    let best = &r.trials[r.best];
    let v = &r.on_valid;
    println!();
    println!(
        "best: trial {} (λ {}, α {}, {} confidence, k {}, ν {}), nDCG@{k} {:.4} on the tuning \
         hold-out",
        best.id,
        best.config.regularization,
        best.config.alpha,
        conf_name(best.config.confidence),
        best.config.factors,
        best.config.reg_exponent,
        best.last_ndcg()
    );
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}x", a / b)
        } else {
            "n/a".into()
        }
    };
    println!(
        "trained on all of train.npz, scored on valid.npz ({} users):",
        v.best.users
    );
    println!(
        "{:<22} {:>9} {:>9}",
        "",
        format!("nDCG@{k}"),
        format!("p@{k}")
    );
    let mut rows = vec![("chosen", &v.best)];
    if let Some(d) = &v.defaults {
        rows.push(("Encore's defaults", d));
    }
    rows.push(("popularity", &v.popularity));
    for (name, m) in &rows {
        println!("{:<22} {:>9.4} {:>9.4}", name, m.ndcg, m.precision);
    }
    let mut vs = vec![format!(
        "{} the popularity baseline",
        ratio(v.best.ndcg, v.popularity.ndcg)
    )];
    if let Some(d) = &v.defaults {
        vs.insert(0, format!("{} the defaults", ratio(v.best.ndcg, d.ndcg)));
    }
    println!("chosen nDCG@{k}: {}", vs.join(", "));
    println!();
    println!("reproduce it:");
    println!("  {command}");
    match out {
        Some(o) => println!("wrote {} (tune.json, tune.png, tune.svg)", o.display()),
        None => println!("(--out DIR writes tune.json and the nDCG@{k}-over-λ×α figure)"),
    }
}

/// `tune.json`, `tune.svg` and `tune.png` into `out`, atomically.
fn save(out: &Path, force: bool, dataset: &Path, r: &TuneReport, command: &str) -> Result<()> {
    let dir = AtomicDir::create(out, force, OutputKind::Tune, &[dataset])?;
    let svg = dir.path().join("tune.svg");
    let k = r.k;
    // One point per (λ, α), the best over the other searched dimensions, at the first rung
    // (where every trial was scored after the same iterations).
    let mut cells: BTreeMap<(u32, u32), (f64, bool, usize)> = BTreeMap::new();
    for (i, t) in r.trials.iter().enumerate() {
        let Some(first) = t.scores.first() else {
            continue;
        };
        let key = (t.config.regularization.to_bits(), t.config.alpha.to_bits());
        let last = t.scores.len() == r.rungs.len();
        let e = cells.entry(key).or_insert((f64::NEG_INFINITY, false, i));
        if first.ndcg > e.0 {
            e.0 = first.ndcg;
            e.2 = i;
        }
        e.1 |= last;
    }
    let best = &r.trials[r.best].config;
    let points: Vec<HeatPoint> = cells
        .iter()
        .map(|(&(l, a), &(v, last, _))| {
            let (l, a) = (f32::from_bits(l), f32::from_bits(a));
            HeatPoint {
                x: f64::from(l),
                y: f64::from(a),
                value: v,
                ring: last,
                label: (l == best.regularization && a == best.alpha).then(|| {
                    format!(
                        "chosen: λ {l}, α {a}, k {}, ν {}: nDCG@{k} {:.4} on the hold-out \
                             at {} iterations",
                        best.factors,
                        best.reg_exponent,
                        r.trials[r.best].last_ndcg(),
                        r.trials[r.best].scores.last().map_or(0, |s| s.iterations)
                    )
                }),
            }
        })
        .collect();
    let first = r.rungs.first().copied().unwrap_or(0);
    let title = format!("nDCG@{k} on the tuning hold-out after {first} iterations, over λ and α");
    let note = format!(
        "Colour: each (λ, α)'s best score at the first rung. Ringed: trained to the last rung \
         ({} iterations). Chosen: the best of the furthest rung reached.",
        r.rungs.last().copied().unwrap_or(0)
    );
    heat_scatter_svg(
        &svg,
        &title,
        &note,
        "regularization λ",
        "confidence scale α",
        &format!("nDCG@{k}"),
        &points,
    )?;
    let fonts = svg_to_png(&svg, &dir.path().join("tune.png"), 1.5)?;
    if !fonts {
        crate::note::note(&format!(
            "tune.png has no text: no font found (set {} to a folder of .ttf files)",
            encore_bench::chart::FONT_DIR_ENV
        ));
    }
    let mut v = serde_json::to_value(r)?;
    v["train_command"] = serde_json::Value::String(command.to_string());
    encore::util::write_atomic(
        &dir.path().join("tune.json"),
        (serde_json::to_string_pretty(&v)? + "\n").as_bytes(),
    )?;
    dir.commit()?;
    Ok(())
}
