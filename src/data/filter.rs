//! Dropping low-signal users and tracks.
//!
//! A user needs at least `min_user_tracks` distinct tracks and a track at least `min_track_users`
//! distinct listeners. Removing users can push tracks under their threshold and vice versa, so by
//! default the two rules are applied alternately until neither removes anything (a fixed point:
//! the (min_user, min_track)-core of the bipartite graph). `FilterMode::Once` applies each rule a
//! single time (users first, then tracks), as some papers do; users may then end up below the
//! threshold. Every round's survivors are recorded for the manifest.

use std::sync::atomic::{AtomicU32, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::index::Interactions;

/// How the thresholds are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FilterMode {
    /// Repeat until nothing changes (every kept user and track meets its threshold).
    FixedPoint,
    /// One pass of each rule.
    Once,
}

/// How many users, tracks, (user, track) pairs and plays there are at some stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub users: u64,
    pub items: u64,
    pub pairs: u64,
    pub events: u64,
}

/// Filters `m` in place and returns the survivors after each round.
pub fn filter(
    m: &mut Interactions,
    min_user_tracks: u32,
    min_track_users: u32,
    mode: FilterMode,
) -> Vec<Tally> {
    let n_users = m.n_users();
    let n_items = m.n_items();
    let mut user_alive = vec![true; n_users];
    let mut item_alive = vec![true; n_items];
    let mut rounds = Vec::new();
    loop {
        // Users judged on the tracks still alive.
        let lens: Vec<u32> = (0..n_users)
            .into_par_iter()
            .map(|u| {
                if !user_alive[u] {
                    return 0;
                }
                row(m, u)
                    .filter(|&k| item_alive[m.items[k] as usize])
                    .count() as u32
            })
            .collect();
        let mut changed = false;
        for (alive, &len) in user_alive.iter_mut().zip(&lens) {
            if *alive && len < min_user_tracks.max(1) {
                *alive = false;
                changed = true;
            }
        }
        // Tracks judged on the users still alive.
        let listeners: Vec<AtomicU32> = (0..n_items).map(|_| AtomicU32::new(0)).collect();
        (0..n_users).into_par_iter().for_each(|u| {
            if user_alive[u] {
                for k in row(m, u) {
                    let i = m.items[k] as usize;
                    if item_alive[i] {
                        listeners[i].fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        for (alive, n) in item_alive.iter_mut().zip(&listeners) {
            if *alive && n.load(Ordering::Relaxed) < min_track_users.max(1) {
                *alive = false;
                changed = true;
            }
        }
        rounds.push(survivors(m, &user_alive, &item_alive));
        if !changed || mode == FilterMode::Once {
            break;
        }
    }
    compact(m, &user_alive, &item_alive);
    rounds
}

fn row(m: &Interactions, u: usize) -> std::ops::Range<usize> {
    m.indptr[u] as usize..m.indptr[u + 1] as usize
}

fn survivors(m: &Interactions, user_alive: &[bool], item_alive: &[bool]) -> Tally {
    let (pairs, events) = (0..m.n_users())
        .into_par_iter()
        .filter(|&u| user_alive[u])
        .map(|u| {
            row(m, u)
                .filter(|&k| item_alive[m.items[k] as usize])
                .fold((0u64, 0u64), |(p, e), k| {
                    (p + 1, e + m.value.decode(m.counts[k]) as u64)
                })
        })
        .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    Tally {
        users: user_alive.iter().filter(|&&a| a).count() as u64,
        items: item_alive.iter().filter(|&&a| a).count() as u64,
        pairs,
        events,
    }
}

/// Removes dead users, dead tracks and their pairs; renumbers tracks densely (order kept).
fn compact(m: &mut Interactions, user_alive: &[bool], item_alive: &[bool]) {
    let mut new_item = vec![u32::MAX; m.n_items()];
    let mut next = 0u32;
    for (i, &alive) in item_alive.iter().enumerate() {
        if alive {
            new_item[i] = next;
            next += 1;
        }
    }
    let keep_time = !m.first_ts.is_empty();
    let mut w = 0usize;
    let mut indptr = vec![0u64];
    let mut cutoff = Vec::new();
    // In-place compaction: the write position never passes the read position.
    for (u, _) in user_alive.iter().enumerate().filter(|(_, alive)| **alive) {
        for k in row(m, u) {
            let ni = new_item[m.items[k] as usize];
            if ni != u32::MAX {
                m.items[w] = ni;
                m.counts[w] = m.counts[k];
                if keep_time {
                    m.first_ts[w] = m.first_ts[k];
                }
                w += 1;
            }
        }
        indptr.push(w as u64);
        if keep_time {
            cutoff.push(m.cutoff_ts[u]);
        }
    }
    m.items.truncate(w);
    m.counts.truncate(w);
    if keep_time {
        m.first_ts.truncate(w);
    }
    m.indptr = indptr;
    m.user_ids = m.user_ids.select(user_alive);
    m.item_ids = m.item_ids.select(item_alive);
    if let Some(names) = m.item_names.take() {
        m.item_names = Some(
            names
                .into_iter()
                .zip(item_alive)
                .filter(|(_, a)| **a)
                .map(|(n, _)| n)
                .collect(),
        );
    }
    m.cutoff_ts = cutoff;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ids::Ids;

    /// Users 0..3; rows given as (item, count).
    fn table(rows: &[&[(u32, u32)]], n_items: usize) -> Interactions {
        let mut m = Interactions {
            user_ids: Ids::Int((0..rows.len() as u64).map(|u| 100 + u).collect()),
            item_ids: Ids::Int((0..n_items as u64).map(|i| 10 * i).collect()),
            indptr: vec![0],
            ..Default::default()
        };
        for r in rows {
            for &(i, c) in *r {
                m.items.push(i);
                m.counts.push(c);
            }
            m.indptr.push(m.items.len() as u64);
        }
        m
    }

    #[test]
    fn fixed_point_reaches_the_core() {
        // Track 3 has one listener (user 2); dropping it leaves user 2 with one track, then user 2
        // goes, then track 2 (only user 2 and user 0) falls to one listener, and so on.
        let rows: &[&[(u32, u32)]] = &[
            &[(0, 1), (1, 2), (2, 1)],
            &[(0, 3), (1, 1)],
            &[(2, 5), (3, 1)],
        ];
        let mut m = table(rows, 4);
        let rounds = filter(&mut m, 2, 2, FilterMode::FixedPoint);
        assert!(rounds.len() >= 2);
        assert_eq!(m.user_ids, Ids::Int(vec![100, 101]));
        assert_eq!(m.item_ids, Ids::Int(vec![0, 10]));
        assert_eq!(m.indptr, vec![0, 2, 4]);
        assert_eq!(m.counts, vec![1, 2, 3, 1]);
        let last = rounds.last().unwrap();
        assert_eq!(
            (last.users, last.items, last.pairs, last.events),
            (2, 2, 4, 7)
        );
    }

    #[test]
    fn once_applies_each_rule_a_single_time() {
        let rows: &[&[(u32, u32)]] = &[
            &[(0, 1), (1, 2), (2, 1)],
            &[(0, 3), (1, 1)],
            &[(2, 5), (3, 1)],
        ];
        let mut m = table(rows, 4);
        let rounds = filter(&mut m, 2, 2, FilterMode::Once);
        assert_eq!(rounds.len(), 1);
        // All users had >= 2 tracks; tracks 0, 1 and 2 have two listeners, track 3 one.
        assert_eq!(m.user_ids, Ids::Int(vec![100, 101, 102]));
        assert_eq!(m.item_ids, Ids::Int(vec![0, 10, 20]));
        assert_eq!(m.indptr, vec![0, 3, 5, 6]);
    }

    #[test]
    fn thresholds_of_one_keep_everything() {
        let rows: &[&[(u32, u32)]] = &[&[(0, 1)], &[(1, 1)]];
        let mut m = table(rows, 2);
        let rounds = filter(&mut m, 1, 1, FilterMode::FixedPoint);
        assert_eq!(rounds.len(), 1);
        assert_eq!(m.nnz(), 2);
    }
}
