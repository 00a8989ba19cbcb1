//! Compressed sparse row matrices: the in-memory form of every interaction matrix.
//!
//! Row offsets are 64-bit because LFM-1b-scale matrices approach 2³¹ non-zeros and later stages
//! (GPU training) index them directly; column indices are 32-bit (tracks number in the millions).

use crate::error::{Error, Result};

/// A CSR matrix of play counts (`f32`, scipy's `csr_matrix` layout).
#[derive(Debug, Clone, PartialEq)]
pub struct Csr {
    pub n_rows: usize,
    pub n_cols: usize,
    /// `n_rows + 1` offsets into `indices`/`data`, non-decreasing, last = nnz.
    pub indptr: Vec<u64>,
    /// Column of each entry; strictly increasing within a row.
    pub indices: Vec<u32>,
    pub data: Vec<f32>,
}

impl Csr {
    /// An empty matrix of the given shape.
    pub fn empty(n_rows: usize, n_cols: usize) -> Self {
        Self {
            n_rows,
            n_cols,
            indptr: vec![0; n_rows + 1],
            indices: Vec::new(),
            data: Vec::new(),
        }
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// The column indices and values of row `r`.
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[r] as usize, self.indptr[r + 1] as usize);
        (&self.indices[a..b], &self.data[a..b])
    }

    /// Sum of all values (as f64, exact for play counts below 2²⁴ each).
    pub fn sum(&self) -> f64 {
        self.data.iter().map(|&v| f64::from(v)).sum()
    }

    /// Checks the structural invariants; `what` names the matrix in the error.
    pub fn validate(&self, what: &str) -> Result<()> {
        let bad = |m: String| Err(Error::bad_input(what, m));
        if self.indptr.len() != self.n_rows + 1 {
            return bad(format!(
                "indptr has {} entries for {} rows",
                self.indptr.len(),
                self.n_rows
            ));
        }
        if self.indices.len() != self.data.len() {
            return bad(format!(
                "{} indices but {} values",
                self.indices.len(),
                self.data.len()
            ));
        }
        if self.indptr[0] != 0 || self.indptr[self.n_rows] as usize != self.nnz() {
            return bad("indptr does not span the entries".into());
        }
        for r in 0..self.n_rows {
            if self.indptr[r] > self.indptr[r + 1] {
                return bad(format!("indptr decreases at row {r}"));
            }
            let (cols, _) = self.row(r);
            if let Some(&c) = cols.iter().find(|&&c| c as usize >= self.n_cols) {
                return bad(format!("row {r} has column {c} >= {}", self.n_cols));
            }
            if cols.windows(2).any(|w| w[0] >= w[1]) {
                return bad(format!("row {r} columns are not strictly increasing"));
            }
        }
        Ok(())
    }
}
