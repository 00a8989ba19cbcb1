//! The GPU training backend: ALS half-steps as CUDA kernels and cuBLAS calls, with the confidence
//! matrices either resident in device memory or streamed through a double-buffered pipeline.
//!
//! Per half-step: G = YᵀY by cuBLAS SGEMM, then the rows to solve go through the solver in
//! chunks. Solvers (`cuda/als.cu`):
//! - `cg`: one warp per row, conjugate gradient warm-started from the current factors;
//! - `cholesky-fused`: one block per row builds A_u = G + λI + Σ w y yᵀ and b_u in shared memory
//!   and solves by Cholesky there;
//! - `lu` (the original design): the same build written to memory for a batch of rows, solved by
//!   `cublasSgetrfBatched` + `cublasSgetrsBatched`, solutions landing in the factor matrix.
//!
//! Residency: when both CSR copies, both factor matrices and the solver's workspace fit the
//! memory budget (free device memory, or `GpuOptions::memory_budget`), the matrices are uploaded
//! once, during the first iteration, and stay. Otherwise every half-step streams its matrix in
//! chunks: two device buffers and two pinned host staging buffers; while the compute stream
//! solves chunk j, the host fills staging for chunk j+1 and the copy stream uploads it, ordered
//! by events (`uploaded[b]` before the solve on buffer b, `consumed[b]` before buffer b is
//! overwritten). This is what trains a CSR larger than the GPU.
//!
//! Multi-rank (one process per GPU, or several sharing one): [`GpuBackend::sharded`] gives a
//! rank its block of users and of items (balanced by nonzeros, [`crate::dist::balanced_blocks`]);
//! it keeps only those rows of the two matrices (resident or streamed as above), the whole
//! factors, and after solving its rows of a side all-gathers that side through a
//! [`DeviceCollective`] (NCCL, or host-staged). The Gram matrix is either recomputed by every
//! rank from its full copy of the fixed factors ([`GramMode::Replicated`]: the single-GPU
//! trainer's SGEMM, so the factors are bit-identical to it at every world size), or summed from
//! the ranks' partial Gram matrices ([`GramMode::Reduced`]: 1/W of the SGEMM per rank, at the
//! price of a different summation order, so the factors agree with one GPU's to rounding).

use std::ops::Range;
use std::str::FromStr;

use rayon::prelude::*;

use crate::als::{
    AlsConfig, Backend, Factors, Precision, Prepared, SolverKind, TrainDevice, non_finite,
};
use crate::data::csr::Csr;
use crate::dist::collective::Traffic;
use crate::dist::device::DeviceCollective;
use crate::error::{Error, Result};
use crate::gpu::als::{ChunkArgs, SideArgs, bf16_stride};
use crate::gpu::memory::{DeviceBuffer, PinnedBuffer};
use crate::gpu::{Gpu, gpu_err};
use crate::util::human_bytes;

/// Device memory left free for cuBLAS's workspace, the module and the driver's own use.
const RESERVE_BYTES: usize = 768 << 20;
/// Rows per cuBLAS batched-LU call: 32 Ki systems of k = 64 take 512 MiB of workspace.
const LU_MAX_BATCH_ROWS: usize = 32 << 10;
/// Bytes per stored non-zero on the device: a u32 index and an f32 value.
const NNZ_BYTES: usize = 8;
/// Largest streamed chunk, in non-zeros (1 GiB of device and of pinned host memory per buffer):
/// two buffers of this size keep PCIe busy while the other is solved, and larger ones would pin
/// tens of GB of host memory for no gain.
const MAX_CHUNK_NNZ: u64 = (1 << 30) / NNZ_BYTES as u64;

/// How the GPU backend may use the device.
#[derive(Debug, Clone, Copy, Default)]
pub struct GpuOptions {
    /// Bytes of device memory to plan for; `None` = free memory minus a reserve. A small value
    /// forces the streaming path (tests use this).
    pub memory_budget: Option<usize>,
}

/// What the backend decided and moved, for reports.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GpuStats {
    pub device: String,
    /// Whether the matrices stayed in device memory (false: streamed every half-step).
    pub resident: bool,
    /// Chunks per half-step (users, items).
    pub chunks: (usize, usize),
    /// Device bytes Encore allocated (matrices, factors, workspace).
    pub device_bytes: usize,
    /// Device memory in use after set-up, all processes and the CUDA context included.
    pub device_used_bytes: usize,
    pub device_total_bytes: usize,
    /// The device's theoretical DRAM bandwidth (GB/s) and FP32 rate (TFLOP/s).
    pub peak_gb_per_s: f64,
    pub peak_fp32_tflops: f64,
    /// Host→device bytes copied so far.
    pub uploaded_bytes: u64,
    /// Device time of the last iteration's half-steps (users, items), in milliseconds, from
    /// events on the compute stream.
    pub half_step_ms: (f32, f32),
    /// Multi-rank training only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dist: Option<DistStats>,
}

/// What one rank of multi-rank GPU training holds and moves.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DistStats {
    pub world: usize,
    pub rank: usize,
    /// The communicator ("nccl 2.27.3", "host-staged over tcp").
    pub comm: String,
    pub gram: &'static str,
    /// Every rank's rows, users then items.
    pub user_blocks: Vec<[usize; 2]>,
    pub item_blocks: Vec<[usize; 2]>,
    /// This rank's nonzeros (users' matrix, items' matrix).
    pub nnz: (u64, u64),
    pub bytes_sent_last_iteration: u64,
    pub bytes_received_last_iteration: u64,
}

/// How a rank of multi-rank GPU training gets the Gram matrix of the fixed side (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GramMode {
    /// Every rank computes YᵀY from its full copy of Y: no communication, and the single-GPU
    /// trainer's bits.
    #[default]
    Replicated,
    /// Every rank computes the part of its own rows of Y; the parts are summed across ranks.
    Reduced,
}

impl GramMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replicated => "replicated",
            Self::Reduced => "reduced",
        }
    }
}

impl FromStr for GramMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "replicated" => Ok(Self::Replicated),
            "reduced" => Ok(Self::Reduced),
            _ => Err(format!(
                "unknown Gram mode {s:?}: use replicated or reduced"
            )),
        }
    }
}

/// One rank's rows of both sides and how every rank split them.
struct GpuShard {
    /// This rank's rows of the user-major and the item-major matrix; `None` in a world of one,
    /// whose rank holds the whole matrices (no copy of them is made).
    rows: Option<(Csr, Csr)>,
    blocks: (Vec<Range<usize>>, Vec<Range<usize>>),
    rank: usize,
}

impl GpuShard {
    fn cut(p: &Prepared, rank: usize, world: usize) -> Self {
        use crate::dist::backend::{ROW_COST, row_block};
        let users = crate::dist::balanced_blocks(&p.by_user.indptr, world, 1, ROW_COST);
        let items = crate::dist::balanced_blocks(&p.by_item.indptr, world, 1, ROW_COST);
        let rows = (world > 1).then(|| {
            (
                row_block(&p.by_user, users[rank].clone()),
                row_block(&p.by_item, items[rank].clone()),
            )
        });
        Self {
            rows,
            blocks: (users, items),
            rank,
        }
    }

    /// This rank's rows (user-major, item-major) of `p`'s matrices.
    fn matrices<'a>(&'a self, p: &'a Prepared) -> (&'a Csr, &'a Csr) {
        match &self.rows {
            Some((u, i)) => (u, i),
            None => (&p.by_user, &p.by_item),
        }
    }
}

/// One side's matrix when resident.
struct ResidentCsr {
    indptr: DeviceBuffer<u64>,
    indices: DeviceBuffer<u32>,
    conf: DeviceBuffer<f32>,
}

/// A chunk: rows `rows.0..rows.1`, non-zeros `nnz.0..nnz.1` (global).
#[derive(Debug, Clone, Copy)]
struct Chunk {
    rows: (usize, usize),
    nnz: (u64, u64),
}

/// Double buffers of the streaming path.
struct Streaming {
    dev_indptr: [DeviceBuffer<u64>; 2],
    dev_indices: [DeviceBuffer<u32>; 2],
    dev_conf: [DeviceBuffer<f32>; 2],
    host_indptr: [PinnedBuffer<u64>; 2],
    host_indices: [PinnedBuffer<u32>; 2],
    host_conf: [PinnedBuffer<f32>; 2],
    uploaded: [cudarc::driver::CudaEvent; 2],
    consumed: [cudarc::driver::CudaEvent; 2],
}

/// Workspace of the `lu` solver for one batch.
struct LuWork {
    matrices: DeviceBuffer<f32>,
    pivots: DeviceBuffer<i32>,
    info: DeviceBuffer<i32>,
    a_ptrs: DeviceBuffer<u64>,
    b_ptrs: DeviceBuffer<u64>,
    rows: usize,
}

/// Everything allocated on the first iteration.
struct State {
    users: DeviceBuffer<f32>,
    items: DeviceBuffer<f32>,
    gram: DeviceBuffer<f32>,
    /// Set by kernels: 1 = a non-positive pivot (exact solvers) or a failed LU.
    bad_pivot: DeviceBuffer<i32>,
    /// Set by the finiteness check.
    bad_value: DeviceBuffer<i32>,
    /// `Precision::Bf16`: the fixed side of the current half-step as bf16 (rows of
    /// `bf16_stride(k)`), long enough for the larger side.
    shadow: Option<DeviceBuffer<u16>>,
    resident: Option<(ResidentCsr, ResidentCsr)>,
    streaming: Option<Streaming>,
    user_chunks: Vec<Chunk>,
    item_chunks: Vec<Chunk>,
    lu: Option<LuWork>,
    /// Timing events: before the user half-step, between the two, after the item half-step.
    marks: [cudarc::driver::CudaEvent; 3],
}

/// ALS on one GPU.
pub struct GpuBackend {
    gpu: Gpu,
    solver: GpuSolver,
    k: usize,
    precision: Precision,
    options: GpuOptions,
    iteration: usize,
    state: Option<State>,
    pub stats: GpuStats,
    /// Multi-rank training: the communicator, this rank's rows (cut on the first iteration)
    /// and how the Gram matrix is formed.
    comm: Option<Box<dyn DeviceCollective>>,
    shard: Option<GpuShard>,
    gram_mode: GramMode,
}

impl GpuBackend {
    /// A backend for `cfg` on `gpu`; fails for solvers the GPU does not have.
    pub fn new(gpu: Gpu, cfg: &AlsConfig, options: GpuOptions) -> Result<Self> {
        cfg.supports(TrainDevice::Gpu)?;
        let solver = match cfg.solver {
            SolverKind::Lu => GpuSolver::Lu,
            SolverKind::CholeskyFused => GpuSolver::Fused,
            _ => GpuSolver::Cg {
                steps: cfg.cg_steps,
            },
        };
        let stats = GpuStats {
            device: gpu.describe(),
            peak_gb_per_s: gpu.peak_bandwidth / 1e9,
            peak_fp32_tflops: gpu.peak_fp32 / 1e12,
            ..GpuStats::default()
        };
        Ok(Self {
            gpu,
            solver,
            k: cfg.factors,
            precision: cfg.precision,
            options,
            iteration: 0,
            state: None,
            stats,
            comm: None,
            shard: None,
            gram_mode: GramMode::Replicated,
        })
    }

    /// One rank of multi-rank training on `gpu` with `comm` (module docs): every rank must
    /// run the same training (matrices, settings, seed, `gram`) with a communicator of the
    /// same world.
    pub fn sharded(
        gpu: Gpu,
        cfg: &AlsConfig,
        options: GpuOptions,
        comm: Box<dyn DeviceCollective>,
        gram: GramMode,
    ) -> Result<Self> {
        let mut b = Self::new(gpu, cfg, options)?;
        b.stats.dist = Some(DistStats {
            world: comm.world(),
            rank: comm.rank(),
            comm: comm.describe(),
            gram: gram.as_str(),
            ..DistStats::default()
        });
        b.comm = Some(comm);
        b.gram_mode = gram;
        Ok(b)
    }

    /// This rank's rows (users, items), once the first iteration has cut them.
    pub fn blocks(&self) -> Option<(Range<usize>, Range<usize>)> {
        self.shard
            .as_ref()
            .map(|s| (s.blocks.0[s.rank].clone(), s.blocks.1[s.rank].clone()))
    }

    /// The GPU this backend runs on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// [`GpuBackend::setup_within`] the budget, halving it (down to streaming in smaller chunks)
    /// when the device runs out of memory anyway — another process may hold some of it.
    fn setup(&mut self, p: &Prepared, users: &Factors, items: &Factors) -> Result<State> {
        self.gpu.bind()?;
        let (free, total) = self.gpu.memory()?;
        let mut budget = match self.options.memory_budget {
            Some(b) => b.min(free),
            None => free.saturating_sub(RESERVE_BYTES),
        };
        let mut tries = 0;
        loop {
            match self.setup_within(p, users, items, budget) {
                Err(e) if e.is_out_of_memory() && tries < 3 => {
                    tries += 1;
                    budget /= 2;
                    eprintln!(
                        "train: {e}; retrying with a {} budget",
                        human_bytes(budget as u64)
                    );
                }
                Ok(st) => {
                    let (free_now, _) = self.gpu.memory()?;
                    self.stats.device_used_bytes = total - free_now;
                    self.stats.device_total_bytes = total;
                    return Ok(st);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Plans residency and chunks within `budget` bytes, allocates, and uploads factors (and the
    /// resident matrices).
    fn setup_within(
        &mut self,
        p: &Prepared,
        users: &Factors,
        items: &Factors,
        budget: usize,
    ) -> Result<State> {
        let gpu = &self.gpu;
        let k = self.k;
        // This rank's rows (all of them on one GPU).
        let (by_user, by_item) = match &self.shard {
            Some(s) => s.matrices(p),
            None => (&p.by_user, &p.by_item),
        };
        let csr_bytes = |m: &Csr| (m.n_rows + 1) * 8 + m.nnz() * NNZ_BYTES;
        let shadow_len = if self.precision == Precision::Bf16 {
            users.n.max(items.n) * bf16_stride(k)
        } else {
            0
        };
        let factor_bytes =
            (users.data.len() + items.data.len()) * 4 + k * k * 4 + 64 + shadow_len * 2;
        let lu_rows = if self.solver == GpuSolver::Lu {
            LU_MAX_BATCH_ROWS
                .min(by_user.n_rows.max(by_item.n_rows))
                .max(1)
        } else {
            0
        };
        let lu_bytes = |rows: usize| rows * (k * k * 4 + k * 4 + 4 + 16);
        let mut fixed = factor_bytes + lu_bytes(lu_rows);
        if fixed > budget {
            return Err(Error::gpu_internal(format!(
                "the factors and workspace need {} of device memory; {} is available",
                human_bytes(fixed as u64),
                human_bytes(budget as u64)
            )));
        }
        let resident_bytes = csr_bytes(by_user) + csr_bytes(by_item);
        let resident = fixed + resident_bytes <= budget;
        let ctx = &gpu.ctx;
        let lu = if lu_rows > 0 {
            Some(LuWork {
                matrices: DeviceBuffer::new(ctx, lu_rows * k * k, "LU workspace")?,
                pivots: DeviceBuffer::new(ctx, lu_rows * k, "LU pivots")?,
                info: DeviceBuffer::new(ctx, lu_rows, "LU status")?,
                a_ptrs: DeviceBuffer::new(ctx, lu_rows, "LU pointers")?,
                b_ptrs: DeviceBuffer::new(ctx, lu_rows, "LU pointers")?,
                rows: lu_rows,
            })
        } else {
            None
        };
        let shadow = if shadow_len > 0 {
            Some(DeviceBuffer::new(ctx, shadow_len, "bf16 factor copy")?)
        } else {
            None
        };
        let users_dev = DeviceBuffer::from_host(ctx, &users.data, "user factors")?;
        let items_dev = DeviceBuffer::from_host(ctx, &items.data, "item factors")?;
        let mut uploaded = ((users.data.len() + items.data.len()) * 4) as u64;
        let (resident_csr, streaming, user_chunks, item_chunks);
        if resident {
            let up = |m: &Csr, what: &str| -> Result<ResidentCsr> {
                Ok(ResidentCsr {
                    indptr: DeviceBuffer::from_host(ctx, &m.indptr, what)?,
                    indices: DeviceBuffer::from_host(ctx, &m.indices, what)?,
                    conf: DeviceBuffer::from_host(ctx, &m.data, what)?,
                })
            };
            resident_csr = Some((
                up(by_user, "user-major matrix")?,
                up(by_item, "item-major matrix")?,
            ));
            uploaded += resident_bytes as u64;
            streaming = None;
            let cap_rows = if lu_rows > 0 { lu_rows } else { usize::MAX };
            user_chunks = plan_chunks(by_user, u64::MAX, cap_rows)?;
            item_chunks = plan_chunks(by_item, u64::MAX, cap_rows)?;
        } else {
            // Two buffers of `cap_nnz` non-zeros and `cap_rows` rows each fill what is left.
            let avail = budget - fixed;
            let max_rows = by_user.n_rows.max(by_item.n_rows);
            let mut cap_rows = if lu_rows > 0 {
                lu_rows
            } else {
                max_rows.min(1 << 20)
            };
            cap_rows = cap_rows.min(avail / 2 / 8 / 4).max(1);
            let cap_nnz = ((avail / 2).saturating_sub((cap_rows + 1) * 8) / NNZ_BYTES) as u64;
            let longest = longest_row(by_user).max(longest_row(by_item));
            let cap_nnz = cap_nnz.min(MAX_CHUNK_NNZ.max(longest));
            if cap_nnz < longest {
                return Err(Error::gpu_internal(format!(
                    "streaming needs room for the longest row ({longest} non-zeros) twice: at least {} \
                     of device memory; {} is available",
                    human_bytes(
                        (fixed + 2 * ((cap_rows + 1) * 8 + longest as usize * NNZ_BYTES)) as u64
                    ),
                    human_bytes(budget as u64)
                )));
            }
            user_chunks = plan_chunks(by_user, cap_nnz, cap_rows)?;
            item_chunks = plan_chunks(by_item, cap_nnz, cap_rows)?;
            let rows_cap = user_chunks
                .iter()
                .chain(&item_chunks)
                .map(|c| c.rows.1 - c.rows.0)
                .max()
                .unwrap_or(0);
            let nnz_cap = user_chunks
                .iter()
                .chain(&item_chunks)
                .map(|c| c.nnz.1 - c.nnz.0)
                .max()
                .unwrap_or(0) as usize;
            streaming = Some(Streaming {
                dev_indptr: [
                    DeviceBuffer::new(ctx, rows_cap + 1, "chunk row offsets")?,
                    DeviceBuffer::new(ctx, rows_cap + 1, "chunk row offsets")?,
                ],
                dev_indices: [
                    DeviceBuffer::new(ctx, nnz_cap, "chunk indices")?,
                    DeviceBuffer::new(ctx, nnz_cap, "chunk indices")?,
                ],
                dev_conf: [
                    DeviceBuffer::new(ctx, nnz_cap, "chunk values")?,
                    DeviceBuffer::new(ctx, nnz_cap, "chunk values")?,
                ],
                host_indptr: [
                    PinnedBuffer::new(ctx, rows_cap + 1)?,
                    PinnedBuffer::new(ctx, rows_cap + 1)?,
                ],
                host_indices: [
                    PinnedBuffer::new(ctx, nnz_cap)?,
                    PinnedBuffer::new(ctx, nnz_cap)?,
                ],
                host_conf: [
                    PinnedBuffer::new(ctx, nnz_cap)?,
                    PinnedBuffer::new(ctx, nnz_cap)?,
                ],
                uploaded: [gpu.event()?, gpu.event()?],
                consumed: [gpu.event()?, gpu.event()?],
            });
            resident_csr = None;
            fixed += 2 * ((rows_cap + 1) * 8 + nnz_cap * NNZ_BYTES);
        }
        let state = State {
            users: users_dev,
            items: items_dev,
            gram: DeviceBuffer::new(ctx, k * k, "Gram matrix")?,
            bad_pivot: DeviceBuffer::new(ctx, 1, "status flag")?,
            bad_value: DeviceBuffer::new(ctx, 1, "status flag")?,
            shadow,
            resident: resident_csr,
            streaming,
            user_chunks,
            item_chunks,
            lu,
            marks: [timing_event(gpu)?, timing_event(gpu)?, timing_event(gpu)?],
        };
        state.bad_pivot.zero_async(&gpu.stream)?;
        state.bad_value.zero_async(&gpu.stream)?;
        self.stats.resident = resident;
        self.stats.chunks = (state.user_chunks.len(), state.item_chunks.len());
        self.stats.device_bytes = fixed + if resident { resident_bytes } else { 0 };
        self.stats.uploaded_bytes += uploaded;
        Ok(state)
    }
}

/// An event that records time.
fn timing_event(gpu: &Gpu) -> Result<cudarc::driver::CudaEvent> {
    gpu.ctx
        .new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))
        .map_err(|e| gpu_err("creating an event", e))
}

/// The number of non-zeros of the longest row.
fn longest_row(m: &Csr) -> u64 {
    m.indptr.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
}

/// Splits `m`'s rows into consecutive chunks of at most `cap_nnz` non-zeros and `cap_rows` rows.
fn plan_chunks(m: &Csr, cap_nnz: u64, cap_rows: usize) -> Result<Vec<Chunk>> {
    let mut chunks = Vec::new();
    let mut start = 0usize;
    while start < m.n_rows {
        let base = m.indptr[start];
        let mut end = start;
        while end < m.n_rows && end - start < cap_rows && m.indptr[end + 1] - base <= cap_nnz {
            end += 1;
        }
        if end == start {
            return Err(Error::gpu_internal(format!(
                "row {start} has {} non-zeros, more than a chunk holds ({cap_nnz})",
                m.indptr[start + 1] - base
            )));
        }
        chunks.push(Chunk {
            rows: (start, end),
            nnz: (base, m.indptr[end]),
        });
        start = end;
    }
    Ok(chunks)
}

/// Copies `src` into the front of `dst` with all threads (pinned staging of a streamed chunk).
fn par_copy<T: Copy + Send + Sync>(dst: &mut [T], src: &[T]) {
    const PIECE: usize = 1 << 20;
    dst[..src.len()]
        .par_chunks_mut(PIECE)
        .zip(src.par_chunks(PIECE))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

/// The GPU solvers (what [`SolverKind::supports`] admits on the GPU), with their settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GpuSolver {
    Cg { steps: usize },
    Fused,
    Lu,
}

/// Which half-step.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Users,
    Items,
}

impl GpuBackend {
    /// Solves one side: users against items, or items against users.
    fn half_step(&mut self, p: &Prepared, side: Side) -> Result<()> {
        let Some(st) = self.state.as_mut() else {
            return Err(Error::gpu_internal("half-step before set-up"));
        };
        let gpu = &self.gpu;
        let k = self.k;
        let (whole, target, fixed, chunks) = match side {
            Side::Users => (&p.by_user, &st.users, &st.items, &st.user_chunks),
            Side::Items => (&p.by_item, &st.items, &st.users, &st.item_chunks),
        };
        // This rank's rows of the side (`m`, its first row `row_base`), the blocks of every
        // rank of the side solved and of the fixed side; all rows on one GPU.
        let (m, row_base, blocks, fixed_blocks) = match (&self.shard, side) {
            (Some(s), Side::Users) => (
                s.matrices(p).0,
                s.blocks.0[s.rank].start,
                Some(s.blocks.0.clone()),
                Some(&s.blocks.1),
            ),
            (Some(s), Side::Items) => (
                s.matrices(p).1,
                s.blocks.1[s.rank].start,
                Some(s.blocks.1.clone()),
                Some(&s.blocks.0),
            ),
            (None, _) => (whole, 0, None, None),
        };
        match (
            self.gram_mode,
            self.comm.as_mut(),
            fixed_blocks,
            &self.shard,
        ) {
            (GramMode::Reduced, Some(comm), Some(fb), Some(s)) => {
                // This rank's rows of the fixed side, then the sum over ranks.
                let own = &fb[s.rank];
                if own.is_empty() {
                    st.gram.zero_async(&gpu.stream)?;
                } else {
                    gpu.blas
                        .gram(fixed.ptr_at(own.start * k), own.len(), k, st.gram.ptr())?;
                }
                comm.all_reduce_sum(gpu, &st.gram, k * k)?;
            }
            _ => gpu
                .blas
                .gram(fixed.ptr(), fixed.len() / k, k, st.gram.ptr())?,
        }
        let kernels = gpu.als_kernels()?;
        let fixed_bf16 = match &st.shadow {
            Some(sh) => {
                kernels.to_bf16(
                    &gpu.stream,
                    fixed.ptr(),
                    sh.ptr(),
                    (fixed.len() / k) as u64,
                    k,
                )?;
                Some(sh.ptr())
            }
            None => None,
        };
        let side_args = SideArgs {
            fixed: fixed.ptr(),
            fixed_bf16,
            gram: st.gram.ptr(),
            target: target.ptr(),
            k,
            regularization: p.regularization,
            reg_exponent: p.reg_exponent,
            // ν's n̄ is the whole side's mean, not this rank's block's.
            inv_mean_row: (whole.n_rows.max(1) as f64 / whole.nnz().max(whole.n_rows).max(1) as f64)
                as f32,
        };
        let solver = self.solver;
        let solve = |c: &ChunkArgs| -> Result<()> {
            match solver {
                GpuSolver::Cg { steps } => kernels.cg(&gpu.stream, c, &side_args, steps),
                GpuSolver::Fused => kernels.fused(&gpu.stream, c, &side_args, st.bad_pivot.ptr()),
                GpuSolver::Lu => {
                    let lu = st
                        .lu
                        .as_ref()
                        .ok_or_else(|| Error::gpu_internal("lu workspace missing"))?;
                    let n = c.n_rows;
                    if n as usize > lu.rows {
                        return Err(Error::gpu_internal(format!(
                            "lu chunk of {n} rows exceeds its workspace"
                        )));
                    }
                    kernels.build_lu(&gpu.stream, c, &side_args, lu.matrices.ptr())?;
                    kernels.lu_pointers(
                        &gpu.stream,
                        lu.matrices.ptr(),
                        side_args.target,
                        c.row0,
                        k,
                        n,
                        lu.a_ptrs.ptr(),
                        lu.b_ptrs.ptr(),
                    )?;
                    gpu.blas.getrf_batched(
                        k,
                        lu.a_ptrs.ptr(),
                        lu.pivots.ptr(),
                        lu.info.ptr(),
                        n as usize,
                    )?;
                    // A singular matrix (info > 0) leaves NaN/Inf in the solution, which the
                    // finiteness check after the iteration reports; `info` is kept for debugging.
                    gpu.blas.getrs_batched(
                        k,
                        lu.a_ptrs.ptr(),
                        lu.pivots.ptr(),
                        lu.b_ptrs.ptr(),
                        n as usize,
                    )
                }
            }
        };
        if let Some((by_user, by_item)) = &st.resident {
            let r = if side == Side::Users {
                by_user
            } else {
                by_item
            };
            for c in chunks {
                solve(&ChunkArgs {
                    indptr: r.indptr.ptr_at(c.rows.0),
                    nnz_base: 0,
                    indices: r.indices.ptr(),
                    conf: r.conf.ptr(),
                    n_rows: (c.rows.1 - c.rows.0) as u64,
                    row0: (row_base + c.rows.0) as u64,
                })?;
            }
            return self.exchange(side, blocks.as_ref());
        }
        let Some(sm) = st.streaming.as_mut() else {
            return Err(Error::gpu_internal("neither resident nor streaming"));
        };
        let mut uploaded = 0u64;
        for (j, c) in chunks.iter().enumerate() {
            let b = j % 2;
            let (r0, r1) = c.rows;
            let (n0, n1) = (c.nnz.0 as usize, c.nnz.1 as usize);
            // Staging b is free once its previous upload (chunk j − 2) has finished.
            sm.uploaded[b]
                .synchronize()
                .map_err(|e| gpu_err("waiting for an upload", e))?;
            par_copy(sm.host_indptr[b].as_mut_slice(), &m.indptr[r0..=r1]);
            par_copy(sm.host_indices[b].as_mut_slice(), &m.indices[n0..n1]);
            par_copy(sm.host_conf[b].as_mut_slice(), &m.data[n0..n1]);
            // Device buffer b is free once the solve of chunk j − 2 has consumed it.
            gpu.copy
                .wait(&sm.consumed[b])
                .map_err(|e| gpu_err("ordering the copy stream", e))?;
            // SAFETY: staging b is not written again until `uploaded[b]` (recorded right after
            // these copies) has completed, and it lives as long as the backend, whose Drop
            // synchronises both streams before freeing it.
            unsafe {
                sm.dev_indptr[b].upload_async(
                    0,
                    &sm.host_indptr[b].as_slice()[..=r1 - r0],
                    &gpu.copy,
                )?;
                sm.dev_indices[b].upload_async(
                    0,
                    &sm.host_indices[b].as_slice()[..n1 - n0],
                    &gpu.copy,
                )?;
                sm.dev_conf[b].upload_async(
                    0,
                    &sm.host_conf[b].as_slice()[..n1 - n0],
                    &gpu.copy,
                )?;
            }
            sm.uploaded[b]
                .record(&gpu.copy)
                .map_err(|e| gpu_err("recording an event", e))?;
            gpu.stream
                .wait(&sm.uploaded[b])
                .map_err(|e| gpu_err("ordering the compute stream", e))?;
            solve(&ChunkArgs {
                indptr: sm.dev_indptr[b].ptr(),
                nnz_base: c.nnz.0,
                indices: sm.dev_indices[b].ptr(),
                conf: sm.dev_conf[b].ptr(),
                n_rows: (r1 - r0) as u64,
                row0: (row_base + r0) as u64,
            })?;
            sm.consumed[b]
                .record(&gpu.stream)
                .map_err(|e| gpu_err("recording an event", e))?;
            uploaded += ((r1 - r0 + 1) * 8 + (n1 - n0) * NNZ_BYTES) as u64;
        }
        self.stats.uploaded_bytes += uploaded;
        self.exchange(side, blocks.as_ref())
    }

    /// Multi-rank: every rank's freshly solved rows of `side` to every rank.
    fn exchange(&mut self, side: Side, blocks: Option<&Vec<Range<usize>>>) -> Result<()> {
        let (Some(comm), Some(blocks), Some(st)) = (self.comm.as_mut(), blocks, &self.state) else {
            return Ok(());
        };
        let k = self.k;
        let target = if side == Side::Users {
            &st.users
        } else {
            &st.items
        };
        let values: Vec<Range<usize>> = blocks.iter().map(|b| b.start * k..b.end * k).collect();
        comm.all_gather_blocks(&self.gpu, target, &values)
    }

    /// Records timing event `i` on the compute stream.
    fn mark(&self, i: usize) -> Result<()> {
        if let Some(st) = &self.state {
            st.marks[i]
                .record(&self.gpu.stream)
                .map_err(|e| gpu_err("recording an event", e))?;
        }
        Ok(())
    }

    /// Reads the status flags; errors name the iteration.
    fn check(&mut self) -> Result<()> {
        let Some(st) = self.state.as_ref() else {
            return Ok(());
        };
        let gpu = &self.gpu;
        let kernels = gpu.als_kernels()?;
        kernels.check_finite(
            &gpu.stream,
            st.users.ptr(),
            st.users.len() as u64,
            st.bad_value.ptr(),
        )?;
        kernels.check_finite(
            &gpu.stream,
            st.items.ptr(),
            st.items.len() as u64,
            st.bad_value.ptr(),
        )?;
        let mut flags = [0i32; 2];
        st.bad_pivot.download(&mut flags[..1], &gpu.stream)?;
        st.bad_value.download(&mut flags[1..], &gpu.stream)?;
        if flags[0] != 0 {
            return Err(Error::Numerical(format!(
                "a system was not positive definite in iteration {}; raise --regularization",
                self.iteration
            )));
        }
        if flags[1] != 0 {
            return Err(non_finite(self.iteration));
        }
        Ok(())
    }
}

impl GpuBackend {
    /// One iteration (see [`Backend::iterate_checked`]).
    fn iterate_inner(
        &mut self,
        p: &Prepared,
        users: &mut Factors,
        items: &mut Factors,
        between: &dyn Fn() -> Result<()>,
    ) -> Result<()> {
        if let (Some(comm), None) = (&self.comm, &self.shard) {
            self.shard = Some(GpuShard::cut(p, comm.rank(), comm.world()));
        }
        if self.state.is_none() {
            let st = self.setup(p, users, items)?;
            self.state = Some(st);
        }
        let before = self.comm.as_ref().map(|c| c.traffic()).unwrap_or_default();
        self.gpu.bind()?;
        self.mark(0)?;
        self.half_step(p, Side::Users)?;
        self.mark(1)?;
        // Asked while the users' half-step runs on the device (kernel launches are asynchronous);
        // a stop waits for it, so no kernel is still writing when the buffers are freed.
        if let Err(e) = between() {
            let _ = self.gpu.synchronize();
            return Err(e);
        }
        self.half_step(p, Side::Items)?;
        self.mark(2)?;
        self.check()?;
        if let Some(st) = &self.state {
            let ms = |a: usize, b: usize| st.marks[a].elapsed_ms(&st.marks[b]).unwrap_or(f32::NAN);
            self.stats.half_step_ms = (ms(0, 1), ms(1, 2));
        }
        if let (Some(comm), Some(sh), Some(d)) = (&self.comm, &self.shard, self.stats.dist.as_mut())
        {
            let now: Traffic = comm.traffic();
            d.bytes_sent_last_iteration = now.sent - before.sent;
            d.bytes_received_last_iteration = now.received - before.received;
            let span = |b: &[Range<usize>]| b.iter().map(|r| [r.start, r.end]).collect();
            d.user_blocks = span(&sh.blocks.0);
            d.item_blocks = span(&sh.blocks.1);
            let (u, i) = sh.matrices(p);
            d.nnz = (u.nnz() as u64, i.nnz() as u64);
        }
        Ok(())
    }
}

impl Drop for GpuBackend {
    fn drop(&mut self) {
        // After an error, copies or kernels may still be using the buffers: wait for them
        // before the buffers (and then the streams) go.
        let _ = self.gpu.bind().and_then(|_| self.gpu.synchronize());
        self.state.take();
    }
}

impl Backend for GpuBackend {
    fn name(&self) -> String {
        match self.solver {
            GpuSolver::Cg { steps } if self.precision == Precision::Bf16 => {
                format!("cg{steps}-bf16")
            }
            GpuSolver::Cg { steps } => format!("cg{steps}"),
            GpuSolver::Fused => SolverKind::CholeskyFused.as_str().to_string(),
            GpuSolver::Lu => SolverKind::Lu.as_str().to_string(),
        }
    }

    fn device(&self) -> String {
        match &self.comm {
            Some(c) => format!(
                "{} × {} ranks ({})",
                self.gpu.describe(),
                c.world(),
                c.describe()
            ),
            None => self.gpu.describe(),
        }
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
        if users.k != self.k
            || items.k != self.k
            || users.n != p.by_user.n_rows
            || items.n != p.by_item.n_rows
        {
            return Err(Error::Config(format!(
                "GPU backend built for k = {} got {}x{} users and {}x{} items",
                self.k, users.n, users.k, items.n, items.k
            )));
        }
        self.iteration += 1;
        let r = self.iterate_inner(p, users, items, between);
        if let (Err(e), Some(comm)) = (&r, self.comm.as_mut()) {
            // The other ranks stop with this cause (a no-op when the cause was a lost rank).
            comm.abort(&e.to_string());
        }
        r
    }

    fn details(&self) -> serde_json::Value {
        serde_json::to_value(&self.stats).unwrap_or_default()
    }

    fn reset(&mut self) -> Result<()> {
        // As in `drop`: kernels or copies may still use the buffers.
        self.gpu.bind()?;
        self.gpu.synchronize()?;
        self.state = None;
        self.iteration = 0;
        Ok(())
    }

    fn sync_to_host(&mut self, users: &mut Factors, items: &mut Factors) -> Result<()> {
        let Some(st) = self.state.as_ref() else {
            return Ok(());
        };
        self.gpu.bind()?;
        st.users.download(&mut users.data, &self.gpu.stream)?;
        st.items.download(&mut items.data, &self.gpu.stream)
    }
}
