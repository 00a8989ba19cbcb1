//! Training a model on a dataset: the CPU solvers, a progress bar, and the model's metadata.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::als::model::{DatasetRef, Model, ModelMeta};
use crate::als::{AlsConfig, Factors, IterationStats, ValidPoint, cpu_solver, train};
use crate::bench::Machine;
use crate::data::csr::Csr;
use crate::data::dataset::Dataset;
use crate::error::Result;
use crate::eval::{eval_users, metrics};
use crate::infer::{CpuScorer, Scorer};
use crate::util::unix_now;

/// Trains on `ds.train` with the CPU solver `cfg` selects; `on_iteration` sees each iteration.
/// With `eval_k`, precision@K and nDCG@K on `ds.valid` are measured after every iteration.
/// The dataset is consumed: its play counts become the confidence matrix in place, so training
/// holds the matrix, its transpose and the factors, not a further copy.
pub fn fit(
    ds: Dataset,
    cfg: &AlsConfig,
    quiet: bool,
    eval_k: Option<usize>,
    mut on_iteration: impl FnMut(&IterationStats),
) -> Result<Model> {
    cfg.validate()?;
    let mut solver = cpu_solver(cfg);
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
    let trained = train(train_csr, cfg, solver.as_mut(), |s, p, users, items| {
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
    })?;
    pb.finish_and_clear();
    let meta = ModelMeta {
        encore_version: crate::VERSION.to_string(),
        created_unix: unix_now(),
        config: cfg.clone(),
        solver: solver.name(),
        device: "cpu".into(),
        threads: rayon::current_num_threads(),
        machine: Machine::detect(),
        dataset,
        iterations: trained.iterations,
        train_seconds: started.elapsed().as_secs_f64(),
    };
    Ok(Model {
        meta,
        users: trained.users,
        items: trained.items,
    })
}

/// precision@K and nDCG@K of the current factors on the validation listens.
fn validate(
    seen: &Csr,
    valid: &Csr,
    users: &[u32],
    uf: &Factors,
    items: &Factors,
    k: usize,
) -> Result<ValidPoint> {
    let scorer = CpuScorer::new(items)?;
    let mut ranked = Vec::with_capacity(users.len());
    for chunk in users.chunks(crate::recommend::BATCH) {
        let mut q = Vec::with_capacity(chunk.len() * uf.k);
        let mut ex = Vec::with_capacity(chunk.len());
        for &u in chunk {
            q.extend_from_slice(uf.row(u as usize));
            ex.push(seen.row(u as usize).0);
        }
        ranked.extend(scorer.top_k(&q, Some(&ex), k)?.into_iter().map(|r| r.items));
    }
    let m = metrics(users, &ranked, valid, k)?;
    Ok(ValidPoint {
        k,
        precision: m.precision,
        ndcg: m.ndcg,
    })
}
