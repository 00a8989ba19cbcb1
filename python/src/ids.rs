//! A dataset's id maps (original user and item ids of each row and column) as numpy arrays: the
//! one place that knows how the core stores them, so a change there (string ids) changes only
//! this file and `encore/_ids.py`, which looks ids up in whatever array it gets.

use numpy::PyArray1;
use pyo3::prelude::*;

use encore::data::dataset::Dataset;

/// `(user_ids, item_ids)`: int64 arrays, row i of the matrices is user `user_ids[i]`.
pub fn id_arrays<'py>(
    py: Python<'py>,
    ds: &mut Dataset,
) -> (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>) {
    // Stored as int64 in user_ids.npy/item_ids.npy, so every id fits.
    let to_i64 = |v: Vec<u64>| -> Vec<i64> { v.into_iter().map(|x| x as i64).collect() };
    (
        PyArray1::from_vec(py, to_i64(std::mem::take(&mut ds.user_ids))),
        PyArray1::from_vec(py, to_i64(std::mem::take(&mut ds.item_ids))),
    )
}
