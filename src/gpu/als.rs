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
/// Most warps per block of the CG kernel (`CG_WARPS` in als.cu, its launch bound): one row
/// each. Fewer when a warp's shared memory (its staged rows) would leave too few blocks per SM.
const CG_MAX_WARPS: u32 = 8;
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
    /// The fixed factors as bf16 (n × k rounded up to even, from [`AlsKernels::to_bf16`]): the
    /// CG kernel gathers from this copy when given (`Precision::Bf16`), else from `fixed`.
    pub fixed_bf16: Option<u64>,
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
    // this order and type (cuda/als.cu; the CG kernels' `y` is the fp32 or bf16 copy chosen by
    // `cg`, and their last argument is pushed by `cg`); the callers vouch for the buffers
    // behind the addresses.
    unsafe { b.launch(cfg) }.map_err(|e| gpu_err(&format!("launching {name}"), e))?;
    Ok(())
}

/// The loaded kernels.
pub struct AlsKernels {
    /// CG over fp32 and over bf16 factor rows, for 1, 2, 4 and 8 dimensions per lane.
    cg: [CudaFunction; 4],
    cg_bf16: [CudaFunction; 4],
    to_bf16: CudaFunction,
    multiprocessors: u32,
    fused: CudaFunction,
    build_lu: CudaFunction,
    lu_pointers: CudaFunction,
    check_finite: CudaFunction,
    max_shared: usize,
}

/// Elements per row of a bf16 copy of k-dimensional factors: k rounded up to even, so that
/// every row starts on a 32-bit word (the CG kernel reads bf16 pairs).
pub fn bf16_stride(k: usize) -> usize {
    k + (k & 1)
}

/// Dynamic shared memory of a CG block (the layout in cuda/als.cu's CG section): G when
/// `g_shared` (k² floats, padded to a multiple of 4), then per warp v (k rounded up to 4
/// floats) and 32 staged rows of an odd number of 32-bit words.
fn cg_shared_bytes(k: usize, bf16: bool, g_shared: bool, warps: u32) -> usize {
    let round4 = |n: usize| n.div_ceil(4) * 4;
    let row_words = if bf16 { k.div_ceil(2) } else { k };
    let sw = row_words | 1;
    let g = if g_shared { round4(k * k) } else { 0 };
    4 * (g + warps as usize * (round4(k) + 32 * sw))
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
        let multiprocessors = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| gpu_err("cuDeviceGetAttribute", e))?
            .max(1) as u32;
        let k = Self {
            cg: [
                f("als_cg_p1")?,
                f("als_cg_p2")?,
                f("als_cg_p4")?,
                f("als_cg_p8")?,
            ],
            cg_bf16: [
                f("als_cg_bf16_p1")?,
                f("als_cg_bf16_p2")?,
                f("als_cg_bf16_p4")?,
                f("als_cg_bf16_p8")?,
            ],
            to_bf16: f("als_to_bf16")?,
            multiprocessors,
            fused: f("als_fused_cholesky")?,
            build_lu: f("als_build_lu")?,
            lu_pointers: f("als_lu_pointers")?,
            check_finite: f("als_check_finite")?,
            max_shared,
        };
        for func in [&k.fused, &k.build_lu]
            .into_iter()
            .chain(&k.cg)
            .chain(&k.cg_bf16)
        {
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

    /// Conjugate-gradient solve of the chunk's rows, warm-started from `target`, gathering
    /// from `side.fixed_bf16` when given.
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
        let bf16 = side.fixed_bf16.is_some();
        let func = if bf16 {
            &self.cg_bf16[variant]
        } else {
            &self.cg[variant]
        };
        let (warps, g_shared, blocks_per_sm) = self.cg_launch(func, k, bf16)?;
        let blocks = u64::from(blocks_per_sm) * u64::from(self.multiprocessors);
        let cfg = LaunchConfig {
            // Persistent blocks (each loads G once), at most one row per warp.
            grid_dim: (
                grid(c.n_rows, u64::from(warps)).min(blocks.max(1) as u32),
                1,
                1,
            ),
            block_dim: (warps * 32, 1, 1),
            shared_mem_bytes: cg_shared_bytes(k, bf16, g_shared, warps) as u32,
        };
        let side = SideArgs {
            fixed: side.fixed_bf16.unwrap_or(side.fixed),
            ..*side
        };
        let k32 = k as i32;
        let steps32 = steps as i32;
        let g32 = i32::from(g_shared);
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
            .arg(&steps32)
            .arg(&g32);
        // SAFETY: the arguments match als_cg_p* / als_cg_bf16_p* (cuda/als.cu) in order and
        // type; `fixed` is the fp32 factors or their bf16 copy, as the kernel chosen expects,
        // and the chunk's addresses point into live device buffers of the sizes it describes
        // (the backend's plan). Different warps write disjoint target rows. The shared memory
        // is what the kernel's layout needs for `warps` warps and `g_shared`.
        unsafe { b.launch(cfg) }.map_err(|e| gpu_err("launching als_cg", e))?;
        Ok(())
    }

    /// The CG launch for `k`: warps per block, whether G sits in shared memory, and the blocks
    /// per SM that fit. Picks the most resident warps per SM (G shared on a tie).
    fn cg_launch(&self, func: &CudaFunction, k: usize, bf16: bool) -> Result<(u32, bool, u32)> {
        let mut best: Option<(u32, u32, bool, u32)> = None;
        for g_shared in [true, false] {
            for warps in [CG_MAX_WARPS, 4, 2, 1] {
                let bytes = cg_shared_bytes(k, bf16, g_shared, warps);
                if bytes > self.max_shared {
                    continue;
                }
                let blocks = func
                    .occupancy_max_active_blocks_per_multiprocessor(warps * 32, bytes, None)
                    .map_err(|e| gpu_err("cuOccupancyMaxActiveBlocksPerMultiprocessor", e))?;
                let resident = blocks * warps;
                if blocks > 0 && best.is_none_or(|b| resident > b.0) {
                    best = Some((resident, warps, g_shared, blocks));
                }
            }
        }
        best.map(|(_, w, g, b)| (w, g, b)).ok_or_else(|| {
            Error::Config(format!(
                "k = {k} needs {} bytes of shared memory per warp for cg; this GPU allows {}",
                cg_shared_bytes(k, bf16, false, 1),
                self.max_shared
            ))
        })
    }

    /// Writes `src` (n_rows × k fp32) as bf16 into `dst` (n_rows × [`bf16_stride`]`(k)` u16),
    /// rounded to nearest even, for the CG kernel's `Precision::Bf16` gathers.
    pub fn to_bf16(&self, s: &CudaStream, src: u64, dst: u64, n_rows: u64, k: usize) -> Result<()> {
        let total = n_rows * bf16_stride(k) as u64;
        if total == 0 {
            return Ok(());
        }
        let cfg = LaunchConfig {
            grid_dim: (grid(total, 256 * 8).min(8192), 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let k32 = k as i32;
        let ks = bf16_stride(k) as i32;
        let mut b = s.launch_builder(&self.to_bf16);
        b.arg(&src).arg(&dst).arg(&n_rows).arg(&k32).arg(&ks);
        // SAFETY: arguments match als_to_bf16; `src` holds n_rows·k floats and `dst`
        // n_rows·bf16_stride(k) u16 (the caller's buffers).
        unsafe { b.launch(cfg) }.map_err(|e| gpu_err("launching als_to_bf16", e))?;
        Ok(())
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
