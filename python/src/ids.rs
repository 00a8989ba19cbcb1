//! A dataset's id maps (original user and item ids of each row and column) as numpy arrays: the
//! one place that knows how the core stores them ([`encore::data::ids::Ids`]), so a change there
//! changes only this file and `encore/_ids.py`, which looks ids up in whatever array it gets.
//!
//! Integer ids become an int64 array; string ids a numpy `str` array (`<U{w}`, `w` the longest
//! id in characters), built here as one UTF-32 buffer and viewed as strings, with no Python
//! object per id (the Million Song Dataset has a million users). Both are ascending in the
//! order the core keeps (numeric, or byte-wise UTF-8, which is code-point order and numpy's own
//! for `str` arrays), so `np.searchsorted` finds an id in either.

use numpy::PyArray1;
use pyo3::prelude::*;

use encore::data::ids::Ids;

/// The ids as a numpy array: int64 for integer ids, `str` (`<U{w}`) for string ids.
pub fn id_array<'py>(py: Python<'py>, ids: Ids) -> PyResult<Bound<'py, PyAny>> {
    match ids {
        // Stored as int64 in user_ids.npy/item_ids.npy (ids::read refuses ids above 2^63 - 1),
        // so every id fits.
        Ids::Int(v) => {
            let v: Vec<i64> = v.into_iter().map(|x| x as i64).collect();
            Ok(PyArray1::from_vec(py, v).into_any())
        }
        Ids::Str(s) => {
            let n = s.len();
            // At least 1 wide: numpy has no zero-width view of a buffer.
            let w = (0..n)
                .map(|i| s.get(i).chars().count())
                .max()
                .unwrap_or(0)
                .max(1);
            let mut buf = vec![0u32; n * w];
            for (i, cell) in buf.chunks_exact_mut(w).enumerate() {
                for (slot, c) in cell.iter_mut().zip(s.get(i).chars()) {
                    *slot = u32::from(c);
                }
            }
            // Native-order UTF-32 code points, NUL-padded: exactly numpy's `U{w}` layout (ids
            // never contain NUL, so the padding strips back off).
            PyArray1::from_vec(py, buf).call_method1("view", (format!("U{w}"),))
        }
    }
}
