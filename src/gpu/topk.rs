//! The top-K kernels of `cuda/topk.cu`: embedded PTX, loaded once per scorer, one launch wrapper
//! per kernel owning its launch configuration.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaStream, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;

use crate::error::Result;
use crate::gpu::driver_err;

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
    /// Query-major scores of the tile: `scores[b·tv + j]` for item `tile0 + j`.
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
    pub batch: u32,
    pub splits: u32,
}

/// The loaded kernels.
pub struct TopkKernels {
    tile: CudaFunction,
    merge: CudaFunction,
    norms: CudaFunction,
}

impl TopkKernels {
    /// Loads the module.
    pub fn load(ctx: &Arc<CudaContext>) -> Result<Self> {
        let module = ctx
            .load_module(Ptx::from_src(TOPK_PTX))
            .map_err(|e| driver_err("loading the top-K kernels (PTX)", e))?;
        let f = |name: &str| {
            module
                .load_function(name)
                .map_err(|e| driver_err(&format!("finding kernel {name}"), e))
        };
        Ok(Self {
            tile: f("topk_tile")?,
            merge: f("topk_merge")?,
            norms: f("topk_row_norms")?,
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
            .arg(&a.counts);
        // SAFETY: arguments match topk_tile in order and type; the scorer sized every buffer for
        // `batch` queries, `splits` lists of `top` keys each and a tile of `tv` items.
        unsafe { b.launch(cfg) }.map_err(|e| driver_err("launching topk_tile", e))?;
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
        unsafe { b.launch(cfg) }.map_err(|e| driver_err("launching topk_merge", e))?;
        Ok(())
    }

    /// Row norms (rounded up) of `n` rows of `k` floats.
    pub fn norms(&self, s: &CudaStream, rows: u64, n: u64, k: usize, out: u64) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(256) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let k = k as i32;
        let mut b = s.launch_builder(&self.norms);
        b.arg(&rows).arg(&n).arg(&k).arg(&out);
        // SAFETY: arguments match topk_row_norms; `rows` holds n·k floats, `out` n.
        unsafe { b.launch(cfg) }.map_err(|e| driver_err("launching topk_row_norms", e))?;
        Ok(())
    }
}
