//! Original ids → dense indices, and the aggregated interaction table they index.
//!
//! Track ids in LFM-1b are sparse (≈32 M ids for the tracks actually listened to), so tracks are
//! renumbered densely in ascending original-id order. A direct lookup table is used when the id
//! range is no larger than the number of pairs (then it costs less memory than the alternative);
//! otherwise a sorted list of distinct ids with binary search.

use std::sync::atomic::{AtomicU32, Ordering};

use rayon::prelude::*;

use crate::data::aggregate::{Collected, Pairs};
use crate::data::ids::Ids;
use crate::data::records::ValueMode;

/// Aggregated (user, track) play counts with users dense and tracks dense ("slots").
#[derive(Debug, Clone, Default)]
pub struct Interactions {
    /// Original user id of each row, ascending.
    pub user_ids: Ids,
    /// Original track id of each column, ascending.
    pub item_ids: Ids,
    /// Row offsets (`user_ids.len() + 1`).
    pub indptr: Vec<u64>,
    /// Column of each pair, ascending within a row.
    pub items: Vec<u32>,
    /// Plays of each pair.
    pub counts: Vec<u32>,
    /// First-listen timestamp of each pair (empty unless timestamps were kept).
    pub first_ts: Vec<u32>,
    /// Per user: the timestamp of their N-th latest listen (empty unless timestamps were kept).
    pub cutoff_ts: Vec<u32>,
    /// How `counts` encode values ([`ValueMode::decode`]).
    pub value: ValueMode,
    /// Per column: track and artist name, when the data file itself named them (ListenBrainz).
    pub item_names: Option<Vec<(String, String)>>,
}

impl Interactions {
    /// Number of users (rows).
    pub fn n_users(&self) -> usize {
        self.user_ids.len()
    }

    /// Number of tracks (columns).
    pub fn n_items(&self) -> usize {
        self.item_ids.len()
    }

    /// Number of (user, track) pairs.
    pub fn nnz(&self) -> usize {
        self.items.len()
    }

    /// Total plays (for ratings, the sum of the ratings, rounded down per pair).
    pub fn events(&self) -> u64 {
        let mode = self.value;
        self.counts.par_iter().map(|&c| mode.decode(c) as u64).sum()
    }

    /// Builds the table from what the collector gathered: integer ids are renumbered densely
    /// here; string ids arrive as ranks with their id lists.
    pub fn from_collected(c: Collected, value: ValueMode) -> Self {
        let Collected {
            pairs, ids, names, ..
        } = c;
        match ids {
            None => {
                let mut m = Self::from_pairs(pairs);
                m.value = value;
                m
            }
            Some((users, items)) => {
                let mut m = Self::from_runs(pairs);
                m.user_ids = users.select(&used(&m.user_ids, users.len()));
                // Ids met only on dropped lines (zero values, bad lines) have no pairs.
                let mut keep = vec![false; items.len()];
                for &i in &m.items {
                    keep[i as usize] = true;
                }
                let mut new = vec![0u32; items.len()];
                let mut next = 0u32;
                for (n, &k) in new.iter_mut().zip(&keep) {
                    *n = next;
                    next += u32::from(k);
                }
                m.items.par_iter_mut().for_each(|i| *i = new[*i as usize]);
                m.item_ids = items.select(&keep);
                m.item_names = names.map(|n| {
                    n.into_iter()
                        .zip(&keep)
                        .filter(|(_, k)| **k)
                        .map(|(n, _)| n)
                        .collect()
                });
                m.value = value;
                m
            }
        }
    }

    /// Builds the table from collected pairs (users already ascending, one run each),
    /// renumbering tracks densely in place.
    pub fn from_pairs(p: Pairs) -> Self {
        let mut m = Self::from_runs(p);
        let mut items = std::mem::take(&mut m.items);
        m.item_ids = Ids::Int(remap_dense(&mut items));
        m.items = items;
        m
    }

    /// The table with runs as rows; `user_ids` holds the runs' user keys (as integers) and
    /// `item_ids` is left empty.
    fn from_runs(p: Pairs) -> Self {
        let Pairs {
            runs,
            items,
            counts,
            first_ts,
            tails,
        } = p;
        let mut indptr = Vec::with_capacity(runs.len() + 1);
        indptr.push(0u64);
        let mut user_ids = Vec::with_capacity(runs.len());
        let keep_time = !first_ts.is_empty();
        let mut cutoff_ts = Vec::new();
        // Runs are contiguous and in order, so offsets are their running end.
        for r in &runs {
            user_ids.push(r.user);
            indptr.push((r.start + r.len) as u64);
            if keep_time {
                // The smallest of the user's N latest timestamps (every run has at least one).
                let last = r.tail_start + r.tail_len.max(1) - 1;
                cutoff_ts.push(tails.get(last).copied().unwrap_or(0));
            }
        }
        Self {
            user_ids: Ids::Int(user_ids),
            item_ids: Ids::default(),
            indptr,
            items,
            counts,
            first_ts,
            cutoff_ts,
            value: ValueMode::Count,
            item_names: None,
        }
    }
}

/// Which of `n` ranks occur among the (ascending) user keys of `rows`.
fn used(rows: &Ids, n: usize) -> Vec<bool> {
    let mut keep = vec![false; n];
    for r in rows.as_int().unwrap_or(&[]) {
        if let Some(k) = keep.get_mut(*r as usize) {
            *k = true;
        }
    }
    keep
}

/// Rewrites `items` (original ids) as dense indices in ascending original-id order, and returns
/// the original id of each index. Relative order of ids within a row is preserved.
pub fn remap_dense(items: &mut [u32]) -> Vec<u64> {
    let Some(max) = items.par_iter().copied().max() else {
        return Vec::new();
    };
    let range = max as usize + 1;
    if use_table(items.len(), range) {
        remap_with_table(items, range)
    } else {
        remap_with_sorted(items)
    }
}

/// Whether [`remap_dense`] maps `n` ids below `range` through a table of `range` slots (zeroed,
/// then scanned once: O(range)) rather than by sorting a copy (O(n log n)). The table wins while
/// ids are dense, up to about 8 slots per id, and for any range up to 64 Ki slots; past that a
/// few ids with a large maximum (a 100-line file naming track 16,000,000) would pay for
/// zeroing and scanning tens of MB.
fn use_table(n: usize, range: usize) -> bool {
    range <= n.saturating_mul(8).max(1 << 16)
}

fn remap_with_table(items: &mut [u32], range: usize) -> Vec<u64> {
    let table: Vec<AtomicU32> = (0..range).map(|_| AtomicU32::new(0)).collect();
    items
        .par_iter()
        .for_each(|&i| table[i as usize].store(1, Ordering::Relaxed));
    let mut ids = Vec::new();
    for (id, slot) in table.iter().enumerate() {
        if slot.load(Ordering::Relaxed) != 0 {
            slot.store(ids.len() as u32, Ordering::Relaxed);
            ids.push(id as u64);
        }
    }
    items
        .par_iter_mut()
        .for_each(|i| *i = table[*i as usize].load(Ordering::Relaxed));
    ids
}

fn remap_with_sorted(items: &mut [u32]) -> Vec<u64> {
    let mut distinct = items.to_vec();
    distinct.par_sort_unstable();
    distinct.dedup();
    distinct.shrink_to_fit();
    items.par_iter_mut().for_each(|i| {
        // Every item is in `distinct` by construction.
        *i = distinct.binary_search(i).unwrap_or(0) as u32;
    });
    distinct.into_iter().map(u64::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_only_for_dense_ids() {
        assert!(use_table(7, 1000));
        assert!(use_table(1, 1 << 16));
        assert!(!use_table(100, 16_000_000));
        assert!(use_table(156_000_000, 32_000_000));
        assert!(!use_table(1_000_000, 8_000_001));
    }

    #[test]
    fn both_remapping_strategies_agree() {
        let orig = vec![900u32, 5, 70, 5, 4_000_000_000, 70, 900];
        let mut a = orig.clone();
        let ids_a = remap_dense(&mut a); // range too large: sorted strategy
        let mut b: Vec<u32> = orig.iter().map(|&v| v % 1000).collect();
        let ids_b = remap_dense(&mut b); // table strategy
        assert_eq!(ids_a, vec![5, 70, 900, 4_000_000_000]);
        assert_eq!(a, vec![2, 0, 1, 0, 3, 1, 2]);
        assert_eq!(ids_b, vec![0, 5, 70, 900]);
        assert_eq!(b, vec![3, 1, 2, 1, 0, 2, 3]);
        for (i, &o) in orig.iter().enumerate() {
            assert_eq!(ids_a[a[i] as usize], u64::from(o));
        }
    }
}
