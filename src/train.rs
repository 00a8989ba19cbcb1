//! Training a model on a dataset, end to end: picking the CPU or GPU backend, a progress bar,
//! validation after each iteration, and the model's metadata. The algorithm itself is [`crate::als`];
//! this is the pipeline stage over it (so `als` never imports `eval`, `infer` or `sys`).

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::als::gpu::{GpuBackend, GpuOptions};
use crate::als::model::{DatasetRef, Model, ModelMeta};
use crate::als::{
    AlsConfig, Backend, CpuBackend, Factors, IterationStats, TrainDevice, ValidPoint, train_checked,
};
use crate::data::csr::Csr;
use crate::data::dataset::Dataset;
use crate::error::{Error, Result};
use crate::eval::{Metrics, eval_users, metrics};
use crate::gpu::{DeviceChoice, Gpu, resolve};
use crate::infer::{BATCH, CpuScorer, Scorer};
use crate::sys::Machine;
use crate::util::unix_now;

/// How and where to train.
#[derive(Debug, Clone, Default)]
pub struct FitOptions {
    pub device: DeviceChoice,
    pub gpu: GpuOptions,
    /// No progress bar.
    pub quiet: bool,
    /// Measure precision@K and nDCG@K on the validation listens after every iteration.
    pub eval_k: Option<usize>,
}

/// Where `cfg` trains for `device`: an open GPU, or `None` for the CPU, and a note when `auto`
/// fell back to the CPU. `auto` takes the GPU when one is usable and can train `cfg` (solver, k,
/// options); `gpu` without a usable GPU, or a configuration the chosen device lacks, is an error
/// that says what to use instead ([`AlsConfig::supports`] decides). [`make_backend`] builds on
/// it; the Python package asks it when a model is created, so `device="auto"` says where it will
/// train and `device="gpu"` fails at once without a GPU.
pub fn training_device(
    cfg: &AlsConfig,
    device: DeviceChoice,
) -> Result<(Option<Gpu>, Option<String>)> {
    let solver = cfg.solver;
    let device = match device {
        DeviceChoice::Auto => match (
            cfg.supports(TrainDevice::Gpu),
            cfg.supports(TrainDevice::Cpu),
        ) {
            (Err(_), Ok(())) => DeviceChoice::Cpu,
            _ => DeviceChoice::Auto,
        },
        DeviceChoice::Cpu => {
            cfg.supports(TrainDevice::Cpu)?;
            DeviceChoice::Cpu
        }
        DeviceChoice::Gpu(n) => {
            cfg.supports(TrainDevice::Gpu)?;
            DeviceChoice::Gpu(n)
        }
    };
    let (found, note) = resolve(device)?;
    match found {
        Some(g) => Ok((Some(g), note)),
        None => match cfg.supports(TrainDevice::Cpu) {
            Ok(()) => Ok((None, note)),
            Err(_) => Err(Error::Config(format!(
                "solver {} needs a GPU, and {}",
                solver.as_str(),
                note.unwrap_or_else(|| "none is usable".into())
            ))),
        },
    }
}

/// The backend for `cfg.solver` on `device` (chosen by [`training_device`]), and a note when
/// `auto` fell back to the CPU.
pub fn make_backend(
    cfg: &AlsConfig,
    device: DeviceChoice,
    gpu: GpuOptions,
) -> Result<(Box<dyn Backend>, Option<String>)> {
    let (found, note) = training_device(cfg, device)?;
    let backend: Box<dyn Backend> = match found {
        Some(g) => Box::new(GpuBackend::new(g, cfg, gpu)?),
        None => Box::new(CpuBackend::new(cfg)?),
    };
    Ok((backend, note))
}

/// Trains on `ds.train` on the device and solver `cfg` and `opts` select; `on_iteration` sees
/// each iteration. The dataset is consumed: its play counts become the confidence matrix in
/// place, so training holds the matrix, its transpose and the factors, not a further copy.
pub fn fit(
    ds: Dataset,
    cfg: &AlsConfig,
    opts: &FitOptions,
    on_iteration: impl FnMut(&IterationStats),
) -> Result<Model> {
    let (mut backend, note) = make_backend(cfg, opts.device, opts.gpu)?;
    if let (Some(n), false) = (note, opts.quiet) {
        eprintln!("train: {n}");
    }
    fit_with(ds, cfg, backend.as_mut(), opts, on_iteration)
}

/// [`fit`] with a given backend.
pub fn fit_with(
    ds: Dataset,
    cfg: &AlsConfig,
    backend: &mut dyn Backend,
    opts: &FitOptions,
    mut on_iteration: impl FnMut(&IterationStats),
) -> Result<Model> {
    let Dataset {
        dir,
        manifest,
        train,
        valid,
        ..
    } = ds;
    let dataset = DatasetRef {
        dir: std::fs::canonicalize(&dir).unwrap_or(dir),
        content_hash: manifest.content_hash,
        users: train.n_rows,
        items: train.n_cols,
        train_pairs: train.nnz(),
    };
    let input = TrainInput {
        train,
        valid: Some(&valid),
        dataset,
    };
    fit_input(input, cfg, backend, opts, &|| Ok(()), |s| {
        on_iteration(s);
        Ok(())
    })
}

/// What [`fit_input`] trains on: a users × items play-count matrix, the validation listens for
/// [`FitOptions::eval_k`], and what the model records as its dataset.
pub struct TrainInput<'a> {
    pub train: Csr,
    pub valid: Option<&'a Csr>,
    /// Recorded in `model.json`; `eval` and `recommend` check a dataset against it.
    pub dataset: DatasetRef,
}

/// Trains on a matrix (not necessarily a dataset directory's: the Python package trains on
/// scipy matrices) with a given backend. `interrupt` is asked before every iteration and
/// between its half-steps, and `on_iteration` after each; an error from either stops training
/// and is returned. The matrix is consumed: its play counts become the confidence matrix in
/// place.
pub fn fit_input(
    input: TrainInput<'_>,
    cfg: &AlsConfig,
    backend: &mut dyn Backend,
    opts: &FitOptions,
    interrupt: &dyn Fn() -> Result<()>,
    mut on_iteration: impl FnMut(&IterationStats) -> Result<()>,
) -> Result<Model> {
    let (quiet, eval_k) = (opts.quiet, opts.eval_k);
    let TrainInput {
        train: train_csr,
        valid,
        dataset,
    } = input;
    let valid = match (eval_k, valid) {
        (Some(_), None) => {
            return Err(Error::Config(
                "validation metrics after each iteration need validation listens".into(),
            ));
        }
        (Some(_), Some(v)) if (v.n_rows, v.n_cols) != (train_csr.n_rows, train_csr.n_cols) => {
            return Err(Error::Config(format!(
                "the validation matrix is {}x{} but the training matrix {}x{}",
                v.n_rows, v.n_cols, train_csr.n_rows, train_csr.n_cols
            )));
        }
        (_, v) => v,
    };
    let pb = if quiet {
        ProgressBar::hidden()
    } else {
        let pb = ProgressBar::new(cfg.iterations as u64);
        pb.set_style(
            ProgressStyle::with_template(
                "train [{elapsed_precise}] {bar:30} iteration {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb
    };
    let started = Instant::now();
    let users_to_eval = match (eval_k, valid) {
        (Some(_), Some(v)) => eval_users(v),
        _ => Vec::new(),
    };
    let trained = train_checked(
        train_csr,
        cfg,
        backend,
        eval_k.is_some(),
        interrupt,
        |s, p, users, items| {
            if let (Some(k), Some(valid)) = (eval_k, valid) {
                // The confidence matrix has the training matrix's structure: its rows are the
                // tracks to exclude.
                s.valid = Some(validate(
                    &p.by_user,
                    valid,
                    &users_to_eval,
                    users,
                    items,
                    k,
                )?);
            }
            pb.set_position(s.iteration as u64);
            let loss = s
                .loss
                .map(|l| format!(", loss {l:.6e}"))
                .unwrap_or_default();
            let valid = s
                .valid
                .map(|v| format!(", p@{} {:.4}", v.k, v.precision))
                .unwrap_or_default();
            pb.set_message(format!("{:.3} s/iteration{loss}{valid}", s.seconds));
            on_iteration(s)
        },
    );
    pb.finish_and_clear();
    let trained = trained?;
    let meta = ModelMeta {
        encore_version: crate::VERSION.to_string(),
        created_unix: unix_now(),
        config: cfg.clone(),
        solver: backend.name(),
        device: backend.device(),
        threads: rayon::current_num_threads(),
        machine: Machine::detect(),
        dataset,
        iterations: trained.iterations,
        train_seconds: started.elapsed().as_secs_f64(),
        checksums: None,
    };
    Ok(Model {
        meta,
        users: trained.users,
        items: trained.items,
    })
}

/// precision@K and nDCG@K of the factors on the validation listens of `users`.
pub fn validate(
    seen: &Csr,
    valid: &Csr,
    users: &[u32],
    uf: &Factors,
    items: &Factors,
    k: usize,
) -> Result<ValidPoint> {
    let m = measure(seen, valid, users, uf, items, k)?;
    Ok(ValidPoint {
        k,
        precision: m.precision,
        ndcg: m.ndcg,
    })
}

/// Every ranking metric of the factors on the validation listens of `users`, each user's `seen`
/// tracks excluded: what `encore eval` reports for a model with these factors.
pub fn measure(
    seen: &Csr,
    valid: &Csr,
    users: &[u32],
    uf: &Factors,
    items: &Factors,
    k: usize,
) -> Result<Metrics> {
    let scorer = CpuScorer::new(items)?;
    let mut ranked = Vec::with_capacity(users.len());
    for chunk in users.chunks(BATCH) {
        let mut q = Vec::with_capacity(chunk.len() * uf.k);
        let mut ex = Vec::with_capacity(chunk.len());
        for &u in chunk {
            q.extend_from_slice(uf.row(u as usize));
            ex.push(seen.row(u as usize).0);
        }
        ranked.extend(scorer.top_k(&q, Some(&ex), k)?.into_iter().map(|r| r.items));
    }
    metrics(users, &ranked, valid, k)
}
