//! `encore._encore.Model`: a trained model (the core's [`CoreModel`]: factors and `model.json`
//! metadata) with the scorers, similarity indexes and fold-in solvers built from it on first
//! use, and the device and threads it runs on.
//!
//! A `Model` never changes: `partial_fit_*` and factor assignment make a new one (the Python
//! `ALS` holds the current one). So a call on one thread never sees another thread's update
//! half-done, no lock is held while the GIL is released, and the numpy views of the factors
//! ([`Model::user_factors`]) stay valid as long as anyone holds them.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use ndarray::ArrayView2;
use numpy::{PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use encore::Error;
use encore::als::Factors;
use encore::als::foldin::FoldIn;
use encore::als::model::Model as CoreModel;
use encore::gpu::{DeviceChoice, Gpu};
use encore::infer::{CpuScorer, GpuScorer, GpuScorerOptions, Scorer, normalize_rows};

use crate::errors::{IntoPy, guard, value_error};
use crate::score::IdsScores;
use crate::threads::Threads;
use crate::{eval, foldin, score};

/// Keeps a model's factors alive for the numpy arrays that view them (their `base`): held,
/// never read.
#[pyclass(frozen, module = "encore._encore")]
pub struct FactorOwner(#[allow(dead_code)] Arc<CoreModel>);

/// Which factors.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Users,
    Items,
}

impl Side {
    pub fn parse(s: &str) -> PyResult<Self> {
        match s {
            "users" => Ok(Self::Users),
            "items" => Ok(Self::Items),
            _ => Err(value_error(format!(
                "side must be 'users' or 'items', got {s:?}"
            ))),
        }
    }

    pub(crate) fn noun(self) -> &'static str {
        match self {
            Side::Users => "user",
            Side::Items => "item",
        }
    }
}

/// A scorer over unit-length rows, for cosine similarity, and those rows.
pub(crate) type SimilarIndex = (Box<dyn Scorer>, Factors);

/// A trained model, ready to score.
#[pyclass(frozen, module = "encore._encore")]
pub struct Model {
    pub(crate) core: Arc<CoreModel>,
    /// Where scoring runs: `Cpu` or `Gpu(n)`, never `Auto`.
    pub(crate) device: DeviceChoice,
    pub(crate) threads: Threads,
    scorer: OnceLock<Box<dyn Scorer>>,
    similar_items: OnceLock<SimilarIndex>,
    similar_users: OnceLock<SimilarIndex>,
    /// Solves users against the item factors (recalculate_user, partial_fit_users).
    foldin_users: OnceLock<FoldIn>,
    /// Solves items against the user factors.
    foldin_items: OnceLock<FoldIn>,
}

/// `OnceLock::get_or_try_init` (not stable yet): two racing first calls may both build; one
/// result is kept.
fn get_or_build<T>(
    cell: &OnceLock<T>,
    build: impl FnOnce() -> encore::Result<T>,
) -> encore::Result<&T> {
    if let Some(v) = cell.get() {
        return Ok(v);
    }
    let v = build()?;
    Ok(cell.get_or_init(|| v))
}

/// A scorer over `f` on `device`; `prune` orders by norm (pointless for unit rows).
fn scorer_on(device: DeviceChoice, f: &Factors, prune: bool) -> encore::Result<Box<dyn Scorer>> {
    match device {
        DeviceChoice::Gpu(n) => Ok(Box::new(GpuScorer::new(
            Gpu::open(n)?,
            f,
            GpuScorerOptions {
                prune,
                ..GpuScorerOptions::default()
            },
        )?)),
        _ if prune => Ok(Box::new(CpuScorer::new(f)?)),
        _ => Ok(Box::new(CpuScorer::unpruned(f)?)),
    }
}

impl Model {
    pub fn new(core: CoreModel, device: DeviceChoice, threads: Threads) -> Self {
        Self {
            core: Arc::new(core),
            device,
            threads,
            scorer: OnceLock::new(),
            similar_items: OnceLock::new(),
            similar_users: OnceLock::new(),
            foldin_users: OnceLock::new(),
            foldin_items: OnceLock::new(),
        }
    }

    pub(crate) fn side_factors(&self, side: Side) -> &Factors {
        match side {
            Side::Users => &self.core.users,
            Side::Items => &self.core.items,
        }
    }

    pub(crate) fn scorer(&self) -> encore::Result<&dyn Scorer> {
        get_or_build(&self.scorer, || {
            scorer_on(self.device, &self.core.items, true)
        })
        .map(|s| s.as_ref())
    }

    pub(crate) fn similar_index(&self, side: Side) -> encore::Result<&SimilarIndex> {
        let cell = match side {
            Side::Users => &self.similar_users,
            Side::Items => &self.similar_items,
        };
        get_or_build(cell, || {
            let unit = normalize_rows(self.side_factors(side));
            Ok((scorer_on(self.device, &unit, false)?, unit))
        })
    }

    /// The fold-in solver for rows of `side` (against the other side's factors).
    pub(crate) fn foldin(&self, side: Side) -> &FoldIn {
        let cfg = &self.core.meta.config;
        match side {
            Side::Users => self
                .foldin_users
                .get_or_init(|| FoldIn::new(&self.core.items, cfg)),
            Side::Items => self
                .foldin_items
                .get_or_init(|| FoldIn::new(&self.core.users, cfg)),
        }
    }
}

#[pymethods]
impl Model {
    /// Where scoring runs: "cpu" or "gpu:N".
    #[getter]
    fn device(&self) -> String {
        self.device.to_string()
    }

    /// The device the model was trained on, as `model.json` records it.
    #[getter]
    fn trained_on(&self) -> String {
        self.core.meta.device.clone()
    }

    #[getter]
    fn n_users(&self) -> usize {
        self.core.users.n
    }

    #[getter]
    fn n_items(&self) -> usize {
        self.core.items.n
    }

    #[getter]
    fn factors(&self) -> usize {
        self.core.users.k
    }

    #[getter]
    fn threads(&self) -> usize {
        self.threads.count()
    }

    /// `model.json` as a JSON string (hyper-parameters, dataset, iterations, machine).
    fn meta_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.core.meta).map_err(|e| value_error(e.to_string()))
    }

    /// The factors of `side` as a read-only float32 C-order numpy view (no copy).
    fn factor_array<'py>(
        slf: &Bound<'py, Self>,
        side: &str,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let side = Side::parse(side)?;
        let py = slf.py();
        let me = slf.get();
        let core = me.core.clone();
        let owner = Bound::new(py, FactorOwner(core.clone()))?;
        let f = match side {
            Side::Users => &core.users,
            Side::Items => &core.items,
        };
        let view = ArrayView2::from_shape((f.n, f.k), &f.data)
            .map_err(|e| value_error(format!("factor shape: {e}")))?;
        // SAFETY: the array's memory is the `Vec` of the `CoreModel` behind the `Arc` that `owner`
        // holds a clone of; `owner` becomes the array's base object, so it lives as long as the array, and a
        // `CoreModel` behind an `Arc` is never mutated (models are immutable; see the module doc),
        // so the `Vec` is never reallocated.
        let arr = unsafe { PyArray2::borrow_from_array(&view, owner.into_any()) };
        // Read-only: the model's scorers hold copies, so a write would silently desync them.
        // numpy cannot make it writeable again (the array does not own its data).
        arr.getattr("flags")?.setattr("writeable", false)?;
        Ok(arr)
    }

    /// Top `n` items for each of `userids`. `user_vectors` (one row per id) replaces the stored
    /// factors (recalculate_user); `exclude` (a CSR matrix) gives each query's excluded items,
    /// row `exclude_rows[j]` for query j (row j without it); `filter_items` are excluded for
    /// everyone; `items` restricts the candidates. Returns `(ids, scores)`, `len × min(n,
    /// candidates)`, padded with −1 and −∞ where a user has fewer candidates left.
    #[pyo3(signature = (userids, n, exclude=None, exclude_rows=None, filter_items=None, items=None, user_vectors=None))]
    #[allow(clippy::too_many_arguments)]
    fn recommend<'py>(
        &self,
        py: Python<'py>,
        userids: PyReadonlyArray1<'py, i64>,
        n: usize,
        exclude: Option<&Bound<'py, PyAny>>,
        exclude_rows: Option<PyReadonlyArray1<'py, i64>>,
        filter_items: Option<PyReadonlyArray1<'py, i64>>,
        items: Option<PyReadonlyArray1<'py, i64>>,
        user_vectors: Option<PyReadonlyArray2<'py, f32>>,
    ) -> PyResult<IdsScores<'py>> {
        score::recommend(
            self,
            py,
            userids,
            n,
            exclude,
            exclude_rows,
            filter_items,
            items,
            user_vectors,
        )
    }

    /// The `n` rows of `side` most similar by cosine to each of `ids`, the row itself first
    /// (as implicit does), then the others by decreasing cosine (ties: lower id).
    fn similar<'py>(
        &self,
        py: Python<'py>,
        side: &str,
        ids: PyReadonlyArray1<'py, i64>,
        n: usize,
    ) -> PyResult<IdsScores<'py>> {
        score::similar(self, py, side, ids, n)
    }

    /// Fold-in: the factor of each row of `rows` (a CSR matrix: users × items for side
    /// "users", items × users for "items") solved against the other side's fixed factors, as
    /// the server's `/v1/recommend/history` does. Returns `rows × factors` float32.
    fn fold_in<'py>(
        &self,
        py: Python<'py>,
        side: &str,
        rows: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        foldin::fold_in(self, py, side, rows)
    }

    /// A new model with rows `ids` of `side` set to `vectors` (rows past the end are added,
    /// zero until set). Everything else (device, threads, metadata) is kept.
    fn with_rows(
        &self,
        side: &str,
        ids: PyReadonlyArray1<'_, i64>,
        vectors: PyReadonlyArray2<'_, f32>,
    ) -> PyResult<Model> {
        foldin::with_rows(self, side, ids, vectors)
    }

    /// A new model with all factors of `side` replaced by `factors` (same k; any row count).
    fn with_factors(&self, side: &str, factors: PyReadonlyArray2<'_, f32>) -> PyResult<Model> {
        foldin::with_factors(self, side, factors)
    }

    /// The same model scoring on `device` ("cpu", "gpu", "gpu:N"; resolved, not "auto").
    fn on_device(&self, device: &str) -> PyResult<Model> {
        guard(|| {
            let device = crate::fit::scoring_device(device)?.0;
            Ok(Model::new(
                (*self.core).clone(),
                device,
                self.threads.clone(),
            ))
        })
    }

    /// Writes the model directory (`user_factors.npy`, `item_factors.npy`, `model.json`), as
    /// `encore train` does, atomically; `force` replaces an existing model.
    fn save(&self, py: Python<'_>, path: PathBuf, force: bool) -> PyResult<()> {
        guard(|| py.detach(|| self.core.save(&path, force)).py_err())
    }

    /// Reads a model directory written by `encore train` or `save`; scores on `device`.
    #[staticmethod]
    #[pyo3(signature = (path, device="auto", threads=None))]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        device: &str,
        threads: Option<usize>,
    ) -> PyResult<(Model, Option<String>)> {
        guard(|| {
            let (device, note) = crate::fit::scoring_device(device)?;
            let threads = Threads::new(threads)?;
            let core = py.detach(|| CoreModel::load(&path)).py_err()?;
            Ok((Model::new(core, device, threads), note))
        })
    }

    /// Ranking quality on `valid` (held-out listens), excluding `train` rows: precision,
    /// recall, nDCG, MAP and coverage at `k` as `encore eval` defines them, and implicit's
    /// precision as `precision_implicit`.
    fn evaluate<'py>(
        &self,
        py: Python<'py>,
        train: &Bound<'py, PyAny>,
        valid: &Bound<'py, PyAny>,
        k: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        eval::evaluate(self, py, train, valid, k)
    }
}

impl Model {
    /// This model with `side`'s factors replaced (caches dropped; the dataset's counts follow,
    /// so the saved `model.json` matches its factor files).
    pub(crate) fn replaced(&self, side: Side, f: Factors) -> Model {
        let mut core = (*self.core).clone();
        match side {
            Side::Users => {
                core.meta.dataset.users = f.n;
                core.users = f;
            }
            Side::Items => {
                core.meta.dataset.items = f.n;
                core.items = f;
            }
        }
        Model::new(core, self.device, self.threads.clone())
    }
}

/// A failure inside a GIL-free section: bad input (a `ValueError`, with its message) or an
/// Encore error.
pub enum Failure {
    Value(String),
    Core(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Core(e)
    }
}

impl Failure {
    pub fn into_py(self) -> PyErr {
        match self {
            Failure::Value(m) => value_error(m),
            Failure::Core(e) => crate::errors::to_py(e),
        }
    }
}
