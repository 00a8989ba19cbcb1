//! Training a model on a dataset: the CPU solvers, a progress bar, and the model's metadata.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::als::model::{DatasetRef, Model, ModelMeta};
use crate::als::{AlsConfig, IterationStats, cpu_solver, train};
use crate::bench::Machine;
use crate::data::dataset::Dataset;
use crate::error::Result;
use crate::util::unix_now;

/// Trains on `ds.train` with the CPU solver `cfg` selects; `on_iteration` sees each iteration.
pub fn fit(
    ds: &Dataset,
    cfg: &AlsConfig,
    quiet: bool,
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
    let trained = train(&ds.train, cfg, solver.as_mut(), |s| {
        pb.set_position(s.iteration as u64);
        let loss = s
            .loss
            .map(|l| format!(", loss {l:.6e}"))
            .unwrap_or_default();
        pb.set_message(format!("{:.3} s/iteration{loss}", s.seconds));
        on_iteration(s);
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
        dataset: DatasetRef {
            dir: std::fs::canonicalize(&ds.dir).unwrap_or_else(|_| ds.dir.clone()),
            content_hash: ds.manifest.content_hash.clone(),
            users: ds.train.n_rows,
            items: ds.train.n_cols,
            train_pairs: ds.train.nnz(),
        },
        iterations: trained.iterations,
        train_seconds: started.elapsed().as_secs_f64(),
    };
    Ok(Model {
        meta,
        users: trained.users,
        items: trained.items,
    })
}
