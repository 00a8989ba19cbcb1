//! The CPU scorer: item tiles scored by SGEMM (or, for a few queries, an equivalent GEMV) into a
//! bounded scratch buffer, then threshold-filtered selection ([`super::select`]).
//!
//! Work is a grid, fixed by the inputs alone: queries in chunks of [`QUERIES_PER_CHUNK`], items
//! in tiles of `tile` rows (stored as panels, see [`super::kernel`]). For each (chunk, tile) one
//! product writes the chunk × tile scores into a per-thread scratch buffer, and each query's heap
//! scans its row while it is still in cache. So memory is O(threads · chunk · tile + B · K),
//! never O(B · n_items).
//!
//! Parallelism: a task is one query chunk against a contiguous range of tiles. With many chunks
//! (a large batch) each task takes all tiles, so threads split the users; with few (a small
//! batch, or a lone query's larger waves) the tiles are split into ranges so threads split the
//! items, and the per-range heaps are merged. The number of ranges depends on the thread count,
//! but the result does not: every score is computed the same way on the same fixed grid, and the
//! merge of exact per-range top-Ks under a strict total order is exact. Small waves (up to
//! [`SEQUENTIAL_WORK`]) run on the calling thread: a server at low load finds the pool asleep,
//! and waking it costs more than such a wave. A scan called from outside the pool enters it once,
//! at its first shared wave, not once per wave.
//!
//! A query's scores also do not depend on the rest of its batch: each is one fused
//! multiply-add chain over the factors, whether GEMM or GEMV computed it (see [`super::kernel`]).
//!
//! Norm pruning ([`super::order`], on by default): the panels hold the items in descending norm
//! order and a batch walks them in waves of tiles that double in size (16 tiles first; 2 for a
//! lone query, whose extra waves cost nothing to gather). After
//! each wave a query whose K-th best beats |q|·|y_next| is settled and leaves the batch; the rest
//! are gathered into a smaller batch for the next wave. Item ids then no longer rise with the
//! position, so the selection breaks ties on ids explicitly and checks exclusions by binary
//! search.

use std::cell::RefCell;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::dot::{self, GEMV_MAX_QUERIES};
use super::order::{NormOrder, norm_up};
use super::select::TopK;
use super::{Ranked, Scorer, validate_query};
use crate::als::Factors;
use crate::error::{Error, Result};

/// Queries scored by one GEMM call. matrixmultiply re-packs the item tile (B) on every call, so
/// the cost of streaming the items is shared by the chunk's queries: on a 2-core Xeon (AVX2
/// kernel), 200,000 items × 64 factors ran GEMM + selection at 70, 89 and 95 GFLOP/s with 64,
/// 128 and 256 queries per chunk. Beyond 256 the gain is small and a 1000-user batch would make
/// too few chunks to share among threads without splitting the items.
pub const QUERIES_PER_CHUNK: usize = 256;

/// Cache budget for one step's working set. A step touches the chunk's scores (Q·T floats,
/// written by the GEMM and read back by the selection) and the tile's k × T panel (streamed
/// through by matrixmultiply's packer into its own ≤ 256 KiB buffer). Keeping the two
/// within 1 MiB leaves them, plus the packed panel, in a 2 MiB L2 (this Xeon's; current x86
/// server cores have 1–2 MiB), so the selection pass reads scores from L2, not L3 or DRAM.
/// For Q = 256 and k = 64 that is 768 items; measured, 512–1024 were equally fast and 4096
/// (scores spilling out of L2) 10–15% slower.
const TILE_BUDGET_BYTES: usize = 1 << 20;

/// Bounds on the default tile: below 256 items per-call GEMM overhead shows, above 8192 the
/// tiles of a B = 1 query are too few to spread over threads.
const MIN_DEFAULT_TILE: usize = 256;
const MAX_DEFAULT_TILE: usize = 8192;

/// Largest tile [`CpuScorer::with_tile`] accepts (a 16 MiB scratch buffer per thread).
pub const MAX_TILE: usize = 1 << 14;

/// Multiply-adds up to which a wave runs on the calling thread (8,192 items of 64 factors, about
/// 90 µs of one core). Handing a wave to the pool means waking its threads, and a server at low
/// load finds them asleep: on the 16-core gpu-host (H100 host, LFM-1b scale, `bench overhead`),
/// with every lone query's 16-tile first wave in the pool, scoring took 38–66 µs back to back
/// but 68–192 µs at p50 inside the server. With this threshold and [`LONE_FIRST_WAVE_TILES`] the
/// median lone query never leaves its thread and takes the same inside the server as back to
/// back (69–87 vs 84 µs), using one core instead of sixteen. Waves above this (16 tiles for one
/// query, or any real batch) are shared.
const SEQUENTIAL_WORK: usize = 1 << 19;

/// Tasks per rayon thread when a batch has few chunks: enough to even out uneven ranges.
const TASKS_PER_THREAD: usize = 4;

thread_local! {
    /// Per-thread score tile, reused across calls so a serving loop does not allocate it anew.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a zero-initialised-once scratch slice of `len` floats (the thread's own buffer,
/// or a fresh one if it is somehow in use further up this thread's stack).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// Tiles in the first wave of a pruned scan of a batch (doubling after each wave): 16 tiles of
/// 768 items cover the 0.06–0.31% of LFM-1b-scale tracks a query needs (see [`super::order`]),
/// and a batch pays a gather and a fork-join per wave. Measured on the gpu-host for B = 10 and
/// 100, first waves of 1–8 tiles were up to 2× slower.
const FIRST_WAVE_TILES: usize = 16;

/// The first wave of a lone query (B = 1): 2 tiles, so a query that settles early stops early.
/// Its waves cost nothing extra (no gathering, and run on the calling thread up to
/// [`SEQUENTIAL_WORK`]). At LFM-1b scale the median query then scores 4,611 items instead of
/// 12,295.
const LONE_FIRST_WAVE_TILES: usize = 2;

/// Exact top-K on the CPU. Owns the item factors, rearranged into panels of `tile` items, in
/// descending norm order when pruning (see the module doc).
#[derive(Debug)]
pub struct CpuScorer {
    n: usize,
    k: usize,
    tile: usize,
    panels: Vec<f32>,
    order: Option<NormOrder>,
    scored: AtomicU64,
}

impl Clone for CpuScorer {
    fn clone(&self) -> Self {
        Self {
            n: self.n,
            k: self.k,
            tile: self.tile,
            panels: self.panels.clone(),
            order: self.order.clone(),
            scored: AtomicU64::new(self.scored.load(Ordering::Relaxed)),
        }
    }
}

impl CpuScorer {
    /// A scorer over `items` (n × k, row-major) with the default tile for k. Factors whose data
    /// is not n × k, with k = 0, or with more than 2³² items are [`Error::Config`].
    pub fn new(items: &Factors) -> Result<Self> {
        Self::with_tile(items, Self::default_tile(items.k))
    }

    /// A scorer with an explicit tile size (items per product), 1..=[`MAX_TILE`]. The result
    /// does not depend on the tile; only speed does.
    pub fn with_tile(items: &Factors, tile: usize) -> Result<Self> {
        Self::with_options(items, tile, true)
    }

    /// A scorer that visits every item in id order (no norm pruning): for factors whose norms
    /// are all alike, such as the unit rows of cosine similarity, where pruning cannot stop.
    pub fn unpruned(items: &Factors) -> Result<Self> {
        Self::with_options(items, Self::default_tile(items.k), false)
    }

    /// A scorer with an explicit tile and pruning choice (the result depends on neither).
    pub fn with_options(items: &Factors, tile: usize, prune: bool) -> Result<Self> {
        let bad = |m: String| Err(Error::Config(m));
        if items.k == 0 {
            return bad("item factors have no columns".into());
        }
        if items.n.checked_mul(items.k) != Some(items.data.len()) {
            return bad(format!(
                "item factors hold {} values, not {} × {}",
                items.data.len(),
                items.n,
                items.k
            ));
        }
        if u32::try_from(items.n).is_err() {
            return bad(format!("{} items do not fit 32-bit ids", items.n));
        }
        if tile == 0 || tile > MAX_TILE {
            return bad(format!("tile must be 1..={MAX_TILE} items, got {tile}"));
        }
        let order = prune.then(|| NormOrder::new(items));
        let panels = match &order {
            Some(o) => dot::to_panels(&o.permute_rows(items), items.n, items.k, tile),
            None => dot::to_panels(&items.data, items.n, items.k, tile),
        };
        Ok(Self {
            n: items.n,
            k: items.k,
            tile,
            panels,
            order,
            scored: AtomicU64::new(0),
        })
    }

    /// The default tile for `k` factors: the largest multiple of 64 items whose scores and factor
    /// rows fit a 1 MiB cache budget, within 256..=8192 (768 for k = 64).
    pub fn default_tile(k: usize) -> usize {
        let per_item = 4 * (QUERIES_PER_CHUNK + k);
        (TILE_BUDGET_BYTES / per_item / 64 * 64).clamp(MIN_DEFAULT_TILE, MAX_DEFAULT_TILE)
    }

    /// Items per product (GEMM or GEMV call).
    pub fn tile(&self) -> usize {
        self.tile
    }

    /// The factors of item `i` (None when out of range), gathered from its panel.
    pub fn item(&self, i: usize) -> Option<Vec<f32>> {
        if i >= self.n {
            return None;
        }
        let i = self.order.as_ref().map_or(i, |o| o.pos[i] as usize);
        let (lo, k) = (i / self.tile * self.tile, self.k);
        let w = self.tile.min(self.n - lo);
        let panel = &self.panels[lo * k..(lo + w) * k];
        Some((0..k).map(|p| panel[p * w + (i - lo)]).collect())
    }

    /// Heaps for the queries `q` (row-major) over the item tiles `tiles`, in tile order;
    /// `exclude` holds sorted item ids.
    fn score_range(
        &self,
        q: &[f32],
        exclude: Option<&[&[u32]]>,
        tiles: Range<usize>,
        cap: usize,
    ) -> Vec<TopK> {
        let ids = self.order.as_ref().map(|o| o.perm.as_slice());
        let (n, f) = (self.n, self.k);
        let m = q.len() / f;
        let product: dot::Product = if m <= GEMV_MAX_QUERIES && dot::gemv_matches_gemm(f) {
            dot::gemv
        } else {
            dot::gemm
        };
        let mut heaps: Vec<TopK> = (0..m).map(|_| TopK::new(cap)).collect();
        with_scratch(m * self.tile, |scratch| {
            for t in tiles {
                let lo = t * self.tile;
                let hi = (lo + self.tile).min(n);
                let w = hi - lo;
                product(q, m, f, &self.panels[lo * f..hi * f], w, scratch);
                for (u, heap) in heaps.iter_mut().enumerate() {
                    // In id order only this tile's slice matters; permuted, the whole list.
                    let ex = match (exclude, ids) {
                        (None, _) => &[][..],
                        (Some(e), None) => in_range(e[u], lo, hi),
                        (Some(e), Some(_)) => e[u],
                    };
                    heap.scan(&scratch[u * w..(u + 1) * w], lo as u32, ex, ids);
                }
            }
        });
        heaps
    }

    /// Heaps for every query in `q` over the tiles `tiles`: query chunks × tile ranges in
    /// parallel, the ranges' heaps merged per query.
    fn wave(
        &self,
        q: &[f32],
        exclude: Option<&[&[u32]]>,
        tiles: Range<usize>,
        cap: usize,
    ) -> Vec<TopK> {
        let f = self.k;
        let b = q.len() / f;
        let n_tiles = tiles.len();
        let items = (tiles.end * self.tile).min(self.n) - tiles.start * self.tile;
        if b * items * f <= SEQUENTIAL_WORK {
            // Too little work to share: handing it to the pool and waking its threads would
            // cost more than it saves (a lone request at low load, a small catalogue).
            return self.score_range(q, exclude, tiles, cap);
        }
        let n_chunks = b.div_ceil(QUERIES_PER_CHUNK);
        // Split items only when chunks alone cannot keep every thread busy.
        let want = (TASKS_PER_THREAD * rayon::current_num_threads()).div_ceil(n_chunks.max(1));
        let per_range = n_tiles.div_ceil(want.clamp(1, n_tiles.max(1))).max(1);
        let ranges = n_tiles.div_ceil(per_range).max(1);
        let task = |task: usize| {
            let (c, r) = (task / ranges, task % ranges);
            let (q0, q1) = (c * QUERIES_PER_CHUNK, ((c + 1) * QUERIES_PER_CHUNK).min(b));
            let lo = tiles.start + r * per_range;
            let hi = (lo + per_range).min(tiles.end);
            let ex = exclude.map(|e| &e[q0..q1]);
            self.score_range(&q[q0 * f..q1 * f], ex, lo..hi, cap)
        };
        let mut parts: Vec<Vec<TopK>> = (0..n_chunks * ranges).into_par_iter().map(task).collect();
        let merge = |group: &mut [Vec<TopK>]| match group.split_first_mut() {
            Some((first, rest)) => {
                for other in rest.iter() {
                    for (h, o) in first.iter_mut().zip(other) {
                        h.merge(o);
                    }
                }
                std::mem::take(first)
            }
            None => Vec::new(),
        };
        if n_chunks == 1 {
            // One chunk (a small batch): merging its few heaps is quicker than a fork-join.
            return merge(&mut parts);
        }
        parts.par_chunks_mut(ranges).flat_map_iter(merge).collect()
    }
}

/// The part of the sorted `ids` within `lo..hi`.
fn in_range(ids: &[u32], lo: usize, hi: usize) -> &[u32] {
    let a = ids.partition_point(|&i| (i as usize) < lo);
    let b = a + ids[a..].partition_point(|&i| (i as usize) < hi);
    &ids[a..b]
}

impl Scorer for CpuScorer {
    fn name(&self) -> String {
        "cpu".into()
    }

    fn n_items(&self) -> usize {
        self.n
    }

    fn n_factors(&self) -> usize {
        self.k
    }

    fn top_k(&self, queries: &[f32], exclude: Option<&[&[u32]]>, k: usize) -> Result<Vec<Ranked>> {
        let b = validate_query(self.n, self.k, queries, exclude, k)?;
        let mut scan = Scan::new(self, queries, exclude, k, b);
        let outside = rayon::current_thread_index().is_none();
        if !scan.run(self, outside) {
            // Called from outside the pool (a server thread) with a wave the pool will share:
            // enter the pool once for the rest of the scan, so that each wave's fork-join
            // starts from a worker rather than paying its own cross-thread hand-off and a
            // wake-up of the blocked caller.
            rayon::scope(|_| scan.run(self, false));
        }
        Ok(scan.finish())
    }

    fn items_scored(&self) -> Option<u64> {
        Some(self.scored.load(Ordering::Relaxed))
    }
}

/// A batch's walk over the tiles in waves, with what it has found so far.
struct Scan<'a> {
    queries: &'a [f32],
    exclude: Option<&'a [&'a [u32]]>,
    cap: usize,
    /// Each query's norm bound, when pruning.
    q_norms: Vec<f32>,
    heaps: Vec<TopK>,
    /// Queries not yet settled.
    active: Vec<usize>,
    /// The active queries' rows, once some have settled.
    gathered: Vec<f32>,
    /// Next tile, and tiles in the next wave.
    t0: usize,
    wave: usize,
}

impl<'a> Scan<'a> {
    fn new(
        s: &CpuScorer,
        queries: &'a [f32],
        exclude: Option<&'a [&'a [u32]]>,
        k: usize,
        b: usize,
    ) -> Self {
        let cap = k.min(s.n);
        let q_norms: Vec<f32> = match &s.order {
            Some(_) => queries.chunks_exact(s.k).map(norm_up).collect(),
            None => Vec::new(),
        };
        let wave = match s.order {
            Some(_) if b == 1 => LONE_FIRST_WAVE_TILES,
            Some(_) => FIRST_WAVE_TILES,
            None => s.n.div_ceil(s.tile),
        };
        Self {
            queries,
            exclude,
            cap,
            q_norms,
            heaps: (0..b).map(|_| TopK::new(cap)).collect(),
            active: (0..b).collect(),
            gathered: Vec::new(),
            t0: 0,
            wave,
        }
    }

    /// Runs waves until every query is settled or every tile visited (then true), or, with
    /// `until_shared`, until the next wave is big enough to share with the pool (then false).
    fn run(&mut self, s: &CpuScorer, until_shared: bool) -> bool {
        let (n, f, b) = (s.n, s.k, self.heaps.len());
        let n_tiles = n.div_ceil(s.tile);
        while self.t0 < n_tiles && !self.active.is_empty() {
            let t1 = (self.t0 + self.wave).min(n_tiles);
            let items = (t1 * s.tile).min(n) - self.t0 * s.tile;
            if until_shared && self.active.len() * items * f > SEQUENTIAL_WORK {
                return false;
            }
            let all = self.active.len() == b;
            if !all {
                self.gathered.clear();
                for &u in &self.active {
                    self.gathered
                        .extend_from_slice(&self.queries[u * f..(u + 1) * f]);
                }
            }
            let q = if all {
                self.queries
            } else {
                &self.gathered[..]
            };
            let ex: Option<Vec<&[u32]>> = self
                .exclude
                .map(|e| self.active.iter().map(|&u| e[u]).collect());
            let parts = s.wave(q, ex.as_deref(), self.t0..t1, self.cap);
            for (&u, part) in self.active.iter().zip(parts) {
                self.heaps[u].merge(&part);
            }
            s.scored
                .fetch_add((self.active.len() * items) as u64, Ordering::Relaxed);
            self.t0 = t1;
            self.wave *= 2;
            if let Some(o) = &s.order {
                let visited = (t1 * s.tile).min(n);
                let (heaps, q_norms) = (&self.heaps, &self.q_norms);
                self.active.retain(|&u| {
                    !heaps[u]
                        .kth()
                        .is_some_and(|kth| o.settled(kth, q_norms[u], visited, f))
                });
            }
        }
        true
    }

    /// Every query's answer.
    fn finish(self) -> Vec<Ranked> {
        if self.heaps.len() < QUERIES_PER_CHUNK {
            return self.heaps.into_iter().map(TopK::into_ranked).collect();
        }
        self.heaps.into_par_iter().map(TopK::into_ranked).collect()
    }
}
