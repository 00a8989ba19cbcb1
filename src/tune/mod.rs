//! Hyper-parameter search: `encore tune`.
//!
//! Defaults chosen on one data set are poor on another (issue 15: HetRec wants a λ hundreds of
//! times Encore's old default), and a user should not have to sweep by hand. `tune` draws
//! configurations of λ, α, the confidence function, k and ν, the exponent of frequency-scaled
//! regularisation ([`space`]), trains them with successive halving over iterations
//! ([`halving`]) on whatever device `--device` picks (the same [`Backend`] seam as `encore
//! train`), and scores each on a hold-out carved out of the training matrix ([`holdout`]).
//!
//! **The search never sees `valid.npz`.** Choosing the best of many configurations by their
//! score on a split and then reporting that score overstates it; so the search scores on its own
//! hold-out inside `train.npz`, and only afterwards is the chosen configuration trained on all
//! of `train.npz` — exactly what the printed `encore train` command does — and scored once on
//! `valid.npz`, beside Encore's defaults and the popularity baseline trained and scored the same
//! way. That last score is an honest estimate; the search's own is not.

pub mod halving;
pub mod holdout;
pub mod space;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::als::gpu::GpuOptions;
use crate::als::{self, AlsConfig, Backend, Factors};
use crate::data::csr::Csr;
use crate::data::dataset::Dataset;
use crate::error::{Error, Result};
use crate::eval::{self, Metrics, eval_users};
use crate::gpu::DeviceChoice;
use crate::train::{make_backend, measure, validate};

pub use halving::{RungScore, Trial};
pub use space::{Dim, Search, Space};

/// Host bytes of trial factors kept between rungs. A trial that goes on to the next rung
/// resumes from its factors when they were kept, else it is retrained from its seed (the same
/// factors, at the cost of the iterations already done): at HetRec or `medium` scale every
/// survivor fits; at LFM-1b scale (1.3 GB per trial at k = 64) only a few do.
const KEEP_BYTES: usize = 4 << 30;

/// How to tune.
#[derive(Debug, Clone)]
pub struct TuneOptions {
    pub space: Space,
    pub search: Search,
    /// Everything not searched: solver, CG steps, ε, seed; `iterations` is the full count
    /// the last rung trains to.
    pub base: AlsConfig,
    /// Iterations of the first rung.
    pub min_iterations: usize,
    /// Halving rate η: the best 1/η of a rung go on, to η times the iterations.
    pub eta: usize,
    /// Fraction of each user's training tracks the search holds out, and its seed.
    pub holdout: f64,
    pub holdout_seed: u64,
    /// K of nDCG@K, the objective, and of precision@K.
    pub k: usize,
    pub device: DeviceChoice,
    pub gpu: GpuOptions,
    /// Seconds after which no new trial segment starts.
    pub time_budget_s: Option<f64>,
    /// Also train Encore's defaults on all of `train.npz` and score them on `valid.npz`.
    pub compare_defaults: bool,
    pub quiet: bool,
}

impl Default for TuneOptions {
    fn default() -> Self {
        Self {
            space: Space::default(),
            search: Search::Random {
                trials: 30,
                seed: 42,
            },
            base: AlsConfig::default(),
            min_iterations: 2,
            eta: 3,
            holdout: 0.2,
            holdout_seed: 42,
            k: 10,
            device: DeviceChoice::Auto,
            gpu: GpuOptions::default(),
            time_budget_s: None,
            compare_defaults: true,
            quiet: false,
        }
    }
}

/// The tuning hold-out, for the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoldoutInfo {
    pub fraction: f64,
    pub seed: u64,
    /// Pairs the search trains on and scores on.
    pub train_pairs: usize,
    pub held_out_pairs: usize,
    /// Users with held-out tracks (those scored).
    pub users: usize,
}

/// Scores on `valid.npz` of models trained on all of `train.npz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OnValid {
    /// The chosen configuration: what its `encore train` command, then `encore eval`, gives.
    pub best: Metrics,
    /// Encore's defaults (with the same solver and iterations), when asked for.
    pub defaults: Option<Metrics>,
    pub popularity: Metrics,
}

/// Everything `tune` found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TuneReport {
    pub encore_version: String,
    pub dataset: PathBuf,
    pub content_hash: String,
    /// Where trials trained (`cpu`, or the GPU's name), and a note when `auto` fell back.
    pub device: String,
    pub device_note: Option<String>,
    pub threads: usize,
    pub k: usize,
    pub holdout: HoldoutInfo,
    pub space: Space,
    pub search: Search,
    /// Cumulative iterations of each rung.
    pub rungs: Vec<usize>,
    pub eta: usize,
    pub trials: Vec<Trial>,
    /// Index into `trials` of the chosen configuration.
    pub best: usize,
    /// The chosen configuration (iterations = the full count).
    pub best_config: AlsConfig,
    pub on_valid: OnValid,
    /// Whether `time_budget_s` cut the search short.
    pub out_of_time: bool,
    pub search_seconds: f64,
    pub total_seconds: f64,
}

/// Trains trials on the search split, keeping their factors between rungs.
struct AlsTrials<'a> {
    by_user: &'a Csr,
    by_item: &'a Csr,
    held: &'a Csr,
    users: Vec<u32>,
    k: usize,
    backends: &'a mut Backends,
    /// Factors and iterations done, of trials that may go on.
    kept: HashMap<usize, (Factors, Factors, usize)>,
    kept_bytes: usize,
}

/// One backend per k (a GPU backend is built for its k), reused across trials via
/// [`Backend::reset`] so the device is opened once, not once per trial.
struct Backends {
    device: DeviceChoice,
    gpu: GpuOptions,
    by_k: HashMap<usize, Box<dyn Backend>>,
    name: Option<String>,
    note: Option<String>,
}

impl Backends {
    fn get(&mut self, cfg: &AlsConfig) -> Result<&mut Box<dyn Backend>> {
        if !self.by_k.contains_key(&cfg.factors) {
            let (b, note) = make_backend(cfg, self.device, self.gpu)?;
            if self.name.is_none() {
                self.name = Some(b.device());
                self.note = note;
            }
            self.by_k.insert(cfg.factors, b);
        }
        let b = self
            .by_k
            .get_mut(&cfg.factors)
            .ok_or_else(|| Error::Runtime("backend cache lost an entry".into()))?;
        b.reset()?;
        Ok(b)
    }
}

impl halving::Advance for AlsTrials<'_> {
    fn advance(&mut self, trial: usize, cfg: &AlsConfig, iterations: usize) -> Result<(f64, f64)> {
        cfg.validate()?;
        als::check_confidence(self.by_user, cfg)?;
        let (mut users, mut items, done) = match self.kept.remove(&trial) {
            Some((u, i, d)) => {
                self.kept_bytes -= bytes(&u) + bytes(&i);
                (u, i, d)
            }
            None => {
                let (u, i) = als::initial_factors(self.by_user.n_rows, self.by_user.n_cols, cfg);
                (u, i, 0)
            }
        };
        let p = als::prepare_pair(self.by_user, self.by_item, cfg);
        let backend = self.backends.get(cfg)?;
        for _ in done..iterations {
            backend.iterate(&p, &mut users, &mut items)?;
        }
        backend.sync_to_host(&mut users, &mut items)?;
        drop(p);
        let v = validate(self.by_user, self.held, &self.users, &users, &items, self.k)?;
        let size = bytes(&users) + bytes(&items);
        if self.kept_bytes + size <= KEEP_BYTES {
            self.kept_bytes += size;
            self.kept.insert(trial, (users, items, iterations));
        }
        Ok((v.ndcg, v.precision))
    }

    fn forget(&mut self, trial: usize) {
        if let Some((u, i, _)) = self.kept.remove(&trial) {
            self.kept_bytes -= bytes(&u) + bytes(&i);
        }
    }
}

fn bytes(f: &Factors) -> usize {
    f.data.len() * 4
}

/// Trains `cfg` on all of `train` as `encore train` does and scores it on `valid`.
fn fit_and_score(
    train: &Csr,
    valid: &Csr,
    cfg: &AlsConfig,
    k: usize,
    backends: &mut Backends,
    mut tick: impl FnMut(),
) -> Result<Metrics> {
    let backend = backends.get(cfg)?;
    let t = als::train(train.clone(), cfg, backend.as_mut(), false, |_, _, _, _| {
        tick();
        Ok(())
    })?;
    measure(train, valid, &eval_users(valid), &t.users, &t.items, k)
}

/// Searches `opts.space` on `ds` (see the module docs for what is trained and scored where).
pub fn tune(ds: &Dataset, opts: &TuneOptions) -> Result<TuneReport> {
    let started = Instant::now();
    if opts.k == 0 {
        return Err(Error::Config("-k must be at least 1".into()));
    }
    if opts.eta < 2 {
        return Err(Error::Config(format!(
            "--eta must be at least 2, got {}",
            opts.eta
        )));
    }
    let base = AlsConfig {
        compute_loss: false,
        ..opts.base.clone()
    };
    base.validate()?;
    let configs = opts.space.draw(opts.search, &base)?;
    let rungs = halving::schedule(opts.min_iterations, base.iterations, opts.eta);
    let (fit, held) = holdout::holdout(&ds.train, opts.holdout, opts.holdout_seed)?;
    let by_item = fit.transpose();
    let users = eval_users(&held);
    if users.is_empty() {
        return Err(Error::Config(format!(
            "{}: no user has two or more training tracks to hold out; nothing to tune on",
            ds.dir.display()
        )));
    }
    let holdout_info = HoldoutInfo {
        fraction: opts.holdout,
        seed: opts.holdout_seed,
        train_pairs: fit.nnz(),
        held_out_pairs: held.nnz(),
        users: users.len(),
    };
    let mut backends = Backends {
        device: opts.device,
        gpu: opts.gpu,
        by_k: HashMap::new(),
        name: None,
        note: None,
    };
    let finals = base.iterations * (1 + usize::from(opts.compare_defaults));
    let planned = halving::planned_iterations(configs.len(), &rungs, opts.eta) + finals;
    let pb = bar(planned as u64, opts.quiet);
    pb.set_message(format!("{} trials", configs.len()));
    let mut trials = AlsTrials {
        by_user: &fit,
        by_item: &by_item,
        held: &held,
        users,
        k: opts.k,
        backends: &mut backends,
        kept: HashMap::new(),
        kept_bytes: 0,
    };
    let k = opts.k;
    let outcome = halving::run(
        configs,
        &rungs,
        opts.eta,
        opts.time_budget_s,
        &mut trials,
        |done, ts| {
            pb.set_position(done as u64);
            let scored = ts.iter().filter(|t| !t.scores.is_empty()).count();
            if let Some(b) = ts
                .iter()
                .filter(|t| t.error.is_none())
                .max_by(|a, b| a.last_ndcg().total_cmp(&b.last_ndcg()))
                .filter(|b| !b.scores.is_empty())
            {
                pb.set_message(format!(
                    "{scored}/{} trials scored; best so far nDCG@{k} {:.4} (trial {}, {} iterations)",
                    ts.len(),
                    b.last_ndcg(),
                    b.id,
                    b.scores.last().map_or(0, |s| s.iterations)
                ));
            }
        },
    );
    drop(trials);
    let search_seconds = started.elapsed().as_secs_f64();
    let Some(best) = outcome.best else {
        pb.finish_and_clear();
        let why = outcome
            .trials
            .iter()
            .find_map(|t| t.error.clone())
            .unwrap_or_else(|| "the time budget ran out before the first trial".into());
        return Err(Error::Config(format!(
            "no trial could be scored ({why}); widen --time-budget or the search space"
        )));
    };
    let best_config = outcome.trials[best].config.clone();
    // Only now is `valid` read: the chosen configuration and the defaults, trained on all of
    // train.npz.
    pb.set_message("training the chosen configuration on all of train.npz".to_string());
    let mut pos = pb.position();
    let best_m = fit_and_score(&ds.train, &ds.valid, &best_config, k, &mut backends, || {
        pos += 1;
        pb.set_position(pos);
    })?;
    let defaults = if opts.compare_defaults {
        pb.set_message("training Encore's defaults on all of train.npz".to_string());
        let d = AlsConfig {
            factors: AlsConfig::default().factors,
            regularization: AlsConfig::default().regularization,
            alpha: AlsConfig::default().alpha,
            confidence: AlsConfig::default().confidence,
            ..base.clone()
        };
        Some(fit_and_score(
            &ds.train,
            &ds.valid,
            &d,
            k,
            &mut backends,
            || {
                pos += 1;
                pb.set_position(pos);
            },
        )?)
    } else {
        None
    };
    let popularity = eval::popularity(&ds.train, &ds.valid, k)?;
    pb.finish_and_clear();
    Ok(TuneReport {
        encore_version: crate::VERSION.to_string(),
        dataset: std::fs::canonicalize(&ds.dir).unwrap_or_else(|_| ds.dir.clone()),
        content_hash: ds.manifest.content_hash.clone(),
        device: backends.name.clone().unwrap_or_else(|| "cpu".into()),
        device_note: backends.note.clone(),
        threads: rayon::current_num_threads(),
        k,
        holdout: holdout_info,
        space: opts.space.clone(),
        search: opts.search,
        rungs,
        eta: opts.eta,
        trials: outcome.trials,
        best,
        best_config,
        on_valid: OnValid {
            best: best_m,
            defaults,
            popularity,
        },
        out_of_time: outcome.out_of_time,
        search_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
    })
}

fn bar(len: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "tune [{elapsed_precise}] {bar:30} {pos}/{len} iterations {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

/// The `encore train` command line that reproduces `cfg` on `dataset` into `model`.
pub fn train_command(dataset: &str, model: &str, cfg: &AlsConfig) -> String {
    let mut s = format!(
        "encore train {dataset} --out {model} --factors {} --iterations {} --regularization {} \
         --alpha {} --confidence {} --solver {}",
        cfg.factors,
        cfg.iterations,
        cfg.regularization,
        cfg.alpha,
        match cfg.confidence {
            als::Confidence::Log => "log",
            als::Confidence::Linear => "linear",
        },
        cfg.solver.as_str(),
    );
    if cfg.confidence == als::Confidence::Log {
        s += &format!(" --epsilon {}", cfg.epsilon);
    }
    if cfg.solver == als::SolverKind::Cg {
        s += &format!(
            " --cg-steps {} --cg-short-rows {}",
            cfg.cg_steps,
            match cfg.cg_short_rows {
                als::ShortRows::Exact => "exact",
                als::ShortRows::Cg => "cg",
            }
        );
    }
    // Every setting is spelled out, so the command reproduces the run even once the defaults
    // change again.
    s += &format!(" --reg-exponent {}", cfg.reg_exponent);
    s += &format!(" --seed {}", cfg.seed);
    s
}
