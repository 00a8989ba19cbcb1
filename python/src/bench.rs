//! `encore._encore.LibraryRecommender`: the CLI's batch recommend inside the Python process,
//! so scripts/recommend_overhead.py can put `ALS.recommend` beside it call by call.
//!
//! Why in process: "the Python overhead over the CLI" is a difference of a few percent of a
//! call of milliseconds, and `encore bench recommend` answers once per process, after loading
//! the model and dataset again; on a shared machine the load drifts more between processes
//! than that. Here both run in one process, on one thread pool, alternating, so drift reaches
//! both alike. What is timed is exactly the CLI's call (`Recommender::recommend_rows`: the
//! exclusion lists borrowed from the dataset's training matrix, scoring, top-K), with the GIL
//! released; the subprocess measurement stays in the script as the cross-check.

use std::path::PathBuf;
use std::time::Instant;

use numpy::PyReadonlyArray1;
use pyo3::prelude::*;

use encore::als::model::Model as CoreModel;
use encore::data::dataset::Dataset;
use encore::recommend::Recommender;

use crate::errors::{IntoPy, guard, value_error};
use crate::model::Model;
use crate::score::check_ids;
use crate::threads::Threads;

/// A model directory and its dataset as the CLI loads them (`encore recommend`, `encore bench
/// recommend`), with a scorer on `device` and its own `threads`.
#[pyclass(frozen, module = "encore._encore")]
pub struct LibraryRecommender {
    rec: Recommender,
    threads: Threads,
}

#[pymethods]
impl LibraryRecommender {
    /// `threads_of`: run on that model's thread pool (so the two sides of a comparison share
    /// one pool, and neither's idle workers spin against the other's); else `threads`.
    #[new]
    #[pyo3(signature = (model, dataset, device="cpu", threads=None, threads_of=None))]
    fn new(
        py: Python<'_>,
        model: PathBuf,
        dataset: PathBuf,
        device: &str,
        threads: Option<usize>,
        threads_of: Option<PyRef<'_, Model>>,
    ) -> PyResult<Self> {
        guard(|| {
            let (device, _) = crate::fit::scoring_device(device)?;
            let threads = match &threads_of {
                Some(m) => m.threads.clone(),
                None => Threads::new(threads)?,
            };
            let rec = py
                .detach(|| {
                    let m = CoreModel::load(&model)?;
                    let ds = Dataset::load(&dataset)?;
                    Recommender::on_device(m, ds, device)
                })
                .py_err()?;
            Ok(Self {
                rec: rec.0,
                threads,
            })
        })
    }

    /// The scorer's name (as `encore bench recommend` reports it).
    #[getter]
    fn scorer(&self) -> String {
        self.rec.scorer.name()
    }

    /// Milliseconds of one `recommend_rows(users, k, filter)` call, as `encore bench recommend`
    /// times it (the answer is built, then dropped untimed).
    #[pyo3(signature = (users, k=10, filter=true))]
    fn time_ms(
        &self,
        py: Python<'_>,
        users: PyReadonlyArray1<'_, i64>,
        k: usize,
        filter: bool,
    ) -> PyResult<f64> {
        guard(|| {
            let ids = users
                .as_slice()
                .map_err(|_| value_error("users is not contiguous"))?;
            let rows = check_ids(ids, self.rec.model.users.n, "user", "users")?;
            py.detach(|| {
                // From this thread into the pool, as the CLI's main thread calls it.
                let t = Instant::now();
                let r = self
                    .threads
                    .run(|| self.rec.recommend_rows(&rows, k, filter))?;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                drop(std::hint::black_box(r));
                Ok(ms)
            })
            .py_err()
        })
    }
}
