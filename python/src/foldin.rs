//! Fold-in (the factor of a row solved against the other side's fixed factors, as the server's
//! `/v1/recommend/history` does) and the updates built on it: `partial_fit_*` and factor
//! assignment, each making a new model.

use ndarray::Array2;
use numpy::{PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use rayon::prelude::*;

use encore::als::Factors;

use crate::csr::CsrArrays;
use crate::errors::{guard, value_error};
use crate::model::{Failure, Model, Side};
use crate::score::check_ids;

/// A row-major copy of a 2-D float32 array, checked to be `rows × k`.
pub fn matrix_rows(
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

pub(crate) fn fold_in<'py>(
    m: &Model,
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
            Side::Users => &m.core.items,
            Side::Items => &m.core.users,
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
            m.threads.run(|| -> Result<Vec<f32>, Failure> {
                view.check().map_err(Failure::Value)?;
                let fi = m.foldin(side);
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

pub(crate) fn with_rows(
    m: &Model,
    side: &str,
    ids: PyReadonlyArray1<'_, i64>,
    vectors: PyReadonlyArray2<'_, f32>,
) -> PyResult<Model> {
    guard(|| {
        let side = Side::parse(side)?;
        let ids = ids
            .as_slice()
            .map_err(|_| value_error("ids are not contiguous"))?;
        let old = m.side_factors(side);
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
        Ok(m.replaced(side, f))
    })
}

pub(crate) fn with_factors(
    m: &Model,
    side: &str,
    factors: PyReadonlyArray2<'_, f32>,
) -> PyResult<Model> {
    guard(|| {
        let side = Side::parse(side)?;
        let k = m.core.users.k;
        let rows = factors.shape()[0];
        let data = matrix_rows(&factors, rows, k, &format!("{}_factors", side.noun()))?;
        Ok(m.replaced(side, Factors { n: rows, k, data }))
    })
}
