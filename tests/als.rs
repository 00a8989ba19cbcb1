//! ALS solvers against brute force: the Cholesky reference solves the full normal equations, CG
//! converges to it, the exact loss never increases, and threads do not change results.

mod common;

use approx::assert_relative_eq;
use encore::als::ShortRows;
use encore::als::cpu::{CpuCg, CpuCholesky};
use encore::als::{self, AlsConfig, Backend, Confidence, Factors, HalfStep, Solver, SolverKind};
use encore::data::csr::Csr;
use encore::util::mix64;

/// A random sparse play-count matrix.
fn random_csr(rows: usize, cols: usize, density_per_mille: u64, seed: u64) -> Csr {
    let mut m = Csr::empty(rows, cols);
    m.indptr.clear();
    m.indptr.push(0);
    for r in 0..rows {
        for c in 0..cols {
            let h = mix64(seed ^ mix64((r * cols + c) as u64));
            if h % 1000 < density_per_mille {
                m.indices.push(c as u32);
                m.data.push(1.0 + (h >> 20) as f32 % 30.0);
            }
        }
        m.indptr.push(m.indices.len() as u64);
    }
    m
}

/// Dense solve of (Σ_all c_ui y yᵀ + λI) x = Σ_all c_ui p_ui y over every item, in f64.
fn brute_force_row(m: &Csr, cfg: &AlsConfig, y: &Factors, u: usize) -> Vec<f64> {
    let k = y.k;
    let mut a = vec![0.0f64; k * k];
    let mut b = vec![0.0f64; k];
    let (cols, vals) = m.row(u);
    for i in 0..y.n {
        let (c, p) = match cols.iter().position(|&j| j as usize == i) {
            Some(pos) => (1.0 + f64::from(cfg.confidence_minus_one(vals[pos])), 1.0),
            None => (1.0, 0.0),
        };
        let yi = y.row(i);
        for d in 0..k {
            b[d] += c * p * f64::from(yi[d]);
            for e in 0..k {
                a[d * k + e] += c * f64::from(yi[d]) * f64::from(yi[e]);
            }
        }
    }
    // Frequency-scaled λ: λ·(max(n_u, 1) / n̄)^ν with n̄ the mean row length (at least 1).
    let mean = (m.nnz() as f64 / m.n_rows as f64).max(1.0);
    let lambda = f64::from(cfg.regularization)
        * (cols.len().max(1) as f64 / mean).powf(f64::from(cfg.reg_exponent));
    for d in 0..k {
        a[d * k + d] += lambda;
    }
    // Gaussian elimination with partial pivoting (independent of the library's Cholesky).
    for col in 0..k {
        let piv = (col..k)
            .max_by(|&i, &j| a[i * k + col].abs().total_cmp(&a[j * k + col].abs()))
            .unwrap();
        for e in 0..k {
            a.swap(col * k + e, piv * k + e);
        }
        b.swap(col, piv);
        for r in col + 1..k {
            let f = a[r * k + col] / a[col * k + col];
            for e in col..k {
                a[r * k + e] -= f * a[col * k + e];
            }
            b[r] -= f * b[col];
        }
    }
    let mut x = vec![0.0; k];
    for r in (0..k).rev() {
        let s: f64 = (r + 1..k).map(|e| a[r * k + e] * x[e]).sum();
        x[r] = (b[r] - s) / a[r * k + r];
    }
    x
}

fn half_step(
    solver: &mut dyn Solver,
    conf: &Csr,
    y: &Factors,
    cfg: &AlsConfig,
    start: &Factors,
) -> Factors {
    let g = als::linalg::gram(&y.data, y.k);
    let mut x = start.clone();
    solver
        .solve(
            &HalfStep {
                conf,
                fixed: y,
                gram: &g,
                regularization: cfg.regularization,
                reg_exponent: cfg.reg_exponent,
                mean_row: None,
            },
            &mut x,
        )
        .unwrap();
    x
}

/// k = 6 with a strong confidence, for the brute-force comparisons.
fn small_cfg() -> AlsConfig {
    AlsConfig {
        factors: 6,
        regularization: 0.05,
        alpha: 3.0,
        ..AlsConfig::default()
    }
}

fn setup() -> (Csr, Csr, AlsConfig, Factors) {
    let m = random_csr(25, 40, 150, 3);
    let cfg = small_cfg();
    let conf = als::prepare(m.clone(), &cfg).by_user;
    let y = Factors::random(40, 6, 11);
    let mut y_big = y.clone();
    for v in &mut y_big.data {
        *v *= 50.0; // realistic magnitudes, not 0.01
    }
    (m, conf, cfg, y_big)
}

#[test]
fn cholesky_matches_a_dense_solve_of_the_full_normal_equations() {
    // Plain λ and frequency-scaled λ (ν = 0.5, 1), each confidence.
    for (confidence, nu) in [
        (Confidence::Log, 0.0),
        (Confidence::Log, 0.5),
        (Confidence::Linear, 0.5),
        (Confidence::Log, 1.0),
    ] {
        let (m, _, mut cfg, y) = setup();
        cfg.confidence = confidence;
        cfg.reg_exponent = nu;
        let conf = als::prepare(m.clone(), &cfg).by_user;
        let x = half_step(&mut CpuCholesky, &conf, &y, &cfg, &Factors::zeros(25, 6));
        for u in 0..25 {
            let want = brute_force_row(&m, &cfg, &y, u);
            for (d, &wd) in want.iter().enumerate() {
                // f32 Gram/GEMM accumulation, f64 factorisation: 1e-3 relative is ample.
                assert_relative_eq!(
                    f64::from(x.row(u)[d]),
                    wd,
                    epsilon = 1e-5,
                    max_relative = 1e-3
                );
            }
        }
    }
}

#[test]
fn cg_approaches_cholesky_as_steps_grow() {
    let (_, conf, cfg, y) = setup();
    let exact = half_step(&mut CpuCholesky, &conf, &y, &cfg, &Factors::zeros(25, 6));
    let err = |steps: usize| {
        let x = half_step(
            &mut CpuCg {
                steps,
                short_rows: ShortRows::Exact,
            },
            &conf,
            &y,
            &cfg,
            &Factors::zeros(25, 6),
        );
        x.data
            .iter()
            .zip(&exact.data)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let e: Vec<f64> = [1, 2, 4, 6, 12].iter().map(|&s| err(s)).collect();
    assert!(e.windows(2).all(|w| w[1] < w[0]), "errors {e:?}");
    let norm = exact
        .data
        .iter()
        .map(|v| f64::from(*v).powi(2))
        .sum::<f64>()
        .sqrt();
    // In exact arithmetic k = 6 steps solve a 6-dimensional system; in f32 on these
    // ill-conditioned rows (large factors, confidences up to ~11) a few more are needed.
    assert!(e[4] < 1e-3 * norm, "errors {e:?}, norm {norm}");
}

#[test]
fn cg_warm_start_from_the_solution_stays_there() {
    let (_, conf, cfg, y) = setup();
    let exact = half_step(&mut CpuCholesky, &conf, &y, &cfg, &Factors::zeros(25, 6));
    let again = half_step(
        &mut CpuCg {
            steps: 3,
            short_rows: ShortRows::Exact,
        },
        &conf,
        &y,
        &cfg,
        &exact,
    );
    for (a, b) in again.data.iter().zip(&exact.data) {
        assert_relative_eq!(*a, *b, epsilon = 1e-4, max_relative = 1e-3);
    }
}

on_every_backend! {
    /// On each device its exact solver (CPU Cholesky, GPU fused Cholesky) never raises the loss.
    fn exact_als_loss_never_increases(dev: Device) {
        let m = random_csr(120, 90, 80, 5);
        let cfg = AlsConfig {
            factors: 8,
            iterations: 8,
            solver: dev.exact_solver(),
            compute_loss: true,
            ..AlsConfig::default()
        };
        let mut backend = dev.backend(&cfg);
        let t = als::train(m.clone(), &cfg, backend.as_mut(), false, |_, _, _, _| Ok(())).unwrap();
        let losses: Vec<f64> = t.iterations.iter().map(|s| s.loss.unwrap()).collect();
        for w in losses.windows(2) {
            assert!(w[1] <= w[0] * (1.0 + 1e-5), "loss rose: {losses:?}");
        }
        assert!(losses[losses.len() - 1] < losses[0]);
    }
}

#[test]
fn loss_matches_its_definition() {
    let (m, conf, cfg, y) = setup();
    let x = Factors::random(25, 6, 2);
    let got = als::loss(&conf, &x, &y, cfg.regularization);
    let mut want = 0.0f64;
    for u in 0..25 {
        let (cols, vals) = m.row(u);
        for i in 0..40 {
            let s: f64 = (0..6)
                .map(|d| f64::from(x.row(u)[d]) * f64::from(y.row(i)[d]))
                .sum();
            let (c, p) = match cols.iter().position(|&j| j as usize == i) {
                Some(pos) => (1.0 + f64::from(cfg.confidence_minus_one(vals[pos])), 1.0),
                None => (1.0, 0.0),
            };
            want += c * (p - s) * (p - s);
        }
    }
    let norms: f64 = x
        .data
        .iter()
        .chain(&y.data)
        .map(|v| f64::from(*v).powi(2))
        .sum();
    want += f64::from(cfg.regularization) * norms;
    assert_relative_eq!(got, want, max_relative = 1e-4);
}

#[test]
fn threads_do_not_change_cholesky_results() {
    let m = random_csr(300, 200, 60, 9);
    let cfg = AlsConfig {
        factors: 16,
        iterations: 3,
        solver: SolverKind::Cholesky,
        ..AlsConfig::default()
    };
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                als::train(
                    m.clone(),
                    &cfg,
                    &mut cpu(CpuCholesky),
                    false,
                    |_, _, _, _| Ok(()),
                )
                .unwrap()
            })
    };
    let a = run(1);
    let b = run(4);
    assert_eq!(a.users, b.users);
    assert_eq!(a.items, b.items);
}

#[test]
fn invalid_settings_are_rejected() {
    let m = random_csr(5, 5, 500, 1);
    for cfg in [
        AlsConfig {
            factors: 0,
            ..AlsConfig::default()
        },
        AlsConfig {
            regularization: -1.0,
            ..AlsConfig::default()
        },
        AlsConfig {
            alpha: f32::NAN,
            ..AlsConfig::default()
        },
        AlsConfig {
            cg_steps: 0,
            ..AlsConfig::default()
        },
    ] {
        assert!(
            als::train(
                m.clone(),
                &cfg,
                &mut cpu(CpuCholesky),
                false,
                |_, _, _, _| Ok(())
            )
            .is_err()
        );
    }
}

#[test]
fn cg_solves_rows_with_few_tracks_exactly_unless_told_to_use_cg() {
    // Rows with at most `steps` tracks take the exact Woodbury path, with plain λ and with
    // frequency-scaled λ (one inverse per row length); `--cg-short-rows cg` runs CG on them
    // too, which from a random start and 1 step is far from exact.
    let m = random_csr(60, 40, 50, 21);
    let (_, _, _, y) = setup();
    let start = Factors::random(60, 6, 5);
    for nu in [0.0, 0.5] {
        let cfg = AlsConfig {
            reg_exponent: nu,
            ..small_cfg()
        };
        let conf = als::prepare(m.clone(), &cfg).by_user;
        for (steps, short_rows) in [(3, ShortRows::Exact), (1, ShortRows::Cg)] {
            let mut solver = CpuCg { steps, short_rows };
            let x = half_step(&mut solver, &conf, &y, &cfg, &start);
            let (mut checked, mut worst) = (0, 0.0f64);
            for u in 0..60 {
                let n = m.row(u).0.len();
                if n == 0 || n > steps {
                    continue;
                }
                checked += 1;
                let want = brute_force_row(&m, &cfg, &y, u);
                for (d, &wd) in want.iter().enumerate() {
                    let err = (f64::from(x.row(u)[d]) - wd).abs() / wd.abs().max(1e-2);
                    worst = worst.max(err);
                }
            }
            assert!(checked > 10, "only {checked} sparse rows");
            match short_rows {
                ShortRows::Exact => assert!(worst < 2e-3, "ν {nu}: worst relative error {worst}"),
                ShortRows::Cg => assert!(worst > 1e-2, "ν {nu}: CG with 1 step was exact"),
            }
        }
    }
}

/// A CPU backend over `solver`.
fn cpu(solver: impl Solver + 'static) -> als::CpuBackend {
    als::CpuBackend::with_solver(Box::new(solver))
}

#[test]
fn overflowing_confidences_are_reported_not_silently_kept() {
    // w = 3e38 · plays overflows to infinity: the CG residual is not finite, which must surface
    // as a numerical error, not as rows that silently keep their previous values.
    // `train` refuses such an alpha up front, so the backend is driven directly.
    let m = random_csr(60, 50, 120, 9);
    let cfg = AlsConfig {
        factors: 6,
        iterations: 2,
        alpha: 3e38,
        confidence: Confidence::Linear,
        solver: SolverKind::Cg,
        ..AlsConfig::default()
    };
    let p = als::prepare(m.clone(), &cfg);
    let mut users = Factors::random(m.n_rows, 6, 1);
    let mut items = Factors::random(m.n_cols, 6, 2);
    let e = cpu(CpuCg {
        steps: 3,
        short_rows: ShortRows::Exact,
    })
    .iterate(&p, &mut users, &mut items)
    .unwrap_err();
    assert!(matches!(e, encore::Error::Numerical(_)), "{e}");
}

#[test]
fn an_alpha_that_makes_confidences_infinite_is_named_not_reported_as_not_positive_definite() {
    let m = random_csr(60, 50, 120, 9);
    let max = m.data.iter().copied().fold(0.0f32, f32::max);
    let run = |cfg: &AlsConfig| {
        als::train(
            m.clone(),
            cfg,
            &mut cpu(CpuCholesky),
            false,
            |_, _, _, _| Ok(()),
        )
        .unwrap_err()
        .to_string()
    };
    let e = run(&AlsConfig {
        alpha: 1e30,
        ..AlsConfig::default()
    });
    assert!(e.contains("--alpha must be in [0, 1e12], got 1e30"), "{e}");
    // Within the flag's range, but too large for these counts under the linear confidence.
    let e = run(&AlsConfig {
        alpha: 1e12,
        confidence: Confidence::Linear,
        ..AlsConfig::default()
    });
    assert!(
        e.contains(&format!(
            "--alpha 1e12 makes the confidence of a play count {max} "
        )),
        "{e}"
    );
    assert!(!e.contains("positive definite"), "{e}");
    // A tiny epsilon overflows r / ε: blamed on --epsilon.
    let e = run(&AlsConfig {
        epsilon: 1e-38,
        ..AlsConfig::default()
    });
    assert!(e.contains("--epsilon") && e.ends_with("infinite"), "{e}");
}

#[test]
fn negative_or_nan_play_counts_are_named() {
    let mut m = random_csr(20, 20, 50, 3);
    m.data[5] = f32::NAN;
    let e = als::train(
        m,
        &AlsConfig::default(),
        &mut cpu(CpuCholesky),
        false,
        |_, _, _, _| Ok(()),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("play count of NaN"), "{e}");
}

/// `bf16_round`: nearest bf16, ties to even, NaN kept, values already bf16 unchanged, and the
/// overflow past bf16's largest finite value goes to infinity (as the GPU's `als_to_bf16`).
#[test]
fn bf16_rounding_is_nearest_even() {
    // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: ties to the even significand, 1.
    assert_eq!(als::bf16_round(1.0 + 1.0 / 256.0), 1.0);
    // 1 + 3·2⁻⁸ is halfway between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶ (even): up.
    assert_eq!(als::bf16_round(1.0 + 3.0 / 256.0), 1.0 + 1.0 / 64.0);
    // Just above the tie rounds up, just below rounds down.
    assert_eq!(als::bf16_round(1.0 + 1.0 / 256.0 + 1e-6), 1.0 + 1.0 / 128.0);
    assert_eq!(als::bf16_round(1.0 + 1.0 / 256.0 - 1e-6), 1.0);
    assert_eq!(als::bf16_round(-0.15625), -0.15625);
    assert_eq!(als::bf16_round(0.0).to_bits(), 0);
    assert_eq!(als::bf16_round(-0.0).to_bits(), (-0.0f32).to_bits());
    assert!(als::bf16_round(f32::NAN).is_nan());
    assert_eq!(als::bf16_round(f32::INFINITY), f32::INFINITY);
    assert_eq!(als::bf16_round(f32::MAX), f32::INFINITY);
    for i in 0..10_000u32 {
        let x = f32::from_bits(mix64(u64::from(i)) as u32);
        if !x.is_finite() {
            continue;
        }
        let r = als::bf16_round(x);
        assert_eq!(r.to_bits() & 0xffff, 0, "{x:e} -> {r:e} is not a bf16");
        if r.is_finite() && x.is_normal() {
            // Half a unit in the last of bf16's 8 significant bits (subnormals have fewer).
            assert!(
                (f64::from(r) - f64::from(x)).abs() <= f64::from(x).abs() / 256.0,
                "{x:e} -> {r:e}"
            );
        }
        assert_eq!(
            als::bf16_round(r).to_bits(),
            r.to_bits(),
            "{x:e}: not idempotent"
        );
    }
}

/// `--precision bf16` on the CPU gathers from a rounded copy: the trained factors differ from
/// fp32 training (the rounding is applied) but only slightly (within 2 %), and the model ranks
/// as well (the training loss within 1 %).
#[test]
fn bf16_training_on_the_cpu_is_close_to_fp32() {
    let (m, _, cfg, _) = setup();
    let run = |precision| {
        let c = AlsConfig {
            precision,
            compute_loss: true,
            ..cfg.clone()
        };
        let mut b = als::CpuBackend::new(&c).unwrap();
        let mut last = None;
        let t = als::train(m.clone(), &c, &mut b, false, |s, _, _, _| {
            last = s.loss;
            Ok(())
        })
        .unwrap();
        (t, last.unwrap())
    };
    let (f, lf) = run(als::Precision::Fp32);
    let (h, lh) = run(als::Precision::Bf16);
    let rel = |a: &Factors, b: &Factors| {
        let num: f64 = a
            .data
            .iter()
            .zip(&b.data)
            .map(|(x, y)| f64::from(x - y).powi(2))
            .sum();
        let den: f64 = b.data.iter().map(|y| f64::from(*y).powi(2)).sum();
        (num / den).sqrt()
    };
    let (du, di) = (rel(&h.users, &f.users), rel(&h.items, &f.items));
    assert!(
        du > 1e-6 && di > 1e-6,
        "bf16 did not change the factors: {du:e}, {di:e}"
    );
    assert!(
        du < 2e-2 && di < 2e-2,
        "bf16 moved the factors too far: {du:e}, {di:e}"
    );
    assert!(
        (lh - lf).abs() <= 0.01 * lf.abs(),
        "loss fp32 {lf} vs bf16 {lh}"
    );
}
