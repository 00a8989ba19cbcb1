//! The Rust side of `cuda/als.cu`, the training kernels: the embedded PTX, loaded once per context, and one launch
//! wrapper per kernel that owns its launch configuration.
//!
//! A [`ChunkArgs`] names the rows a launch solves: rows `row0..row0 + n_rows` of a CSR matrix
//! whose `indptr` slice (global offsets) and non-zeros (starting at global offset `nnz_base`)
//! are in device memory — the resident matrix or a streamed chunk copy alike.

use std::sync::Arc;

use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
use cudarc::driver::{CudaContext, CudaFunction, CudaStream, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;

use crate::error::{Error, Result};
use crate::gpu::gpu_err;

/// PTX of `cuda/als.cu`, from build.rs (nvcc, or the committed `ptx/als.ptx`).
pub const ALS_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/als.ptx"));

/// Rows per factor tile in the exact solvers' shared memory (`TILE` in als.cu).
const TILE: usize = 32;
/// Threads per block of the CG kernel: 8 warps, one row each (enough to hide load latency with
/// 56–80 registers per thread; see the ptxas report in BENCHMARKS.md).
const CG_THREADS: u32 = 256;
/// Shared memory a block may use without opting in (G of the CG kernel lives here when it fits).
const DEFAULT_SHARED: usize = 48 * 1024;
/// Largest k of the exact solvers: their blocks have (k/4)² threads, at most 1024. What a solver
/// supports is decided in one place, `SolverKind::supports` in the `als` module, from these
/// two limits.
pub const MAX_EXACT_FACTORS: usize = 128;
/// Largest k of the CG kernel: 8 values per lane (`als_cg_p8`).
pub const MAX_CG_FACTORS: usize = 256;

/// The rows one launch solves, as device addresses.
#[derive(Debug, Clone, Copy)]
pub struct ChunkArgs {
    /// Address of the chunk's `n_rows + 1` row offsets (u64, global values).
    pub indptr: u64,
    /// Global offset of the first non-zero at `indices`/`conf`.
    pub nnz_base: u64,
    /// Column indices (u32) and values c − 1 (f32) of the chunk's non-zeros.
    pub indices: u64,
    pub conf: u64,
    pub n_rows: u64,
    /// First row of the chunk in the whole matrix (where its solutions are written).
    pub row0: u64,
}

/// One half-step's fixed side: factors Y (n × k), G = YᵀY (k × k) and the output factors.
#[derive(Debug, Clone, Copy)]
pub struct SideArgs {
    pub fixed: u64,
    pub gram: u64,
    pub target: u64,
    pub k: usize,
    pub regularization: f32,
    /// ν of frequency-scaled regularisation (0: plain λ) and 1 / the mean row length of the
    /// side: row r gets λ·(max(n_r, 1)·inv_mean)^ν, as on the CPU.
    pub reg_exponent: f32,
    pub inv_mean_row: f32,
}

/// Launches a row-solving kernel: every one takes the chunk, the fixed side, k, λ, ν and the
/// inverse mean row length, then one kernel-specific argument (`last`: CG steps, the fused solve's flag, the LU workspace).
fn launch_rows<T: cudarc::driver::DeviceRepr>(
    s: &CudaStream,
    func: &CudaFunction,
    name: &str,
    cfg: LaunchConfig,
    c: &ChunkArgs,
    side: &SideArgs,
    last: T,
) -> Result<()> {
    let k32 = side.k as i32;
    let mut b = s.launch_builder(func);
    b.arg(&c.indptr)
        .arg(&c.nnz_base)
        .arg(&c.indices)
        .arg(&c.conf)
        .arg(&c.n_rows)
        .arg(&c.row0)
        .arg(&side.fixed)
        .arg(&side.gram)
        .arg(&side.target)
        .arg(&k32)
        .arg(&side.regularization)
        .arg(&side.reg_exponent)
        .arg(&side.inv_mean_row)
        .arg(&last);
    // SAFETY: als_cg_p*, als_fused_cholesky and als_build_lu take exactly these arguments in
    // this order and type (cuda/als.cu); the callers vouch for the buffers behind the addresses.
    unsafe { b.launch(cfg) }.map_err(|e| gpu_err(&format!("launching {name}"), e))?;
    Ok(())
}

/// The loaded kernels.
pub struct AlsKernels {
    cg: [CudaFunction; 4],
    fused: CudaFunction,
    build_lu: CudaFunction,
    lu_pointers: CudaFunction,
    check_finite: CudaFunction,
    max_shared: usize,
}

fn grid(n: u64, per_block: u64) -> u32 {
    n.div_ceil(per_block).clamp(1, (1 << 31) - 1) as u32
}

impl AlsKernels {
    /// Loads the module; a driver older than the PTX gets an error that says how to fix it.
    pub fn load(ctx: &Arc<CudaContext>) -> Result<Self> {
        let module = ctx
            .load_module(Ptx::from_src(ALS_PTX))
            .map_err(|e| gpu_err("loading the ALS kernels (PTX)", e))?;
        let f = |name: &str| {
            module
                .load_function(name)
                .map_err(|e| gpu_err(&format!("finding kernel {name}"), e))
        };
        let max_shared = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
            .map_err(|e| gpu_err("cuDeviceGetAttribute", e))?
            .max(0) as usize;
        let k = Self {
            cg: [
                f("als_cg_p1")?,
                f("als_cg_p2")?,
                f("als_cg_p4")?,
                f("als_cg_p8")?,
            ],
            fused: f("als_fused_cholesky")?,
            build_lu: f("als_build_lu")?,
            lu_pointers: f("als_lu_pointers")?,
            check_finite: f("als_check_finite")?,
            max_shared,
        };
        for func in [&k.fused, &k.build_lu] {
            func.set_attribute(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                max_shared as i32,
            )
            .map_err(|e| gpu_err("raising the shared-memory limit", e))?;
        }
        Ok(k)
    }

    /// Shared bytes and threads of the exact solvers' blocks for `k` factors.
    fn exact_launch(&self, k: usize) -> Result<(u32, u32)> {
        let kp = k.div_ceil(4) * 4;
        let a = kp * (kp + 1);
        let floats = a + (4 - a % 4) % 4 + TILE * kp + TILE + 2 * kp;
        let bytes = floats * 4;
        if bytes > self.max_shared {
            return Err(Error::Config(format!(
                "k = {k} needs {bytes} bytes of shared memory per block; this GPU allows {}",
                self.max_shared
            )));
        }
        // (kp/4)² tile owners, at least kp threads (they build b) and a whole number of warps.
        let threads = ((kp / 4) * (kp / 4)).max(kp).max(32).div_ceil(32) * 32;
        Ok((bytes as u32, threads as u32))
    }

    /// Conjugate-gradient solve of the chunk's rows, warm-started from `target`.
    pub fn cg(&self, s: &CudaStream, c: &ChunkArgs, side: &SideArgs, steps: usize) -> Result<()> {
        let k = side.k;
        let variant = match k {
            0..=32 => 0,
            33..=64 => 1,
            65..=128 => 2,
            129..=MAX_CG_FACTORS => 3,
            // Callers asked `SolverKind::supports`, which keeps k within MAX_CG_FACTORS.
            _ => return Err(Error::Config(format!("no als_cg variant for k = {k}"))),
        };
        if c.n_rows == 0 {
            return Ok(());
        }
        let g_bytes = k * k * 4;
        let shared = if g_bytes <= DEFAULT_SHARED {
            g_bytes
        } else {
            0
        };
        let cfg = LaunchConfig {
            grid_dim: (grid(c.n_rows, u64::from(CG_THREADS / 32)), 1, 1),
            block_dim: (CG_THREADS, 1, 1),
            shared_mem_bytes: shared as u32,
        };
        // The chunk's addresses point into live device buffers of the sizes it describes (the
        // backend's plan); different warps write disjoint target rows.
        launch_rows(s, &self.cg[variant], "als_cg", cfg, c, side, steps as i32)
    }

    /// cholesky-fused: build, factor and solve each row in shared memory. Sets `*bad` (device
    /// i32) when a pivot is not positive.
    pub fn fused(&self, s: &CudaStream, c: &ChunkArgs, side: &SideArgs, bad: u64) -> Result<()> {
        self.exact(&self.fused, "als_fused_cholesky", s, c, side, bad)
    }

    /// lu, step 1: each row's A into `work` (n_rows k×k matrices) and b into its target row.
    pub fn build_lu(
        &self,
        s: &CudaStream,
        c: &ChunkArgs,
        side: &SideArgs,
        work: u64,
    ) -> Result<()> {
        self.exact(&self.build_lu, "als_build_lu", s, c, side, work)
    }

    /// Launches one of the block-per-row exact kernels, whose arguments differ only in the last
    /// pointer (`bad` for the fused solve, `work` for the LU build).
    fn exact(
        &self,
        func: &CudaFunction,
        name: &str,
        s: &CudaStream,
        c: &ChunkArgs,
        side: &SideArgs,
        last: u64,
    ) -> Result<()> {
        let (shared, threads) = self.exact_launch(side.k)?;
        if c.n_rows == 0 {
            return Ok(());
        }
        let cfg = LaunchConfig {
            grid_dim: (grid(c.n_rows, 1), 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: shared,
        };
        // `last` is a device i32 flag (fused) or n_rows·k² floats of workspace (LU), allocated
        // by the backend.
        launch_rows(s, func, name, cfg, c, side, last)
    }

    /// lu, step 2: the pointer arrays cuBLAS's batched LU takes.
    #[allow(clippy::too_many_arguments)]
    pub fn lu_pointers(
        &self,
        s: &CudaStream,
        work: u64,
        target: u64,
        row0: u64,
        k: usize,
        n: u64,
        a_ptrs: u64,
        b_ptrs: u64,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let cfg = LaunchConfig {
            grid_dim: (grid(n, 256), 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let k32 = k as i32;
        let mut b = s.launch_builder(&self.lu_pointers);
        b.arg(&work)
            .arg(&target)
            .arg(&row0)
            .arg(&k32)
            .arg(&n)
            .arg(&a_ptrs)
            .arg(&b_ptrs);
        // SAFETY: arguments match als_lu_pointers; the pointer arrays hold n entries each.
        unsafe { b.launch(cfg) }.map_err(|e| gpu_err("launching als_lu_pointers", e))?;
        Ok(())
    }

    /// Sets `*bad` (device i32) when any of the `n` floats at `values` is not finite.
    pub fn check_finite(&self, s: &CudaStream, values: u64, n: u64, bad: u64) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let cfg = LaunchConfig {
            grid_dim: (grid(n, 256 * 8).min(4096), 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = s.launch_builder(&self.check_finite);
        b.arg(&values).arg(&n).arg(&bad);
        // SAFETY: arguments match als_check_finite; `values` holds n floats.
        unsafe { b.launch(cfg) }.map_err(|e| gpu_err("launching als_check_finite", e))?;
        Ok(())
    }
}
