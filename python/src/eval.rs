//! `evaluate` for factors that are not an Encore model's (an implicit model's, say), so two
//! libraries are scored by the same code on the same split.

use numpy::{PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use encore::als::Factors;
use encore::eval::{eval_users, implicit_precision, metrics};
use encore::infer::{CpuScorer, Scorer};
use rayon::prelude::*;

use crate::csr::{CsrArrays, CsrView};
use crate::errors::{guard, value_error};
use crate::model::{Failure, Model};
use crate::score::top_k_batched;
use crate::threads::Threads;

fn factors(a: &PyReadonlyArray2<'_, f32>, what: &str) -> PyResult<Factors> {
    let (n, k) = (a.shape()[0], a.shape()[1]);
    let data: Vec<f32> = a.as_array().iter().copied().collect();
    if data.iter().any(|v| !v.is_finite()) {
        return Err(value_error(format!("{what} contains NaN or infinity")));
    }
    Ok(Factors { n, k, data })
}

/// Ranking quality of `user_factors` · `item_factors`ᵀ on `valid`, excluding `train` rows, on
/// the CPU: the same metrics as `Model.evaluate`.
#[pyfunction]
#[pyo3(signature = (user_factors, item_factors, train, valid, k, threads=None))]
pub fn evaluate_factors<'py>(
    py: Python<'py>,
    user_factors: PyReadonlyArray2<'py, f32>,
    item_factors: PyReadonlyArray2<'py, f32>,
    train: &Bound<'py, PyAny>,
    valid: &Bound<'py, PyAny>,
    k: usize,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    guard(|| {
        let users = factors(&user_factors, "user_factors")?;
        let items = factors(&item_factors, "item_factors")?;
        if users.k != items.k {
            return Err(value_error(format!(
                "user_factors has {} columns but item_factors {}",
                users.k, items.k
            )));
        }
        let pool = Threads::new(threads)?;
        let (ta, va) = (
            CsrArrays::extract(train, "train")?,
            CsrArrays::extract(valid, "valid")?,
        );
        let (tv, vv) = (ta.view()?, va.view()?);
        let r = py.detach(|| {
            pool.run(|| -> Result<EvalResult, Failure> {
                let scorer = CpuScorer::new(&items)?;
                Model::evaluate_views(&scorer, &users, &tv, &vv, k).map_err(Failure::Value)
            })
        });
        r.map_err(Failure::into_py)?.into_dict(py)
    })
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

impl Model {
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
            .map(|&u| train.excluded_row(u as usize))
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

pub(crate) fn evaluate<'py>(
    m: &Model,
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
            m.threads.run(|| -> Result<EvalResult, Failure> {
                let scorer = m.scorer()?;
                Model::evaluate_views(scorer, &m.core.users, &tv, &vv, k).map_err(Failure::Value)
            })
        });
        r.map_err(Failure::into_py)?.into_dict(py)
    })
}
