//! `tune` end to end on data whose best configuration is known by construction, and the guard
//! against tuning on the validation split.

use std::collections::BTreeMap;
use std::path::Path;

use encore::als::{self, AlsConfig, Confidence};
use encore::data::csr::Csr;
use encore::data::dataset::Dataset;
use encore::data::prep::{PrepConfig, prep};
use encore::eval::eval_users;
use encore::gpu::DeviceChoice;
use encore::synth::{Scale, SynthConfig, generate};
use encore::tune::{Dim, Search, Space, TuneOptions, TuneReport, holdout::holdout, tune};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// A dataset of `clusters` taste groups: each user plays a dozen tracks of their group's block
/// (20 to 200 plays) and three random tracks once. Four groups need k ≥ 4 to be told apart, and
/// a huge λ shrinks every factor to the popular direction: of k ∈ {1, 8} × λ ∈ {0.1, 10⁴}, the
/// planted best is k = 8, λ = 0.1.
fn clustered(root: &Path) -> Dataset {
    let (clusters, users_per, block) = (4usize, 40usize, 30usize);
    let mut rng = Pcg64Mcg::seed_from_u64(5);
    let mut lines = String::from("user,item,count\n");
    for g in 0..clusters {
        for u in 0..users_per {
            let user = g * users_per + u;
            let mut items: Vec<usize> = (0..block).map(|i| g * block + i).collect();
            for i in 0..12 {
                let j = rng.random_range(i..block);
                items.swap(i, j);
            }
            for &i in &items[..12] {
                lines += &format!("{user},{i},{}\n", rng.random_range(20..200));
            }
            for _ in 0..3 {
                lines += &format!("{user},{},1\n", rng.random_range(0..clusters * block));
            }
        }
    }
    let raw = root.join("plays.csv");
    std::fs::write(&raw, lines).unwrap();
    let ds = root.join("ds");
    prep(&PrepConfig::new(&raw, &ds)).unwrap();
    Dataset::load(&ds).unwrap()
}

fn grid_options() -> TuneOptions {
    TuneOptions {
        space: Space {
            regularization: Dim::Values(vec![0.1, 1e4]),
            alpha: Dim::Values(vec![1.0]),
            confidence: vec![Confidence::Log],
            factors: vec![1, 8],
            reg_exponent: vec![0.5],
        },
        search: Search::Grid { points: 2 },
        base: AlsConfig {
            iterations: 6,
            ..AlsConfig::default()
        },
        min_iterations: 2,
        eta: 2,
        device: DeviceChoice::Cpu,
        quiet: true,
        ..TuneOptions::default()
    }
}

#[test]
fn tune_finds_the_planted_best_configuration_and_scores_it_honestly() {
    let dir = tempfile::tempdir().unwrap();
    let ds = clustered(dir.path());
    let opts = grid_options();
    let r = tune(&ds, &opts).unwrap();
    assert_eq!(r.trials.len(), 4);
    let best = &r.best_config;
    assert_eq!(
        (best.factors, best.regularization),
        (8, 0.1),
        "trials: {:#?}",
        r.trials
    );
    assert_eq!(best.iterations, 6);
    assert_eq!(r.rungs, vec![2, 4, 6]);

    // Brute force on the same hold-out, every configuration trained to the end: the search's
    // choice is the argmax, and its hold-out score is what a plain training run gives.
    let (fit, held) = holdout(&ds.train, opts.holdout, opts.holdout_seed).unwrap();
    let users = eval_users(&held);
    let mut brute = BTreeMap::new();
    for t in &r.trials {
        let cfg = AlsConfig {
            iterations: 6,
            ..t.config.clone()
        };
        let mut b = als::CpuBackend::new(&cfg).unwrap();
        let m = als::train(fit.clone(), &cfg, &mut b, false, |_, _, _, _| Ok(())).unwrap();
        let v = encore::train::validate(&fit, &held, &users, &m.users, &m.items, 10).unwrap();
        brute.insert(t.id, v.ndcg);
        if t.scores.len() == 3 {
            assert!((t.last_ndcg() - v.ndcg).abs() < 1e-9, "trial {}", t.id);
        }
    }
    let argmax = brute
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(id, _)| *id)
        .unwrap();
    assert_eq!(r.trials[r.best].id, argmax);
    // The planted best is clearly best: the others lose by a margin, not by noise.
    let top = brute[&argmax];
    for (id, v) in &brute {
        if *id != argmax {
            assert!(*v < 0.8 * top, "trial {id}: {v} vs best {top}");
        }
    }

    // On valid.npz: the chosen configuration, trained on all of train.npz, beats popularity;
    // its score is that of a plain training run with the same configuration.
    let mut b = als::CpuBackend::new(best).unwrap();
    let m = als::train(ds.train.clone(), best, &mut b, false, |_, _, _, _| Ok(())).unwrap();
    let users = eval_users(&ds.valid);
    let v = encore::train::measure(&ds.train, &ds.valid, &users, &m.users, &m.items, 10).unwrap();
    assert_eq!(v.ndcg, r.on_valid.best.ndcg);
    assert!(r.on_valid.best.ndcg > 1.5 * r.on_valid.popularity.ndcg);
    assert!(r.on_valid.defaults.is_some());
}

#[test]
fn the_search_never_reads_the_validation_split() {
    let dir = tempfile::tempdir().unwrap();
    let ds = clustered(dir.path());
    let mut opts = grid_options();
    opts.compare_defaults = false;
    let a = tune(&ds, &opts).unwrap();
    // Another valid.npz entirely (each user's held-out tracks replaced by others): every trial
    // scores the same, only the final scores on valid change.
    let mut other = ds.clone();
    let mut v = Csr::empty(ds.valid.n_rows, ds.valid.n_cols);
    for u in 0..ds.valid.n_rows {
        let (seen, _) = ds.train.row(u);
        let (held, _) = ds.valid.row(u);
        let mut picked = 0;
        for c in 0..ds.valid.n_cols as u32 {
            if picked < held.len().max(1)
                && seen.binary_search(&c).is_err()
                && held.binary_search(&c).is_err()
            {
                v.indices.push(c);
                v.data.push(1.0);
                picked += 1;
            }
        }
        v.indptr[u + 1] = v.indices.len() as u64;
    }
    other.valid = v;
    let b = tune(&other, &opts).unwrap();
    assert_eq!(scores(&a), scores(&b));
    assert_eq!(a.best_config, b.best_config);
    assert_ne!(a.on_valid.best.ndcg, b.on_valid.best.ndcg);
}

#[test]
fn random_search_on_synthetic_data_beats_popularity_and_reports_every_trial() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = SynthConfig::from_scale(Scale::Tiny, 9);
    cfg.users = 300;
    cfg.tracks = 3_000;
    cfg.artists = 300;
    cfg.events = 60_000;
    let raw = dir.path().join("raw");
    generate(&cfg, &raw, false, true).unwrap();
    let out = dir.path().join("ds");
    prep(&PrepConfig::new(&raw, &out)).unwrap();
    let ds = Dataset::load(&out).unwrap();
    let opts = TuneOptions {
        search: Search::Random { trials: 7, seed: 1 },
        space: Space {
            factors: vec![8, 16],
            ..Space::default()
        },
        base: AlsConfig {
            iterations: 4,
            ..AlsConfig::default()
        },
        min_iterations: 1,
        device: DeviceChoice::Cpu,
        quiet: true,
        ..TuneOptions::default()
    };
    let r = tune(&ds, &opts).unwrap();
    assert_eq!(r.trials.len(), 7);
    assert_eq!(r.rungs, vec![1, 3, 4]);
    // Rungs of 7, then ⌈7/3⌉ = 3, then 1 (failed trials aside).
    let reached = |n: usize| r.trials.iter().filter(|t| t.scores.len() >= n).count();
    assert!(reached(1) >= 6);
    assert!(reached(2) <= 3 && reached(3) == 1);
    assert!(r.on_valid.best.ndcg > r.on_valid.popularity.ndcg);
    assert!(!r.out_of_time);
    // The search is reproducible: the same trials, rungs and scores. Scores are compared to
    // 1e-12, since the metrics' parallel sums may round their last bit differently.
    let again = tune(&ds, &opts).unwrap();
    let (a, b) = (scores(&again), scores(&r));
    assert_eq!(a.len(), b.len());
    for ((ca, sa, ea), (cb, sb, eb)) in a.iter().zip(&b) {
        assert_eq!((ca, ea), (cb, eb));
        assert_eq!(sa.len(), sb.len(), "{ca:?}");
        for (x, y) in sa.iter().zip(sb) {
            assert_eq!(x.0, y.0);
            assert!(
                (x.1 - y.1).abs() <= 1e-12 && (x.2 - y.2).abs() <= 1e-12,
                "{x:?} vs {y:?}"
            );
        }
    }
}

/// A trial as the reproducibility check compares it: configuration, (iterations, nDCG,
/// precision) per rung, error.
type TrialScores = (AlsConfig, Vec<(usize, f64, f64)>, Option<String>);

/// Each trial's configuration and scores (not its timings).
fn scores(r: &TuneReport) -> Vec<TrialScores> {
    r.trials
        .iter()
        .map(|t| {
            let s = t
                .scores
                .iter()
                .map(|s| (s.iterations, s.ndcg, s.precision))
                .collect();
            (t.config.clone(), s, t.error.clone())
        })
        .collect()
}
