//! Throughput of exact CPU top-K ([`CpuScorer`]) at recommendation-serving shapes.
//!
//! - `topk/batch1000`: 1000 users × 64 factors against 200,000 items, K = 10, ~50 excluded items
//!   per user (their "training items") — a batch `encore` evaluation or offline scoring runs;
//! - `topk/batch1000_materialise`: the same answer computed the way implicit 0.7.3's CPU
//!   `recommend` does (one GEMM per batch of 100 users into a full batch × items score block,
//!   excluded items masked, a k-heap per row), on the same GEMM and threads — the baseline the
//!   tiled scorer must beat (implicit itself uses numpy's BLAS, which may be faster or slower
//!   than matrixmultiply; this isolates the algorithm);
//! - `topk/single`: one user (B = 1), as a server answering one request sees it.
//!
//! Factors are standard-normal-ish (mixed signs, like trained ALS factors), seeded. Throughput is
//! users per second; the summary prints the ratio to the baseline. Everything runs on the global
//! rayon pool (all cores). `cargo bench --bench topk` takes about half a minute; `cargo test
//! --benches` runs each benchmark once and checks the two batch methods agree.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, measurement::WallTime};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;

use encore::als::Factors;
use encore::infer::{CpuScorer, Ranked, Scorer};
use encore::sys::Machine;

const N_ITEMS: usize = 200_000;
const N_USERS: usize = 1000;
const FACTORS: usize = 64;
const K: usize = 10;
const EXCLUDED_PER_USER: usize = 50;
/// Users per GEMM in the baseline: implicit 0.7.3's `topk` uses batches of 100 queries.
const BASELINE_BATCH: usize = 100;

/// Roughly standard-normal factors (sum of four uniforms, centred and scaled).
fn factors(n: usize, seed: u64) -> Factors {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let data = (0..n * FACTORS)
        .map(|_| {
            let s: f32 = (0..4).map(|_| rng.random::<f32>()).sum();
            (s - 2.0) * 1.7
        })
        .collect();
    Factors {
        n,
        k: FACTORS,
        data,
    }
}

/// `EXCLUDED_PER_USER` distinct sorted item ids per user.
fn excluded(seed: u64) -> Vec<Vec<u32>> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    (0..N_USERS)
        .map(|_| {
            let mut v: Vec<u32> = (0..EXCLUDED_PER_USER)
                .map(|_| rng.random_range(0..N_ITEMS as u32))
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect()
}

/// The baseline, implicit 0.7.3's CPU `topk` (`implicit/cpu/topk.pyx` + `select.h`) on the same
/// GEMM: per batch of 100 users, the full batch × items score block, excluded items set to
/// −f32::MAX, then per row a k-heap fed by a scalar threshold test. Batches run in parallel.
fn materialise(items: &Factors, users: &Factors, exclude: &[&[u32]], k: usize) -> Vec<Ranked> {
    let f = items.k;
    let y = ArrayView2::from_shape((items.n, f), &items.data[..]).expect("n x k");
    users
        .data
        .par_chunks(BASELINE_BATCH * f)
        .zip(exclude.par_chunks(BASELINE_BATCH))
        .flat_map_iter(|(q, ex)| {
            let m = q.len() / f;
            let qv = ArrayView2::from_shape((m, f), q).expect("m x k");
            let mut block = vec![0.0f32; m * items.n];
            let mut c = ArrayViewMut2::from_shape((m, items.n), &mut block[..]).expect("m x n");
            general_mat_mul(1.0, &qv, &y.t(), 0.0, &mut c);
            let mut out = Vec::with_capacity(m);
            for (row, ex) in block.chunks_mut(items.n).zip(ex) {
                for &i in ex.iter() {
                    row[i as usize] = -f32::MAX;
                }
                // Min-heap of (score, id) by score: the root is the threshold.
                let mut heap: BinaryHeap<Reverse<(Score, u32)>> = BinaryHeap::with_capacity(k + 1);
                for (i, &s) in row.iter().enumerate() {
                    if heap.len() < k || heap.peek().is_some_and(|r| s > (r.0).0.0) {
                        if heap.len() >= k {
                            heap.pop();
                        }
                        heap.push(Reverse((Score(s), i as u32)));
                    }
                }
                let best = heap.into_sorted_vec(); // Reverse: best first
                out.push(Ranked {
                    items: best.iter().map(|r| (r.0).1).collect(),
                    scores: best.iter().map(|r| (r.0).0.0).collect(),
                });
            }
            out
        })
        .collect()
}

/// An f32 ordered by `total_cmp`, for the baseline's heap.
#[derive(Clone, Copy, PartialEq)]
struct Score(f32);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Wall time per benchmark over every timed call, for the summary: (id, users, time).
static TIMES: Mutex<Vec<(String, u64, Duration)>> = Mutex::new(Vec::new());

fn bench(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, users: u64, f: impl Fn() -> usize) {
    let id = name.to_string();
    g.throughput(Throughput::Elements(users));
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(f());
            }
            let d = t.elapsed();
            if let Ok(mut times) = TIMES.lock() {
                times.push((id.clone(), iters * users, d));
            }
            d
        })
    });
}

fn topk(c: &mut Criterion) {
    let m = Machine::detect();
    let items = factors(N_ITEMS, 1);
    let users = factors(N_USERS, 2);
    let exclude = excluded(3);
    let ex: Vec<&[u32]> = exclude.iter().map(Vec::as_slice).collect();
    let scorer = CpuScorer::new(&items).expect("valid factors");
    println!(
        "exact top-K on {} ({} cores, {} rayon threads): {N_USERS} users x {FACTORS} factors vs \
         {N_ITEMS} items, K = {K}, ~{EXCLUDED_PER_USER} excluded per user, tile {} items",
        m.cpu,
        m.cores,
        rayon::current_num_threads(),
        scorer.tile()
    );
    // The two batch methods must agree before their speeds mean anything.
    let tiled = scorer
        .top_k(&users.data, Some(&ex), K)
        .expect("valid query");
    let base = materialise(&items, &users, &ex, K);
    assert_eq!(tiled.len(), base.len());
    for (a, b) in tiled.iter().zip(&base) {
        assert_eq!(a.items, b.items, "tiled and materialised top-K differ");
    }

    let mut g = c.benchmark_group("topk");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    bench(&mut g, "batch1000", N_USERS as u64, || {
        scorer
            .top_k(&users.data, Some(&ex), K)
            .map_or(0, |r| r.len())
    });
    bench(&mut g, "batch1000_materialise", N_USERS as u64, || {
        materialise(&items, &users, &ex, K).len()
    });
    g.sample_size(50);
    bench(&mut g, "single", 1, || {
        scorer
            .top_k(users.row(0), Some(&ex[..1]), K)
            .map_or(0, |r| r.len())
    });
    g.finish();
}

/// Users per second per benchmark and the tiled scorer's speed-up over the baseline.
fn summary() {
    let Ok(times) = TIMES.lock() else { return };
    let rate = |id: &str| {
        let (n, secs) = times
            .iter()
            .filter(|(name, _, _)| name == id)
            .fold((0u64, 0f64), |(n, s), (_, u, d)| {
                (n + u, s + d.as_secs_f64())
            });
        (secs > 0.0).then(|| n as f64 / secs)
    };
    let flops = 2.0 * (N_ITEMS * FACTORS) as f64;
    println!("\nsummary (users/s, mean over all timed iterations, all threads):");
    for id in ["batch1000", "batch1000_materialise", "single"] {
        if let Some(r) = rate(id) {
            println!(
                "  {id:<22} {r:>9.0} users/s  {:>7.3} ms/user  {:>6.1} GFLOP/s",
                1e3 / r,
                r * flops / 1e9
            );
        }
    }
    if let (Some(t), Some(b)) = (rate("batch1000"), rate("batch1000_materialise")) {
        println!("  tiled vs materialise-and-partition: {:.2}x", t / b);
    }
}

criterion_group!(benches, topk);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Under `cargo test --benches` each benchmark runs once: no numbers worth summarising.
    if std::env::args().any(|a| a == "--bench") {
        summary();
    }
}
