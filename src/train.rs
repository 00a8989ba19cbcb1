//! Training a model on a dataset, end to end: picking the CPU or GPU backend, a progress bar,
//! validation after each iteration, and the model's metadata. The algorithm itself is [`crate::als`];
//! this is the pipeline stage over it (so `als` never imports `eval`, `infer` or `sys`).

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::als::gpu::{GpuBackend, GpuOptions};
use crate::als::model::{DatasetRef, Model, ModelMeta};
use crate::als::{
    AlsConfig, Backend, CpuBackend, Factors, IterationStats, TrainDevice, ValidPoint, train,
};
use crate::data::csr::Csr;
use crate::data::dataset::Dataset;
use crate::error::{Error, Result};
use crate::eval::{Metrics, eval_users, metrics};
use crate::gpu::{DeviceChoice, resolve};
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

/// The backend for `cfg.solver` on `device`, and a note when `auto` fell back to the CPU.
/// `auto` takes the GPU when one is usable and can train `cfg` (solver, k, options); `gpu`
/// without a usable GPU, or a configuration the chosen device lacks, is an error that says what
/// to use instead ([`AlsConfig::supports`] decides).
pub fn make_backend(
    cfg: &AlsConfig,
    device: DeviceChoice,
    gpu: GpuOptions,
) -> Result<(Box<dyn Backend>, Option<String>)> {
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
        Some(g) => Ok((Box::new(GpuBackend::new(g, cfg, gpu)?), note)),
        None => match cfg.supports(TrainDevice::Cpu) {
            Ok(()) => Ok((Box::new(CpuBackend::new(cfg)?), note)),
            Err(_) => Err(Error::Config(format!(
                "solver {} needs a GPU, and {}",
                solver.as_str(),
                note.unwrap_or_else(|| "none is usable".into())
            ))),
        },
    }
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
    let (quiet, eval_k) = (opts.quiet, opts.eval_k);
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
    let Dataset {
        dir,
        manifest,
        train: train_csr,
        valid,
        ..
    } = ds;
    let dataset = DatasetRef {
        dir: std::fs::canonicalize(&dir).unwrap_or(dir),
        content_hash: manifest.content_hash,
        users: train_csr.n_rows,
        items: train_csr.n_cols,
        train_pairs: train_csr.nnz(),
    };
    let users_to_eval = eval_users(&valid);
    let trained = train(
        train_csr,
        cfg,
        backend,
        eval_k.is_some(),
        |s, p, users, items| {
            if let Some(k) = eval_k {
                // The confidence matrix has the training matrix's structure: its rows are the
                // tracks to exclude.
                s.valid = Some(validate(
                    &p.by_user,
                    &valid,
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
            on_iteration(s);
            Ok(())
        },
    )?;
    pb.finish_and_clear();
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
