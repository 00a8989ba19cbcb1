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

    /// The transpose (columns become rows), by a counting sort over columns: O(nnz + n_cols)
    /// work, in parallel over column ranges. Each task owns a range of columns — its counters
    /// and its contiguous slice of the output — and finds each row's entries in that range by
    /// binary search (rows are sorted), so there are no atomics and no per-thread histograms,
    /// and the result is the serial one: columns within each new row ascend because rows are
    /// visited in order.
    pub fn transpose(&self) -> Csr {
        use rayon::prelude::*;
        let n_cols = self.n_cols;
        // Many more ranges than threads balance the skew of popular columns.
        let parts = (rayon::current_num_threads() * 8).clamp(1, n_cols.max(1));
        let width = n_cols.div_ceil(parts).max(1);
        let entries_in = |r: usize, c0: usize, c1: usize| {
            let (cols, vals) = self.row(r);
            let a = cols.partition_point(|&c| (c as usize) < c0);
            let b = cols.partition_point(|&c| (c as usize) < c1);
            (&cols[a..b], &vals[a..b])
        };
        let mut counts = vec![0u64; n_cols + 1];
        counts[1..]
            .par_chunks_mut(width)
            .enumerate()
            .for_each(|(p, out)| {
                let c0 = p * width;
                for r in 0..self.n_rows {
                    for &c in entries_in(r, c0, c0 + out.len()).0 {
                        out[c as usize - c0] += 1;
                    }
                }
            });
        for i in 0..n_cols {
            counts[i + 1] += counts[i];
        }
        let indptr = counts;
        let mut indices = vec![0u32; self.nnz()];
        let mut data = vec![0f32; self.nnz()];
        // Split the outputs into each column range's contiguous slice.
        let mut jobs = Vec::with_capacity(parts);
        let (mut rest_i, mut rest_d) = (indices.as_mut_slice(), data.as_mut_slice());
        for c0 in (0..n_cols).step_by(width) {
            let c1 = (c0 + width).min(n_cols);
            let len = (indptr[c1] - indptr[c0]) as usize;
            let (hi, ti) = std::mem::take(&mut rest_i).split_at_mut(len);
            let (hd, td) = std::mem::take(&mut rest_d).split_at_mut(len);
            jobs.push((c0, c1, hi, hd));
            rest_i = ti;
            rest_d = td;
        }
        jobs.into_par_iter().for_each(|(c0, c1, out_i, out_d)| {
            let base = indptr[c0];
            let mut next: Vec<u64> = indptr[c0..c1].iter().map(|&o| o - base).collect();
            for r in 0..self.n_rows {
                let (cols, vals) = entries_in(r, c0, c1);
                for (&c, &v) in cols.iter().zip(vals) {
                    let slot = &mut next[c as usize - c0];
                    out_i[*slot as usize] = r as u32;
                    out_d[*slot as usize] = v;
                    *slot += 1;
                }
            }
        });
        Csr {
            n_rows: self.n_cols,
            n_cols: self.n_rows,
            indptr,
            indices,
            data,
        }
    }

    /// Checks the invariants of a play-count matrix; `what` names the matrix (its file) in the
    /// error. The offsets are checked completely before any row is looked at, so a corrupt file
    /// is an error, never an out-of-bounds panic (issue 13); then the columns, then the values
    /// (finite and non-negative, so that bad counts are reported as such, not later as a matrix
    /// that is "not positive definite").
    pub fn validate(&self, what: &str) -> Result<()> {
        let bad = |m: String| Err(Error::bad_input(what, m));
        if self.indptr.len() != self.n_rows + 1 {
            return bad(format!(
                "indptr has {} entries for {} rows (expected {})",
                self.indptr.len(),
                self.n_rows,
                self.n_rows as u128 + 1
            ));
        }
        if self.indices.len() != self.data.len() {
            return bad(format!(
                "{} indices but {} values",
                self.indices.len(),
                self.data.len()
            ));
        }
        if self.indptr[0] != 0 {
            return bad(format!("indptr starts at {}, not 0", self.indptr[0]));
        }
        if let Some(r) = self.indptr.windows(2).position(|w| w[0] > w[1]) {
            return bad(format!(
                "indptr decreases at row {r} ({} > {})",
                self.indptr[r],
                self.indptr[r + 1]
            ));
        }
        let last = self.indptr[self.n_rows];
        if last != self.nnz() as u64 {
            return bad(format!(
                "indptr ends at {last} but there are {} entries",
                self.nnz()
            ));
        }
        for r in 0..self.n_rows {
            let (cols, _) = self.row(r);
            if let Some(&c) = cols.iter().find(|&&c| c as usize >= self.n_cols) {
                return bad(format!("row {r} has column {c} >= {}", self.n_cols));
            }
            if cols.windows(2).any(|w| w[0] >= w[1]) {
                return bad(format!("row {r} columns are not strictly increasing"));
            }
        }
        if let Some(i) = self.data.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
            let row = self.indptr.partition_point(|&o| o <= i as u64) - 1;
            let kind = if self.data[i].is_nan() {
                "NaN"
            } else if self.data[i].is_infinite() {
                "infinite"
            } else {
                "negative"
            };
            return bad(format!(
                "value {} at row {row}, column {} is {kind}: play counts must be finite and >= 0",
                self.data[i], self.indices[i]
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_transpose_matches_the_definition_on_any_thread_count() {
        // 37 × 1,000 with ~10% density: many column ranges, some empty columns and rows.
        let (rows, cols) = (37usize, 1_000usize);
        let mut m = Csr::empty(rows, cols);
        m.indptr.clear();
        m.indptr.push(0);
        for r in 0..rows {
            for c in 0..cols {
                let h = crate::util::mix64((r * cols + c) as u64);
                if r % 9 != 4 && h.is_multiple_of(10) {
                    m.indices.push(c as u32);
                    m.data.push((h % 97) as f32);
                }
            }
            m.indptr.push(m.indices.len() as u64);
        }
        for threads in [1, 3, 16] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let t = pool.install(|| m.transpose());
            t.validate("transpose").unwrap();
            assert_eq!((t.n_rows, t.n_cols, t.nnz()), (cols, rows, m.nnz()));
            for c in 0..cols {
                let (rs, vs) = t.row(c);
                let want: Vec<(u32, f32)> = (0..rows)
                    .filter_map(|r| {
                        let (cs, v) = m.row(r);
                        cs.binary_search(&(c as u32)).ok().map(|i| (r as u32, v[i]))
                    })
                    .collect();
                let got: Vec<(u32, f32)> = rs.iter().copied().zip(vs.iter().copied()).collect();
                assert_eq!(got, want, "column {c} on {threads} threads");
            }
        }
    }

    fn good() -> Csr {
        Csr {
            n_rows: 3,
            n_cols: 4,
            indptr: vec![0, 2, 2, 5],
            indices: vec![1, 3, 0, 1, 2],
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0],
        }
    }

    fn error_of(m: &Csr) -> String {
        m.validate("m.npz").unwrap_err().to_string()
    }

    #[test]
    fn indptr_above_nnz_is_an_error_not_a_panic() {
        let mut m = good();
        m.indptr = vec![0, 9, 2, 5];
        let e = error_of(&m);
        assert!(e.starts_with("m.npz: indptr decreases at row 1"), "{e}");
        m.indptr = vec![0, 2, 2, 9];
        assert!(error_of(&m).contains("indptr ends at 9 but there are 5 entries"));
        m.indptr = vec![1, 2, 2, 5];
        assert!(error_of(&m).contains("indptr starts at 1"));
        m.indptr = vec![0, 2, 5];
        assert!(error_of(&m).contains("indptr has 3 entries for 3 rows"));
    }

    #[test]
    fn non_finite_and_negative_values_are_named() {
        for (v, kind) in [
            (f32::NAN, "NaN"),
            (f32::INFINITY, "infinite"),
            (-2.0, "negative"),
        ] {
            let mut m = good();
            m.data[3] = v;
            let e = error_of(&m);
            assert!(e.contains(&format!("at row 2, column 1 is {kind}")), "{e}");
        }
        let mut m = good();
        m.indices[1] = 4;
        assert!(error_of(&m).contains("row 0 has column 4 >= 4"));
    }

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
