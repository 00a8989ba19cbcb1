//! scipy CSR matrices read in place: `indptr`, `indices` and `data` are borrowed from numpy
//! without a copy, after a dtype and contiguity check whose error says what to pass instead.
//!
//! Why in place: at LFM-1b scale the user's matrix is gigabytes, and training needs exactly
//! one copy of it (its values become the confidences, in place, and its transpose is built
//! from that). So `fit` reads the arrays here and writes that copy directly ([`CsrView::to_csr`]),
//! and `recommend`, `recalculate_user` and `evaluate` read only the rows they need.
//!
//! Accepted: `indptr` and `indices` int32 or int64 (scipy switches to int64 past 2³¹ − 1
//! entries), `data` float32, float64, int32 or int64 play counts; every array one-dimensional
//! and C-contiguous. The matrix must be canonical — within each row, columns strictly increasing
//! (sorted, no duplicates) — and its values finite and ≥ 0: [`CsrView::check`] says which row
//! is not, and how to fix it.
//!
//! The borrowed slices are read with the GIL released. A Python thread that writes into the
//! same arrays meanwhile races with the read, as with any of numpy's own GIL-free loops: the
//! values read are then unspecified, but every index is bounds-checked, so it cannot read out
//! of bounds.

use std::borrow::Cow;

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::prelude::*;
use rayon::prelude::*;

use encore::data::csr::Csr;

use crate::errors::value_error;

/// An index array (`indptr` or `indices`), int32 or int64.
pub enum IndexArray<'py> {
    I32(PyReadonlyArray1<'py, i32>),
    I64(PyReadonlyArray1<'py, i64>),
}

/// A value array.
pub enum ValueArray<'py> {
    F32(PyReadonlyArray1<'py, f32>),
    F64(PyReadonlyArray1<'py, f64>),
    I32(PyReadonlyArray1<'py, i32>),
    I64(PyReadonlyArray1<'py, i64>),
}

/// Borrowed index slice.
#[derive(Clone, Copy)]
pub enum Ix<'a> {
    I32(&'a [i32]),
    I64(&'a [i64]),
}

impl Ix<'_> {
    pub fn len(&self) -> usize {
        match self {
            Ix::I32(s) => s.len(),
            Ix::I64(s) => s.len(),
        }
    }

    #[inline]
    pub fn get(&self, i: usize) -> i64 {
        match self {
            Ix::I32(s) => i64::from(s[i]),
            Ix::I64(s) => s[i],
        }
    }
}

/// Borrowed value slice.
#[derive(Clone, Copy)]
pub enum Vals<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
    I32(&'a [i32]),
    I64(&'a [i64]),
}

impl Vals<'_> {
    fn len(&self) -> usize {
        match self {
            Vals::F32(s) => s.len(),
            Vals::F64(s) => s.len(),
            Vals::I32(s) => s.len(),
            Vals::I64(s) => s.len(),
        }
    }

    #[inline]
    pub fn get(&self, i: usize) -> f32 {
        match self {
            Vals::F32(s) => s[i],
            Vals::F64(s) => s[i] as f32,
            Vals::I32(s) => s[i] as f32,
            Vals::I64(s) => s[i] as f32,
        }
    }

    /// Writes entries `a..b` into `out` as f32 (one loop per dtype, so each is vectorised).
    fn copy_range(&self, a: usize, out: &mut [f32]) {
        let b = a + out.len();
        match self {
            Vals::F32(s) => out.copy_from_slice(&s[a..b]),
            Vals::F64(s) => out
                .iter_mut()
                .zip(&s[a..b])
                .for_each(|(o, &v)| *o = v as f32),
            Vals::I32(s) => out
                .iter_mut()
                .zip(&s[a..b])
                .for_each(|(o, &v)| *o = v as f32),
            Vals::I64(s) => out
                .iter_mut()
                .zip(&s[a..b])
                .for_each(|(o, &v)| *o = v as f32),
        }
    }
}

/// The arrays of a scipy CSR matrix, borrowed (read-only) from numpy.
pub struct CsrArrays<'py> {
    /// How errors name the matrix (`user_items`, `valid`, ...).
    pub name: String,
    pub n_rows: usize,
    pub n_cols: usize,
    indptr: IndexArray<'py>,
    indices: IndexArray<'py>,
    data: ValueArray<'py>,
}

/// `numpy.dtype` of an object, for messages.
fn dtype_of(obj: &Bound<'_, PyAny>) -> String {
    obj.getattr("dtype")
        .and_then(|d| d.str().map(|s| s.to_string()))
        .unwrap_or_else(|_| {
            format!(
                "a {}",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            )
        })
}

/// Why an array argument cannot be read as is.
fn check_array(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<()> {
    let Ok(arr) = obj.cast::<numpy::PyUntypedArray>() else {
        return Err(value_error(format!(
            "{what} is not a numpy array (it is {}); pass a scipy.sparse CSR matrix",
            dtype_of(obj)
        )));
    };
    if arr.ndim() != 1 {
        return Err(value_error(format!(
            "{what} has {} dimensions; a CSR matrix's arrays are 1-D",
            arr.ndim()
        )));
    }
    if !arr.is_c_contiguous() {
        return Err(value_error(format!(
            "{what} is not contiguous in memory, so it cannot be read in place; pass a matrix \
             whose arrays are (numpy.ascontiguousarray, or .copy() of the matrix)"
        )));
    }
    Ok(())
}

fn index_array<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<IndexArray<'py>> {
    check_array(obj, what)?;
    if let Ok(a) = obj.cast::<PyArray1<i32>>() {
        return Ok(IndexArray::I32(
            a.try_readonly()
                .map_err(|e| value_error(format!("{what}: {e}")))?,
        ));
    }
    if let Ok(a) = obj.cast::<PyArray1<i64>>() {
        return Ok(IndexArray::I64(
            a.try_readonly()
                .map_err(|e| value_error(format!("{what}: {e}")))?,
        ));
    }
    Err(value_error(format!(
        "{what} has dtype {}; Encore reads int32 or int64 indices (as scipy makes them)",
        dtype_of(obj)
    )))
}

fn value_array<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<ValueArray<'py>> {
    check_array(obj, what)?;
    let ro = |e: numpy::BorrowError| value_error(format!("{what}: {e}"));
    if let Ok(a) = obj.cast::<PyArray1<f32>>() {
        return Ok(ValueArray::F32(a.try_readonly().map_err(ro)?));
    }
    if let Ok(a) = obj.cast::<PyArray1<f64>>() {
        return Ok(ValueArray::F64(a.try_readonly().map_err(ro)?));
    }
    if let Ok(a) = obj.cast::<PyArray1<i32>>() {
        return Ok(ValueArray::I32(a.try_readonly().map_err(ro)?));
    }
    if let Ok(a) = obj.cast::<PyArray1<i64>>() {
        return Ok(ValueArray::I64(a.try_readonly().map_err(ro)?));
    }
    Err(value_error(format!(
        "{what} has dtype {}; Encore reads play counts as float32, float64, int32 or int64 \
         (e.g. {}.astype(numpy.float32))",
        dtype_of(obj),
        what.trim_end_matches(".data")
    )))
}

impl<'py> CsrArrays<'py> {
    /// Borrows the arrays of `m`, a scipy CSR matrix (`csr_matrix` or `csr_array`; the Python
    /// side converts other formats first).
    pub fn extract(m: &Bound<'py, PyAny>, name: &str) -> PyResult<Self> {
        let format: Option<String> = m.getattr("format").ok().and_then(|f| f.extract().ok());
        if format.as_deref() != Some("csr") {
            return Err(value_error(format!(
                "{name} must be a scipy.sparse CSR matrix (got {})",
                m.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            )));
        }
        let shape: (i64, i64) = m
            .getattr("shape")?
            .extract()
            .map_err(|_| value_error(format!("{name}.shape is not a pair of integers")))?;
        let (Ok(n_rows), Ok(n_cols)) = (usize::try_from(shape.0), usize::try_from(shape.1)) else {
            return Err(value_error(format!(
                "{name} has a negative shape {shape:?}"
            )));
        };
        let indptr = index_array(&m.getattr("indptr")?, &format!("{name}.indptr"))?;
        let indices = index_array(&m.getattr("indices")?, &format!("{name}.indices"))?;
        let data = value_array(&m.getattr("data")?, &format!("{name}.data"))?;
        Ok(Self {
            name: name.to_string(),
            n_rows,
            n_cols,
            indptr,
            indices,
            data,
        })
    }

    /// The borrowed slices (contiguity was checked when extracted).
    pub fn view(&self) -> PyResult<CsrView<'_>> {
        let slice_err = |_| value_error(format!("{}: an array is not contiguous", self.name));
        fn ix<'a>(a: &'a IndexArray<'_>, name: &str) -> PyResult<Ix<'a>> {
            let slice_err = |_| value_error(format!("{name}: an array is not contiguous"));
            Ok(match a {
                IndexArray::I32(a) => Ix::I32(a.as_slice().map_err(slice_err)?),
                IndexArray::I64(a) => Ix::I64(a.as_slice().map_err(slice_err)?),
            })
        }
        let data = match &self.data {
            ValueArray::F32(a) => Vals::F32(a.as_slice().map_err(slice_err)?),
            ValueArray::F64(a) => Vals::F64(a.as_slice().map_err(slice_err)?),
            ValueArray::I32(a) => Vals::I32(a.as_slice().map_err(slice_err)?),
            ValueArray::I64(a) => Vals::I64(a.as_slice().map_err(slice_err)?),
        };
        Ok(CsrView {
            name: &self.name,
            n_rows: self.n_rows,
            n_cols: self.n_cols,
            indptr: ix(&self.indptr, &self.name)?,
            indices: ix(&self.indices, &self.name)?,
            data,
        })
    }
}

/// Whether `cols` is strictly increasing within `0..n_cols` (so only its ends need the range
/// test): a branch-free pass the compiler vectorises.
fn canonical_in<T: Copy + Into<i64>>(cols: &[T], n_cols: i64) -> bool {
    let (Some(&first), Some(&last)) = (cols.first(), cols.last()) else {
        return true;
    };
    first.into() >= 0
        && last.into() < n_cols
        && cols
            .windows(2)
            .fold(true, |ok, w| ok & (w[0].into() < w[1].into()))
}

/// A CSR matrix borrowed from numpy: plain slices, so it can cross `Python::detach`.
#[derive(Clone, Copy)]
pub struct CsrView<'a> {
    pub name: &'a str,
    pub n_rows: usize,
    pub n_cols: usize,
    pub indptr: Ix<'a>,
    pub indices: Ix<'a>,
    pub data: Vals<'a>,
}

/// Rows per parallel task when checking or copying.
const ROWS_PER_TASK: usize = 4096;

impl<'a> CsrView<'a> {
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Entry range of row `r` (after [`CsrView::check`]).
    #[inline]
    fn range(&self, r: usize) -> (usize, usize) {
        (self.indptr.get(r) as usize, self.indptr.get(r + 1) as usize)
    }

    /// Checks the structure (offsets first, so a corrupt matrix is an error and never an
    /// out-of-bounds read), canonical rows and finite, non-negative values, in parallel.
    /// Messages name the matrix and the row.
    pub fn check(&self) -> Result<(), String> {
        self.check_header()?;
        let chunks = self.n_rows.div_ceil(ROWS_PER_TASK);
        let first_bad = (0..chunks).into_par_iter().find_map_first(|c| {
            let rows = c * ROWS_PER_TASK..((c + 1) * ROWS_PER_TASK).min(self.n_rows);
            rows.into_iter().find_map(|r| self.check_row(r).err())
        });
        first_bad.map_or(Ok(()), Err)
    }

    /// The O(1) part of [`CsrView::check`]: array lengths, the first and last offset. Enough
    /// before reading single rows with [`CsrView::excluded_row`], which checks the rest of
    /// what it reads (so `recommend` for 10 users does not scan a billion entries).
    pub fn check_header(&self) -> Result<(), String> {
        let name = self.name;
        let nnz = self.nnz();
        if self.indptr.len() != self.n_rows + 1 {
            return Err(format!(
                "{name}.indptr has {} entries for {} rows (expected {})",
                self.indptr.len(),
                self.n_rows,
                self.n_rows + 1
            ));
        }
        if self.data.len() != nnz {
            return Err(format!(
                "{name} has {nnz} indices but {} values",
                self.data.len()
            ));
        }
        if u32::try_from(self.n_cols).is_err() {
            return Err(format!(
                "{name} has {} columns; Encore indexes items with 32 bits (at most {})",
                self.n_cols,
                u32::MAX
            ));
        }
        if self.indptr.get(0) != 0 {
            return Err(format!(
                "{name}.indptr starts at {}, not 0",
                self.indptr.get(0)
            ));
        }
        let last = self.indptr.get(self.n_rows);
        if last != nnz as i64 {
            return Err(format!(
                "{name}.indptr ends at {last} but there are {nnz} entries"
            ));
        }
        Ok(())
    }

    /// Checks row `r` (its offsets within `0..=nnz` and in order, canonical columns in range,
    /// finite non-negative values), after [`CsrView::check_header`].
    fn check_row(&self, r: usize) -> Result<(), String> {
        let name = self.name;
        let nnz = self.nnz() as i64;
        let (a, b) = (self.indptr.get(r), self.indptr.get(r + 1));
        if a > b || a < 0 || b > nnz {
            return Err(format!(
                "{name}.indptr is not non-decreasing within 0..={nnz} at row {r} ({a}, {b})"
            ));
        }
        let mut prev = -1i64;
        for i in a as usize..b as usize {
            let c = self.indices.get(i);
            if c < 0 || c as usize >= self.n_cols {
                return Err(format!(
                    "{name}: row {r} has column {c}, outside 0..{}",
                    self.n_cols
                ));
            }
            if c <= prev {
                return Err(format!(
                    "{name} is not canonical: row {r} has column {c} after {prev} (unsorted or \
                     duplicate entries); call {name}.sum_duplicates() first, which sorts and \
                     merges them"
                ));
            }
            prev = c;
            let v = self.data.get(i);
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!(
                    "{name}: the value at row {r}, column {c} is {v}; play counts must be \
                     finite and >= 0"
                ));
            }
        }
        Ok(())
    }

    /// The columns of row `r` as the sorted item list a scorer excludes, after
    /// [`CsrView::check_header`]: borrowed in place when the indices are int32 (scipy's usual
    /// dtype; a non-negative `i32` is the same bits as its `u32`), converted when they are
    /// int64. What `recommend` filters with, once per user per call, so it checks only what
    /// filtering needs — the row's offsets, columns strictly increasing and within `0..n_cols`
    /// (one pass, no allocation for int32) — and not the values, which filtering never reads;
    /// on a bad row it falls back to [`CsrView::check_row`]'s message naming the problem.
    pub fn excluded_row(&self, r: usize) -> Result<Cow<'a, [u32]>, String> {
        if r >= self.n_rows {
            return Err(format!(
                "{}: row {r} is out of range ({} rows)",
                self.name, self.n_rows
            ));
        }
        let nnz = self.nnz() as i64;
        let (a, b) = (self.indptr.get(r), self.indptr.get(r + 1));
        if !(0 <= a && a <= b && b <= nnz) {
            return Err(self.row_problem(r));
        }
        let (a, b) = (a as usize, b as usize);
        let n_cols = self.n_cols as i64;
        match self.indices {
            Ix::I32(s) => {
                let cols = &s[a..b];
                if canonical_in(cols, n_cols) {
                    Ok(Cow::Borrowed(bytemuck::cast_slice(cols)))
                } else {
                    Err(self.row_problem(r))
                }
            }
            Ix::I64(s) => {
                let cols = &s[a..b];
                if canonical_in(cols, n_cols) {
                    Ok(Cow::Owned(cols.iter().map(|&c| c as u32).collect()))
                } else {
                    Err(self.row_problem(r))
                }
            }
        }
    }

    /// [`CsrView::check_row`]'s message for a row known to be bad in its offsets or columns.
    fn row_problem(&self, r: usize) -> String {
        match self.check_row(r) {
            Err(m) => m,
            Ok(()) => format!("{}: row {r} is not a valid CSR row", self.name),
        }
    }

    /// (column, value) pairs of row `r` (after [`CsrView::check`]).
    pub fn row_pairs(&self, r: usize) -> Vec<(u32, f32)> {
        let (a, b) = self.range(r);
        (a..b)
            .map(|i| (self.indices.get(i) as u32, self.data.get(i)))
            .collect()
    }

    /// The owned copy that training consumes (after [`CsrView::check`]): u64 offsets, u32
    /// columns, f32 values, written in parallel straight from the borrowed arrays.
    pub fn to_csr(self) -> Csr {
        let nnz = self.nnz();
        let indptr: Vec<u64> = match self.indptr {
            Ix::I32(s) => s.par_iter().map(|&v| v as u64).collect(),
            Ix::I64(s) => s.par_iter().map(|&v| v as u64).collect(),
        };
        let mut indices = vec![0u32; nnz];
        let mut data = vec![0f32; nnz];
        const BLOCK: usize = 1 << 16;
        indices
            .par_chunks_mut(BLOCK)
            .zip(data.par_chunks_mut(BLOCK))
            .enumerate()
            .for_each(|(b, (ix, vals))| {
                let (a, n) = (b * BLOCK, ix.len());
                match self.indices {
                    Ix::I32(s) => ix
                        .iter_mut()
                        .zip(&s[a..a + n])
                        .for_each(|(o, &v)| *o = v as u32),
                    Ix::I64(s) => ix
                        .iter_mut()
                        .zip(&s[a..a + n])
                        .for_each(|(o, &v)| *o = v as u32),
                }
                self.data.copy_range(a, vals);
            });
        Csr {
            n_rows: self.n_rows,
            n_cols: self.n_cols,
            indptr,
            indices,
            data,
        }
    }
}
