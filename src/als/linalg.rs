//! Small dense kernels for ALS: Gram matrices, gathered rank-k updates and Cholesky solves.
//!
//! Matrix products go through `ndarray::linalg::general_mat_mul` (the `matrixmultiply` crate's
//! blocked, SIMD SGEMM) so the O(n_u·k²) build of each normal equation runs at GEMM speed rather
//! than as n_u scalar rank-1 updates. Factorisation happens in f64: it is O(k³) per row, cheap
//! next to the build, and keeps the reference solver accurate when confidences are large.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

/// Rows per task when summing a Gram matrix in parallel.
const GRAM_ROWS_PER_TASK: usize = 16_384;

/// FᵀF for a row-major `n × k` matrix `f`, as a row-major `k × k` f32 matrix (summed in f64
/// across tasks so the result does not depend on the thread count beyond rounding of each part).
pub fn gram(f: &[f32], k: usize) -> Vec<f32> {
    let n = f.len() / k.max(1);
    if n == 0 {
        return vec![0.0; k * k];
    }
    let parts: Vec<Vec<f32>> = f
        .par_chunks(GRAM_ROWS_PER_TASK * k)
        .map(|chunk| {
            let rows = chunk.len() / k;
            let a = view(chunk, rows, k);
            let mut g = vec![0.0f32; k * k];
            general_mat_mul(1.0, &a.t(), &a, 0.0, &mut view_mut(&mut g, k, k));
            g
        })
        .collect();
    // Sum the parts in a fixed order, in f64.
    let mut acc = vec![0.0f64; k * k];
    for p in &parts {
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

/// `out = g · v` for a symmetric row-major `k × k` matrix `g`, as a sum of scaled rows (each an
/// `axpy` over contiguous memory, which vectorises better than k short dot products).
#[inline(always)]
pub fn symv(g: &[f32], v: &[f32], out: &mut [f32], k: usize) {
    out.fill(0.0);
    for (d, &vd) in v.iter().enumerate().take(k) {
        axpy(vd, &g[d * k..(d + 1) * k], out);
    }
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
