//! The GPU scorer: item factors resident in device memory, tiles of items scored by cuBLAS for a
//! batch of queries, and an exact top-K kernel ([`crate::gpu::topk`]) that keeps a bounded
//! running list per query. The scores matrix is never materialised beyond one tile.
//!
//! Exactness (the CPU scorer is the oracle): the GEMM's scores only screen candidates; every item
//! whose screened score, plus a proven bound on its error, could reach the running K-th best is
//! re-scored on the device with the CPU's own arithmetic (one fused multiply-add chain) and ranked
//! in the CPU's order. The bound: any order of FP32 summation of k products differs from the
//! exact dot product by at most k·u·Σ|q_p y_p| (u = 2⁻²⁴), and Σ|q_p y_p| ≤ |q|·|y|; the
//! re-scored chain obeys the same bound, so |screen − chain| ≤ 2·k·u·|q|·|y|. TF32 screening
//! rounds each input to 10 mantissa bits first, adding at most (2·2⁻¹¹ + 2⁻²²)·Σ|q_p y_p|. The
//! constants below double these for the rounding of the norms and the comparison itself.
//!
//! Norm pruning ([`super::order`]): the items sit on the device in descending norm order, and a
//! batch visits them in blocks that double in size (16 Ki items first). After each block the
//! lists are merged and every query whose K-th best already beats |q|·|y_next| is dropped; the
//! rest are gathered into a smaller batch for the next block. On LFM-1b-scale factors the first
//! block settles almost every query, so a batch reads a few MB of factors instead of 1.3 GB.
//!
//! Large batches go in chunks of at most `max_batch` queries; few queries split the items among
//! several blocks per query (`splits`) whose lists are merged at the end, so one request still
//! uses the whole GPU.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::order::{NormOrder, norm_up, row_norms};
use super::{Ranked, Scorer, validate_query};
use crate::als::Factors;
use crate::error::{Error, Result};
use crate::gpu::memory::DeviceBuffer;
use crate::gpu::topk::{MAX_K, SORT_CAP, TileArgs};
use crate::gpu::{Gpu, gpu_err};

/// Scores buffer per chunk (bytes): a tile is as many items as fit for the chunk's queries.
const SCORE_BUDGET_BYTES: usize = 256 << 20;
/// Smallest default tile (items), so GEMM calls stay large for big batches.
const MIN_TILE: usize = 1 << 16;
/// Queries per chunk by default.
pub const DEFAULT_MAX_BATCH: usize = 1024;
/// Items in a pruned scan's first block (doubling after each block): the 0.06–0.31% of
/// LFM-1b-scale tracks a query needs, measured (see [`super::order`]).
const FIRST_BLOCK: usize = 1 << 14;
/// Fewest items per split in the first block: smaller splits only add merge work.
const MIN_SPLIT_ITEMS: usize = 512;
/// Blocks per SM the selection aims for when choosing splits.
const BLOCKS_PER_SM: usize = 4;

/// How the GPU scorer screens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuScorerOptions {
    /// Screen with TF32 tensor-core GEMM (results stay exact; see the module doc).
    pub tf32: bool,
    /// Items per tile (default: from the batch size and a 256 MiB score buffer).
    pub tile: Option<usize>,
    /// Queries per chunk.
    pub max_batch: usize,
    /// Visit items in descending norm order and stop each query once the rest provably cannot
    /// enter its top-K (exact; see the module doc). Off for unit rows (cosine similarity).
    pub prune: bool,
}

impl Default for GpuScorerOptions {
    fn default() -> Self {
        Self {
            tf32: true,
            tile: None,
            max_batch: DEFAULT_MAX_BATCH,
            prune: true,
        }
    }
}

/// Grow-only device buffers reused across calls.
#[derive(Default)]
struct Work {
    queries: Option<DeviceBuffer<f32>>,
    query_norms: Option<DeviceBuffer<f32>>,
    ex_indptr: Option<DeviceBuffer<u64>>,
    ex_items: Option<DeviceBuffer<u32>>,
    scores: Option<DeviceBuffer<f32>>,
    lists: Option<DeviceBuffer<u64>>,
    counts: Option<DeviceBuffer<i32>>,
    out_items: Option<DeviceBuffer<u32>>,
    out_scores: Option<DeviceBuffer<f32>>,
    out_counts: Option<DeviceBuffer<i32>>,
    active_queries: Option<DeviceBuffer<f32>>,
    slots: Option<DeviceBuffer<u32>>,
}

/// A buffer of at least `len` values (at least one), reallocated only to grow.
fn grow<'a, T: Copy>(
    gpu: &Gpu,
    slot: &'a mut Option<DeviceBuffer<T>>,
    len: usize,
    what: &str,
) -> Result<&'a DeviceBuffer<T>> {
    let len = len.max(1);
    if slot.as_ref().is_none_or(|b| b.len() < len) {
        *slot = None; // free first: the old and new buffer need not coexist
        *slot = Some(DeviceBuffer::new(&gpu.ctx, len, what)?);
    }
    slot.as_ref()
        .ok_or_else(|| Error::gpu_internal(format!("{what}: buffer missing")))
}

struct Inner {
    gpu: Gpu,
    /// Item factors in visiting order (descending norm when pruning).
    items: DeviceBuffer<f32>,
    /// Norm bounds in visiting order.
    norms: DeviceBuffer<f32>,
    /// Item id at each position (pruning only).
    perm: Option<DeviceBuffer<u32>>,
    max_norm: f32,
    work: Work,
}

// SAFETY: the CUDA context, streams, module and cuBLAS handle inside may be used from any thread
// as long as calls do not overlap; `GpuScorer` only touches `Inner` through its Mutex and binds
// the context to the calling thread first.
unsafe impl Send for Inner {}

/// Exact top-K on a GPU.
pub struct GpuScorer {
    n: usize,
    k: usize,
    options: GpuScorerOptions,
    name: String,
    order: Option<NormOrder>,
    scored: AtomicU64,
    inner: Mutex<Inner>,
}

impl GpuScorer {
    /// Uploads `items` to `gpu` and computes their norms there.
    pub fn new(gpu: Gpu, items: &Factors, options: GpuScorerOptions) -> Result<Self> {
        if options.max_batch == 0 || options.tile == Some(0) {
            return Err(Error::Config(
                "GPU scorer: max_batch and tile must be >= 1".into(),
            ));
        }
        if items.k == 0 {
            return Err(Error::Config("the item factors have no columns".into()));
        }
        if u32::try_from(items.n).is_err() {
            return Err(Error::Config(format!("{} items exceed 2^32", items.n)));
        }
        gpu.bind()?;
        // Loaded here, the first time this GPU scores (training never needs them).
        gpu.topk_kernels()?;
        let order = options.prune.then(|| NormOrder::new(items));
        let (dev, norms, perm, max_norm) = match &order {
            Some(o) => {
                let dev =
                    DeviceBuffer::from_host(&gpu.ctx, &o.permute_rows(items), "item factors")?;
                let norms = DeviceBuffer::from_host(&gpu.ctx, &o.norms, "item norms")?;
                let perm = DeviceBuffer::from_host(&gpu.ctx, &o.perm, "item order")?;
                (
                    dev,
                    norms,
                    Some(perm),
                    o.norms.first().copied().unwrap_or(0.0),
                )
            }
            None => {
                let dev = DeviceBuffer::from_host(&gpu.ctx, &items.data, "item factors")?;
                // Rounded up, NaN rows as +∞ (they must not lower the bound).
                let host_norms = row_norms(items);
                let max_norm = host_norms.iter().copied().fold(0.0f32, f32::max);
                let norms = DeviceBuffer::from_host(&gpu.ctx, &host_norms, "item norms")?;
                (dev, norms, None, max_norm)
            }
        };
        let name = format!(
            "gpu ({}{}{})",
            gpu.describe(),
            if options.tf32 { ", TF32 screening" } else { "" },
            if options.prune { ", norm pruning" } else { "" },
        );
        Ok(Self {
            n: items.n,
            k: items.k,
            options,
            name,
            order,
            scored: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                gpu,
                items: dev,
                norms,
                perm,
                max_norm,
                work: Work::default(),
            }),
        })
    }

    /// Relative bound on |screened − exact| per unit of |q|·|y| (module doc), doubled.
    fn eps(&self, tf32: bool) -> f32 {
        let u = 2f64.powi(-24);
        let chains = 2.0 * self.k as f64 * u;
        let tf32 = if tf32 {
            2.0 * 2f64.powi(-11) + 2f64.powi(-22)
        } else {
            0.0
        };
        (2.0 * (chains + tf32) + 1e-6) as f32
    }

    /// One chunk of at most `max_batch` queries.
    fn chunk(
        &self,
        inner: &mut Inner,
        queries: &[f32],
        exclude: Option<&[&[u32]]>,
        top: usize,
    ) -> Result<Vec<Ranked>> {
        let (n, k) = (self.n, self.k);
        let bc = queries.len() / k;
        let Inner {
            gpu,
            items,
            norms,
            perm,
            max_norm,
            work,
        } = inner;
        let gpu: &Gpu = gpu;
        let kernels = gpu.topk_kernels()?;
        let order = self.order.as_ref();
        // Host side: query norms and the exclusion lists (sorted item ids) as CSR.
        let qnorms: Vec<f32> = queries.chunks_exact(k).map(norm_up).collect();
        let mut ex_indptr = Vec::with_capacity(bc + 1);
        ex_indptr.push(0u64);
        let total = exclude.map_or(0, |e| e.iter().map(|l| l.len()).sum());
        let mut ex_items: Vec<u32> = Vec::with_capacity(total);
        for b in 0..bc {
            if let Some(ex) = exclude {
                ex_items.extend_from_slice(ex[b]);
            }
            ex_indptr.push(ex_items.len() as u64);
        }
        let tile = self
            .options
            .tile
            .unwrap_or_else(|| (SCORE_BUDGET_BYTES / 4 / bc).max(MIN_TILE))
            .min(n)
            .max(1);
        let first_block = if order.is_some() {
            FIRST_BLOCK.min(n)
        } else {
            n
        };
        let target_blocks = gpu.multiprocessors * BLOCKS_PER_SM;
        let splits = target_blocks
            .div_ceil(bc)
            .clamp(1, (SORT_CAP / top).clamp(1, 256))
            .min(tile)
            .min(first_block.div_ceil(MIN_SPLIT_ITEMS))
            .max(1);
        let s = &gpu.stream;
        let q_dev = grow(gpu, &mut work.queries, queries.len(), "queries")?.ptr();
        let qn_dev = grow(gpu, &mut work.query_norms, bc, "query norms")?.ptr();
        let exp_dev = grow(gpu, &mut work.ex_indptr, bc + 1, "exclusion offsets")?.ptr();
        let exi_dev = grow(gpu, &mut work.ex_items, ex_items.len(), "exclusions")?.ptr();
        let scores = grow(gpu, &mut work.scores, bc * tile, "score tile")?.ptr();
        let lists = grow(gpu, &mut work.lists, bc * splits * top, "top-K lists")?.ptr();
        let counts_buf = grow(gpu, &mut work.counts, bc * splits, "top-K counts")?;
        counts_buf.zero_async(s)?;
        let counts = counts_buf.ptr();
        let out_items = grow(gpu, &mut work.out_items, bc * top, "results")?.ptr();
        let out_scores = grow(gpu, &mut work.out_scores, bc * top, "results")?.ptr();
        let out_counts = grow(gpu, &mut work.out_counts, bc, "results")?.ptr();
        // Copies and kernels are ordered on the one stream, so these uploads need no wait of
        // their own: their sources (`queries`, `qnorms`, the exclusion CSR) live to the end of
        // this function, past its last synchronisation. (Each wait cost a host round trip; a
        // small batch had seven of them.)
        upload(q_dev, queries, s)?;
        upload(qn_dev, &qnorms, s)?;
        upload(exp_dev, &ex_indptr, s)?;
        upload(exi_dev, &ex_items, s)?;
        let perm_dev = perm.as_ref().map_or(0, |p| p.ptr());
        let merge = || {
            kernels.merge(
                s,
                lists,
                counts,
                bc as u32,
                splits as u32,
                top,
                out_items,
                out_scores,
                out_counts,
            )
        };
        // Scores positions [from, to) for `rows` queries (their vectors at `q_rows`, row i being
        // query slots[i]) tile by tile and offers them to the running lists.
        let run_tiles = |from: usize, to: usize, rows: usize, q_rows: u64, slots: u64| {
            let small = kernels.small_fits(rows, k);
            let eps = self.eps(self.options.tf32 && !small);
            let mut tile0 = from;
            while tile0 < to {
                let tv = tile.min(to - tile0);
                if small {
                    kernels.scores_small(
                        s,
                        items.ptr_at(tile0 * k),
                        tv as u64,
                        k,
                        q_rows,
                        rows,
                        scores,
                        gpu.multiprocessors,
                    )?;
                } else {
                    gpu.blas.scores(
                        items.ptr_at(tile0 * k),
                        tv,
                        q_rows,
                        rows,
                        k,
                        scores,
                        self.options.tf32,
                    )?;
                }
                kernels.tile(
                    s,
                    &TileArgs {
                        scores,
                        tv: tv as u64,
                        tile0: tile0 as u32,
                        queries: q_dev,
                        items: items.ptr(),
                        item_norms: norms.ptr(),
                        max_item_norm: *max_norm,
                        query_norms: qn_dev,
                        eps,
                        ex_indptr: exp_dev,
                        ex_items: exi_dev,
                        k,
                        top,
                        lists,
                        counts,
                        batch: rows as u32,
                        splits: splits as u32,
                        perm: perm_dev,
                        slots,
                    },
                )?;
                tile0 += tv;
            }
            Ok::<(), Error>(())
        };
        let mut ids = vec![0u32; bc * top];
        let mut sc = vec![0f32; bc * top];
        let mut cnt = vec![0i32; bc];
        let mut active: Vec<u32> = (0..bc as u32).collect();
        // The unsettled queries' vectors: rewritten only after the synchronisation that follows
        // their upload, so the copy never reads a changed buffer.
        let mut gathered: Vec<f32> = Vec::new();
        let (mut q_rows, mut slots) = (q_dev, 0u64);
        let (mut from, mut block) = (0usize, first_block);
        let mut merged = false;
        while from < n && !active.is_empty() {
            let to = (from + block).min(n);
            run_tiles(from, to, active.len(), q_rows, slots)?;
            self.scored
                .fetch_add((active.len() * (to - from)) as u64, Ordering::Relaxed);
            from = to;
            block = block.saturating_mul(2);
            merged = false;
            let Some(o) = order.filter(|_| from < n) else {
                continue;
            };
            // Which queries are settled: merge the lists so far and test each K-th best.
            merge()?;
            download(&mut sc, out_scores, s)?;
            download(&mut cnt, out_counts, s)?;
            s.synchronize()
                .map_err(|e| gpu_err("waiting for the running top-K", e))?;
            merged = true;
            let before = active.len();
            active.retain(|&b| {
                let b = b as usize;
                !(cnt[b] as usize == top && o.settled(sc[b * top + top - 1], qnorms[b], from, k))
            });
            if !active.is_empty() && active.len() < before {
                // Gather the unsettled queries into a smaller batch.
                gathered.clear();
                for &b in &active {
                    let b = b as usize;
                    gathered.extend_from_slice(&queries[b * k..(b + 1) * k]);
                }
                q_rows = grow(gpu, &mut work.active_queries, gathered.len(), "queries")?.ptr();
                slots = grow(gpu, &mut work.slots, active.len(), "query slots")?.ptr();
                upload(q_rows, &gathered, s)?;
                upload(slots, &active, s)?;
            }
        }
        if !merged {
            merge()?;
        }
        download(&mut ids, out_items, s)?;
        download(&mut sc, out_scores, s)?;
        download(&mut cnt, out_counts, s)?;
        s.synchronize()
            .map_err(|e| gpu_err("waiting for top-K results", e))?;
        Ok((0..bc)
            .map(|b| {
                let c = (cnt[b].max(0) as usize).min(top);
                Ranked {
                    items: ids[b * top..b * top + c].to_vec(),
                    scores: sc[b * top..b * top + c].to_vec(),
                }
            })
            .collect())
    }
}

/// Queues a copy of `src` to the device address `dst` on `s`, without waiting. The caller keeps
/// `src` alive and unchanged until it next synchronises `s`. (From pageable memory, as here,
/// the driver stages the bytes before returning anyway; the rule keeps this sound for pinned
/// memory too. On an early error return the stream is left running, which pageable staging
/// makes harmless.)
fn upload<T: Copy>(dst: u64, src: &[T], s: &cudarc::driver::CudaStream) -> Result<()> {
    if src.is_empty() {
        return Ok(());
    }
    // SAFETY: `dst` is a live buffer of at least src.len() values (grown by the caller); the
    // caller keeps `src` unchanged until its next synchronisation of `s` (see above).
    unsafe { cudarc::driver::result::memcpy_htod_async(dst, src, s.cu_stream()) }
        .map_err(|e| gpu_err("host-to-device copy", e))
}

/// Queues a copy of `dst.len()` values from device address `src` (wait on the stream after).
fn download<T: Copy>(dst: &mut [T], src: u64, s: &cudarc::driver::CudaStream) -> Result<()> {
    if dst.is_empty() {
        return Ok(());
    }
    // SAFETY: `src` holds at least dst.len() values; the caller synchronises before reading dst.
    unsafe { cudarc::driver::result::memcpy_dtoh_async(dst, src, s.cu_stream()) }
        .map_err(|e| gpu_err("device-to-host copy", e))
}

impl Scorer for GpuScorer {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn n_items(&self) -> usize {
        self.n
    }

    fn n_factors(&self) -> usize {
        self.k
    }

    fn items_scored(&self) -> Option<u64> {
        Some(self.scored.load(Ordering::Relaxed))
    }

    fn max_k(&self) -> usize {
        MAX_K
    }

    fn top_k(&self, queries: &[f32], exclude: Option<&[&[u32]]>, k: usize) -> Result<Vec<Ranked>> {
        let b = validate_query(self.n, self.k, queries, exclude, k)?;
        if k > self.max_k() {
            return Err(Error::Config(format!(
                "the GPU scorer returns at most {MAX_K} items per query (k = {k})"
            )));
        }
        if b == 0 {
            return Ok(Vec::new());
        }
        if self.n == 0 {
            return Ok(vec![
                Ranked {
                    items: Vec::new(),
                    scores: Vec::new()
                };
                b
            ]);
        }
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| Error::gpu_internal("a previous GPU call panicked"))?;
        inner.gpu.bind()?;
        let mut out = Vec::with_capacity(b);
        let step = self.options.max_batch;
        for start in (0..b).step_by(step) {
            let end = (start + step).min(b);
            let ex = exclude.map(|e| &e[start..end]);
            out.extend(self.chunk(&mut inner, &queries[start * self.k..end * self.k], ex, k)?);
        }
        Ok(out)
    }
}
