//! The tuning hold-out: a second split inside the training matrix.
//!
//! `tune` must not choose hyper-parameters on the listens it then reports on, or the reported
//! score is optimistic (the choice is fitted to `valid`'s noise). So the search trains on part of
//! `train.npz` and scores on the rest of it, the way `prep`'s random split does — each user with
//! n ≥ 2 tracks holds out round(fraction · n) of them (at most n − 1), chosen by a generator
//! seeded from the seed and the user's row — and `valid.npz` is read only once the search is
//! over, to score the chosen configuration trained on all of `train.npz`.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;

use crate::data::csr::Csr;
use crate::data::split::n_held_out;
use crate::error::{Error, Result};
use crate::util::mix64;

/// Splits `train` into (search-train, search-hold-out), disjoint, together exactly `train`.
pub fn holdout(train: &Csr, fraction: f64, seed: u64) -> Result<(Csr, Csr)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::Config(format!(
            "--holdout must be in (0, 1), got {fraction}"
        )));
    }
    // Which entries of each row are held out, row by row in parallel.
    let masks: Vec<Vec<bool>> = (0..train.n_rows)
        .into_par_iter()
        .map(|u| {
            let n = (train.indptr[u + 1] - train.indptr[u]) as usize;
            let mut mask = vec![false; n];
            let k = n_held_out(n, fraction);
            if k > 0 {
                let mut rng = Pcg64Mcg::seed_from_u64(mix64(seed ^ mix64(u as u64)));
                // The first k of a random permutation of the positions (partial Fisher–Yates).
                let mut pos: Vec<u32> = (0..n as u32).collect();
                for i in 0..k {
                    let j = rng.random_range(i..n);
                    pos.swap(i, j);
                    mask[pos[i] as usize] = true;
                }
            }
            mask
        })
        .collect();
    let mut fit = Csr::empty(train.n_rows, train.n_cols);
    let mut held = Csr::empty(train.n_rows, train.n_cols);
    for (u, mask) in masks.iter().enumerate() {
        let (cols, vals) = train.row(u);
        for ((&c, &v), &h) in cols.iter().zip(vals).zip(mask) {
            let m = if h { &mut held } else { &mut fit };
            m.indices.push(c);
            m.data.push(v);
        }
        fit.indptr[u + 1] = fit.indices.len() as u64;
        held.indptr[u + 1] = held.indices.len() as u64;
    }
    Ok((fit, held))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holdout_partitions_each_row_and_keeps_a_training_track() {
        // Rows of 0, 1, 2, 5 and 10 tracks.
        let lens = [0usize, 1, 2, 5, 10];
        let mut m = Csr::empty(lens.len(), 20);
        for (u, &n) in lens.iter().enumerate() {
            for c in 0..n {
                m.indices.push((c * 2) as u32);
                m.data.push((u * 100 + c) as f32);
            }
            m.indptr[u + 1] = m.indices.len() as u64;
        }
        let (fit, held) = holdout(&m, 0.2, 7).unwrap();
        fit.validate("fit").unwrap();
        held.validate("held").unwrap();
        assert_eq!(fit.nnz() + held.nnz(), m.nnz());
        let want_held = [0, 0, 0, 1, 2];
        for (u, &n) in lens.iter().enumerate() {
            let (fc, fv) = fit.row(u);
            let (hc, hv) = held.row(u);
            assert_eq!(hc.len(), want_held[u], "row {u}");
            assert!(
                n == 0 || !fc.is_empty(),
                "row {u} lost every training track"
            );
            // Together they are the row, values with their columns.
            let mut all: Vec<(u32, f32)> = fc.iter().copied().zip(fv.iter().copied()).collect();
            all.extend(hc.iter().copied().zip(hv.iter().copied()));
            all.sort_by_key(|e| e.0);
            let (mc, mv) = m.row(u);
            let want: Vec<(u32, f32)> = mc.iter().copied().zip(mv.iter().copied()).collect();
            assert_eq!(all, want);
        }
        // Seeded: the same seed, the same split; another seed, another one.
        assert_eq!(holdout(&m, 0.2, 7).unwrap().1, held);
        let other = (0..20)
            .map(|s| holdout(&m, 0.2, s).unwrap().1)
            .filter(|h| *h != held)
            .count();
        assert!(other > 0);
        assert!(holdout(&m, 0.0, 1).is_err());
        assert!(holdout(&m, 1.0, 1).is_err());
    }
}
