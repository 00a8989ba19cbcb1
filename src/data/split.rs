//! Holding out validation listens, per user.
//!
//! - `random`: each user with n ≥ 2 tracks sends round(fraction · n) of them (at most n − 1) to
//!   validation, chosen by a generator seeded from (seed, original user id) — so the split does
//!   not depend on thread count or on which other users survived filtering.
//! - `time` ("last N listens"): a user's held-out tracks are those whose *first* listen falls
//!   within their N latest listening events (ties at the boundary included): the discoveries the
//!   model should predict. All plays of such a track go to validation, so every event lands in
//!   exactly one of train or valid and the two never share a (user, track). A user always keeps
//!   at least one training track (their earliest discovery).
//!
//! Train and validation never share a (user, track) pair, so evaluation can exclude training
//! tracks from rankings.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::csr::Csr;
use crate::data::ids::Ids;
use crate::data::index::Interactions;
use crate::data::records::ValueMode;
use crate::util::mix64;

/// How validation listens are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Split {
    /// A random fraction of each user's tracks.
    Random { fraction: f64, seed: u64 },
    /// Tracks first played within the user's last N listens.
    Time { last_n: u32 },
}

/// The two halves.
#[derive(Debug, Clone)]
pub struct SplitOutput {
    pub train: Csr,
    pub valid: Csr,
    /// Original id of each row.
    pub user_ids: Ids,
    /// Original id of each column.
    pub item_ids: Ids,
}

/// Splits `m` (consumed; its arrays become the training matrix without a second copy).
pub fn split(m: Interactions, how: Split) -> SplitOutput {
    let n_users = m.n_users();
    let n_items = m.n_items();
    let Interactions {
        user_ids,
        item_ids,
        indptr,
        mut items,
        mut counts,
        first_ts,
        cutoff_ts,
        value,
        ..
    } = m;
    // Phase 1: which entries of each row are held out (a bit per entry, row-local decisions).
    let mut held = vec![false; items.len()];
    {
        let mut rows: Vec<&mut [bool]> = Vec::with_capacity(n_users);
        let mut rest: &mut [bool] = &mut held;
        for u in 0..n_users {
            let len = (indptr[u + 1] - indptr[u]) as usize;
            let (a, b) = rest.split_at_mut(len);
            rows.push(a);
            rest = b;
        }
        rows.into_par_iter().enumerate().for_each(|(u, mask)| {
            let start = indptr[u] as usize;
            match how {
                Split::Random { fraction, seed } => {
                    choose_random(mask, fraction, mix64(seed ^ mix64(user_ids.seed_key(u))))
                }
                Split::Time { .. } => choose_recent(
                    mask,
                    &first_ts[start..start + mask.len()],
                    cutoff_ts.get(u).copied().unwrap_or(u32::MAX),
                ),
            }
        });
    }
    // Phase 2: copy held-out entries out, then compact the rest in place (order preserved).
    let mut v_indptr = Vec::with_capacity(n_users + 1);
    let mut t_indptr = Vec::with_capacity(n_users + 1);
    v_indptr.push(0u64);
    t_indptr.push(0u64);
    let n_valid = held.par_iter().filter(|&&h| h).count();
    let mut v_items = Vec::with_capacity(n_valid);
    let mut v_counts = Vec::with_capacity(n_valid);
    let mut w = 0usize;
    for u in 0..n_users {
        for k in indptr[u] as usize..indptr[u + 1] as usize {
            if held[k] {
                v_items.push(items[k]);
                v_counts.push(value.decode(counts[k]));
            } else {
                items[w] = items[k];
                counts[w] = counts[k];
                w += 1;
            }
        }
        t_indptr.push(w as u64);
        v_indptr.push(v_items.len() as u64);
    }
    drop(held);
    items.truncate(w);
    counts.truncate(w);
    let data = counts_to_f32(counts, value);
    SplitOutput {
        train: Csr {
            n_rows: n_users,
            n_cols: n_items,
            indptr: t_indptr,
            indices: items,
            data,
        },
        valid: Csr {
            n_rows: n_users,
            n_cols: n_items,
            indptr: v_indptr,
            indices: v_items,
            data: v_counts,
        },
        user_ids,
        item_ids,
    }
}

/// Converts encoded values (see [`ValueMode::decode`]) to `f32` in the same allocation.
fn counts_to_f32(mut counts: Vec<u32>, value: ValueMode) -> Vec<f32> {
    counts
        .par_iter_mut()
        .for_each(|c| *c = value.decode(*c).to_bits());
    bytemuck::allocation::cast_vec(counts)
}

/// How many of a user's `n` tracks the random split holds out.
pub fn n_held_out(n: usize, fraction: f64) -> usize {
    if n < 2 {
        return 0;
    }
    ((fraction * n as f64).round() as usize).min(n - 1)
}

fn choose_random(mask: &mut [bool], fraction: f64, seed: u64) {
    let n = mask.len();
    let k = n_held_out(n, fraction);
    if k == 0 {
        return;
    }
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    // Partial Fisher–Yates over positions: the first k of a random permutation.
    let mut pos: Vec<u32> = (0..n as u32).collect();
    for i in 0..k {
        let j = rng.random_range(i..n);
        pos.swap(i, j);
        mask[pos[i] as usize] = true;
    }
}

fn choose_recent(mask: &mut [bool], first_ts: &[u32], cutoff: u32) {
    if mask.len() < 2 {
        return;
    }
    let mut all = true;
    for (m, &t) in mask.iter_mut().zip(first_ts) {
        *m = t >= cutoff;
        all &= *m;
    }
    if all {
        // Keep the earliest discovery (lowest index on ties) for training.
        let keep = first_ts
            .iter()
            .enumerate()
            .min_by_key(|&(i, &t)| (t, i))
            .map(|(i, _)| i)
            .unwrap_or(0);
        mask[keep] = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[Vec<(u32, u32, u32)>], cutoffs: Vec<u32>) -> Interactions {
        let mut m = Interactions {
            user_ids: Ids::Int((0..rows.len() as u64).collect()),
            item_ids: Ids::Int((0..10).collect()),
            indptr: vec![0],
            cutoff_ts: cutoffs,
            ..Default::default()
        };
        for r in rows {
            for &(i, c, t) in r {
                m.items.push(i);
                m.counts.push(c);
                m.first_ts.push(t);
            }
            m.indptr.push(m.items.len() as u64);
        }
        m
    }

    #[test]
    fn random_split_partitions_every_pair() {
        let rows: Vec<Vec<(u32, u32, u32)>> = (0..50)
            .map(|u| (0..u % 10).map(|i| (i, i + u, 0)).collect())
            .collect();
        let m = table(&rows, vec![]);
        let total: f64 = m.counts.iter().map(|&c| f64::from(c)).sum();
        let out = split(
            m,
            Split::Random {
                fraction: 0.3,
                seed: 7,
            },
        );
        out.train.validate("train").unwrap();
        out.valid.validate("valid").unwrap();
        assert_eq!(out.train.sum() + out.valid.sum(), total);
        for u in 0..50 {
            let n = u % 10;
            let (t, _) = out.train.row(u);
            let (v, _) = out.valid.row(u);
            assert_eq!(v.len(), n_held_out(n, 0.3));
            assert_eq!(t.len() + v.len(), n);
            assert!(t.iter().all(|i| !v.contains(i)));
        }
    }

    #[test]
    fn random_split_is_seeded() {
        let rows: Vec<Vec<(u32, u32, u32)>> = vec![(0..10).map(|i| (i, 1, 0)).collect(); 20];
        let a = split(
            table(&rows, vec![]),
            Split::Random {
                fraction: 0.5,
                seed: 1,
            },
        );
        let b = split(
            table(&rows, vec![]),
            Split::Random {
                fraction: 0.5,
                seed: 1,
            },
        );
        let c = split(
            table(&rows, vec![]),
            Split::Random {
                fraction: 0.5,
                seed: 2,
            },
        );
        assert_eq!(a.valid, b.valid);
        assert_ne!(a.valid, c.valid);
    }

    #[test]
    fn time_split_holds_out_recent_discoveries() {
        // User 0: tracks first heard at t=1, 5, 9; cutoff 5 → tracks 1 and 2 held out.
        // User 1: everything recent → the earliest discovery stays in training.
        // User 2: a single track always stays in training.
        let rows = vec![
            vec![(0, 4, 1), (1, 2, 5), (2, 1, 9)],
            vec![(3, 1, 8), (4, 1, 7)],
            vec![(5, 3, 9)],
        ];
        let out = split(table(&rows, vec![5, 0, 0]), Split::Time { last_n: 3 });
        assert_eq!(out.train.row(0).0, &[0]);
        assert_eq!(out.valid.row(0).0, &[1, 2]);
        assert_eq!(out.train.row(1).0, &[4]);
        assert_eq!(out.valid.row(1).0, &[3]);
        assert_eq!(out.train.row(2).0, &[5]);
        assert!(out.valid.row(2).0.is_empty());
        assert_eq!(out.train.sum() + out.valid.sum(), 12.0);
    }
}
