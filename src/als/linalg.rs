//! Small dense kernels for ALS: Gram matrices, gathered rank-k updates and Cholesky solves.
//!
//! Matrix products go through `ndarray::linalg::general_mat_mul` (the `matrixmultiply` crate's
//! blocked, SIMD SGEMM) so the O(n_u·k²) build of each normal equation runs at GEMM speed rather
//! than as n_u scalar rank-1 updates. Factorisation happens in f64: it is O(k³) per row, cheap
//! next to the build, and keeps the reference solver accurate when confidences are large.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

/// Rows per part when summing a Gram matrix in parallel. Multi-rank training computes the same
/// parts (on whichever rank) and sums them in the same order, so its Gram matrices are
/// bit-identical to one process's.
pub const GRAM_ROWS_PER_TASK: usize = 16_384;

/// FᵀF for a row-major `n × k` matrix `f`, as a row-major `k × k` f32 matrix (summed in f64
/// across tasks so the result does not depend on the thread count beyond rounding of each part).
pub fn gram(f: &[f32], k: usize) -> Vec<f32> {
    let n = f.len() / k.max(1);
    if n == 0 {
        return vec![0.0; k * k];
    }
    let parts: Vec<Vec<f32>> = f
        .par_chunks(GRAM_ROWS_PER_TASK * k)
        .map(|chunk| gram_part(chunk, k))
        .collect();
    sum_gram_parts(parts.iter().map(Vec::as_slice), k)
}

/// One part of [`gram`]: FᵀF of the rows in `chunk` (row-major, `k` columns), in f32.
pub fn gram_part(chunk: &[f32], k: usize) -> Vec<f32> {
    let rows = chunk.len() / k.max(1);
    let a = view(chunk, rows, k);
    let mut g = vec![0.0f32; k * k];
    general_mat_mul(1.0, &a.t(), &a, 0.0, &mut view_mut(&mut g, k, k));
    g
}

/// The sum of Gram parts in the order given, in f64, rounded once to f32.
pub fn sum_gram_parts<'a>(parts: impl Iterator<Item = &'a [f32]>, k: usize) -> Vec<f32> {
    let mut acc = vec![0.0f64; k * k];
    for p in parts {
        for (a, &v) in acc.iter_mut().zip(p) {
            *a += f64::from(v);
        }
    }
    acc.into_iter().map(|v| v as f32).collect()
}

/// A row-major view of `data` as `rows × cols`.
pub fn view(data: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
    // The callers size `data` as rows·cols; a mismatch is a programming error.
    ArrayView2::from_shape((rows, cols), &data[..rows * cols]).unwrap_or_else(|_| unreachable!())
}

/// A mutable row-major view of `data` as `rows × cols`.
pub fn view_mut(data: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), &mut data[..rows * cols])
        .unwrap_or_else(|_| unreachable!())
}

/// `a += sᵀs` for a row-major `rows × k` matrix `s` (a gathered, scaled block of factor rows).
pub fn add_gram(a: &mut [f32], s: &[f32], rows: usize, k: usize) {
    if rows == 0 {
        return;
    }
    let sv = view(s, rows, k);
    general_mat_mul(1.0, &sv.t(), &sv, 1.0, &mut view_mut(a, k, k));
}

/// The matrix was not positive definite (a zero or negative pivot at `pivot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotPositiveDefinite {
    pub pivot: usize,
}

/// Solves `A x = b` for symmetric positive-definite `A` (row-major `k × k`, f64) by Cholesky,
/// in place: `a` is overwritten by its factor and `b` by the solution. Every inner loop runs over
/// contiguous rows (dot products and axpys) so it vectorises.
#[inline(always)]
pub fn cholesky_solve(a: &mut [f64], b: &mut [f64], k: usize) -> Result<(), NotPositiveDefinite> {
    cholesky_factor(a, k)?;
    cholesky_substitute(a, b, k);
    Ok(())
}

/// Factors symmetric positive-definite `A` (row-major `k × k`, f64) as `L Lᵀ` in place: row i
/// of `a` then holds `L[i][0..=i]` (the upper triangle is left as it was). Several right-hand
/// sides can then be solved with [`cholesky_substitute`] at O(k²) each instead of O(k³).
#[inline(always)]
pub fn cholesky_factor(a: &mut [f64], k: usize) -> Result<(), NotPositiveDefinite> {
    for j in 0..k {
        let (_, rest) = a.split_at_mut(j * k);
        let (rj, below) = rest.split_at_mut(k);
        let d = rj[j] - dot64(&rj[..j], &rj[..j]);
        if d <= 0.0 || !d.is_finite() {
            return Err(NotPositiveDefinite { pivot: j });
        }
        let d = d.sqrt();
        rj[j] = d;
        for ri in below.chunks_exact_mut(k) {
            ri[j] = (ri[j] - dot64(&ri[..j], &rj[..j])) / d;
        }
    }
    Ok(())
}

/// Overwrites `b` with the solution of `L Lᵀ x = b`, `l` the factor from [`cholesky_factor`].
#[inline(always)]
pub fn cholesky_substitute(l: &[f64], b: &mut [f64], k: usize) {
    // L y = b (rows of L).
    for i in 0..k {
        let row = &l[i * k..i * k + i + 1];
        b[i] = (b[i] - dot64(&row[..i], &b[..i])) / row[i];
    }
    // Lᵀ x = y, column by column: once x[i] is known, remove it from the earlier equations.
    for i in (0..k).rev() {
        let row = &l[i * k..i * k + i + 1];
        b[i] /= row[i];
        let xi = b[i];
        for (bp, &li) in b[..i].iter_mut().zip(&row[..i]) {
            *bp -= li * xi;
        }
    }
}

/// f64 dot product with independent accumulators.
#[inline(always)]
fn dot64(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ac, bc) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = (acc[0] + acc[2]) + (acc[1] + acc[3]);
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

/// Dot product. Eight independent accumulators over exact chunks let LLVM keep the sum in
/// vector registers (the callers that matter are compiled for AVX2/FMA via `multiversion`).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

/// `y += alpha · x`.
#[inline(always)]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// `out = g · v` for a symmetric row-major `k × k` matrix `g`, as the sum of g's rows scaled by
/// v (Σ_d v_d·g_d, over d in order). The columns are taken `SYMV_BLOCK` (32) at a time, each block
/// accumulated in a local array over all k rows, so LLVM keeps it in vector registers: one load
/// of g and one multiply–add per element and no store until the block is done. Accumulating
/// into `out` row by row instead (an axpy per row) reloads and stores `out` k times; measured on
/// the dev machine at k = 64, the blocks are 3–4× faster. Every element is summed in the same
/// order either way, so the result is the same to the bit.
#[inline(always)]
pub fn symv(g: &[f32], v: &[f32], out: &mut [f32], k: usize) {
    let mut c0 = 0;
    while c0 + SYMV_BLOCK <= k {
        symv_columns::<SYMV_BLOCK>(g, v, &mut out[c0..c0 + SYMV_BLOCK], k, c0);
        c0 += SYMV_BLOCK;
    }
    while c0 + 8 <= k {
        symv_columns::<8>(g, v, &mut out[c0..c0 + 8], k, c0);
        c0 += 8;
    }
    for (c, o) in out.iter_mut().enumerate().take(k).skip(c0) {
        let mut acc = 0.0f32;
        for (d, &vd) in v.iter().enumerate().take(k) {
            acc += vd * g[d * k + c];
        }
        *o = acc;
    }
}

/// `out = σ·(g·v + shift·v) + Σ_i c_i·y_i` with σ = −1 when `negate` (else +1), g symmetric
/// row-major `k × k` and y_i the rows of `rows` (`coefs.len()` rows of k): a CG row's
/// `(G + λI)·v` plus its own tracks' correction, in one pass over the columns in register
/// blocks as in [`symv`]. Each element is summed in the order of `symv` followed by
/// `axpy(shift, v)`, the sign, then one `axpy(c_i, y_i)` per row, so the result equals that
/// sequence of calls to the bit; it reads `rows` once per block instead of writing `out` once
/// per row.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the terms of one expression, named as in the formula
pub fn shifted_symv_plus_rows(
    g: &[f32],
    v: &[f32],
    shift: f32,
    negate: bool,
    rows: &[f32],
    coefs: &[f32],
    out: &mut [f32],
    k: usize,
) {
    let terms = Terms {
        g,
        v,
        shift,
        negate,
        rows,
        coefs,
        k,
    };
    let mut c0 = 0;
    while c0 + SYMV_BLOCK <= k {
        terms.columns::<SYMV_BLOCK>(&mut out[c0..c0 + SYMV_BLOCK], c0);
        c0 += SYMV_BLOCK;
    }
    while c0 + 8 <= k {
        terms.columns::<8>(&mut out[c0..c0 + 8], c0);
        c0 += 8;
    }
    while c0 < k {
        terms.columns::<1>(&mut out[c0..=c0], c0);
        c0 += 1;
    }
}

/// The operands of [`shifted_symv_plus_rows`].
struct Terms<'a> {
    g: &'a [f32],
    v: &'a [f32],
    shift: f32,
    negate: bool,
    rows: &'a [f32],
    coefs: &'a [f32],
    k: usize,
}

impl Terms<'_> {
    /// The `W` output columns from `c0`.
    #[inline(always)]
    fn columns<const W: usize>(&self, out: &mut [f32], c0: usize) {
        let k = self.k;
        let mut acc = [0.0f32; W];
        for (d, &vd) in self.v.iter().enumerate().take(k) {
            let row = &self.g[d * k + c0..d * k + c0 + W];
            for (a, &gd) in acc.iter_mut().zip(row) {
                *a += vd * gd;
            }
        }
        for (a, &vd) in acc.iter_mut().zip(&self.v[c0..c0 + W]) {
            let t = *a + self.shift * vd;
            *a = if self.negate { -t } else { t };
        }
        for (y, &c) in self.rows.chunks_exact(k).zip(self.coefs) {
            for (a, &yd) in acc.iter_mut().zip(&y[c0..c0 + W]) {
                *a += c * yd;
            }
        }
        out.copy_from_slice(&acc);
    }
}

/// Columns of [`symv`] held in registers at a time: 32 f32, four AVX2 registers.
const SYMV_BLOCK: usize = 32;

/// `out[j] = Σ_d v_d·g[d][c0 + j]` for the `W` columns from `c0`.
#[inline(always)]
fn symv_columns<const W: usize>(g: &[f32], v: &[f32], out: &mut [f32], k: usize, c0: usize) {
    let mut acc = [0.0f32; W];
    for (d, &vd) in v.iter().enumerate().take(k) {
        let row = &g[d * k + c0..d * k + c0 + W];
        for (a, &gd) in acc.iter_mut().zip(row) {
            *a += vd * gd;
        }
    }
    out.copy_from_slice(&acc);
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn cholesky_solves_a_known_system() {
        // A = [[4,2],[2,3]], b = [2, 1] → x = [0.5, 0].
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        let mut b = vec![2.0, 1.0];
        cholesky_solve(&mut a, &mut b, 2).unwrap();
        assert_relative_eq!(b[0], 0.5, epsilon = 1e-12);
        assert_relative_eq!(b[1], 0.0, epsilon = 1e-12);
        let mut bad = vec![1.0, 2.0, 2.0, 1.0];
        assert_eq!(
            cholesky_solve(&mut bad, &mut [0.0, 0.0], 2),
            Err(NotPositiveDefinite { pivot: 1 })
        );
    }

    #[test]
    fn one_factor_solves_many_right_hand_sides() {
        // A = B Bᵀ + I (SPD, 5 × 5): the factor from cholesky_factor, reused for each column of
        // the identity, gives A⁻¹ (A · A⁻¹ = I), and each column matches a fresh cholesky_solve.
        let k = 5;
        let bm: Vec<f64> = (0..k * k)
            .map(|i| ((i * 7 % 11) as f64) / 11.0 - 0.4)
            .collect();
        let mut a = vec![0.0f64; k * k];
        for i in 0..k {
            for j in 0..k {
                a[i * k + j] = (0..k).map(|t| bm[i * k + t] * bm[j * k + t]).sum::<f64>()
                    + f64::from(u8::from(i == j));
            }
        }
        let mut l = a.clone();
        cholesky_factor(&mut l, k).unwrap();
        let mut inv = vec![0.0f64; k * k];
        for j in 0..k {
            let mut col = vec![0.0f64; k];
            col[j] = 1.0;
            cholesky_substitute(&l, &mut col, k);
            let (mut fresh, mut e) = (a.clone(), vec![0.0f64; k]);
            e[j] = 1.0;
            cholesky_solve(&mut fresh, &mut e, k).unwrap();
            assert_eq!(col, e, "column {j}");
            for i in 0..k {
                inv[i * k + j] = col[i];
            }
        }
        for i in 0..k {
            for j in 0..k {
                let p: f64 = (0..k).map(|t| a[i * k + t] * inv[t * k + j]).sum();
                assert_relative_eq!(p, f64::from(u8::from(i == j)), epsilon = 1e-12);
            }
        }
        let mut bad = vec![1.0, 2.0, 2.0, 1.0];
        assert_eq!(
            cholesky_factor(&mut bad, 2),
            Err(NotPositiveDefinite { pivot: 1 })
        );
    }

    #[test]
    fn gram_matches_the_definition() {
        let k = 3;
        let f: Vec<f32> = (0..40_000 * k)
            .map(|i| ((i * 37 % 101) as f32) / 101.0)
            .collect();
        let g = gram(&f, k);
        for a in 0..k {
            for b in 0..k {
                let want: f64 = (0..40_000)
                    .map(|r| f64::from(f[r * k + a]) * f64::from(f[r * k + b]))
                    .sum();
                assert_relative_eq!(f64::from(g[a * k + b]), want, max_relative = 1e-5);
            }
        }
    }

    #[test]
    fn symv_matches_the_row_sum_for_every_block_shape() {
        // k = 77 runs two 32-column blocks, one of 8 and 5 single columns; each output must be
        // the plain Σ_d v_d·g[d][c] in the same order, bit for bit.
        for k in [1, 5, 8, 13, 32, 64, 77] {
            let g: Vec<f32> = (0..k * k)
                .map(|i| ((i * 31 % 97) as f32) / 97.0 - 0.3)
                .collect();
            let v: Vec<f32> = (0..k)
                .map(|i| ((i * 17 % 23) as f32) / 23.0 - 0.5)
                .collect();
            let mut out = vec![f32::NAN; k];
            symv(&g, &v, &mut out, k);
            for (c, &o) in out.iter().enumerate() {
                let mut want = 0.0f32;
                for d in 0..k {
                    want += v[d] * g[d * k + c];
                }
                assert_eq!(o.to_bits(), want.to_bits(), "k {k}, column {c}");
            }
        }
    }

    #[test]
    fn shifted_symv_plus_rows_equals_its_sequence_of_calls() {
        for k in [3, 8, 13, 32, 64, 77] {
            let g: Vec<f32> = (0..k * k)
                .map(|i| ((i * 31 % 97) as f32) / 97.0 - 0.3)
                .collect();
            let v: Vec<f32> = (0..k)
                .map(|i| ((i * 17 % 23) as f32) / 23.0 - 0.5)
                .collect();
            let rows: Vec<f32> = (0..5 * k)
                .map(|i| ((i * 13 % 29) as f32) / 29.0 - 0.4)
                .collect();
            let coefs = [0.7f32, -1.3, 2.1, 0.0, 5.5];
            for negate in [false, true] {
                let mut want = vec![0.0f32; k];
                symv(&g, &v, &mut want, k);
                axpy(0.37, &v, &mut want);
                if negate {
                    want.iter_mut().for_each(|w| *w = -*w);
                }
                for (y, &c) in rows.chunks_exact(k).zip(&coefs) {
                    axpy(c, y, &mut want);
                }
                let mut out = vec![f32::NAN; k];
                shifted_symv_plus_rows(&g, &v, 0.37, negate, &rows, &coefs, &mut out, k);
                let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&out), bits(&want), "k {k}, negate {negate}");
            }
        }
    }

    #[test]
    fn dot_and_axpy() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..19).map(|i| (i % 3) as f32).collect();
        let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert_eq!(dot(&a, &b), want);
        let mut y = b.clone();
        axpy(2.0, &a, &mut y);
        assert_eq!(y[5], 2.0 * 5.0 + 2.0);
    }
}
