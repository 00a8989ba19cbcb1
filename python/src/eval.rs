//! `evaluate` for factors that are not an Encore model's (an implicit model's, say), so two
//! libraries are scored by the same code on the same split.

use numpy::{PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use encore::als::Factors;
use encore::infer::CpuScorer;

use crate::csr::CsrArrays;
use crate::errors::{guard, value_error};
use crate::model::{EvalResult, Failure, Model};
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
