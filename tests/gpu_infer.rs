//! What only the GPU scorer has (TF32 or FP32 screening, score tiles, batch chunking), against
//! the CPU scorer, which is the oracle: ids, order and scores must be identical (bit for bit: the
//! GPU re-scores every candidate with the CPU's arithmetic). The oracle is the CPU's full scan
//! (no norm pruning), so the GPU's pruning is checked, not assumed. The behaviours every scorer
//! shares run on the GPU from tests/infer.rs. Run on the GPU host with `--ignored`
//! (`scripts/gpu-test.sh`).

mod common;

use encore::als::Factors;
use encore::gpu::Gpu;
use encore::infer::{CpuScorer, GpuScorer, GpuScorerOptions, Ranked, Scorer};
use encore::util::mix64;

/// Deterministic factors in [-1, 1).
fn factors(n: usize, k: usize, seed: u64) -> Factors {
    let data = (0..n * k)
        .map(|i| (mix64(seed ^ i as u64) % 2_000_001) as f32 / 1_000_000.0 - 1.0)
        .collect();
    Factors { n, k, data }
}

/// Sorted exclusion lists: query b excludes every item i with hash(b, i) % 4 == 0.
fn exclusions(b: usize, n: usize) -> Vec<Vec<u32>> {
    (0..b)
        .map(|q| {
            (0..n as u32)
                .filter(|&i| mix64((q as u64) << 32 | u64::from(i)).is_multiple_of(4))
                .collect()
        })
        .collect()
}

fn gpu_scorer(items: &Factors, options: GpuScorerOptions) -> GpuScorer {
    GpuScorer::new(Gpu::open(0).expect("a CUDA GPU"), items, options).unwrap()
}

fn assert_same(gpu: &[Ranked], cpu: &[Ranked], what: &str) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: batch size");
    for (q, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        assert_eq!(g.items, c.items, "{what}: query {q} items");
        let gb: Vec<u32> = g.scores.iter().map(|s| s.to_bits()).collect();
        let cb: Vec<u32> = c.scores.iter().map(|s| (s + 0.0).to_bits()).collect();
        assert_eq!(gb, cb, "{what}: query {q} scores");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_top_k_equals_cpu_top_k_on_random_factors() {
    // 10,007 items: not a multiple of any tile below. One item is NaN (ranks as -inf).
    let mut items = factors(10_007, 32, 1);
    items.data[5 * 32 + 3] = f32::NAN;
    let queries = factors(37, 32, 2);
    let ex = exclusions(37, items.n);
    let ex_refs: Vec<&[u32]> = ex.iter().map(|v| v.as_slice()).collect();
    let cpu = CpuScorer::unpruned(&items).unwrap();
    for (tf32, prune) in [(true, true), (false, true), (true, false)] {
        for tile in [None, Some(1_000), Some(4_096)] {
            let g = gpu_scorer(
                &items,
                GpuScorerOptions {
                    tf32,
                    tile,
                    prune,
                    ..GpuScorerOptions::default()
                },
            );
            for k in [1, 10, 100, 1000] {
                for filter in [false, true] {
                    let ex = filter.then_some(ex_refs.as_slice());
                    let want = cpu.top_k(&queries.data, ex, k).unwrap();
                    let got = g.top_k(&queries.data, ex, k).unwrap();
                    assert_same(
                        &got,
                        &want,
                        &format!("tf32={tf32} prune={prune} tile={tile:?} k={k} filter={filter}"),
                    );
                }
            }
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn large_batches_are_chunked_and_answers_do_not_depend_on_the_batch() {
    let items = factors(3_000, 24, 7);
    let queries = factors(30, 24, 8);
    let ex = exclusions(30, items.n);
    let ex_refs: Vec<&[u32]> = ex.iter().map(|v| v.as_slice()).collect();
    let cpu = CpuScorer::unpruned(&items).unwrap();
    let want = cpu.top_k(&queries.data, Some(&ex_refs), 20).unwrap();
    let g = gpu_scorer(
        &items,
        GpuScorerOptions {
            max_batch: 7,
            ..GpuScorerOptions::default()
        },
    );
    assert_same(
        &g.top_k(&queries.data, Some(&ex_refs), 20).unwrap(),
        &want,
        "chunks of 7",
    );
    // One query alone gets the answer it got inside the batch.
    let one = g
        .top_k(&queries.data[24 * 13..24 * 14], Some(&ex_refs[13..14]), 20)
        .unwrap();
    assert_same(&one, &want[13..14], "query 13 alone");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn norm_pruning_is_exact_with_tf32_and_fp32_screening_over_many_blocks() {
    // Heavy-tailed norms with planted equal-score pairs whose longer copy has the higher id, a NaN
    // row, 150,000 items (several first blocks), k = 64 (the cuBLAS path and the small path).
    let k = 64;
    let items = common::factors::heavy_tailed_items(150_000, k, 13, true);
    let cpu = CpuScorer::unpruned(&items).unwrap();
    for tf32 in [true, false] {
        let g = gpu_scorer(
            &items,
            GpuScorerOptions {
                tf32,
                max_batch: 256,
                ..GpuScorerOptions::default()
            },
        );
        for b in [1, 3, 40, 600] {
            let q = common::factors::queries_for_ties(b, k, 14 + b as u64);
            let ex = common::factors::exclusions(b, items.n, 3);
            let ex_refs: Vec<&[u32]> = ex.iter().map(Vec::as_slice).collect();
            for top in [1, 10, 100, 1000] {
                for filter in [None, Some(ex_refs.as_slice())] {
                    let what = format!("tf32={tf32} b={b} k={top} filter={}", filter.is_some());
                    let want = cpu.top_k(&q, filter, top).unwrap();
                    let before = g.items_scored().unwrap();
                    let got = g.top_k(&q, filter, top).unwrap();
                    assert_same(&got, &want, &what);
                    let scored = g.items_scored().unwrap() - before;
                    if top == 10 {
                        assert!(
                            scored * 4 < (b * items.n) as u64,
                            "{what}: scored {scored} of {}",
                            b * items.n
                        );
                    }
                }
            }
            let r = g.top_k(&q, None, 100).unwrap();
            assert!(
                r.iter().any(|x| x.scores.windows(2).any(|w| w[0] == w[1])),
                "b={b}: the planted ties never reached a top-100"
            );
        }
    }
}
