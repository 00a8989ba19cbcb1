//! `train`, `eval`, `recommend` and `similar`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use encore::als::gpu::GpuOptions;
use encore::als::model::Model;
use encore::als::{AlsConfig, IterationStats, SolverKind};
use encore::data::dataset::Dataset;
use encore::data::ids::{IdBuf, Miss};
use encore::eval;
use encore::gpu::DeviceChoice;
use encore::recommend::{Recommender, Track};
use encore::train::{FitOptions, fit_with, make_backend};

use crate::fmt::thousands;
use crate::values::{ConfidenceArg, PrecisionArg, ShortRowsArg, SolverArg};

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Dataset directory written by `encore prep`.
    pub dataset: PathBuf,
    /// Output model directory (user_factors.npy, item_factors.npy, model.json).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Latent factors k.
    #[arg(long, default_value_t = AlsConfig::default().factors)]
    pub factors: usize,
    /// ALS iterations (each solves all users, then all items).
    #[arg(long, default_value_t = AlsConfig::default().iterations)]
    pub iterations: usize,
    /// L2 regularization λ.
    #[arg(long, default_value_t = AlsConfig::default().regularization)]
    pub regularization: f32,
    /// Confidence scale α: c = 1 + α·f(plays).
    #[arg(long, default_value_t = AlsConfig::default().alpha)]
    pub alpha: f32,
    /// f(plays): log = log(1 + plays/ε), linear = plays.
    #[arg(long, value_enum, default_value = "log")]
    pub confidence: ConfidenceArg,
    /// ε of the log confidence.
    #[arg(long, default_value_t = AlsConfig::default().epsilon)]
    pub epsilon: f32,
    /// Per-row solver. CPU: cholesky (exact reference) or cg. GPU: cg, cholesky-fused (exact,
    /// in shared memory) or lu (cuBLAS batched LU).
    #[arg(long, value_enum, default_value = "cg")]
    pub solver: SolverArg,
    /// Where to train: auto (the GPU when usable, else the CPU), cpu, gpu or gpu:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Device memory to plan for, e.g. 2G or 512M (default: what is free, less a reserve). The
    /// matrices stream through the GPU in chunks when they do not fit.
    #[arg(long, value_name = "BYTES", value_parser = encore::util::parse_bytes)]
    pub gpu_memory: Option<usize>,
    /// Conjugate-gradient steps per row and half-step.
    #[arg(long, default_value_t = AlsConfig::default().cg_steps)]
    pub cg_steps: usize,
    /// CPU cg: rows with at most --cg-steps tracks are solved exactly (Woodbury) or by CG like
    /// the others (the GPU cg solver always uses CG).
    #[arg(long, value_enum, default_value = "exact")]
    pub cg_short_rows: ShortRowsArg,
    /// ν of frequency-scaled regularisation (Rendle et al. 2022): each user and track is
    /// penalised by λ·(n / n̄)^ν, n its entries and n̄ the mean of its side; 0 = plain λ.
    #[arg(long, default_value_t = AlsConfig::default().reg_exponent)]
    pub reg_exponent: f32,
    /// Storage of the factor rows each half-step gathers: fp32, or bf16 (half the memory
    /// traffic of the GPU cg solver; sums and the solved factors stay fp32). The CPU honours
    /// it too, so both devices train the same model.
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: PrecisionArg,
    /// Seed of the factor initialization.
    #[arg(long, default_value_t = AlsConfig::default().seed)]
    pub seed: u64,
    /// Compute the exact training loss after every iteration (costs about one CG half-step).
    #[arg(long)]
    pub loss: bool,
    /// Measure precision@K and nDCG@K on valid.npz after every iteration.
    #[arg(long, value_name = "K")]
    pub eval_k: Option<usize>,
    /// Replace the output directory if it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub dist: crate::dist::DistArgs,
}

impl TrainArgs {
    pub(crate) fn config(&self) -> AlsConfig {
        AlsConfig {
            factors: self.factors,
            iterations: self.iterations,
            regularization: self.regularization,
            alpha: self.alpha,
            confidence: self.confidence.into(),
            epsilon: self.epsilon,
            solver: self.solver.into(),
            cg_steps: self.cg_steps,
            cg_short_rows: self.cg_short_rows.into(),
            reg_exponent: self.reg_exponent,
            precision: self.precision.into(),
            seed: self.seed,
            compute_loss: self.loss,
        }
    }
}

/// `encore train`: the model, or `None` on a rank other than 0 of a multi-rank run.
pub fn cmd_train(a: &TrainArgs, quiet: bool) -> Result<Option<Model>> {
    match crate::dist::plan(&a.dist)? {
        crate::dist::Plan::Single => {}
        plan => return crate::dist::train(a, plan, quiet),
    }
    let opts = FitOptions {
        device: a.device,
        gpu: GpuOptions {
            memory_budget: a.gpu_memory,
        },
        quiet,
        eval_k: a.eval_k,
    };
    train_to_dir(&a.dataset, &a.out, &a.config(), &opts, a.force).map(Some)
}

/// Loads `dataset`, trains with `cfg`, prints progress and a summary, and saves to `out`.
pub fn train_to_dir(
    dataset: &Path,
    out: &Path,
    cfg: &AlsConfig,
    opts: &FitOptions,
    force: bool,
) -> Result<Model> {
    let quiet = opts.quiet;
    let ds =
        Dataset::load(dataset).with_context(|| format!("loading dataset {}", dataset.display()))?;
    // Before any work: never replace the dataset, an input, or a directory that is not a model.
    Model::check_save(out, force, dataset)?;
    let (mut backend, note) = make_backend(cfg, opts.device, opts.gpu)?;
    if let Some(n) = note {
        crate::note::note(&n);
    }
    println!(
        "train: {} users x {} tracks, {} pairs; k={} {} iterations, solver {}{}, on {}{}",
        thousands(ds.train.n_rows as u64),
        thousands(ds.train.n_cols as u64),
        thousands(ds.train.nnz() as u64),
        cfg.factors,
        cfg.iterations,
        cfg.solver.as_str(),
        if cfg.solver == SolverKind::Cg {
            format!(" ({} steps)", cfg.cg_steps)
        } else {
            String::new()
        },
        backend.device(),
        if backend.device() == "cpu" {
            format!(" ({} threads)", rayon::current_num_threads())
        } else {
            String::new()
        }
    );
    let model = fit_with(ds, cfg, backend.as_mut(), opts, |s| {
        if !quiet {
            print_iteration(s);
        }
    })?;
    model
        .save(out, force)
        .with_context(|| format!("saving the model to {}", out.display()))?;
    let its = &model.meta.iterations;
    println!(
        "train: {:.2} s total, first iteration {:.3} s, steady {:.3} s/iteration; wrote {}",
        model.meta.train_seconds,
        its.first().map(|s| s.seconds).unwrap_or(0.0),
        steady_seconds(its),
        out.display()
    );
    Ok(model)
}

/// One iteration's progress line on stderr (seconds, loss and validation when measured).
pub(crate) fn print_iteration(s: &IterationStats) {
    let loss = s
        .loss
        .map(|l| format!("  loss {l:.6e}"))
        .unwrap_or_default();
    let valid = s
        .valid
        .map(|v| format!("  p@{} {:.4}  nDCG@{} {:.4}", v.k, v.precision, v.k, v.ndcg))
        .unwrap_or_default();
    eprintln!(
        "  iteration {:>3}  {:>8.3} s{loss}{valid}",
        s.iteration, s.seconds
    );
}

/// The mean seconds of the iterations after the first (0 with fewer than two).
pub(crate) fn steady_seconds(its: &[IterationStats]) -> f64 {
    let steady = its.get(1..).unwrap_or(&[]);
    if steady.is_empty() {
        0.0
    } else {
        steady.iter().map(|s| s.seconds).sum::<f64>() / steady.len() as f64
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Dataset directory (its valid.npz holds the held-out listens).
    pub dataset: PathBuf,
    /// Model directory written by `encore train` on that dataset.
    pub model: PathBuf,
    /// Cut-off K of the metrics.
    #[arg(long, short, default_value_t = 10)]
    pub k: usize,
    /// Where to score: auto (the GPU when usable, else the CPU), cpu, gpu or gpu:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RecommendArgs {
    /// Model directory written by `encore train`.
    pub model: PathBuf,
    /// Dataset directory (default: the one recorded in the model's model.json).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Original user id, as in the input logs: a number, or a string id (MSD's hex users,
    /// ListenBrainz user names).
    #[arg(
        long,
        required_unless_present = "users_file",
        conflicts_with = "users_file"
    )]
    pub user: Option<String>,
    /// Batch mode: a file of original user ids, one per line (`-` for stdin); writes one JSON
    /// line per non-blank line, in order: `{"line", "user", "tracks"}`, or for a line that is not
    /// an id or names an unknown user `{"line", "user", "error"}`. Such lines do not stop the
    /// batch: the exit code is 0 when any line was answered, 1 when none was.
    #[arg(long)]
    pub users_file: Option<PathBuf>,
    /// How many tracks.
    #[arg(long, short, default_value_t = 10)]
    pub k: usize,
    /// Keep tracks the user already listened to.
    #[arg(long)]
    pub no_filter: bool,
    /// Where to score: auto (the GPU when usable, else the CPU), cpu, gpu or gpu:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Print JSON (single-user mode) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SimilarArgs {
    /// Model directory written by `encore train`.
    pub model: PathBuf,
    /// Dataset directory (default: the one recorded in the model's model.json).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Original track id (a number, or a string id such as an MSD song or a MusicBrainz id).
    #[arg(long)]
    pub item: String,
    /// How many tracks.
    #[arg(long, short, default_value_t = 10)]
    pub k: usize,
    /// Where to score: auto (the GPU when usable, else the CPU), cpu, gpu or gpu:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Loads a model and its dataset (given, or the one model.json names) into a recommender.
pub fn load_recommender(
    model: &Path,
    dataset: Option<&Path>,
    device: DeviceChoice,
) -> Result<Recommender> {
    let m = Model::load(model).with_context(|| format!("loading model {}", model.display()))?;
    let dir = dataset
        .map(Path::to_path_buf)
        .unwrap_or_else(|| m.meta.dataset.dir.clone());
    let ds = Dataset::load(&dir).with_context(|| format!("loading dataset {}", dir.display()))?;
    m.check_dataset(&ds).with_context(|| {
        format!(
            "model {} does not belong to dataset {}",
            model.display(),
            dir.display()
        )
    })?;
    let (rec, note) = Recommender::on_device(m, ds, device)?;
    if let Some(n) = note {
        crate::note::note(&n);
    }
    Ok(rec)
}

pub fn cmd_eval(a: &EvalArgs) -> Result<()> {
    let rec = load_recommender(&a.model, Some(&a.dataset), a.device)?;
    let t = Instant::now();
    let model = rec.evaluate(a.k)?;
    let model_s = t.elapsed().as_secs_f64();
    let pop = eval::popularity(&rec.dataset.train, &rec.dataset.valid, a.k)?;
    if a.json {
        let v = serde_json::json!({
            "k": a.k,
            "dataset": rec.dataset.dir,
            "model_dir": a.model,
            "model": model,
            "popularity": pop,
            "ranking_seconds": model_s,
            "threads": rayon::current_num_threads(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "eval @{}: {} users with held-out tracks, {} tracks (ranked all {} users in {:.2} s)",
        a.k,
        thousands(model.users),
        thousands(rec.dataset.train.n_cols as u64),
        thousands(model.users),
        model_s
    );
    println!(
        "{:<12} {:>11} {:>11} {:>11} {:>11} {:>11}",
        "", "precision", "recall", "nDCG", "MAP", "coverage"
    );
    for (name, m) in [("model", &model), ("popularity", &pop)] {
        println!(
            "{:<12} {:>11.4} {:>11.4} {:>11.4} {:>11.4} {:>11.4}",
            name, m.precision, m.recall, m.ndcg, m.map, m.coverage
        );
    }
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}x", a / b)
        } else {
            "n/a".into()
        }
    };
    println!(
        "{:<12} {:>11} {:>11} {:>11} {:>11} {:>11}",
        "model/pop",
        ratio(model.precision, pop.precision),
        ratio(model.recall, pop.recall),
        ratio(model.ndcg, pop.ndcg),
        ratio(model.map, pop.map),
        ratio(model.coverage, pop.coverage)
    );
    Ok(())
}

fn print_tracks(tracks: &[Track]) {
    println!("{:>4} {:>9}  {:<40} artist", "rank", "score", "track");
    for (r, t) in tracks.iter().enumerate() {
        let name = t.name.clone().unwrap_or_else(|| format!("track {}", t.id));
        let artist = t.artist.clone().unwrap_or_else(|| {
            t.artist_id
                .map(|a| format!("artist {a}"))
                .unwrap_or_else(|| "-".into())
        });
        println!("{:>4} {:>9.4}  {:<40} {}", r + 1, t.score, name, artist);
    }
}

pub fn cmd_recommend(a: &RecommendArgs) -> Result<()> {
    let rec = load_recommender(&a.model, a.dataset.as_deref(), a.device)?;
    let filter = !a.no_filter;
    if let Some(text) = &a.user {
        let row = rec.user_index(text)?;
        let user = rec.dataset.user_ids.get(row);
        let ranked = rec.recommend_rows(&[row], a.k, filter)?;
        let tracks = rec.describe(&ranked[0]);
        if a.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&UserTracks {
                    user,
                    tracks: &tracks
                })?
            );
        } else {
            println!(
                "Top {} for user {user}{}:",
                a.k,
                if filter {
                    " (already-played tracks removed)"
                } else {
                    ""
                }
            );
            print_tracks(&tracks);
        }
        return Ok(());
    }
    let Some(path) = &a.users_file else {
        anyhow::bail!("give --user ID or --users-file FILE");
    };
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading user ids from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let ids = &rec.dataset.user_ids;
    let lines = parse_user_lines(&text, |t| {
        ids.lookup(t).map(|row| (ids.get(row).to_owned(), row))
    });
    let known: Vec<usize> = lines
        .iter()
        .filter_map(|(_, l)| match l {
            UserLine::Known { row, .. } => Some(*row),
            _ => None,
        })
        .collect();
    let ranked = rec.recommend_rows(&known, a.k, filter)?;
    anyhow::ensure!(
        ranked.len() == known.len(),
        "internal error: {} results for {} users",
        ranked.len(),
        known.len()
    );
    let mut next = ranked.iter();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (line, l) in &lines {
        let line = *line;
        let json = match l {
            UserLine::Known { id, .. } => match next.next() {
                Some(r) => serde_json::to_string(&LineAnswer::Tracks {
                    line,
                    user: id,
                    tracks: rec.describe(r),
                })?,
                None => anyhow::bail!("internal error: fewer results than users"),
            },
            UserLine::Unknown(id) => serde_json::to_string(&LineAnswer::Error {
                line,
                user: id.clone(),
                error: "unknown user id",
            })?,
            UserLine::NotAnId(text) => serde_json::to_string(&LineAnswer::Error {
                line,
                user: IdBuf::Str(text.clone()),
                error: "not a user id",
            })?,
        };
        writeln!(out, "{json}")?;
    }
    out.flush()?;
    let failed = lines.len() - known.len();
    if failed > 0 {
        crate::note::note(&format!(
            "recommend: {failed} of {} lines of {} were not answered (errors inline)",
            lines.len(),
            path.display()
        ));
        anyhow::ensure!(
            !known.is_empty(),
            "no line of {} names a known user",
            path.display()
        );
    }
    Ok(())
}

/// `recommend --user ID --json`. Typed rather than `json!`, which widened each f32 score to
/// f64 and printed digits float32 does not have (issue 14); tracks are the core's schema.
#[derive(serde::Serialize)]
struct UserTracks<'a> {
    user: encore::data::ids::Id<'a>,
    tracks: &'a [Track],
}

/// `similar --json`.
#[derive(serde::Serialize)]
struct ItemTracks<'a> {
    item: encore::data::ids::Id<'a>,
    tracks: &'a [Track],
}

/// One `--users-file` answer line: the user's tracks, or why there are none (the same shape
/// as an element of the server's `POST /v1/recommend` answer, with the line number).
#[derive(serde::Serialize)]
#[serde(untagged)]
enum LineAnswer<'a> {
    Tracks {
        line: usize,
        user: &'a IdBuf,
        tracks: Vec<Track>,
    },
    Error {
        line: usize,
        user: IdBuf,
        error: &'static str,
    },
}

/// A non-blank line of a `--users-file`.
#[derive(Debug, PartialEq)]
enum UserLine {
    /// An original id and its row.
    Known { id: IdBuf, row: usize },
    /// A well-formed id that is not in the dataset (a number for integer ids).
    Unknown(IdBuf),
    /// Not an id (not an unsigned integer, for integer ids): the trimmed text, at most
    /// [`MAX_ECHO`] characters of it.
    NotAnId(String),
}

/// Most characters of a bad line echoed back in its error object.
const MAX_ECHO: usize = 64;

/// Parses a `--users-file` into its non-blank lines, each with its 1-based number and answered
/// on its own, so one bad line does not cost the batch its other answers (issue 13). `lookup`
/// maps an id's text to the dataset's own id and its row.
fn parse_user_lines(
    text: &str,
    lookup: impl Fn(&str) -> Result<(IdBuf, usize), Miss>,
) -> Vec<(usize, UserLine)> {
    text.lines()
        .enumerate()
        .filter_map(|(n, line)| {
            let t = line.trim();
            if t.is_empty() {
                return None;
            }
            let l = match lookup(t) {
                Ok((id, row)) => UserLine::Known { id, row },
                Err(Miss::Unknown) => UserLine::Unknown(match t.parse::<u64>() {
                    Ok(v) => IdBuf::Int(v),
                    Err(_) => IdBuf::Str(t.chars().take(MAX_ECHO).collect()),
                }),
                Err(Miss::NotAnId) => UserLine::NotAnId(t.chars().take(MAX_ECHO).collect()),
            };
            Some((n + 1, l))
        })
        .collect()
}

pub fn cmd_similar(a: &SimilarArgs) -> Result<()> {
    let rec = load_recommender(&a.model, a.dataset.as_deref(), a.device)?;
    let col = rec.item_index(&a.item)? as u32;
    let item = rec.dataset.item_ids.get(col as usize);
    let ranked = rec.similar_rows(&[col], a.k)?;
    let tracks = rec.describe(&ranked[0]);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&ItemTracks {
                item,
                tracks: &tracks
            })?
        );
    } else {
        let me = rec.describe(&encore::infer::Ranked {
            items: vec![col],
            scores: vec![1.0],
        });
        println!(
            "Tracks most similar to {} (cosine):",
            me[0]
                .name
                .clone()
                .unwrap_or_else(|| format!("track {item}"))
        );
        print_tracks(&tracks);
    }
    Ok(())
}
