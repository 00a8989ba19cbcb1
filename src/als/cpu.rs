//! CPU solvers for one ALS half-step: exact Cholesky (the reference) and conjugate gradient.
//!
//! For row u with tracks i ∈ u, confidence c_ui = 1 + w_ui and preference 1, the normal equations
//! are (G + λI + Σ_i w_ui y_i y_iᵀ) x_u = Σ_i c_ui y_i with G = YᵀY shared by all rows, so the work
//! per row is O(n_u·k²) for the build (Cholesky) or O(steps·(n_u·k + k²)) (CG), never O(n·k²).
//! Rows are independent; rayon spreads them over threads, each with its own scratch buffers.
//! A row's result does not depend on the thread count, so 1 and N threads agree bit for bit.
//!
//! The per-row kernels are compiled twice by `multiversion` — for AVX2+FMA and for baseline
//! x86-64 — and picked at run time, so one portable binary still runs the hot loops 8 lanes wide.

use multiversion::multiversion;
use rayon::prelude::*;

use crate::als::linalg::{
    add_gram, axpy, cholesky_factor, cholesky_solve, cholesky_substitute, dot,
    shifted_symv_plus_rows, symv,
};
use crate::als::{Factors, HalfStep, ShortRows, Solver};
use crate::error::{Error, Result};

/// Rows handed to a rayon task at a time (amortises scratch set-up; small enough to balance
/// heavy-tailed row lengths).
const ROWS_PER_TASK: usize = 64;

/// Exact per-row solve by Cholesky.
#[derive(Debug, Default, Clone)]
pub struct CpuCholesky;

/// Conjugate gradient warm-started from the current factors (Takács et al. 2011).
#[derive(Debug, Clone)]
pub struct CpuCg {
    pub steps: usize,
    /// Rows with at most `steps` entries: exact (Woodbury) or CG.
    pub short_rows: ShortRows,
}

/// Per-thread buffers, grown to the longest row seen and then reused.
#[derive(Default)]
struct Scratch {
    gathered: Vec<f32>,
    a32: Vec<f32>,
    a64: Vec<f64>,
    b64: Vec<f64>,
    r: Vec<f32>,
    p: Vec<f32>,
    ap: Vec<f32>,
    /// Per-track coefficients of a CG row's correction term.
    coefs: Vec<f32>,
}

fn run_rows<F>(step: &HalfStep<'_>, target: &mut Factors, f: F) -> Result<()>
where
    F: Fn(usize, &mut [f32], &mut Scratch) -> Result<()> + Sync,
{
    let k = target.k;
    if step.conf.n_rows != target.n || step.fixed.k != k || step.conf.n_cols != step.fixed.n {
        return Err(Error::Config(format!(
            "half-step shapes disagree: {}x{} matrix, {} target rows, {} fixed rows, k {} vs {}",
            step.conf.n_rows, step.conf.n_cols, target.n, step.fixed.n, target.k, step.fixed.k
        )));
    }
    target
        .data
        .par_chunks_mut(ROWS_PER_TASK * k)
        .enumerate()
        .try_for_each_init(Scratch::default, |s, (task, rows)| {
            for (j, x) in rows.chunks_mut(k).enumerate() {
                f(task * ROWS_PER_TASK + j, x, s)?;
            }
            Ok(())
        })
}

impl Solver for CpuCholesky {
    fn name(&self) -> String {
        "cholesky".into()
    }

    fn solve(&mut self, step: &HalfStep<'_>, target: &mut Factors) -> Result<()> {
        run_rows(step, target, |u, x, s| {
            let (items, w) = step.conf.row(u);
            cholesky_row(step, items, w, x, s).map_err(|pivot| {
                Error::Numerical(format!(
                    "row {u}: normal equations not positive definite (pivot {pivot}); \
                     raise the regularization"
                ))
            })
        })
    }
}

/// Builds and solves one row's normal equations exactly. Errors with the failing pivot.
#[multiversion(targets("x86_64+avx2+fma"))]
fn cholesky_row(
    step: &HalfStep<'_>,
    items: &[u32],
    w: &[f32],
    x: &mut [f32],
    s: &mut Scratch,
) -> Result<(), usize> {
    let k = x.len();
    if items.is_empty() {
        x.fill(0.0);
        return Ok(());
    }
    // Gather √w_i·y_i so that Σ w_i y_i y_iᵀ = SᵀS is one GEMM.
    s.gathered.resize(items.len() * k, 0.0);
    s.b64.clear();
    s.b64.resize(k, 0.0);
    for ((y, &wi), g) in rows_prefetched(step.fixed, items)
        .zip(w)
        .zip(s.gathered.chunks_exact_mut(k))
    {
        let sw = wi.sqrt();
        let c = f64::from(1.0 + wi);
        for ((gd, &yd), bd) in g.iter_mut().zip(y).zip(s.b64.iter_mut()) {
            *gd = sw * yd;
            *bd += c * f64::from(yd);
        }
    }
    s.a32.clear();
    s.a32.extend_from_slice(step.gram);
    add_gram(&mut s.a32, &s.gathered, items.len(), k);
    s.a64.clear();
    for &v in &s.a32 {
        s.a64.push(f64::from(v));
    }
    let reg = f64::from(step.row_regularization(items.len()));
    for d in 0..k {
        s.a64[d * k + d] += reg;
    }
    cholesky_solve(&mut s.a64, &mut s.b64, k).map_err(|e| e.pivot)?;
    for (xd, &bd) in x.iter_mut().zip(&s.b64) {
        *xd = bd as f32;
    }
    Ok(())
}

impl Solver for CpuCg {
    fn name(&self) -> String {
        match self.short_rows {
            ShortRows::Exact => format!("cg{}", self.steps),
            ShortRows::Cg => format!("cg{}-all", self.steps),
        }
    }

    fn solve(&mut self, step: &HalfStep<'_>, target: &mut Factors) -> Result<()> {
        let steps = self.steps;
        let k = target.k;
        // Rows with at most `steps` tracks are solved exactly by Woodbury from M = (G + λ_n I)⁻¹,
        // which costs n_u matrix-vector products instead of CG's steps + 1. λ_n depends on the
        // row length n only, so there are at most `steps` distinct inverses (one when ν = 0);
        // with --cg-short-rows cg there are none.
        let exact = match self.short_rows {
            ShortRows::Exact => steps,
            ShortRows::Cg => 0,
        };
        let mut inverses: Vec<Vec<f32>> = Vec::with_capacity(exact);
        for n in 1..=exact {
            let reg = step.row_regularization(n);
            if n > 1 && reg == step.row_regularization(n - 1) {
                let last = inverses[n - 2].clone();
                inverses.push(last);
            } else {
                inverses.push(inverse_shifted(step.gram, reg, k)?);
            }
        }
        run_rows(step, target, |u, x, s| {
            let (items, w) = step.conf.row(u);
            let n = items.len();
            if exact > 0 && n <= exact && w.iter().all(|&wi| wi > 0.0) {
                // (An empty row is solved as 0, whichever inverse it is handed.)
                woodbury_row(step, &inverses[n.max(1) - 1], items, w, x, s);
            } else {
                cg_row(step, items, w, x, s, steps);
            }
            Ok(())
        })
    }
}

/// M = (G + λI)⁻¹ (row-major f32), computed in f64: one Cholesky factorisation (k³/3), then
/// one pair of triangular solves per column of the identity (k² each). Serial (once per
/// distinct λ_n and half-step), so compiled for AVX2 too.
#[multiversion(targets("x86_64+avx2+fma"))]
fn inverse_shifted(g: &[f32], reg: f32, k: usize) -> Result<Vec<f32>> {
    let mut factor: Vec<f64> = g.iter().map(|&v| f64::from(v)).collect();
    for d in 0..k {
        factor[d * k + d] += f64::from(reg);
    }
    cholesky_factor(&mut factor, k).map_err(|e| {
        Error::Numerical(format!(
            "YᵀY + λI is not positive definite (pivot {}); raise the regularization",
            e.pivot
        ))
    })?;
    let mut inv = vec![0.0f32; k * k];
    let mut col = vec![0.0f64; k];
    for j in 0..k {
        col.fill(0.0);
        col[j] = 1.0;
        cholesky_substitute(&factor, &mut col, k);
        for (d, &v) in col.iter().enumerate() {
            inv[d * k + j] = v as f32;
        }
    }
    Ok(inv)
}

/// Exact solve for a row with few tracks via the Woodbury identity. With Z = M Yᵀ (k × n),
/// S = Y Z and W = diag(w): A⁻¹ Yᵀ = Z (W⁻¹ + S)⁻¹ W⁻¹, and b = Yᵀ c, so x = Z t where
/// (W⁻¹ + S) t = W⁻¹ c — an n × n system (n ≤ CG steps). Needs every w_i > 0.
#[multiversion(targets("x86_64+avx2+fma"))]
fn woodbury_row(
    step: &HalfStep<'_>,
    m: &[f32],
    items: &[u32],
    w: &[f32],
    x: &mut [f32],
    s: &mut Scratch,
) {
    let k = x.len();
    let n = items.len();
    if n == 0 {
        x.fill(0.0);
        return;
    }
    s.gathered.resize(n * k, 0.0);
    for (&i, z) in items.iter().zip(s.gathered.chunks_exact_mut(k)) {
        symv(m, step.fixed.row(i as usize), z, k);
    }
    s.a64.clear();
    s.a64.resize(n * n, 0.0);
    s.b64.clear();
    for (a, (&i, &wa)) in items.iter().zip(w).enumerate() {
        let ya = step.fixed.row(i as usize);
        for b in 0..n {
            s.a64[a * n + b] = f64::from(dot(ya, &s.gathered[b * k..(b + 1) * k]));
        }
        let inv_w = 1.0 / f64::from(wa);
        s.a64[a * n + a] += inv_w;
        s.b64.push((1.0 + f64::from(wa)) * inv_w);
    }
    if cholesky_solve(&mut s.a64, &mut s.b64, n).is_err() {
        // Cannot happen for w > 0 (W⁻¹ + S is positive definite); fall back to CG to be safe.
        cg_row(step, items, w, x, s, n.max(1));
        return;
    }
    x.fill(0.0);
    for (t, z) in s.b64.iter().zip(s.gathered.chunks_exact(k)) {
        axpy(*t as f32, z, x);
    }
}

/// How many rows ahead the gather prefetches: enough to cover DRAM latency (~100 ns) at a few
/// nanoseconds of work per row.
const PREFETCH_ROWS: usize = 8;

/// The factor rows of `items` in order, prefetching [`PREFETCH_ROWS`] ahead (the rows are
/// scattered over a matrix far larger than cache, so each would otherwise wait on DRAM).
#[inline(always)]
fn rows_prefetched<'a>(f: &'a Factors, items: &'a [u32]) -> impl Iterator<Item = &'a [f32]> {
    items.iter().enumerate().map(move |(j, &i)| {
        if let Some(&ahead) = items.get(j + PREFETCH_ROWS) {
            prefetch_row(f.row(ahead as usize));
        }
        f.row(i as usize)
    })
}

/// Hints the CPU to fetch a factor row into cache (a no-op off x86-64).
#[inline(always)]
fn prefetch_row(row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in row.chunks(16) {
        // SAFETY: `_mm_prefetch` is only a cache hint; it never faults or reads into a register,
        // and the pointer comes from a live slice.
        unsafe {
            std::arch::x86_64::_mm_prefetch(
                line.as_ptr().cast::<i8>(),
                std::arch::x86_64::_MM_HINT_T0,
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// `steps` conjugate-gradient iterations on one row, starting from the current `x`.
#[multiversion(targets("x86_64+avx2+fma"))]
fn cg_row(
    step: &HalfStep<'_>,
    items: &[u32],
    w: &[f32],
    x: &mut [f32],
    s: &mut Scratch,
    steps: usize,
) {
    let k = x.len();
    let reg = step.row_regularization(items.len());
    s.r.resize(k, 0.0);
    s.p.resize(k, 0.0);
    s.ap.resize(k, 0.0);
    // r = b − A x = Σ (c_i − w_i·(y_i·x)) y_i − (G + λI) x.
    // The track rows are scattered over the factor matrix; copy them into one contiguous block
    // while they are in cache, so the CG steps stream from L1/L2 instead of gathering again.
    s.gathered.resize(items.len() * k, 0.0);
    s.coefs.clear();
    for ((y, &wi), g) in rows_prefetched(step.fixed, items)
        .zip(w)
        .zip(s.gathered.chunks_exact_mut(k))
    {
        g.copy_from_slice(y);
        s.coefs.push((1.0 + wi) - wi * dot(y, x));
    }
    shifted_symv_plus_rows(step.gram, x, reg, true, &s.gathered, &s.coefs, &mut s.r, k);
    s.p.copy_from_slice(&s.r);
    let mut rs_old = dot(&s.r, &s.r);
    for _ in 0..steps {
        if !rs_old.is_finite() {
            // Overflowed confidences or factors: poison the row so the iteration's finiteness
            // check reports it instead of the row silently keeping its old value.
            x.fill(f32::NAN);
            return;
        }
        if rs_old < 1e-20 {
            break;
        }
        // Ap = (G + λI) p + Σ w_i (y_i·p) y_i
        // (A loop, not a closure: closures do not inherit the clone's target features.)
        s.coefs.clear();
        for (y, &wi) in s.gathered.chunks_exact(k).zip(w) {
            s.coefs.push(wi * dot(y, &s.p));
        }
        shifted_symv_plus_rows(
            step.gram,
            &s.p,
            reg,
            false,
            &s.gathered,
            &s.coefs,
            &mut s.ap,
            k,
        );
        let pap = dot(&s.p, &s.ap);
        if !pap.is_finite() {
            x.fill(f32::NAN);
            return;
        }
        if pap <= 0.0 {
            break;
        }
        let alpha = rs_old / pap;
        axpy(alpha, &s.p, x);
        axpy(-alpha, &s.ap, &mut s.r);
        let rs_new = dot(&s.r, &s.r);
        let beta = rs_new / rs_old;
        for (pd, &rd) in s.p.iter_mut().zip(&s.r) {
            *pd = rd + beta * *pd;
        }
        rs_old = rs_new;
    }
}
