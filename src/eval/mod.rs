//! Ranking quality against held-out listens.
//!
//! For every user with at least one validation track, the model ranks all tracks except the
//! user's training tracks; the top K are compared with the validation tracks (binary relevance):
//!
//! - precision@K = hits / K
//! - recall@K = hits / |valid_u|
//! - nDCG@K = DCG / IDCG with DCG = Σ_{hit at rank r (1-based)} 1 / log2(r + 1) and IDCG the DCG
//!   of a perfect ranking, Σ_{r ≤ min(K, |valid_u|)} 1 / log2(r + 1)
//! - MAP@K = mean over users of AP@K = (Σ_{hit at rank r} hits_within_r / r) / min(K, |valid_u|)
//! - coverage@K = distinct tracks recommended to anyone / all tracks
//!
//! The first four are averaged over the evaluated users. The popularity baseline ranks tracks
//! by their number of training listeners (ties: lower index), with the same exclusions.

use std::collections::HashSet;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::csr::Csr;
use crate::error::{Error, Result};

/// Ranking metrics at one K.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub k: usize,
    /// Users with at least one validation track.
    pub users: u64,
    pub precision: f64,
    pub recall: f64,
    pub ndcg: f64,
    pub map: f64,
    pub coverage: f64,
}

/// Per-user sums that make up [`Metrics`].
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    users: u64,
    precision: f64,
    recall: f64,
    ndcg: f64,
    ap: f64,
}

/// The four per-user metrics of one ranked list against a sorted relevant set.
pub fn user_metrics(ranked: &[u32], relevant: &[u32], k: usize) -> (f64, f64, f64, f64) {
    if relevant.is_empty() || k == 0 {
        return (0.0, 0.0, 0.0, 0.0);
    }
    let mut hits = 0usize;
    let mut dcg = 0.0;
    let mut ap = 0.0;
    for (r, item) in ranked.iter().take(k).enumerate() {
        if relevant.binary_search(item).is_ok() {
            hits += 1;
            dcg += 1.0 / ((r + 2) as f64).log2();
            ap += hits as f64 / (r + 1) as f64;
        }
    }
    let ideal = k.min(relevant.len());
    let idcg: f64 = (0..ideal).map(|r| 1.0 / ((r + 2) as f64).log2()).sum();
    (
        hits as f64 / k as f64,
        hits as f64 / relevant.len() as f64,
        dcg / idcg,
        ap / ideal as f64,
    )
}

/// Aggregates metrics from ranked lists: `ranked[j]` is the list for user `users[j]`.
pub fn metrics(users: &[u32], ranked: &[Vec<u32>], valid: &Csr, k: usize) -> Result<Metrics> {
    if k == 0 {
        return Err(Error::Config("K must be at least 1".into()));
    }
    if users.len() != ranked.len() {
        return Err(Error::Config(format!(
            "{} users but {} ranked lists",
            users.len(),
            ranked.len()
        )));
    }
    let s = users
        .par_iter()
        .zip(ranked)
        .map(|(&u, list)| {
            let (rel, _) = valid.row(u as usize);
            if rel.is_empty() {
                return Sums::default();
            }
            let (p, r, n, a) = user_metrics(list, rel, k);
            Sums {
                users: 1,
                precision: p,
                recall: r,
                ndcg: n,
                ap: a,
            }
        })
        .reduce(Sums::default, |a, b| Sums {
            users: a.users + b.users,
            precision: a.precision + b.precision,
            recall: a.recall + b.recall,
            ndcg: a.ndcg + b.ndcg,
            ap: a.ap + b.ap,
        });
    let distinct: HashSet<u32> = ranked
        .iter()
        .flat_map(|l| l.iter().take(k).copied())
        .collect();
    let n = s.users.max(1) as f64;
    Ok(Metrics {
        k,
        users: s.users,
        precision: s.precision / n,
        recall: s.recall / n,
        ndcg: s.ndcg / n,
        map: s.ap / n,
        coverage: distinct.len() as f64 / valid.n_cols.max(1) as f64,
    })
}

/// implicit's "precision" (benfred/implicit, `ranking_metrics_at_k` in `evaluation.pyx`): over
/// the users with validation tracks, Σ hits@K / Σ min(K, |valid_u|) — a ratio of sums, so a
/// user with fewer than K held-out tracks is not charged for the slots they could never fill.
/// It is not [`Metrics::precision`] (the mean of hits / K); the Python package reports it under
/// its own name so numbers compare with papers that use implicit. `ranked[j]` is the list for
/// user `users[j]`.
pub fn implicit_precision(
    users: &[u32],
    ranked: &[Vec<u32>],
    valid: &Csr,
    k: usize,
) -> Result<f64> {
    if k == 0 {
        return Err(Error::Config("K must be at least 1".into()));
    }
    if users.len() != ranked.len() {
        return Err(Error::Config(format!(
            "{} users but {} ranked lists",
            users.len(),
            ranked.len()
        )));
    }
    let (hits, slots) = users
        .par_iter()
        .zip(ranked)
        .map(|(&u, list)| {
            let (rel, _) = valid.row(u as usize);
            let hits = list
                .iter()
                .take(k)
                .filter(|i| rel.binary_search(i).is_ok())
                .count();
            (hits as u64, k.min(rel.len()) as u64)
        })
        .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    Ok(hits as f64 / slots.max(1) as f64)
}

/// Users with at least one validation track, ascending.
pub fn eval_users(valid: &Csr) -> Vec<u32> {
    (0..valid.n_rows)
        .filter(|&u| valid.indptr[u + 1] > valid.indptr[u])
        .map(|u| u as u32)
        .collect()
}

/// Tracks by training listeners, most popular first (ties: lower index).
pub fn popularity_order(train: &Csr) -> Vec<u32> {
    let mut listeners = vec![0u64; train.n_cols];
    for &i in &train.indices {
        listeners[i as usize] += 1;
    }
    let mut order: Vec<u32> = (0..train.n_cols as u32).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(listeners[i as usize]), i));
    order
}

/// The popularity baseline's top K for each of `users`, excluding their training tracks.
pub fn popularity_rank(train: &Csr, users: &[u32], k: usize) -> Vec<Vec<u32>> {
    let order = popularity_order(train);
    users
        .par_iter()
        .map(|&u| {
            let (seen, _) = train.row(u as usize);
            order
                .iter()
                .copied()
                .filter(|i| seen.binary_search(i).is_err())
                .take(k)
                .collect()
        })
        .collect()
}

/// Evaluates the popularity baseline.
pub fn popularity(train: &Csr, valid: &Csr, k: usize) -> Result<Metrics> {
    let users = eval_users(valid);
    let ranked = popularity_rank(train, &users, k);
    metrics(&users, &ranked, valid, k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn hand_computed_user_metrics() {
        // Relevant {2, 5, 9}; ranked [5, 1, 9, 4], K = 4: hits at ranks 1 and 3.
        let (p, r, n, a) = user_metrics(&[5, 1, 9, 4], &[2, 5, 9], 4);
        assert_relative_eq!(p, 2.0 / 4.0);
        assert_relative_eq!(r, 2.0 / 3.0);
        let dcg = 1.0 + 1.0 / 4f64.log2();
        let idcg = 1.0 + 1.0 / 3f64.log2() + 1.0 / 4f64.log2();
        assert_relative_eq!(n, dcg / idcg);
        assert_relative_eq!(a, (1.0 + 2.0 / 3.0) / 3.0);
        // Perfect ranking.
        let (p, r, n, a) = user_metrics(&[2, 5], &[2, 5], 2);
        assert_eq!((p, r, n, a), (1.0, 1.0, 1.0, 1.0));
        // No hits; K larger than the list.
        assert_eq!(user_metrics(&[1], &[2], 10), (0.0, 0.0, 0.0, 0.0));
    }

    #[test]
    fn popularity_excludes_training_tracks_and_breaks_ties_by_index() {
        // 3 users × 4 tracks. Listeners: t0 = 2, t1 = 2, t2 = 0, t3 = 0.
        let train = Csr {
            n_rows: 3,
            n_cols: 4,
            indptr: vec![0, 2, 3, 4],
            indices: vec![0, 1, 1, 0],
            data: vec![1.0; 4],
        };
        assert_eq!(popularity_order(&train), vec![0, 1, 2, 3]);
        let ranked = popularity_rank(&train, &[0, 1], 2);
        assert_eq!(ranked, vec![vec![2, 3], vec![0, 2]]);
        let valid = Csr {
            n_rows: 3,
            n_cols: 4,
            indptr: vec![0, 1, 2, 2],
            indices: vec![3, 0],
            data: vec![1.0; 2],
        };
        let m = popularity(&train, &valid, 2).unwrap();
        assert_eq!(m.users, 2);
        assert_relative_eq!(m.precision, (0.5 + 0.5) / 2.0);
        assert_relative_eq!(m.recall, 1.0);
        assert_relative_eq!(m.coverage, 3.0 / 4.0);
        assert!(popularity(&train, &valid, 0).is_err());
    }

    #[test]
    fn implicit_precision_divides_by_the_smaller_of_k_and_the_held_out_count() {
        // User 0 holds out {1, 3}, user 1 holds out {0, 1, 2, 3}, user 2 nothing.
        let valid = Csr {
            n_rows: 3,
            n_cols: 5,
            indptr: vec![0, 2, 6, 6],
            indices: vec![1, 3, 0, 1, 2, 3],
            data: vec![1.0; 6],
        };
        let ranked = vec![vec![3, 4, 0], vec![4, 2, 1], vec![0, 1, 2]];
        // K = 3: user 0 has 1 hit in min(3, 2) = 2 slots, user 1 has 2 in 3; user 2 adds none.
        let p = implicit_precision(&[0, 1, 2], &ranked, &valid, 3).unwrap();
        assert_relative_eq!(p, (1.0 + 2.0) / (2.0 + 3.0));
        // Encore's own precision is the mean of hits / K.
        let m = metrics(&[0, 1, 2], &ranked, &valid, 3).unwrap();
        assert_relative_eq!(m.precision, (1.0 / 3.0 + 2.0 / 3.0) / 2.0);
        assert!(implicit_precision(&[0], &ranked, &valid, 3).is_err());
        assert!(implicit_precision(&[0, 1, 2], &ranked, &valid, 0).is_err());
    }
}
