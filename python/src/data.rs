//! `prep` and `load_dataset`: the dataset directory `encore prep` writes, from Python.
//!
//! `load_dataset` hands the matrices to numpy without copying them (the `Vec`s become the
//! arrays' memory), so scipy sees exactly what the CLI trains on; it also returns the training
//! matrix's hash, by which `fit` later recognises that matrix, unchanged, and records the
//! dataset in the model so that `encore eval` and `encore recommend` accept it.

use std::path::PathBuf;

use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use serde_json::Value;

use encore::data::csr::Csr;
use encore::data::dataset::Dataset;
use encore::data::formats::{Column, Columns};
use encore::data::prep::{PrepConfig, prep as run_prep};
use encore::data::split::{DEFAULT_LAST_N, Split};

use crate::errors::{IntoPy, guard, value_error};
use crate::fit::matrix_hash;

/// `prep`'s options and their defaults (the library's), as JSON.
#[pyfunction]
pub fn default_prep_options() -> PyResult<String> {
    let c = PrepConfig::new("", "");
    let (fraction, seed) = match c.split {
        Split::Random { fraction, seed } => (fraction, seed),
        Split::Time { .. } => (0.2, 42),
    };
    let opts = serde_json::json!({
        "format": c.format,
        "delimiter": c.delimiter,
        "header": c.header,
        "ids": c.ids,
        "user_column": column_text(&c.columns.user),
        "item_column": column_text(&c.columns.item),
        "value_column": column_text(&c.columns.value),
        "time_column": column_text(&c.columns.time),
        "value": c.value,
        "min_value": c.min_value,
        "min_user_tracks": c.min_user_tracks,
        "min_track_users": c.min_track_users,
        "filter": c.filter_mode,
        "split": "random",
        "valid_fraction": fraction,
        "last_n": DEFAULT_LAST_N,
        "seed": seed,
        "skip_bad_lines": c.skip_bad_lines,
    });
    Ok(opts.to_string())
}

/// A column choice as the text `Column::parse` reads back (`None`: the format's default).
fn column_text(c: &Option<Column>) -> Option<String> {
    c.as_ref().map(|c| match c {
        Column::Name(n) => n.clone(),
        Column::Position(p) => p.to_string(),
        Column::None => "none".to_string(),
    })
}

/// One option of `opts` as `T` (named in the error).
fn opt<T: serde::de::DeserializeOwned>(
    opts: &serde_json::Map<String, Value>,
    key: &str,
) -> PyResult<T> {
    let v = opts
        .get(key)
        .ok_or_else(|| value_error(format!("prep: missing option {key}")))?;
    serde_json::from_value(v.clone()).map_err(|e| value_error(format!("prep: {key}={v}: {e}")))
}

/// Runs `encore prep` on `input` into `out` with `options` (JSON: the keys of
/// `default_prep_options()`, all present) and returns `manifest.json` as JSON.
#[pyfunction]
pub fn prep(
    py: Python<'_>,
    input: PathBuf,
    out: PathBuf,
    options: &str,
    force: bool,
    show_progress: bool,
) -> PyResult<String> {
    guard(|| {
        let v: Value = serde_json::from_str(options).map_err(|e| value_error(e.to_string()))?;
        let Some(o) = v.as_object() else {
            return Err(value_error("prep options must be an object"));
        };
        let mut c = PrepConfig::new(&input, &out);
        c.format = opt(o, "format")?;
        c.delimiter = opt(o, "delimiter")?;
        c.header = opt(o, "header")?;
        c.ids = opt(o, "ids")?;
        let col = |key: &str| -> PyResult<Option<Column>> {
            Ok(opt::<Option<String>>(o, key)?.as_deref().map(Column::parse))
        };
        c.columns = Columns {
            user: col("user_column")?,
            item: col("item_column")?,
            value: col("value_column")?,
            time: col("time_column")?,
        };
        c.value = opt(o, "value")?;
        c.min_value = opt(o, "min_value")?;
        c.min_user_tracks = opt(o, "min_user_tracks")?;
        c.min_track_users = opt(o, "min_track_users")?;
        c.filter_mode = opt(o, "filter")?;
        let split: String = opt(o, "split")?;
        c.split = match split.as_str() {
            "random" => Split::Random {
                fraction: opt(o, "valid_fraction")?,
                seed: opt(o, "seed")?,
            },
            "time" => Split::Time {
                last_n: opt(o, "last_n")?,
            },
            s => {
                return Err(value_error(format!(
                    "prep: split={s:?}: use 'random' or 'time'"
                )));
            }
        };
        c.skip_bad_lines = opt(o, "skip_bad_lines")?;
        c.force = force;
        c.quiet = !show_progress;
        let manifest = py.detach(|| run_prep(&c)).py_err()?;
        serde_json::to_string(&manifest).map_err(|e| value_error(e.to_string()))
    })
}

/// A CSR matrix moved into numpy: `(data, indices, indptr, shape)` for scipy's constructor,
/// int32 offsets when they fit (as `scipy.sparse.load_npz` gives them).
fn csr_parts<'py>(py: Python<'py>, m: Csr) -> PyResult<Bound<'py, PyTuple>> {
    let Csr {
        n_rows,
        n_cols,
        indptr,
        indices,
        data,
    } = m;
    let fits = |v: u64| i32::try_from(v).is_ok();
    let indptr: Bound<'py, PyAny> =
        if indptr.last().is_none_or(|&l| fits(l)) && i32::try_from(n_cols).is_ok() {
            PyArray1::from_vec(
                py,
                indptr.into_iter().map(|v| v as i32).collect::<Vec<i32>>(),
            )
            .into_any()
        } else {
            PyArray1::from_vec(py, bytemuck::allocation::cast_vec::<u64, i64>(indptr)).into_any()
        };
    let indices: Bound<'py, PyAny> = if i32::try_from(n_cols).is_ok() {
        // Columns are below n_cols, so below 2^31: the same bits as int32.
        PyArray1::from_vec(py, bytemuck::allocation::cast_vec::<u32, i32>(indices)).into_any()
    } else {
        PyArray1::from_vec(py, indices.into_iter().map(i64::from).collect::<Vec<i64>>()).into_any()
    };
    PyTuple::new(
        py,
        [
            PyArray1::from_vec(py, data).into_any(),
            indices,
            indptr,
            (n_rows, n_cols).into_pyobject(py)?.into_any(),
        ],
    )
}

/// Reads a dataset directory: a dict with `train` and `valid` (scipy constructor parts),
/// `user_ids`, `item_ids`, `item_names`, `artist_ids`, `artist_names` (or None), `manifest`
/// (JSON), `dir`, `content_hash` and `train_hash`.
#[pyfunction]
pub fn load_dataset<'py>(py: Python<'py>, dir: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    guard(|| {
        let (mut ds, train_hash) = py
            .detach(|| -> encore::Result<_> {
                let ds = Dataset::load(&dir)?;
                let h = matrix_hash(&ds.train);
                Ok((ds, h))
            })
            .py_err()?;
        let d = PyDict::new(py);
        let canonical = std::fs::canonicalize(&ds.dir).unwrap_or_else(|_| ds.dir.clone());
        d.set_item("dir", canonical.to_string_lossy().to_string())?;
        d.set_item(
            "manifest",
            serde_json::to_string(&ds.manifest).map_err(|e| value_error(e.to_string()))?,
        )?;
        d.set_item("content_hash", ds.manifest.content_hash.clone())?;
        d.set_item("train_hash", train_hash)?;
        d.set_item(
            "user_ids",
            crate::ids::id_array(py, std::mem::take(&mut ds.user_ids))?,
        )?;
        d.set_item(
            "item_ids",
            crate::ids::id_array(py, std::mem::take(&mut ds.item_ids))?,
        )?;
        match ds.names.take() {
            Some(n) => {
                d.set_item("item_names", n.names)?;
                d.set_item("artist_ids", n.artist_ids)?;
                d.set_item("artist_names", n.artist_names)?;
            }
            None => {
                d.set_item("item_names", py.None())?;
                d.set_item("artist_ids", py.None())?;
                d.set_item("artist_names", py.None())?;
            }
        }
        let Dataset { train, valid, .. } = ds;
        d.set_item("train", csr_parts(py, train)?)?;
        d.set_item("valid", csr_parts(py, valid)?)?;
        Ok(d)
    })
}
