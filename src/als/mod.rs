//! Implicit-feedback matrix factorisation by alternating least squares (Hu, Koren & Volinsky 2008).
//!
//! Play counts r_ui become a preference p_ui = 1 (r_ui > 0) and a confidence
//! c_ui = 1 + α·f(r_ui), with f = log1p(r/ε) (`log`, the default) or f = r (`linear`). Missing
//! pairs have p = 0 and c = 1. The objective
//!
//! L = Σ_{u,i} c_ui (p_ui − x_uᵀy_i)² + λ (Σ_u ‖x_u‖² + Σ_i ‖y_i‖²)
//!
//! is minimised by alternately solving every user with items fixed and every item with users
//! fixed. Each half-step shares one Gram matrix G = YᵀY, so a row costs O(n_u·k²), not O(n·k²).
//!
//! Two seams: [`Solver`] solves one half-step on host data (the CPU solvers in [`cpu`]), and
//! [`Backend`] runs whole iterations on a device — [`CpuBackend`] over a `Solver`, and the GPU
//! backend in [`gpu`], which keeps the matrices and factors in device memory across iterations
//! and copies factors back only when asked.

pub mod cpu;
pub mod foldin;
pub mod gpu;
pub mod linalg;
pub mod model;

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::csr::Csr;
use crate::error::{Error, Result};
use crate::util::{mix64, num};

/// How play counts become confidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Confidence {
    /// c = 1 + α·log(1 + r/ε): dampens heavy repeat listening.
    Log,
    /// c = 1 + α·r (the original paper's choice).
    Linear,
}

/// Which solver runs each half-step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SolverKind {
    /// Exact per-row Cholesky solve (CPU; the reference).
    Cholesky,
    /// Conjugate gradient warm-started from the current factors (CPU and GPU).
    Cg,
    /// GPU: per-row systems built into memory, solved by cuBLAS batched LU.
    Lu,
    /// GPU: one thread block per row builds and Cholesky-solves its system in shared memory.
    CholeskyFused,
}

impl SolverKind {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cholesky => "cholesky",
            Self::Cg => "cg",
            Self::Lu => "lu",
            Self::CholeskyFused => "cholesky-fused",
        }
    }

    /// Every solver, in the order `--help` lists them.
    pub const ALL: [SolverKind; 4] = [Self::Cholesky, Self::Cg, Self::Lu, Self::CholeskyFused];

    /// Whether this solver can train `k` factors on `device`, and if not, why (with what to use
    /// instead). The one place that answers it: backend choice (`--device auto` falls back to
    /// the CPU on an error), [`cpu_solver`] and the GPU backend all ask here.
    pub fn supports(self, device: TrainDevice, k: usize) -> Result<()> {
        use crate::gpu::als::{MAX_CG_FACTORS, MAX_EXACT_FACTORS};
        let no = |m: String| Err(Error::Config(m));
        match (device, self) {
            (TrainDevice::Cpu, Self::Cholesky | Self::Cg) => Ok(()),
            (TrainDevice::Cpu, _) => no(format!(
                "solver {} needs a GPU (--device gpu); the CPU solvers are cholesky and cg",
                self.as_str()
            )),
            (TrainDevice::Gpu, Self::Cholesky) => no(format!(
                "solver {} runs on the CPU only; on the GPU use cholesky-fused (exact), lu or cg",
                self.as_str()
            )),
            (TrainDevice::Gpu, Self::Cg) if k > MAX_CG_FACTORS => no(format!(
                "the GPU cg solver supports at most {MAX_CG_FACTORS} factors (got {k})"
            )),
            (TrainDevice::Gpu, Self::Lu | Self::CholeskyFused) if k > MAX_EXACT_FACTORS => {
                no(format!(
                    "the GPU exact solvers support at most {MAX_EXACT_FACTORS} factors (got {k}); use --solver cg"
                ))
            }
            (TrainDevice::Gpu, _) => Ok(()),
        }
    }
}

impl std::str::FromStr for SolverKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown solver {s:?}: use cholesky, cg, lu or cholesky-fused"))
    }
}

/// The kind of device a training backend runs on (which one, and whether it is usable, is the
/// GPU module's business).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainDevice {
    Cpu,
    Gpu,
}

/// Hyper-parameters of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlsConfig {
    pub factors: usize,
    pub iterations: usize,
    /// λ.
    pub regularization: f32,
    /// α.
    pub alpha: f32,
    pub confidence: Confidence,
    /// ε of the log confidence.
    pub epsilon: f32,
    pub solver: SolverKind,
    pub cg_steps: usize,
    /// How `cg` solves rows with at most `cg_steps` entries (models written before this
    /// option existed used `exact`).
    #[serde(default)]
    pub cg_short_rows: ShortRows,
    /// ν of frequency-scaled regularisation (Rendle et al. 2022): row r is penalised by
    /// λ·(n_r / n̄)^ν, with n_r its entries and n̄ the mean over its side, so ν = 0 is plain λ
    /// and λ keeps its meaning for the average row whatever ν is. Models written before this
    /// option existed trained with ν = 0.
    #[serde(default)]
    pub reg_exponent: f32,
    /// Storage of the gathered factor rows (models written before this option existed: fp32).
    #[serde(default)]
    pub precision: Precision,
    pub seed: u64,
    /// Compute the exact training loss after every iteration.
    pub compute_loss: bool,
}

/// How the factors that a half-step gathers for its rows' correction terms are stored.
///
/// The correction term Σ w_i y_i y_iᵀ reads the fixed side's factor rows once per CG product
/// and entry: on a GPU that gather is most of a half-step's memory traffic. `bf16` reads them
/// from a bf16 copy (rounded to nearest even, made before each half-step): half the bytes. All
/// sums stay fp32, G = YᵀY comes from the fp32 factors, and the solved factors are fp32. The
/// CPU solvers honour it too (they gather from a rounded copy), so both devices train the same
/// model and the GPU stays checked against the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// fp32 factor rows everywhere.
    #[default]
    Fp32,
    /// The gathered factor rows in bf16 (8 exponent bits, 8 significant bits).
    Bf16,
}

impl Precision {
    /// The name used on the command line and in model.json.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Bf16 => "bf16",
        }
    }
}

/// `x` rounded to the nearest bf16 (ties to even), as an f32; NaN stays NaN. The GPU's
/// `als_to_bf16` rounds bit for bit the same way.
pub fn bf16_round(x: f32) -> f32 {
    let b = x.to_bits();
    if x.is_nan() {
        return f32::from_bits((b | 0x0040_0000) & 0xffff_0000);
    }
    let r = b.wrapping_add(0x7fff + ((b >> 16) & 1)) & 0xffff_0000;
    f32::from_bits(r)
}

/// A copy of `f` with every value rounded by [`bf16_round`] (what `Precision::Bf16` gathers).
pub fn bf16_copy(f: &Factors) -> Factors {
    use rayon::prelude::*;
    let mut data = vec![0.0f32; f.data.len()];
    data.par_chunks_mut(1 << 16)
        .zip(f.data.par_chunks(1 << 16))
        .for_each(|(d, s)| {
            for (o, &v) in d.iter_mut().zip(s) {
                *o = bf16_round(v);
            }
        });
    Factors {
        n: f.n,
        k: f.k,
        data,
    }
}

/// How the CPU `cg` solver treats rows with at most `cg_steps` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShortRows {
    /// Solved exactly, by the Woodbury identity from (G + λI)⁻¹: n_r matrix–vector products
    /// instead of CG's steps + 1, and the exact answer.
    #[default]
    Exact,
    /// Conjugate gradient like every other row (what the GPU `cg` solver does).
    Cg,
}

impl Default for AlsConfig {
    /// k = 64, 15 iterations, λ = 10, α = 0.5, log confidence, ν = 0.5, CG with 3 steps.
    ///
    /// Chosen by measurement on real data (issue 15; the sweep tables are in BENCHMARKS.md):
    /// on HetRec 2011 Last.fm and MovieLens 100K (ratings ≥ 3.5), two split seeds each, this
    /// point is within 2.1% of each set's best of a λ × α × ν grid, where the old defaults
    /// (λ = 0.1, α = 2, ν = 0, picked on synthetic data) were 16–30% below. Frequency scaling
    /// (ν = 0.5) is what lets one λ suit both: without it HetRec's best λ/α ridge sits at about
    /// 25 and MovieLens' at about 7.
    fn default() -> Self {
        Self {
            factors: 64,
            iterations: 15,
            regularization: 10.0,
            alpha: 0.5,
            confidence: Confidence::Log,
            epsilon: 1.0,
            solver: SolverKind::Cg,
            cg_steps: 3,
            cg_short_rows: ShortRows::Exact,
            reg_exponent: 0.5,
            precision: Precision::Fp32,
            seed: 42,
            compute_loss: false,
        }
    }
}

impl AlsConfig {
    /// Whether this configuration can train on `device`: the solver at this k
    /// ([`SolverKind::supports`]; every other option runs on both).
    pub fn supports(&self, device: TrainDevice) -> Result<()> {
        self.solver.supports(device, self.factors)?;
        if device == TrainDevice::Gpu
            && self.precision == Precision::Bf16
            && self.solver != SolverKind::Cg
        {
            return Err(Error::Config(format!(
                "--precision bf16 on the GPU is implemented by the cg solver, not {}; use \
                 --solver cg or --precision fp32",
                self.solver.as_str()
            )));
        }
        Ok(())
    }

    /// Rejects settings that cannot train.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        // Confidences and the normal equations are float32, and the solvers multiply them
        // (CG's residual norms are squares): past this the arithmetic overflows or loses the
        // data term entirely, which used to surface as "not positive definite" (issue 13).
        const MAX: f32 = MAX_CONFIDENCE;
        if self.factors == 0 || self.factors > 1024 {
            return bad(format!("--factors must be 1..=1024, got {}", self.factors));
        }
        if !(0.0..=MAX).contains(&self.regularization) {
            return bad(format!(
                "--regularization must be in [0, {MAX:e}], got {}",
                crate::util::num(self.regularization)
            ));
        }
        if !(0.0..=MAX).contains(&self.alpha) {
            return bad(format!(
                "--alpha must be in [0, {MAX:e}], got {}",
                crate::util::num(self.alpha)
            ));
        }
        if !(self.epsilon > 0.0 && self.epsilon.is_finite()) {
            return bad(format!("--epsilon must be > 0, got {}", self.epsilon));
        }
        if !(0.0..=4.0).contains(&self.reg_exponent) {
            return bad(format!(
                "--reg-exponent must be in [0, 4], got {}",
                crate::util::num(self.reg_exponent)
            ));
        }
        if self.solver == SolverKind::Cg && !(1..=1000).contains(&self.cg_steps) {
            return bad(format!(
                "--cg-steps must be 1..=1000, got {}",
                self.cg_steps
            ));
        }
        Ok(())
    }

    /// c − 1 for a play count.
    pub fn confidence_minus_one(&self, plays: f32) -> f32 {
        match self.confidence {
            Confidence::Log => self.alpha * (plays / self.epsilon).ln_1p(),
            Confidence::Linear => self.alpha * plays,
        }
    }
}

/// A row-major `n × k` factor matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Factors {
    pub n: usize,
    pub k: usize,
    pub data: Vec<f32>,
}

impl Factors {
    /// Zeros.
    pub fn zeros(n: usize, k: usize) -> Self {
        Self {
            n,
            k,
            data: vec![0.0; n * k],
        }
    }

    /// Uniform in [0, 0.01), seeded per row so the result does not depend on threads.
    pub fn random(n: usize, k: usize, seed: u64) -> Self {
        let mut data = vec![0.0f32; n * k];
        data.par_chunks_mut(k.max(1))
            .enumerate()
            .for_each(|(r, row)| {
                let mut rng = Pcg64Mcg::seed_from_u64(mix64(seed ^ mix64(r as u64)));
                for v in row {
                    *v = rng.random::<f32>() * 0.01;
                }
            });
        Self { n, k, data }
    }

    /// Row `i`.
    #[inline]
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.k..(i + 1) * self.k]
    }

    /// Whether every value is finite.
    pub fn all_finite(&self) -> bool {
        self.data.par_iter().all(|v| v.is_finite())
    }
}

/// One half-step: solve the rows of `conf` against the `fixed` factors.
pub struct HalfStep<'a> {
    /// Rows to solve; values are c − 1 (the stored pairs all have preference 1).
    pub conf: &'a Csr,
    pub fixed: &'a Factors,
    /// `fixedᵀ·fixed`, row-major k × k.
    pub gram: &'a [f32],
    pub regularization: f32,
    /// ν of frequency-scaled regularisation (0: every row gets `regularization`).
    pub reg_exponent: f32,
    /// n̄ of frequency-scaled regularisation: `None` takes `conf`'s own mean row length; a rank
    /// that solves a block of the rows passes the whole matrix's.
    pub mean_row: Option<f64>,
}

impl HalfStep<'_> {
    /// λ for a row with `n` entries: λ·(max(n, 1) / n̄)^ν, n̄ = the mean row length of the
    /// whole matrix ([`HalfStep::mean_row`], else `conf`'s).
    pub fn row_regularization(&self, n: usize) -> f32 {
        match self.mean_row {
            Some(mean) => scaled_regularization(self.regularization, self.reg_exponent, mean, n),
            None => row_regularization(self.regularization, self.reg_exponent, self.conf, n),
        }
    }
}

/// The mean row length n̄ that frequency-scaled regularisation divides by (at least 1).
pub fn mean_row_length(m: &Csr) -> f64 {
    (m.nnz() as f64 / m.n_rows.max(1) as f64).max(1.0)
}

/// λ·(max(n, 1) / mean)^ν.
pub fn scaled_regularization(reg: f32, exponent: f32, mean: f64, n: usize) -> f32 {
    if exponent == 0.0 {
        return reg;
    }
    (f64::from(reg) * (n.max(1) as f64 / mean).powf(f64::from(exponent))) as f32
}

/// λ·(max(n, 1) / n̄)^ν for a row of `m` with `n` entries (n̄ = nnz / rows of `m`).
pub fn row_regularization(reg: f32, exponent: f32, m: &Csr, n: usize) -> f32 {
    scaled_regularization(reg, exponent, mean_row_length(m), n)
}

/// Solves one side of ALS. CPU and GPU implementations sit behind this seam.
pub trait Solver {
    /// Short name for reports (`cholesky`, `cg3`, ...).
    fn name(&self) -> String;
    /// Overwrites `target` with the solution (CG reads it first as the warm start).
    fn solve(&mut self, step: &HalfStep<'_>, target: &mut Factors) -> Result<()>;
}

/// The CPU solver for `cfg`; the GPU-only solvers are an error that names the CPU ones.
pub fn cpu_solver(cfg: &AlsConfig) -> Result<Box<dyn Solver>> {
    cfg.supports(TrainDevice::Cpu)?;
    Ok(match cfg.solver {
        SolverKind::Cholesky => Box::new(cpu::CpuCholesky),
        _ => Box::new(cpu::CpuCg {
            steps: cfg.cg_steps,
            short_rows: cfg.cg_short_rows,
        }),
    })
}

/// Runs ALS iterations on one device: the CPU/GPU seam of training.
pub trait Backend {
    /// Solver name for reports (`cholesky`, `cg3`, `lu`, `cholesky-fused`).
    fn name(&self) -> String;
    /// Where it runs (`cpu`, or the GPU's name and memory).
    fn device(&self) -> String;
    /// One iteration: users against the items, then items against the users. A backend may keep
    /// the factors elsewhere (device memory); `users`/`items` are then current only after
    /// [`Backend::sync_to_host`]. Fails on non-finite factors, naming the iteration.
    fn iterate(&mut self, p: &Prepared, users: &mut Factors, items: &mut Factors) -> Result<()>;
    /// [`Backend::iterate`] that asks `between` after the users' half-step: an error from it is
    /// returned at once and the items are not solved. This is how a caller stops a long run
    /// between half-steps (Ctrl-C in the Python package), not only between iterations. The
    /// default runs the whole iteration, then asks.
    fn iterate_checked(
        &mut self,
        p: &Prepared,
        users: &mut Factors,
        items: &mut Factors,
        between: &dyn Fn() -> Result<()>,
    ) -> Result<()> {
        self.iterate(p, users, items)?;
        between()
    }
    /// Makes `users` and `items` current on the host.
    fn sync_to_host(&mut self, users: &mut Factors, items: &mut Factors) -> Result<()>;
    /// Backend-specific facts for reports (the GPU's residency, memory and traffic).
    fn details(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Forgets what the backend holds of the previous run (the GPU's uploaded matrices and
    /// factors), so that the next [`Backend::iterate`] starts from the given matrices and
    /// factors: `tune` trains many trials, each resumed from its own host factors, on one
    /// backend rather than opening the device for each.
    fn reset(&mut self) -> Result<()> {
        Ok(())
    }
}

/// The CPU backend: a [`Solver`] for each half-step, factors in host memory.
pub struct CpuBackend {
    pub solver: Box<dyn Solver>,
    /// `Bf16`: each half-step gathers from a rounded copy of the fixed side ([`Precision`]).
    pub precision: Precision,
    iteration: usize,
}

impl CpuBackend {
    /// The CPU backend for `cfg.solver`.
    pub fn new(cfg: &AlsConfig) -> Result<Self> {
        let mut b = Self::with_solver(cpu_solver(cfg)?);
        b.precision = cfg.precision;
        Ok(b)
    }

    /// A CPU backend over any solver.
    pub fn with_solver(solver: Box<dyn Solver>) -> Self {
        Self {
            solver,
            precision: Precision::Fp32,
            iteration: 0,
        }
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        match self.precision {
            Precision::Fp32 => self.solver.name(),
            Precision::Bf16 => format!("{}-bf16", self.solver.name()),
        }
    }

    fn device(&self) -> String {
        "cpu".into()
    }

    fn iterate(&mut self, p: &Prepared, users: &mut Factors, items: &mut Factors) -> Result<()> {
        self.iterate_checked(p, users, items, &|| Ok(()))
    }

    fn iterate_checked(
        &mut self,
        p: &Prepared,
        users: &mut Factors,
        items: &mut Factors,
        between: &dyn Fn() -> Result<()>,
    ) -> Result<()> {
        self.iteration += 1;
        let k = users.k;
        let g = linalg::gram(&items.data, k);
        let rounded = (self.precision == Precision::Bf16).then(|| bf16_copy(items));
        self.solver.solve(
            &HalfStep {
                conf: &p.by_user,
                fixed: rounded.as_ref().unwrap_or(items),
                gram: &g,
                regularization: p.regularization,
                reg_exponent: p.reg_exponent,
                mean_row: None,
            },
            users,
        )?;
        between()?;
        let g = linalg::gram(&users.data, k);
        let rounded = (self.precision == Precision::Bf16).then(|| bf16_copy(users));
        self.solver.solve(
            &HalfStep {
                conf: &p.by_item,
                fixed: rounded.as_ref().unwrap_or(users),
                gram: &g,
                regularization: p.regularization,
                reg_exponent: p.reg_exponent,
                mean_row: None,
            },
            items,
        )?;
        if !users.all_finite() || !items.all_finite() {
            return Err(non_finite(self.iteration));
        }
        Ok(())
    }

    fn sync_to_host(&mut self, _users: &mut Factors, _items: &mut Factors) -> Result<()> {
        Ok(())
    }

    fn reset(&mut self) -> Result<()> {
        self.iteration = 0;
        Ok(())
    }
}

/// The error for factors that became NaN or infinite.
pub fn non_finite(iteration: usize) -> Error {
    Error::Numerical(format!(
        "non-finite factors after iteration {iteration}; lower --alpha or raise --regularization"
    ))
}

/// Timing, loss and (optionally) validation quality of one iteration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IterationStats {
    pub iteration: usize,
    /// Wall-clock seconds of the two half-steps (loss and validation not included).
    pub seconds: f64,
    pub loss: Option<f64>,
    /// Validation precision@K and nDCG@K after this iteration, when asked for.
    pub valid: Option<ValidPoint>,
}

/// Validation metrics at one iteration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValidPoint {
    pub k: usize,
    pub precision: f64,
    pub ndcg: f64,
}

/// A trained model's factors.
#[derive(Debug, Clone)]
pub struct Trained {
    pub users: Factors,
    pub items: Factors,
    pub iterations: Vec<IterationStats>,
}

/// The confidence matrices, user-major and item-major, values c − 1, λ and ν.
pub struct Prepared {
    pub by_user: Csr,
    pub by_item: Csr,
    pub regularization: f32,
    pub reg_exponent: f32,
}

/// The largest confidence c − 1 training accepts (see [`AlsConfig::validate`]).
pub const MAX_CONFIDENCE: f32 = 1e12;

/// Fails unless every play count of `train` is finite and non-negative and gives a confidence
/// that float32 training can use: `--alpha 1e30` is reported as making a play count's
/// confidence infinite (or too large), not later as a matrix that is not positive definite.
/// Confidence grows with the play count, so checking the largest count checks all of them.
pub fn check_confidence(train: &Csr, cfg: &AlsConfig) -> Result<()> {
    if let Some(v) = train
        .data
        .par_iter()
        .find_any(|v| !(v.is_finite() && **v >= 0.0))
    {
        return Err(Error::Numerical(format!(
            "the training matrix holds a play count of {v}; counts must be finite and >= 0"
        )));
    }
    let max = train.data.par_iter().copied().reduce(|| 0.0, f32::max);
    let w = cfg.confidence_minus_one(max);
    if w.is_finite() && w <= MAX_CONFIDENCE {
        return Ok(());
    }
    let (flag, value) = match cfg.confidence {
        Confidence::Log if !(max / cfg.epsilon).is_finite() => ("--epsilon", cfg.epsilon),
        _ => ("--alpha", cfg.alpha),
    };
    let (value, max) = (num(value), num(max));
    Err(Error::Config(if w.is_finite() {
        format!(
            "{flag} {value} makes the confidence of a play count {max} {}, more than the \
             {MAX_CONFIDENCE:e} float32 training can handle; lower --alpha",
            num(w)
        )
    } else {
        format!("{flag} {value} makes the confidence of a play count {max} infinite")
    }))
}

/// Turns play counts into c − 1 and builds the item-major copy.
/// The play counts are turned into c − 1 in place, so training holds one user-major and one
/// item-major matrix, never a third copy.
pub fn prepare(train: Csr, cfg: &AlsConfig) -> Prepared {
    let mut by_user = train;
    by_user
        .data
        .par_iter_mut()
        .for_each(|v| *v = cfg.confidence_minus_one(*v));
    let by_item = by_user.transpose();
    Prepared {
        by_user,
        by_item,
        regularization: cfg.regularization,
        reg_exponent: cfg.reg_exponent,
    }
}

/// [`prepare`] from play counts that are already held both ways (`by_item` the transpose of
/// `by_user`), copying instead of transposing: the confidence is applied entry by entry, so it
/// commutes with the transpose and the result is [`prepare`]'s exactly. For runs that train
/// many configurations on one matrix (`tune`).
pub fn prepare_pair(by_user: &Csr, by_item: &Csr, cfg: &AlsConfig) -> Prepared {
    let conf = |m: &Csr| {
        let mut c = m.clone();
        c.data
            .par_iter_mut()
            .for_each(|v| *v = cfg.confidence_minus_one(*v));
        c
    };
    Prepared {
        by_user: conf(by_user),
        by_item: conf(by_item),
        regularization: cfg.regularization,
        reg_exponent: cfg.reg_exponent,
    }
}

/// The starting user and item factors of a run of `cfg` (uniform in [0, 0.01), seeded by
/// `cfg.seed`): what [`train`] starts from, shared so that a run resumed elsewhere (`tune`)
/// follows the same path as `encore train` with the same settings.
pub fn initial_factors(n_users: usize, n_items: usize, cfg: &AlsConfig) -> (Factors, Factors) {
    (
        Factors::random(n_users, cfg.factors, cfg.seed),
        Factors::random(n_items, cfg.factors, cfg.seed ^ 0x5EED_1735),
    )
}

/// Trains on `train` (users × items play counts, consumed) with `backend`. After each iteration
/// `on_iteration` sees the stats (and may fill in `valid`), the confidence matrices (whose
/// structure is the training matrix's) and the user and item factors. With `observe` false the
/// factors it sees may be stale (a GPU backend copies them back only when asked); with
/// `cfg.compute_loss` or `observe` they are current.
pub fn train(
    train: Csr,
    cfg: &AlsConfig,
    backend: &mut dyn Backend,
    observe: bool,
    on_iteration: impl FnMut(&mut IterationStats, &Prepared, &Factors, &Factors) -> Result<()>,
) -> Result<Trained> {
    train_checked(train, cfg, backend, observe, &|| Ok(()), on_iteration)
}

/// [`train`] that asks `interrupt` before every iteration and between its two half-steps
/// ([`Backend::iterate_checked`]); its error stops training and is returned. The Python
/// package's Ctrl-C and failing callbacks stop a run this way.
pub fn train_checked(
    train: Csr,
    cfg: &AlsConfig,
    backend: &mut dyn Backend,
    observe: bool,
    interrupt: &dyn Fn() -> Result<()>,
    mut on_iteration: impl FnMut(&mut IterationStats, &Prepared, &Factors, &Factors) -> Result<()>,
) -> Result<Trained> {
    cfg.validate()?;
    check_confidence(&train, cfg)?;
    let (n_users, n_items) = (train.n_rows, train.n_cols);
    let p = prepare(train, cfg);
    let (mut users, mut items) = initial_factors(n_users, n_items, cfg);
    let mut stats = Vec::with_capacity(cfg.iterations);
    for it in 1..=cfg.iterations {
        interrupt()?;
        let t = Instant::now();
        backend.iterate_checked(&p, &mut users, &mut items, interrupt)?;
        let seconds = t.elapsed().as_secs_f64();
        if observe || cfg.compute_loss {
            backend.sync_to_host(&mut users, &mut items)?;
        }
        let loss = cfg.compute_loss.then(|| prepared_loss(&p, &users, &items));
        let mut s = IterationStats {
            iteration: it,
            seconds,
            loss,
            valid: None,
        };
        on_iteration(&mut s, &p, &users, &items)?;
        stats.push(s);
    }
    backend.sync_to_host(&mut users, &mut items)?;
    Ok(Trained {
        users,
        items,
        iterations: stats,
    })
}

/// The exact objective of a run, with its per-row regularisation when ν > 0 ([`loss`] with
/// plain λ otherwise).
pub fn prepared_loss(p: &Prepared, users: &Factors, items: &Factors) -> f64 {
    if p.reg_exponent == 0.0 {
        return loss(&p.by_user, users, items, p.regularization);
    }
    let data = loss(&p.by_user, users, items, 0.0);
    let penalty = |m: &Csr, f: &Factors| {
        (0..m.n_rows)
            .into_par_iter()
            .map(|r| {
                let n = (m.indptr[r + 1] - m.indptr[r]) as usize;
                let lam = row_regularization(p.regularization, p.reg_exponent, m, n);
                f64::from(lam)
                    * f.row(r)
                        .iter()
                        .map(|&v| f64::from(v) * f64::from(v))
                        .sum::<f64>()
            })
            .sum::<f64>()
    };
    data + penalty(&p.by_user, users) + penalty(&p.by_item, items)
}

/// The exact objective L, in O(nnz·k + n_users·k²) via the Gram trick:
/// Σ_{all i} (x·y_i)² = xᵀ(YᵀY)x, then correct the observed pairs.
pub fn loss(conf: &Csr, users: &Factors, items: &Factors, reg: f32) -> f64 {
    let k = users.k;
    let g = linalg::gram(&items.data, k);
    let data: f64 = (0..conf.n_rows)
        .into_par_iter()
        .map(|u| {
            let x = users.row(u);
            let mut gx = vec![0.0f32; k];
            for (d, o) in gx.iter_mut().enumerate() {
                *o = linalg::dot(&g[d * k..(d + 1) * k], x);
            }
            let mut l = f64::from(linalg::dot(x, &gx));
            let (cols, w) = conf.row(u);
            for (&i, &wi) in cols.iter().zip(w) {
                let s = f64::from(linalg::dot(x, items.row(i as usize)));
                l += (1.0 + f64::from(wi)) * (1.0 - s) * (1.0 - s) - s * s;
            }
            l
        })
        .sum();
    let norm = |f: &Factors| {
        f.data
            .par_iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
    };
    data + f64::from(reg) * (norm(users) + norm(items))
}
