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

    /// The transpose (columns become rows), by a counting sort over columns: O(nnz + n_cols).
    /// Columns within each new row come out ascending because rows are visited in order.
    pub fn transpose(&self) -> Csr {
        let mut counts = vec![0u64; self.n_cols + 1];
        for &c in &self.indices {
            counts[c as usize + 1] += 1;
        }
        for i in 0..self.n_cols {
            counts[i + 1] += counts[i];
        }
        let indptr = counts.clone();
        let mut next = counts;
        let mut indices = vec![0u32; self.nnz()];
        let mut data = vec![0f32; self.nnz()];
        for r in 0..self.n_rows {
            let (cols, vals) = self.row(r);
            for (&c, &v) in cols.iter().zip(vals) {
                let slot = &mut next[c as usize];
                indices[*slot as usize] = r as u32;
                data[*slot as usize] = v;
                *slot += 1;
            }
        }
        Csr {
            n_rows: self.n_cols,
            n_cols: self.n_rows,
            indptr,
            indices,
            data,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_twice_is_identity() {
        let m = Csr {
            n_rows: 3,
            n_cols: 4,
            indptr: vec![0, 2, 2, 5],
            indices: vec![1, 3, 0, 1, 2],
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0],
        };
        let t = m.transpose();
        t.validate("t").unwrap();
        assert_eq!(t.indptr, vec![0, 1, 3, 4, 5]);
        assert_eq!(t.indices, vec![2, 0, 2, 2, 0]);
        assert_eq!(t.data, vec![3.0, 1.0, 4.0, 5.0, 2.0]);
        assert_eq!(t.transpose(), m);
    }
}
