//! The CPU scoring kernels (dot products of queries against item panels, SIMD through
//! matrixmultiply and `multiversion`) over the panel layout: SGEMM for batches, a fused-multiply-add GEMV for a few
//! queries, bit-identical to each other.
//!
//! The scorer stores the item factors as *panels*: tile t (items `t·T .. t·T + w`) is a row-major
//! k × w block, item j of the tile in column j. matrixmultiply packs such a block faster than the
//! transposed view of row-major factors (it reads NR consecutive items per factor), and a GEMV can
//! stream it with every lane doing useful work.
//!
//! Why a GEMV at all: matrixmultiply's micro-kernel is 8 × 8 (AVX2), so a GEMM with one query
//! pads it eightfold and still re-packs the tile; for B = 1 that made one query cost 2.5–4× the
//! GEMV below (200,000 × 64 items, one core: 7–12 ms vs 2.6–3.2 ms). With 8 queries GEMM wins.
//!
//! Why the result is the same either way: with an FMA kernel (AVX2+FMA, or AVX-512 when enabled)
//! matrixmultiply computes each output as one fused chain acc ← fma(q_p, y_p, acc) from acc = 0
//! over p = 0..k for k ≤ its KC block of 256, whatever the matrix shapes. The GEMV runs exactly that
//! chain per item, so it is used only where the chain is what GEMM does: x86-64 with AVX2 and FMA
//! detected, k ≤ 256. Elsewhere every batch goes through GEMM. `tests/infer.rs` pins the
//! equivalence (a query alone and in a batch of 300 get the same answer).

use multiversion::multiversion;
use ndarray::linalg::general_mat_mul;
use rayon::prelude::*;

use crate::als::linalg::{view, view_mut};

/// Largest factor count for which the GEMV reproduces matrixmultiply's accumulation order
/// (its `S_KC`: longer sums are split into 256-long chains and added).
const GEMV_MAX_FACTORS: usize = 256;

/// Largest query chunk scored by GEMV: measured against GEMM on the panel layout (one core,
/// 200,000 × 64 items), GEMV was faster for 1, 2 and 4 queries and slower for 8.
pub const GEMV_MAX_QUERIES: usize = 4;

/// A scoring kernel: `(q, m, k, panel, w, out)` writes the m × w scores of `q` (m × k) against
/// one panel (k × w) into `out`.
pub type Product = fn(&[f32], usize, usize, &[f32], usize, &mut [f32]);

/// Row-major n × k factors rearranged into panels of `tile` items (see the module doc).
pub fn to_panels(rows: &[f32], n: usize, k: usize, tile: usize) -> Vec<f32> {
    let mut panels = vec![0.0f32; n * k];
    panels
        .par_chunks_mut(tile * k)
        .zip(rows.par_chunks(tile * k))
        .for_each(|(panel, src)| {
            let w = src.len() / k;
            for (j, row) in src.chunks_exact(k).enumerate() {
                for (p, &v) in row.iter().enumerate() {
                    panel[p * w + j] = v;
                }
            }
        });
    panels
}

/// Whether [`gemv`] reproduces GEMM bit for bit for `k` factors on this machine.
pub fn gemv_matches_gemm(k: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        k <= GEMV_MAX_FACTORS
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = k;
        false
    }
}

/// `out` (m × w, row-major) = `q` (m × k) · `panel` (k × w), by SGEMM.
pub fn gemm(q: &[f32], m: usize, k: usize, panel: &[f32], w: usize, out: &mut [f32]) {
    general_mat_mul(
        1.0,
        &view(q, m, k),
        &view(panel, k, w),
        0.0,
        &mut view_mut(out, m, w),
    );
}

/// The same product as [`gemm`] as fused chains, streaming each panel row once for all `m`
/// queries. Only its AVX2+FMA clone is fast (elsewhere `mul_add` is a library call); callers
/// check [`gemv_matches_gemm`] first.
#[multiversion(targets("x86_64+avx2+fma"))]
pub fn gemv(q: &[f32], m: usize, k: usize, panel: &[f32], w: usize, out: &mut [f32]) {
    if w == 0 {
        return;
    }
    let out = &mut out[..m * w];
    out.fill(0.0);
    for (p, row) in panel.chunks_exact(w).take(k).enumerate() {
        for (i, o) in out.chunks_exact_mut(w).enumerate() {
            let qp = q[i * k + p];
            for (o, &y) in o.iter_mut().zip(row) {
                *o = qp.mul_add(y, *o);
            }
        }
    }
}
