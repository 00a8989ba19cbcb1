//! Item–item similarity ("more like this") by cosine of the item factors.
//!
//! cos(i, j) = y_iᵀy_j / (‖y_i‖‖y_j‖) is a plain dot product between row-normalised factors, so
//! similarity is top-K over a scorer built on the normalised rows, with each query item excluded
//! from its own answer. That reuses the tiled GEMM + bounded selection core (and, later, the GPU
//! scorer) instead of a second kernel. An item whose factors are all zero has no direction: its
//! normalised row stays zero, so it scores 0 against everything.

use rayon::prelude::*;

use super::{CpuScorer, Ranked, Scorer};
use crate::als::Factors;
use crate::error::{Error, Result};

/// `f` with every row scaled to unit length (norms taken in f64); zero rows stay zero.
pub fn normalize_rows(f: &Factors) -> Factors {
    let mut out = f.clone();
    out.data.par_chunks_mut(f.k.max(1)).for_each(|row| {
        let norm = row
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt();
        if norm > 0.0 {
            let inv = 1.0 / norm;
            for v in row {
                *v = (f64::from(*v) * inv) as f32;
            }
        }
    });
    out
}

/// The `k` items most similar by cosine to each of `items`, excluding the item itself; ties by
/// lower index. `scorer` must score against `unit` = [`normalize_rows`] of the item factors
/// (the query vectors are read from `unit`). Item ids out of range are [`Error::Config`].
pub fn similar_items(
    scorer: &dyn Scorer,
    unit: &Factors,
    items: &[u32],
    k: usize,
) -> Result<Vec<Ranked>> {
    if unit.n != scorer.n_items() || unit.k != scorer.n_factors() {
        return Err(Error::Config(format!(
            "normalised factors are {} × {} but the scorer has {} × {}",
            unit.n,
            unit.k,
            scorer.n_items(),
            scorer.n_factors()
        )));
    }
    similar_by(scorer, items, k, |i| {
        (i < unit.n && unit.data.len() >= (i + 1) * unit.k).then(|| unit.row(i).to_vec())
    })
}

/// Top-K for the unit vectors of `items` (read by `row`), each excluding itself.
fn similar_by(
    scorer: &dyn Scorer,
    items: &[u32],
    k: usize,
    row: impl Fn(usize) -> Option<Vec<f32>>,
) -> Result<Vec<Ranked>> {
    let mut queries = Vec::with_capacity(items.len() * scorer.n_factors());
    for &i in items {
        let r = row(i as usize).ok_or_else(|| {
            Error::Config(format!(
                "item {i} out of range ({} items)",
                scorer.n_items()
            ))
        })?;
        queries.extend_from_slice(&r);
    }
    let exclude: Vec<&[u32]> = items.iter().map(std::slice::from_ref).collect();
    scorer.top_k(&queries, Some(&exclude), k)
}

/// Cosine similarity on the CPU: a [`CpuScorer`] over the row-normalised item factors (the query
/// vectors are gathered from its panels, so the factors are held once).
#[derive(Debug, Clone)]
pub struct CpuSimilar {
    scorer: CpuScorer,
}

impl CpuSimilar {
    /// Normalises `items` and builds the scorer (errors as [`CpuScorer::new`]).
    pub fn new(items: &Factors) -> Result<Self> {
        Ok(Self {
            scorer: CpuScorer::unpruned(&normalize_rows(items))?,
        })
    }

    /// The `k` items most similar to each of `items` (see [`similar_items`]).
    pub fn similar_items(&self, items: &[u32], k: usize) -> Result<Vec<Ranked>> {
        similar_by(&self.scorer, items, k, |i| self.scorer.item(i))
    }

    /// The scorer over the normalised factors.
    pub fn scorer(&self) -> &CpuScorer {
        &self.scorer
    }
}
