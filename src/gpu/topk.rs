//! The top-K kernels of `cuda/topk.cu`: embedded PTX, loaded once per scorer, one launch wrapper
//! per kernel owning its launch configuration.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaStream, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;

use crate::error::Result;
use crate::gpu::gpu_err;

/// PTX of `cuda/topk.cu`.
pub const TOPK_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/topk.ptx"));

/// Keys a block sorts in shared memory (`SORT_CAP` in topk.cu): bounds K (running + buffered
/// candidates must fit) and, in the merge, splits × K.
pub const SORT_CAP: usize = 4096;
/// Largest K: the running list plus a full candidate buffer (2048) must fit `SORT_CAP`.
pub const MAX_K: usize = 1024;
/// Threads per selection block: 16 warps keep the tile scan's loads in flight; `BUF_CAP`
/// (2048) − 512 leaves room for one more round of candidates before each flush.
const SELECT_THREADS: u32 = 512;

/// One tile's selection launch.
#[derive(Debug, Clone, Copy)]
pub struct TileArgs {
    /// Row-major scores of the tile: `scores[i·tv + j]` for scored row i and position `tile0 + j`.
    pub scores: u64,
    pub tv: u64,
    pub tile0: u32,
    pub queries: u64,
    pub items: u64,
    pub item_norms: u64,
    /// The largest item norm (a first, cheaper screen).
    pub max_item_norm: f32,
    pub query_norms: u64,
    /// Relative error bound of the screening scores: |screen − exact| ≤ eps·|q|·|y|.
    pub eps: f32,
    pub ex_indptr: u64,
    pub ex_items: u64,
    pub k: usize,
    pub top: usize,
    pub lists: u64,
    pub counts: u64,
    /// Scored rows (grid x): row i is query `slots[i]`, or i when `slots` is 0.
    pub batch: u32,
    pub splits: u32,
    /// Item id of each position (0: the position is the id).
    pub perm: u64,
    /// Query of each scored row (0: identity).
    pub slots: u64,
}

/// Largest batch the fused small-batch scoring kernel takes (`SMALL_MAX` in topk.cu).
pub const SMALL_MAX: usize = 4;
/// Item rows a small-batch scoring block stages (`SMALL_ROWS`, also its thread count).
const SMALL_ROWS: usize = 128;

/// The loaded kernels.
pub struct TopkKernels {
    small: CudaFunction,
    max_shared: usize,
    tile: CudaFunction,
    merge: CudaFunction,
}

impl TopkKernels {
    /// Loads the module.
    pub fn load(ctx: &Arc<CudaContext>) -> Result<Self> {
        let module = ctx
            .load_module(Ptx::from_src(TOPK_PTX))
            .map_err(|e| gpu_err("loading the top-K kernels (PTX)", e))?;
        let f = |name: &str| {
            module
                .load_function(name)
                .map_err(|e| gpu_err(&format!("finding kernel {name}"), e))
        };
        let max_shared = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
            )
            .map_err(|e| gpu_err("cuDeviceGetAttribute", e))?
            .max(0) as usize;
        let small = f("topk_scores_small")?;
        small
            .set_attribute(
                cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                max_shared as i32,
            )
            .map_err(|e| gpu_err("raising the shared-memory limit", e))?;
        Ok(Self {
            small,
            max_shared,
            tile: f("topk_tile")?,
            merge: f("topk_merge")?,
        })
    }

    /// Offers one scored tile to every (query, split) running top-K.
    pub fn tile(&self, s: &CudaStream, a: &TileArgs) -> Result<()> {
        let cfg = LaunchConfig {
            grid_dim: (a.batch, a.splits, 1),
            block_dim: (SELECT_THREADS, 1, 1),
            shared_mem_bytes: (SORT_CAP * 8 + a.k * 4) as u32,
        };
        let (k, top) = (a.k as i32, a.top as i32);
        let mut b = s.launch_builder(&self.tile);
        b.arg(&a.scores)
            .arg(&a.tv)
            .arg(&a.tile0)
            .arg(&a.queries)
            .arg(&a.items)
            .arg(&a.item_norms)
            .arg(&a.max_item_norm)
            .arg(&a.query_norms)
            .arg(&a.eps)
            .arg(&a.ex_indptr)
            .arg(&a.ex_items)
            .arg(&k)
            .arg(&top)
            .arg(&a.lists)
            .arg(&a.counts)
            .arg(&a.perm)
            .arg(&a.slots);
        // SAFETY: arguments match topk_tile in order and type; the scorer sized every buffer for
        // `batch` scored rows of queries in range, `splits` lists of `top` keys each per query, a
        // tile of `tv` items, and `perm` (when set) for every position.
        unsafe { b.launch(cfg) }.map_err(|e| gpu_err("launching topk_tile", e))?;
        Ok(())
    }

    /// Merges each query's split lists into its final top-K.
    #[allow(clippy::too_many_arguments)]
    pub fn merge(
        &self,
        s: &CudaStream,
        lists: u64,
        counts: u64,
        batch: u32,
        splits: u32,
        top: usize,
        out_items: u64,
        out_scores: u64,
        out_counts: u64,
    ) -> Result<()> {
        let cfg = LaunchConfig {
            grid_dim: (batch, 1, 1),
            block_dim: (SELECT_THREADS, 1, 1),
            shared_mem_bytes: (SORT_CAP * 8) as u32,
        };
        let (splits, top) = (splits as i32, top as i32);
        let mut b = s.launch_builder(&self.merge);
        b.arg(&lists)
            .arg(&counts)
            .arg(&splits)
            .arg(&top)
            .arg(&out_items)
            .arg(&out_scores)
            .arg(&out_counts);
        // SAFETY: arguments match topk_merge; splits·top ≤ SORT_CAP (checked by the scorer); the
        // outputs hold batch·top items and scores and batch counts.
        unsafe { b.launch(cfg) }.map_err(|e| gpu_err("launching topk_merge", e))?;
        Ok(())
    }

    /// Whether [`TopkKernels::scores_small`] can take `b` queries of `k` factors.
    pub fn small_fits(&self, b: usize, k: usize) -> bool {
        b <= SMALL_MAX && (SMALL_ROWS * (k + 1) + b * k) * 4 <= self.max_shared
    }

    /// Exact (CPU-chain) scores of `b` ≤ 4 queries against `n` items, query-major into `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn scores_small(
        &self,
        s: &CudaStream,
        items: u64,
        n: u64,
        k: usize,
        queries: u64,
        b: usize,
        out: u64,
        sms: usize,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let shared = (SMALL_ROWS * (k + 1) + b * k) * 4;
        let blocks = n.div_ceil(SMALL_ROWS as u64).min((sms * 16) as u64) as u32;
        let cfg = LaunchConfig {
            grid_dim: (blocks.max(1), 1, 1),
            block_dim: (SMALL_ROWS as u32, 1, 1),
            shared_mem_bytes: shared as u32,
        };
        let (k, b32) = (k as i32, b as i32);
        let mut l = s.launch_builder(&self.small);
        l.arg(&items)
            .arg(&n)
            .arg(&k)
            .arg(&queries)
            .arg(&b32)
            .arg(&out);
        // SAFETY: arguments match topk_scores_small; `items` holds n·k floats (16-byte aligned:
        // a cuMemAlloc base, rows of k floats, k % 4 == 0 for the vector path), `queries` b·k and
        // `out` b·n; the shared size was checked by `small_fits`.
        unsafe { l.launch(cfg) }.map_err(|e| gpu_err("launching topk_scores_small", e))?;
        Ok(())
    }
}
