//! Behaviour of exact top-K scoring and item similarity (`encore::infer`), through the public API.
//! The behaviours of the `Scorer` seam are written once and run on every backend
//! (`on_every_backend!`: the CPU always, the GPU with `--ignored` on a GPU host); the rest pin
//! what only the CPU scorer has (thread pools, its tile shapes).
//!
//! The oracle is a full sort: every score computed exactly, ordered by score descending then item
//! index ascending. Integer-valued factors make every dot product exact in f32 whatever the
//! summation order, so ids, order and scores must match the oracle bit for bit — heavy ties
//! included. Float factors are compared against the scorer itself (thread counts, batching) or
//! within rounding (against f64 brute force).

mod common;

use common::backends::Device;
use encore::Error;
use encore::als::Factors;
use encore::infer::{CpuScorer, CpuSimilar, Ranked, Scorer, normalize_rows, similar_items};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// Factors with integer values in `-span..=span` (exact products and sums for small k).
fn int_factors(n: usize, k: usize, span: i32, rng: &mut Pcg64Mcg) -> Factors {
    let data = (0..n * k)
        .map(|_| rng.random_range(-span..=span) as f32)
        .collect();
    Factors { n, k, data }
}

/// Factors uniform in [-1, 1).
fn float_factors(n: usize, k: usize, rng: &mut Pcg64Mcg) -> Factors {
    let data = (0..n * k)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    Factors { n, k, data }
}

/// Sorted, distinct random item ids: each item excluded with probability `p`.
fn random_exclude(n: usize, p: f64, rng: &mut Pcg64Mcg) -> Vec<u32> {
    (0..n as u32).filter(|_| rng.random_bool(p)).collect()
}

/// The oracle: every score in f64, sorted (score desc, index asc), excluded ids dropped.
fn brute_force(items: &Factors, q: &[f32], exclude: &[u32], k: usize) -> Ranked {
    let mut all: Vec<(f64, u32)> = (0..items.n as u32)
        .filter(|i| exclude.binary_search(i).is_err())
        .map(|i| {
            let s = items
                .row(i as usize)
                .iter()
                .zip(q)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum::<f64>();
            // +0.0: −0 and +0 are the same score (total_cmp below would split them).
            (s + 0.0, i)
        })
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    all.truncate(k);
    Ranked {
        items: all.iter().map(|e| e.1).collect(),
        scores: all.iter().map(|e| e.0 as f32).collect(),
    }
}

/// Runs a scorer over `items` with `tile` and checks every query against the oracle exactly
/// (integer factors only).
fn assert_exact(
    dev: Device,
    items: &Factors,
    tile: usize,
    q: &Factors,
    ex: &[Vec<u32>],
    k: usize,
    what: &str,
) {
    let scorer = dev.scorer_with(items, Some(tile), true);
    let exclude: Vec<&[u32]> = ex.iter().map(Vec::as_slice).collect();
    let got = scorer.top_k(&q.data, Some(&exclude), k).unwrap();
    assert_eq!(got.len(), q.n, "{what}");
    for (b, r) in got.iter().enumerate() {
        let want = brute_force(items, q.row(b), &ex[b], k);
        assert_eq!(r, &want, "{what}, query {b}");
    }
}

on_every_backend! {
    fn top_k_without_exclusions_matches_a_full_sort(dev: Device) {
        let mut rng = Pcg64Mcg::seed_from_u64(2);
        let items = int_factors(777, 6, 9, &mut rng);
        let q = int_factors(9, 6, 9, &mut rng);
        let scorer = dev.scorer_with(&items, Some(100), true);
        let got = scorer.top_k(&q.data, None, 25).unwrap();
        for (b, r) in got.iter().enumerate() {
            assert_eq!(r, &brute_force(&items, q.row(b), &[], 25), "query {b}");
        }
    }

    fn k_of_1000_and_k_beyond_the_remaining_items(dev: Device) {
        let mut rng = Pcg64Mcg::seed_from_u64(3);
        let items = int_factors(1500, 8, 30, &mut rng);
        let q = int_factors(3, 8, 30, &mut rng);
        let exclude: Vec<Vec<u32>> = (0..3)
            .map(|_| random_exclude(1500, 0.4, &mut rng))
            .collect();
        assert_exact(dev, &items, 512, &q, &exclude, 1000, "K = 1000");
        // K larger than what is left (about 900 items), up to the largest K the backend
        // answers: every remaining item, in order.
        let scorer = dev.scorer_with(&items, Some(512), true);
        let beyond = scorer.max_k().min(5000);
        assert!(beyond > 1500 - exclude.iter().map(Vec::len).min().unwrap());
        assert_exact(dev, &items, 512, &q, &exclude, beyond, "K > items");
        let ex: Vec<&[u32]> = exclude.iter().map(Vec::as_slice).collect();
        let got = scorer.top_k(&q.data, Some(&ex), scorer.max_k()).unwrap();
        for (r, e) in got.iter().zip(&exclude) {
            assert_eq!(r.items.len(), 1500 - e.len());
        }
        // Past the backend's limit (the GPU's 1024) is a clear error, never a short answer.
        if let Some(over) = scorer.max_k().checked_add(1) {
            assert_config(scorer.top_k(&q.data, None, over), "k above max_k");
        }
    }

    fn a_query_with_every_item_excluded_gets_an_empty_list(dev: Device) {
        let mut rng = Pcg64Mcg::seed_from_u64(4);
        let items = int_factors(300, 4, 5, &mut rng);
        let q = int_factors(2, 4, 5, &mut rng);
        let all: Vec<u32> = (0..300).collect();
        let scorer = dev.scorer_with(&items, Some(64), true);
        let got = scorer.top_k(&q.data, Some(&[&all, &[]]), 10).unwrap();
        assert!(got[0].items.is_empty() && got[0].scores.is_empty());
        assert_eq!(got[1].items.len(), 10);
    }

    fn heavy_ties_break_by_lower_item_index(dev: Device) {
        let mut rng = Pcg64Mcg::seed_from_u64(5);
        // Values in {-1, 0, 1} over 2 factors: only 9 distinct scores among 5000 items.
        let items = int_factors(5000, 2, 1, &mut rng);
        let q = int_factors(70, 2, 1, &mut rng);
        let exclude: Vec<Vec<u32>> = (0..70)
            .map(|_| random_exclude(5000, 0.3, &mut rng))
            .collect();
        for (tile, k) in [(1, 3), (97, 1), (2048, 100), (333, 1000)] {
            assert_exact(
                dev,
                &items,
                tile,
                &q,
                &exclude,
                k,
                &format!("tile {tile}, K {k}"),
            );
        }
        // All-equal scores: the answer is the lowest ids not excluded.
        let ones = Factors {
            n: 1000,
            k: 1,
            data: vec![1.0; 1000],
        };
        let scorer = dev.scorer_with(&ones, Some(64), true);
        let got = scorer.top_k(&[2.0], Some(&[&[0, 2, 3]]), 4).unwrap();
        assert_eq!(got[0].items, vec![1, 4, 5, 6]);
        assert_eq!(got[0].scores, vec![2.0; 4]);
    }

    fn a_query_gets_the_same_answer_alone_or_in_a_batch(dev: Device) {
        // Alone, a query is scored by the GEMV kernel (where the CPU has FMA); in a batch, by GEMM.
        let mut rng = Pcg64Mcg::seed_from_u64(7);
        for f in [24, 64, 257] {
            let items = float_factors(1500, f, &mut rng);
            let q = float_factors(300, f, &mut rng);
            let scorer = dev.scorer(&items);
            let batch = scorer.top_k(&q.data, None, 20).unwrap();
            for b in [0, 1, 255, 256, 299] {
                let alone = scorer.top_k(q.row(b), None, 20).unwrap();
                assert_eq!(alone[0], batch[b], "{f} factors, query {b}");
                let pair = scorer.top_k(&q.data[b * f..(b + 1) * f].repeat(2), None, 20);
                assert_eq!(pair.unwrap()[1], batch[b], "{f} factors, query {b} twice");
            }
        }
    }

    fn float_factors_match_brute_force_within_rounding(dev: Device) {
        let mut rng = Pcg64Mcg::seed_from_u64(8);
        let items = float_factors(2500, 64, &mut rng);
        let q = float_factors(10, 64, &mut rng);
        let scorer = dev.scorer(&items);
        let got = scorer.top_k(&q.data, None, 30).unwrap();
        for (b, r) in got.iter().enumerate() {
            let want = brute_force(&items, q.row(b), &[], 30);
            // Rank by rank the scores agree; an id may differ only where two scores nearly tie.
            for (j, (&s, &w)) in r.scores.iter().zip(&want.scores).enumerate() {
                assert!((s - w).abs() < 1e-4, "query {b} rank {j}: {s} vs {w}");
            }
            assert!(r.scores.windows(2).all(|w| w[0] >= w[1]));
        }
    }

    fn nan_scores_rank_last_as_negative_infinity(dev: Device) {
        let mut items = Factors {
            n: 5,
            k: 1,
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0],
        };
        items.data[3] = f32::NAN;
        let scorer = dev.scorer(&items);
        let got = scorer.top_k(&[1.0], None, 5).unwrap();
        assert_eq!(got[0].items, vec![4, 2, 1, 0, 3]);
        assert_eq!(got[0].scores[4], f32::NEG_INFINITY);
    }

    fn empty_batches_and_empty_catalogues(dev: Device) {
        let items = Factors::zeros(0, 4);
        let scorer = dev.scorer(&items);
        assert_eq!(
            scorer.top_k(&[1.0; 8], None, 3).unwrap(),
            vec![
                Ranked {
                    items: vec![],
                    scores: vec![]
                };
                2
            ]
        );
        let scorer = dev.scorer(&Factors::zeros(10, 4));
        assert!(scorer.top_k(&[], None, 3).unwrap().is_empty());
    }

    /// Norm pruning (the default) returns exactly the full scan's answer, ties by lower id included,
    /// and computes far fewer scores on factors whose norms spread like trained ones.
    fn norm_pruning_is_exact_and_skips_most_items(dev: Device) {
        let k = 8;
        // 150,000 items: several of the GPU's first 16 Ki-item blocks, so the fraction scored
        // measures pruning, not the block size.
        let items = common::factors::heavy_tailed_items(150_000, k, 5, true);
        let full = CpuScorer::unpruned(&items).unwrap();
        for (b, tile) in [(1, 256), (7, 200), (300, 100)] {
            let pruned = dev.scorer_with(&items, Some(tile), true);
            let q = common::factors::queries_for_ties(b, k, 6 + b as u64);
            let ex = common::factors::exclusions(b, items.n, 3);
            let ex_refs: Vec<&[u32]> = ex.iter().map(Vec::as_slice).collect();
            for top in [1, 10, 100, 1000] {
                for filter in [None, Some(ex_refs.as_slice())] {
                    let want = full.top_k(&q, filter, top).unwrap();
                    let before = pruned.items_scored().unwrap();
                    let got = pruned.top_k(&q, filter, top).unwrap();
                    assert_eq!(got, want, "b={b} tile={tile} k={top}");
                    let scored = pruned.items_scored().unwrap() - before;
                    if top == 10 {
                        assert!(
                            scored * 4 < (b * items.n) as u64,
                            "b={b}: scored {scored} of {} (pruning should skip most)",
                            b * items.n
                        );
                    }
                }
            }
            // The planted ties do reach the answers: some answer holds two equal scores.
            let r = pruned.top_k(&q, None, 100).unwrap();
            assert!(
                r.iter().any(|x| x.scores.windows(2).any(|w| w[0] == w[1])),
                "b={b}: no tie in any top-100"
            );
        }
        // Flat norms: nothing can be skipped, still exact.
        let mut rng = Pcg64Mcg::seed_from_u64(9);
        let flat = float_factors(3_000, k, &mut rng);
        let q = float_factors(5, k, &mut rng);
        assert_eq!(
            dev.scorer(&flat)
                .top_k(&q.data, None, 10)
                .unwrap(),
            CpuScorer::unpruned(&flat)
                .unwrap()
                .top_k(&q.data, None, 10)
                .unwrap()
        );
    }
}

/// `f` run on a rayon pool of `threads` threads.
fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn tiled_top_k_equals_a_full_sort_over_many_shapes() {
    let mut rng = Pcg64Mcg::seed_from_u64(1);
    // (B, factors, n_items, tile, K): tiles that divide n_items and tiles that do not, a tile of
    // one item, a tile larger than the catalogue, batches around the 256-query chunk size.
    let cases = [
        (1, 4, 100, 7, 5),
        (1, 8, 1000, 64, 10),
        (3, 1, 50, 1, 3),
        (5, 16, 2049, 256, 20),
        (256, 8, 640, 64, 10),
        (257, 8, 641, 100, 1),
        (130, 3, 300, 1000, 7),
        (7, 32, 3000, CpuScorer::default_tile(32), 50),
        (2, 5, 999, 333, 998),
        (4, 300, 500, 128, 10),
        (6, 300, 500, 128, 10),
    ];
    for (i, &(b, f, n, tile, k)) in cases.iter().enumerate() {
        let items = int_factors(n, f, 20, &mut rng);
        let q = int_factors(b, f, 20, &mut rng);
        let exclude: Vec<Vec<u32>> = (0..b)
            .map(|u| random_exclude(n, [0.0, 0.05, 0.5][u % 3], &mut rng))
            .collect();
        assert_exact(
            Device::Cpu,
            &items,
            tile,
            &q,
            &exclude,
            k,
            &format!("case {i}"),
        );
    }
}

#[test]
fn results_are_identical_on_1_and_4_threads() {
    let mut rng = Pcg64Mcg::seed_from_u64(6);
    let items = float_factors(3000, 16, &mut rng);
    for b in [1, 5, 300] {
        let q = float_factors(b, 16, &mut rng);
        let exclude: Vec<Vec<u32>> = (0..b)
            .map(|_| random_exclude(3000, 0.02, &mut rng))
            .collect();
        let ex: Vec<&[u32]> = exclude.iter().map(Vec::as_slice).collect();
        let scorer = CpuScorer::with_tile(&items, 128).unwrap();
        let one = on_threads(1, || scorer.top_k(&q.data, Some(&ex), 50).unwrap());
        let four = on_threads(4, || scorer.top_k(&q.data, Some(&ex), 50).unwrap());
        assert_eq!(one, four, "B = {b}");
    }
}

#[test]
fn the_scorer_gives_back_each_items_factors() {
    let mut rng = Pcg64Mcg::seed_from_u64(10);
    let items = float_factors(1001, 7, &mut rng);
    let scorer = CpuScorer::with_tile(&items, 100).unwrap();
    for i in [0, 99, 100, 999, 1000] {
        assert_eq!(scorer.item(i).unwrap(), items.row(i), "item {i}");
    }
    assert_eq!(scorer.item(1001), None);
}

#[test]
fn similar_items_match_brute_force_cosine_and_exclude_the_query() {
    let mut rng = Pcg64Mcg::seed_from_u64(9);
    let mut items = float_factors(1200, 12, &mut rng);
    // Item 7 has no direction: it scores 0 against everything, and everything against it.
    items.data[7 * 12..8 * 12].fill(0.0);
    let sim = CpuSimilar::new(&items).unwrap();
    let queries = [0u32, 7, 500, 1199];
    let got = sim.similar_items(&queries, 15).unwrap();
    let cos = |a: usize, b: usize| {
        let (x, y) = (items.row(a), items.row(b));
        let dot: f64 = x
            .iter()
            .zip(y)
            .map(|(&p, &q)| f64::from(p) * f64::from(q))
            .sum();
        let n = |v: &[f32]| v.iter().map(|&p| f64::from(p).powi(2)).sum::<f64>().sqrt();
        let d = n(x) * n(y);
        if d > 0.0 { dot / d } else { 0.0 }
    };
    for (&i, r) in queries.iter().zip(&got) {
        assert_eq!(r.items.len(), 15);
        assert!(!r.items.contains(&i), "item {i} is similar to itself");
        let mut want: Vec<(f64, u32)> = (0..1200u32)
            .filter(|&j| j != i)
            .map(|j| (cos(i as usize, j as usize), j))
            .collect();
        want.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (j, (&s, &item)) in r.scores.iter().zip(&r.items).enumerate() {
            assert!((f64::from(s) - want[j].0).abs() < 1e-5, "item {i} rank {j}");
            assert!((f64::from(s) - cos(i as usize, item as usize)).abs() < 1e-5);
        }
    }
    // The zero item: all scores 0, so the lowest ids other than itself.
    assert_eq!(
        got[1].items,
        (0..16).filter(|&j| j != 7).collect::<Vec<u32>>()
    );
    assert!(got[1].scores.iter().all(|&s| s == 0.0));
    // The free function over any scorer gives the same answer.
    let unit = normalize_rows(&items);
    let scorer = CpuScorer::new(&unit).unwrap();
    assert_eq!(similar_items(&scorer, &unit, &queries, 15).unwrap(), got);
}

/// Asserts `r` is an `Error::Config` (a bad argument, not a panic or an I/O error).
fn assert_config<T: std::fmt::Debug>(r: encore::Result<T>, what: &str) {
    match r {
        Err(Error::Config(_)) => {}
        other => panic!("{what}: expected a configuration error, got {other:?}"),
    }
}

on_every_backend! {
    fn bad_requests_are_errors_not_panics(dev: Device) {
        let items = Factors::zeros(10, 4);
        let scorer = dev.scorer(&items);
        let q = [0.5f32; 8];
        assert_config(scorer.top_k(&q, None, 0), "k = 0");
        assert_config(scorer.top_k(&q[..7], None, 3), "ragged queries");
        assert_config(
            scorer.top_k(&q, Some(&[&[1]]), 3),
            "one exclude list for two queries",
        );
        assert_config(
            scorer.top_k(&q, Some(&[&[3, 1], &[]]), 3),
            "unsorted exclude",
        );
        assert_config(
            scorer.top_k(&q, Some(&[&[1, 10], &[]]), 3),
            "excluded id out of range",
        );
    }
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let items = Factors::zeros(10, 4);
    let scorer = CpuScorer::new(&items).unwrap();
    let ragged = Factors {
        n: 3,
        k: 4,
        data: vec![0.0; 11],
    };
    assert_config(CpuScorer::new(&ragged), "factors shorter than n × k");
    assert_config(CpuScorer::new(&Factors::zeros(3, 0)), "no factor columns");
    assert_config(CpuScorer::with_tile(&items, 0), "tile 0");
    assert_config(CpuSimilar::new(&ragged), "similar over ragged factors");
    let sim = CpuSimilar::new(&items).unwrap();
    assert_config(sim.similar_items(&[10], 3), "similar to an unknown item");
    assert_config(sim.similar_items(&[1], 0), "similar with k = 0");
    assert_config(
        similar_items(&scorer, &Factors::zeros(9, 4), &[1], 3),
        "normalised factors of another shape",
    );
}

/// A lone query's first waves run on the calling thread and later, larger ones in the pool (the
/// pool entered once, mid-scan): the answer is still the full scan's, from outside the pool and
/// inside one. Flat norms keep every wave going to the end of the catalogue.
#[test]
fn a_lone_query_moving_from_the_calling_thread_to_the_pool_stays_exact() {
    let mut rng = Pcg64Mcg::seed_from_u64(21);
    let items = float_factors(40_000, 64, &mut rng);
    let q = float_factors(3, 64, &mut rng);
    let ex = random_exclude(items.n, 0.01, &mut rng);
    let pruned = CpuScorer::new(&items).unwrap();
    let full = CpuScorer::unpruned(&items).unwrap();
    for b in 1..=3 {
        let qs = &q.data[..b * 64];
        let exs = vec![ex.as_slice(); b];
        let want = full.top_k(qs, Some(&exs), 10).unwrap();
        assert_eq!(pruned.top_k(qs, Some(&exs), 10).unwrap(), want, "B = {b}");
        let inside = on_threads(3, || pruned.top_k(qs, Some(&exs), 10).unwrap());
        assert_eq!(inside, want, "B = {b} inside a pool");
    }
}
