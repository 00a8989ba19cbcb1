//! Exact top-K recommendation and item similarity: the [`Scorer`] seam.
//!
//! A recommendation is the K items with the largest dot product x_uᵀy_i, minus the items the user
//! already has. At LFM-1b scale the full score matrix (users × tracks) is terabytes, so no
//! implementation may materialise it: the CPU scorer ([`CpuScorer`]) scores cache-sized tiles of
//! items with SGEMM and keeps only a bounded top-K per query, and the GPU scorer ([`GpuScorer`])
//! does the same with cuBLAS tiles and a selection kernel, behind the same trait. The CPU path is the oracle the GPU one is tested against, so its output is pinned
//! down exactly:
//!
//! - the order is score descending, then item index ascending (ties never depend on timing);
//! - a NaN score ranks, and is reported, as −∞ (it can only come from non-finite factors);
//! - the result is identical whatever the rayon thread count, and a query's result does not depend
//!   on which other queries share its batch (so a server may batch requests freely).
//!
//! [`similar_items`] answers "more like this" by cosine similarity, reusing a scorer built over
//! row-normalised factors ([`CpuSimilar`] bundles the two for the CPU).

mod cpu;
mod dot;
mod gpu;
mod order;
mod select;
mod similar;

pub use cpu::{CpuScorer, MAX_TILE, QUERIES_PER_CHUNK};
/// Users per `top_k` call when ranking many users (bounds scratch memory).
pub const BATCH: usize = 4096;

pub use gpu::{DEFAULT_MAX_BATCH, GpuScorer, GpuScorerOptions};
pub use order::NormOrder;
pub use similar::{CpuSimilar, normalize_rows, similar_items};

use crate::error::{Error, Result};

/// One query's result: item indices (dense column ids) best first, and their scores.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub items: Vec<u32>,
    pub scores: Vec<f32>,
}

/// Exact top-K scoring against a fixed set of item factors. CPU and GPU implementations sit
/// behind this seam.
pub trait Scorer: Send + Sync {
    /// Short name for reports (`cpu`, ...).
    fn name(&self) -> String;

    /// Number of items scored against.
    fn n_items(&self) -> usize;

    /// Length of each factor vector.
    fn n_factors(&self) -> usize;

    /// For each query vector (row-major B×k in `queries`), the top `k` items by dot product with
    /// the item factors, excluding `exclude[b]` (a sorted slice of item indices, e.g. the user's
    /// training items) when given. Ties break by lower item index. Returns fewer than k when fewer
    /// items remain. k == 0, a `queries` length that is not a multiple of the factor count, an
    /// `exclude` of the wrong length, and unsorted or out-of-range excluded ids are
    /// [`Error::Config`].
    fn top_k(&self, queries: &[f32], exclude: Option<&[&[u32]]>, k: usize) -> Result<Vec<Ranked>>;

    /// The largest `k` this scorer answers (a larger one is [`Error::Config`]): what a caller
    /// asks before choosing k, rather than knowing each backend's limit.
    fn max_k(&self) -> usize {
        usize::MAX
    }

    /// (query, item) scores computed so far over this scorer's life, where it counts them: with
    /// norm pruning ([`NormOrder`]) far fewer than queries × items.
    fn items_scored(&self) -> Option<u64> {
        None
    }
}

/// Checks a `top_k` call against a scorer of `n_items` × `n_factors`; returns the batch size B.
///
/// Shared by every [`Scorer`] so that all of them reject the same inputs with the same messages.
pub fn validate_query(
    n_items: usize,
    n_factors: usize,
    queries: &[f32],
    exclude: Option<&[&[u32]]>,
    k: usize,
) -> Result<usize> {
    let bad = |m: String| Err(Error::Config(m));
    if k == 0 {
        return bad("top-K needs k >= 1, got 0".into());
    }
    if n_factors == 0 {
        return bad("the item factors have no columns".into());
    }
    if !queries.len().is_multiple_of(n_factors) {
        return bad(format!(
            "{} query values is not a multiple of the {n_factors} factors",
            queries.len()
        ));
    }
    let b = queries.len() / n_factors;
    if let Some(ex) = exclude {
        if ex.len() != b {
            return bad(format!(
                "{} exclude lists for {b} queries (need one per query)",
                ex.len()
            ));
        }
        for (q, list) in ex.iter().enumerate() {
            if list.windows(2).any(|w| w[0] > w[1]) {
                return bad(format!("exclude list of query {q} is not sorted"));
            }
            match list.last() {
                Some(&last) if last as usize >= n_items => {
                    return bad(format!(
                        "exclude list of query {q} has item {last} >= {n_items} items"
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(b)
}
