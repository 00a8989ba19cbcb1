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

use ndarray::{Array2, ArrayView2};
use numpy::{PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rayon::prelude::*;

use encore::Error;
use encore::als::Factors;
use encore::als::foldin::FoldIn;
use encore::als::model::Model as CoreModel;
use encore::eval::{eval_users, implicit_precision, metrics};
use encore::gpu::{DeviceChoice, Gpu};
use encore::infer::{
    BATCH, CpuScorer, GpuScorer, GpuScorerOptions, Ranked, Scorer, normalize_rows,
};

use crate::csr::{CsrArrays, CsrView};
use crate::errors::{IntoPy, guard, value_error};
use crate::threads::Threads;

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

    fn noun(self) -> &'static str {
        match self {
            Side::Users => "user",
            Side::Items => "item",
        }
    }
}

/// A scorer over unit-length rows, for cosine similarity, and those rows.
type SimilarIndex = (Box<dyn Scorer>, Factors);

/// A trained model, ready to score.
#[pyclass(frozen, module = "encore._encore")]
pub struct Model {
    core: Arc<CoreModel>,
    /// Where scoring runs: `Cpu` or `Gpu(n)`, never `Auto`.
    device: DeviceChoice,
    threads: Threads,
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

/// Top `k` of every query (rows of `queries`, `f` wide) excluding `exclude[b]`, in chunks of
/// [`BATCH`] so scratch memory stays bounded.
pub fn top_k_batched(
    scorer: &dyn Scorer,
    queries: &[f32],
    f: usize,
    exclude: &[Vec<u32>],
    k: usize,
) -> encore::Result<Vec<Ranked>> {
    let mut out = Vec::with_capacity(exclude.len());
    for (q, ex) in queries.chunks(BATCH * f).zip(exclude.chunks(BATCH)) {
        let refs: Vec<&[u32]> = ex.iter().map(Vec::as_slice).collect();
        out.extend(scorer.top_k(q, Some(&refs), k)?);
    }
    Ok(out)
}

/// Checks ids against `0..n` (`what` names them in the error) and returns them as indices.
pub fn check_ids(ids: &[i64], n: usize, what: &str, of: &str) -> PyResult<Vec<usize>> {
    ids.iter()
        .map(|&id| {
            if id < 0 {
                Err(value_error(format!("{what} {id} is negative")))
            } else if id as u64 >= n as u64 {
                Err(value_error(format!(
                    "{what} {id} is out of range: the model has {n} {of}"
                )))
            } else {
                Ok(id as usize)
            }
        })
        .collect()
}

/// Sorted, deduplicated item ids in `0..n`.
fn sorted_items(ids: &[i64], n: usize, what: &str) -> PyResult<Vec<u32>> {
    let mut v: Vec<u32> = check_ids(ids, n, what, "items")?
        .into_iter()
        .map(|i| i as u32)
        .collect();
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// The sorted union of two sorted lists.
fn union_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if x == y => {
                i += 1;
                j += 1;
                x
            }
            (Some(&x), Some(&y)) if x < y => {
                i += 1;
                x
            }
            (Some(_), Some(&y)) => {
                j += 1;
                y
            }
            (Some(&x), None) => {
                i += 1;
                x
            }
            (None, Some(&y)) => {
                j += 1;
                y
            }
            (None, None) => unreachable!(),
        };
        out.push(next);
    }
    out
}

/// `(ids, scores)` as numpy arrays.
type IdsScores<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>);

/// Ranked lists as `(ids, scores)` arrays of `rows × width`; short lists are padded with id −1
/// and score −∞.
fn to_arrays<'py>(
    py: Python<'py>,
    ranked: &[Ranked],
    width: usize,
    map: Option<&[u32]>,
) -> IdsScores<'py> {
    let rows = ranked.len();
    let mut ids = vec![-1i64; rows * width];
    let mut scores = vec![f32::NEG_INFINITY; rows * width];
    for (r, list) in ranked.iter().enumerate() {
        for (j, (&i, &s)) in list.items.iter().zip(&list.scores).take(width).enumerate() {
            ids[r * width + j] = i64::from(map.map_or(i, |m| m[i as usize]));
            scores[r * width + j] = s;
        }
    }
    let ids = Array2::from_shape_vec((rows, width), ids).unwrap_or_default();
    let scores = Array2::from_shape_vec((rows, width), scores).unwrap_or_default();
    (
        PyArray2::from_owned_array(py, ids),
        PyArray2::from_owned_array(py, scores),
    )
}

/// A row-major copy of a 2-D float32 array, checked to be `rows × k`.
fn matrix_rows(
    a: &PyReadonlyArray2<'_, f32>,
    rows: usize,
    k: usize,
    what: &str,
) -> PyResult<Vec<f32>> {
    let shape = a.shape();
    if shape != [rows, k] {
        return Err(value_error(format!(
            "{what} has shape {shape:?}, expected [{rows}, {k}]"
        )));
    }
    let v: Vec<f32> = a.as_array().iter().copied().collect();
    if v.iter().any(|x| !x.is_finite()) {
        return Err(value_error(format!("{what} contains NaN or infinity")));
    }
    Ok(v)
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

    fn side_factors(&self, side: Side) -> &Factors {
        match side {
            Side::Users => &self.core.users,
            Side::Items => &self.core.items,
        }
    }

    fn scorer(&self) -> encore::Result<&dyn Scorer> {
        get_or_build(&self.scorer, || {
            scorer_on(self.device, &self.core.items, true)
        })
        .map(|s| s.as_ref())
    }

    fn similar_index(&self, side: Side) -> encore::Result<&SimilarIndex> {
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
    fn foldin(&self, side: Side) -> &FoldIn {
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

    /// Ranks every user with held-out listens in `valid`, excluding their rows of `train`, and
    /// measures the ranking as `encore eval` does (plus implicit's precision).
    pub fn evaluate_views(
        scorer: &dyn Scorer,
        users_f: &Factors,
        train: &CsrView<'_>,
        valid: &CsrView<'_>,
        k: usize,
    ) -> Result<EvalResult, String> {
        if k == 0 {
            return Err("K must be at least 1".into());
        }
        if (train.n_rows, train.n_cols) != (valid.n_rows, valid.n_cols) {
            return Err(format!(
                "train is {}x{} but valid is {}x{}",
                train.n_rows, train.n_cols, valid.n_rows, valid.n_cols
            ));
        }
        if train.n_cols != scorer.n_items() {
            return Err(format!(
                "the matrices have {} columns but the model has {} items",
                train.n_cols,
                scorer.n_items()
            ));
        }
        if train.n_rows > users_f.n {
            return Err(format!(
                "the matrices have {} rows but the model has {} users",
                train.n_rows, users_f.n
            ));
        }
        train.check_header()?;
        valid.check()?;
        let valid_csr = valid.to_csr();
        let users = eval_users(&valid_csr);
        let exclude = users
            .par_iter()
            .map(|&u| train.checked_row_cols(u as usize))
            .collect::<Result<Vec<_>, String>>()?;
        let f = users_f.k;
        let mut queries = Vec::with_capacity(users.len() * f);
        for &u in &users {
            queries.extend_from_slice(users_f.row(u as usize));
        }
        let ranked: Vec<Vec<u32>> = top_k_batched(scorer, &queries, f, &exclude, k)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|r| r.items)
            .collect();
        let m = metrics(&users, &ranked, &valid_csr, k).map_err(|e| e.to_string())?;
        let pi = implicit_precision(&users, &ranked, &valid_csr, k).map_err(|e| e.to_string())?;
        Ok(EvalResult {
            metrics: m,
            precision_implicit: pi,
        })
    }
}

/// What `evaluate` returns.
pub struct EvalResult {
    pub metrics: encore::eval::Metrics,
    pub precision_implicit: f64,
}

impl EvalResult {
    pub fn into_dict<'py>(self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let m = self.metrics;
        d.set_item("k", m.k)?;
        d.set_item("users", m.users)?;
        d.set_item("precision", m.precision)?;
        d.set_item("recall", m.recall)?;
        d.set_item("ndcg", m.ndcg)?;
        d.set_item("map", m.map)?;
        d.set_item("coverage", m.coverage)?;
        d.set_item("precision_implicit", self.precision_implicit)?;
        Ok(d)
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
        guard(|| {
            if n == 0 {
                return Err(value_error("N must be at least 1, got 0"));
            }
            let f = self.core.items.k;
            let n_items = self.core.items.n;
            let uids = userids
                .as_slice()
                .map_err(|_| value_error("userid is not contiguous"))?;
            let b = uids.len();
            let queries: Vec<f32> = match &user_vectors {
                Some(v) => matrix_rows(v, b, f, "the recalculated user factors")?,
                None => {
                    let rows = check_ids(uids, self.core.users.n, "userid", "users")?;
                    let mut q = Vec::with_capacity(b * f);
                    for r in rows {
                        q.extend_from_slice(self.core.users.row(r));
                    }
                    q
                }
            };
            let filter = match &filter_items {
                Some(a) => sorted_items(
                    a.as_slice()
                        .map_err(|_| value_error("filter_items is not contiguous"))?,
                    n_items,
                    "filter_items id",
                )?,
                None => Vec::new(),
            };
            let subset = match &items {
                Some(a) => {
                    let s = sorted_items(
                        a.as_slice()
                            .map_err(|_| value_error("items is not contiguous"))?,
                        n_items,
                        "items id",
                    )?;
                    if s.is_empty() {
                        return Err(value_error("items is empty: there is nothing to rank"));
                    }
                    Some(s)
                }
                None => None,
            };
            let ex_arrays = exclude
                .map(|m| CsrArrays::extract(m, "user_items"))
                .transpose()?;
            let ex_view = ex_arrays.as_ref().map(|a| a.view()).transpose()?;
            let ex_rows: Option<Vec<i64>> = exclude_rows
                .as_ref()
                .map(|r| r.as_slice().map(<[i64]>::to_vec))
                .transpose()
                .map_err(|_| value_error("exclude_rows is not contiguous"))?;
            if let Some(v) = &ex_view {
                if v.n_cols != n_items {
                    return Err(value_error(format!(
                        "{} has {} columns but the model has {n_items} items",
                        v.name, v.n_cols
                    )));
                }
                match &ex_rows {
                    Some(r) if r.len() != b => {
                        return Err(value_error("exclude_rows needs one row per userid"));
                    }
                    Some(r) => {
                        check_ids(r, v.n_rows, "userid", "rows in its training matrix")?;
                    }
                    None if v.n_rows != b => {
                        return Err(value_error(format!(
                            "{} must have 1 row for every userid ({} rows for {b} userids)",
                            v.name, v.n_rows
                        )));
                    }
                    None => {}
                }
                v.check_header().map_err(value_error)?;
            }
            let width = n.min(subset.as_ref().map_or(n_items, Vec::len));
            let ranked = py.detach(|| {
                self.threads.run(|| -> Result<Vec<Ranked>, Failure> {
                    let mut exclude: Vec<Vec<u32>> = match &ex_view {
                        Some(v) => (0..b)
                            .into_par_iter()
                            .map(|j| {
                                let r = ex_rows.as_ref().map_or(j, |r| r[j] as usize);
                                v.checked_row_cols(r).map(|c| union_sorted(&c, &filter))
                            })
                            .collect::<Result<_, String>>()
                            .map_err(Failure::Value)?,
                        None => vec![filter.clone(); b],
                    };
                    match &subset {
                        None => Ok(top_k_batched(self.scorer()?, &queries, f, &exclude, width)?),
                        Some(s) => {
                            // Exclusions become positions in the subset; the scorer is over the
                            // subset's rows only.
                            for ex in &mut exclude {
                                *ex = ex
                                    .iter()
                                    .filter_map(|i| s.binary_search(i).ok().map(|p| p as u32))
                                    .collect();
                            }
                            let mut data = Vec::with_capacity(s.len() * f);
                            for &i in s {
                                data.extend_from_slice(self.core.items.row(i as usize));
                            }
                            let sub = Factors {
                                n: s.len(),
                                k: f,
                                data,
                            };
                            let scorer = CpuScorer::new(&sub)?;
                            Ok(top_k_batched(&scorer, &queries, f, &exclude, width)?)
                        }
                    }
                })
            });
            let ranked = ranked.map_err(Failure::into_py)?;
            Ok(to_arrays(py, &ranked, width, subset.as_deref()))
        })
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
        guard(|| {
            let side = Side::parse(side)?;
            if n == 0 {
                return Err(value_error("N must be at least 1, got 0"));
            }
            let total = self.side_factors(side).n;
            let what = format!("{}id", side.noun());
            let rows = check_ids(
                ids.as_slice()
                    .map_err(|_| value_error("ids are not contiguous"))?,
                total,
                &what,
                &format!("{}s", side.noun()),
            )?;
            let width = n.min(total);
            let ranked = py.detach(|| {
                self.threads.run(|| -> encore::Result<Vec<Ranked>> {
                    let (scorer, unit) = self.similar_index(side)?;
                    let f = unit.k;
                    let others = if width > 1 {
                        let mut q = Vec::with_capacity(rows.len() * f);
                        for &r in &rows {
                            q.extend_from_slice(unit.row(r));
                        }
                        let ex: Vec<Vec<u32>> = rows.iter().map(|&r| vec![r as u32]).collect();
                        top_k_batched(scorer.as_ref(), &q, f, &ex, width - 1)?
                    } else {
                        vec![
                            Ranked {
                                items: Vec::new(),
                                scores: Vec::new()
                            };
                            rows.len()
                        ]
                    };
                    Ok(rows
                        .iter()
                        .zip(others)
                        .map(|(&r, o)| {
                            let u = unit.row(r);
                            let own: f32 = u.iter().map(|v| v * v).sum();
                            let mut items = vec![r as u32];
                            items.extend(o.items);
                            let mut scores = vec![own];
                            scores.extend(o.scores);
                            Ranked { items, scores }
                        })
                        .collect())
                })
            });
            Ok(to_arrays(py, &ranked.py_err()?, width, None))
        })
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
        guard(|| {
            let side = Side::parse(side)?;
            let name = match side {
                Side::Users => "user_items",
                Side::Items => "item_users",
            };
            let arrays = CsrArrays::extract(rows, name)?;
            let view = arrays.view()?;
            let other = match side {
                Side::Users => &self.core.items,
                Side::Items => &self.core.users,
            };
            if view.n_cols != other.n {
                return Err(value_error(format!(
                    "{name} has {} columns but the model has {} {}s",
                    view.n_cols,
                    other.n,
                    match side {
                        Side::Users => "item",
                        Side::Items => "user",
                    }
                )));
            }
            let k = other.k;
            let solved = py.detach(|| {
                self.threads.run(|| -> Result<Vec<f32>, Failure> {
                    view.check().map_err(Failure::Value)?;
                    let fi = self.foldin(side);
                    let rows: Vec<Vec<f32>> = (0..view.n_rows)
                        .into_par_iter()
                        .map(|r| fi.solve(other, &view.row_pairs(r)))
                        .collect::<encore::Result<_>>()?;
                    Ok(rows.concat())
                })
            });
            let data = solved.map_err(Failure::into_py)?;
            let a = Array2::from_shape_vec((view.n_rows, k), data)
                .map_err(|e| value_error(format!("fold-in shape: {e}")))?;
            Ok(PyArray2::from_owned_array(py, a))
        })
    }

    /// A new model with rows `ids` of `side` set to `vectors` (rows past the end are added,
    /// zero until set). Everything else (device, threads, metadata) is kept.
    fn with_rows(
        &self,
        side: &str,
        ids: PyReadonlyArray1<'_, i64>,
        vectors: PyReadonlyArray2<'_, f32>,
    ) -> PyResult<Model> {
        guard(|| {
            let side = Side::parse(side)?;
            let ids = ids
                .as_slice()
                .map_err(|_| value_error("ids are not contiguous"))?;
            let old = self.side_factors(side);
            let k = old.k;
            let v = matrix_rows(&vectors, ids.len(), k, "the new factors")?;
            let rows = check_ids(ids, usize::MAX >> 1, &format!("{}id", side.noun()), "rows")?;
            let n = rows.iter().map(|&r| r + 1).max().unwrap_or(0).max(old.n);
            if n.checked_mul(k).is_none() || n > u32::MAX as usize {
                return Err(value_error(format!("{n} {}s are too many", side.noun())));
            }
            let mut f = old.clone();
            f.data.resize(n * k, 0.0);
            f.n = n;
            for (j, &r) in rows.iter().enumerate() {
                f.data[r * k..(r + 1) * k].copy_from_slice(&v[j * k..(j + 1) * k]);
            }
            Ok(self.replaced(side, f))
        })
    }

    /// A new model with all factors of `side` replaced by `factors` (same k; any row count).
    fn with_factors(&self, side: &str, factors: PyReadonlyArray2<'_, f32>) -> PyResult<Model> {
        guard(|| {
            let side = Side::parse(side)?;
            let k = self.core.users.k;
            let rows = factors.shape()[0];
            let data = matrix_rows(&factors, rows, k, &format!("{}_factors", side.noun()))?;
            Ok(self.replaced(side, Factors { n: rows, k, data }))
        })
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
        guard(|| {
            let (ta, va) = (
                CsrArrays::extract(train, "train")?,
                CsrArrays::extract(valid, "valid")?,
            );
            let (tv, vv) = (ta.view()?, va.view()?);
            let r = py.detach(|| {
                self.threads.run(|| -> Result<EvalResult, Failure> {
                    let scorer = self.scorer()?;
                    Model::evaluate_views(scorer, &self.core.users, &tv, &vv, k)
                        .map_err(Failure::Value)
                })
            });
            r.map_err(Failure::into_py)?.into_dict(py)
        })
    }
}

impl Model {
    /// This model with `side`'s factors replaced (caches dropped; the dataset's counts follow,
    /// so the saved `model.json` matches its factor files).
    fn replaced(&self, side: Side, f: Factors) -> Model {
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
