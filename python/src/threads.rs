//! `threads=`: a model's own rayon pool, or rayon's global one (all cores).
//!
//! A pool per model rather than a process-wide setting, so two models in one notebook can run
//! with different thread counts (implicit's `num_threads` is per model too).

use std::sync::Arc;

use pyo3::prelude::*;

use crate::errors::value_error;

/// Where a model's parallel work runs.
#[derive(Clone, Default)]
pub struct Threads(Option<Arc<rayon::ThreadPool>>);

impl Threads {
    /// `None` (or 0, implicit's "all cores"): rayon's global pool; `n`: a pool of `n` threads, at
    /// most 4× the available cores (every stage is CPU-bound, so more threads only time-slice;
    /// the CLI's `--threads` has the same cap).
    pub fn new(threads: Option<usize>) -> PyResult<Self> {
        let n = match threads {
            None | Some(0) => return Ok(Self(None)),
            Some(n) => n,
        };
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        if n > 4 * cores {
            return Err(value_error(format!(
                "threads={n} is more than 4x the {cores} available cores; every stage is \
                 CPU-bound, so use at most {}",
                4 * cores
            )));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("encore-{i}"))
            .build()
            .map(|p| Self(Some(Arc::new(p))))
            .map_err(|e| value_error(format!("cannot start {n} threads: {e}")))
    }

    /// Runs `f` on this pool.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.0 {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    /// The thread count work runs on.
    pub fn count(&self) -> usize {
        match &self.0 {
            Some(p) => p.current_num_threads(),
            None => rayon::current_num_threads(),
        }
    }
}
