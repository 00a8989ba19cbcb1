//! Multi-rank GPU training and what it stands on.
//!
//! Always run (CPU): the TCP watchdog that stops NCCL ranks when one is lost: a rank whose
//! connection closes is reported at once, an abort reaches every rank through rank 0, a
//! goodbye is no loss, and a stuck blocking call is reported after the timeout.
//!
//! Ignored (GPU host, `scripts/gpu-test.sh run`, which puts NCCL on `LD_LIBRARY_PATH`):
//! - NCCL with a world of one equals the plain GPU trainer, bit for bit;
//! - 2 and 3 host-staged ranks sharing one GPU (threads of this test) equal one GPU, bit for
//!   bit with the replicated Gram, to rounding with the reduced one, resident and streamed;
//! - 2 and 4 NCCL ranks on as many GPUs equal one GPU (skipped, saying so, with fewer GPUs).

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use encore::als::gpu::{GpuBackend, GpuOptions, GramMode};
use encore::als::{self, AlsConfig, Factors, SolverKind};
use encore::data::csr::Csr;
use encore::dist::nccl::NcclCollective;
use encore::dist::tcp::{TcpCollective, Watchdog};
use encore::dist::{Collective, DeviceCollective, HostStaged, Single, WorldSpec};
use encore::gpu::Gpu;
use encore::util::mix64;

/// A world of `world` TCP ranks on loopback; each rank's collective, in rank order.
fn tcp_world(world: usize, timeout: Duration) -> Vec<TcpCollective> {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let host = std::thread::spawn(move || TcpCollective::host(l, world, "fp", timeout).unwrap());
    let others: Vec<_> = (1..world)
        .map(|rank| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let spec = WorldSpec {
                    rank,
                    world,
                    rendezvous: addr,
                    local_rank: rank,
                };
                TcpCollective::join(&spec, "fp", timeout).unwrap()
            })
        })
        .collect();
    let mut all = vec![host.join().unwrap()];
    all.extend(others.into_iter().map(|h| h.join().unwrap()));
    all
}

fn watchdogs(world: usize, timeout: Duration) -> Vec<Watchdog> {
    tcp_world(world, timeout)
        .into_iter()
        .map(|c| c.into_watchdog(timeout, None))
        .collect()
}

/// Polls `w.lost()` for up to `within`.
fn lost_within(w: &Watchdog, within: Duration) -> Option<String> {
    let t = Instant::now();
    while t.elapsed() < within {
        if let Some(m) = w.lost() {
            return Some(m);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn a_rank_that_vanishes_is_reported_by_every_other_rank_at_once() {
    let mut w = watchdogs(3, Duration::from_secs(30));
    let w2 = w.pop().unwrap();
    let t = Instant::now();
    // Rank 2 is gone without a goodbye (its connection closes, as when it is killed).
    drop(w2);
    let m0 = lost_within(&w[0], Duration::from_secs(5)).expect("rank 0 noticed nothing");
    let m1 = lost_within(&w[1], Duration::from_secs(5)).expect("rank 1 noticed nothing");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(m0.contains("lost rank 2"), "{m0}");
    // Rank 1 hears the cause from rank 0, not merely that rank 0 went away.
    assert!(m1.contains("rank 2"), "{m1}");
}

#[test]
fn an_abort_reaches_every_rank_and_a_goodbye_is_no_loss() {
    let mut w = watchdogs(3, Duration::from_secs(30));
    let mut w1 = w.remove(1);
    w1.abort("a system was not positive definite");
    for (i, r) in w.iter().enumerate() {
        let m = lost_within(r, Duration::from_secs(5)).unwrap_or_else(|| panic!("rank {i}"));
        assert!(
            m.contains("rank 1 failed: a system was not positive definite"),
            "{m}"
        );
    }
    let w = watchdogs(2, Duration::from_secs(30));
    let mut it = w.into_iter();
    let (w0, w1) = (it.next().unwrap(), it.next().unwrap());
    w1.finish();
    assert_eq!(lost_within(&w0, Duration::from_millis(500)), None);
    w0.finish();
}

#[test]
fn a_blocking_call_that_outlives_the_timeout_or_a_loss_is_reported() {
    let calls = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut ranks = tcp_world(2, Duration::from_secs(1)).into_iter();
    let (c0, c1) = (ranks.next().unwrap(), ranks.next().unwrap());
    let seen = calls.clone();
    let w0 = c0.into_watchdog(
        Duration::from_secs(1),
        Some(Box::new(move |m: &str| {
            seen.lock().unwrap().push(m.to_string())
        })),
    );
    let w1 = c1.into_watchdog(Duration::from_secs(1), None);
    // Stuck for longer than the timeout: reported while still inside the call.
    let r: encore::Result<()> = w0.blocking("a test call", || {
        std::thread::sleep(Duration::from_millis(1800));
        Ok(())
    });
    assert!(r.is_ok());
    let got = calls.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("a test call did not return within 1 s"),
        "{got:?}"
    );
    drop(w1);
    drop(w0);
    // A loss while blocked: reported about a second later, without the call returning.
    let calls = Arc::new(AtomicUsize::new(0));
    let mut ranks = tcp_world(2, Duration::from_secs(60)).into_iter();
    let (c0, c1) = (ranks.next().unwrap(), ranks.next().unwrap());
    let n = calls.clone();
    let w0 = c0.into_watchdog(
        Duration::from_secs(60),
        Some(Box::new(move |_m: &str| {
            n.fetch_add(1, Ordering::SeqCst);
        })),
    );
    let w1 = c1.into_watchdog(Duration::from_secs(60), None);
    let r: encore::Result<()> = w0.blocking("joining", || {
        drop(w1);
        std::thread::sleep(Duration::from_millis(2500));
        Err(encore::Error::Runtime("the call failed".into()))
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The call's own failure is reported as the loss that caused it.
    let e = r.unwrap_err().to_string();
    assert!(e.contains("lost rank 1"), "{e}");
}

// ---- GPU ----

/// Heavy-tailed rows: user u has about 2000/(u+1) + 1 tracks among `cols`.
fn heavy_tailed(rows: usize, cols: usize, seed: u64) -> Csr {
    let mut m = Csr::empty(rows, cols);
    m.indptr.clear();
    m.indptr.push(0);
    for r in 0..rows {
        let n = 2000 / (r + 1) + 1;
        let mut row: Vec<u32> = (0..n)
            .map(|j| (mix64(seed ^ mix64((r * 7919 + j) as u64)) % cols as u64) as u32)
            .collect();
        row.sort_unstable();
        row.dedup();
        for c in row {
            m.indices.push(c);
            m.data
                .push(1.0 + (mix64(u64::from(c) ^ r as u64) % 20) as f32);
        }
        m.indptr.push(m.indices.len() as u64);
    }
    m
}

fn gpu() -> Gpu {
    Gpu::open(0).expect("GPU tests run with --ignored on a CUDA host")
}

fn require_nccl() {
    assert!(
        encore::dist::nccl::loadable(),
        "libnccl.so does not load: put a directory with libnccl.so (a link to pip's \
         nvidia/nccl/lib/libnccl.so.2) on LD_LIBRARY_PATH; scripts/gpu-test.sh run does"
    );
}

fn plain(m: &Csr, cfg: &AlsConfig) -> (Factors, Factors) {
    let mut b = GpuBackend::new(gpu(), cfg, GpuOptions::default()).unwrap();
    let t = als::train(m.clone(), cfg, &mut b, false, |_, _, _, _| Ok(())).unwrap();
    (t.users, t.items)
}

/// A rank's factors and its blocks (users, items).
type RankResult = (
    Factors,
    Factors,
    (std::ops::Range<usize>, std::ops::Range<usize>),
);

/// Trains one rank on its own GPU handle with `comm`.
fn rank_train(
    m: &Csr,
    cfg: &AlsConfig,
    gpu: Gpu,
    comm: Box<dyn DeviceCollective>,
    gram: GramMode,
    options: GpuOptions,
) -> RankResult {
    let mut b = GpuBackend::sharded(gpu, cfg, options, comm, gram).unwrap();
    let t = als::train(m.clone(), cfg, &mut b, false, |_, _, _, _| Ok(())).unwrap();
    let blocks = b.blocks().unwrap();
    (t.users, t.items, blocks)
}

/// The largest difference, relative to the largest magnitude of `a`, and how many values
/// differ in any bit.
fn compare(a: &Factors, b: &Factors) -> (f64, usize) {
    assert_eq!((a.n, a.k), (b.n, b.k));
    let scale = a.data.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30) as f64;
    let mut worst = 0f64;
    let mut differ = 0;
    for (x, y) in a.data.iter().zip(&b.data) {
        if x.to_bits() != y.to_bits() {
            differ += 1;
            worst = worst.max(((x - y).abs() as f64) / scale);
        }
    }
    (worst, differ)
}

fn assert_bits(what: &str, a: &Factors, b: &Factors) {
    let (worst, differ) = compare(a, b);
    assert_eq!(
        differ,
        0,
        "{what}: {differ} of {} values differ (largest relative difference {worst:.3e})",
        a.data.len()
    );
}

fn configs() -> Vec<AlsConfig> {
    [SolverKind::Cg, SolverKind::CholeskyFused]
        .into_iter()
        .map(|solver| AlsConfig {
            factors: 16,
            iterations: 3,
            solver,
            ..AlsConfig::default()
        })
        .collect()
}

#[test]
#[ignore = "needs a CUDA GPU and NCCL"]
fn nccl_world_of_one_equals_the_plain_gpu_trainer() {
    require_nccl();
    let m = heavy_tailed(700, 40_000, 5);
    for cfg in configs() {
        let (u, i) = plain(&m, &cfg);
        let g = gpu();
        let comm = NcclCollective::single(&g).unwrap();
        let (ru, ri, _) = rank_train(
            &m,
            &cfg,
            g,
            Box::new(comm),
            GramMode::Replicated,
            GpuOptions::default(),
        );
        assert_bits(&format!("{:?} users", cfg.solver), &u, &ru);
        assert_bits(&format!("{:?} items", cfg.solver), &i, &ri);
    }
}

/// Every rank a thread sharing GPU 0, host-staged over loopback TCP.
fn host_staged(
    m: &Csr,
    cfg: &AlsConfig,
    world: usize,
    gram: GramMode,
    options: GpuOptions,
) -> Vec<RankResult> {
    let comms: Vec<Box<dyn Collective>> = if world == 1 {
        vec![Box::new(Single)]
    } else {
        tcp_world(world, Duration::from_secs(120))
            .into_iter()
            .map(|c| Box::new(c) as Box<dyn Collective>)
            .collect()
    };
    let handles: Vec<_> = comms
        .into_iter()
        .map(|c| {
            let (m, cfg) = (m.clone(), cfg.clone());
            std::thread::spawn(move || {
                rank_train(&m, &cfg, gpu(), Box::new(HostStaged::new(c)), gram, options)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn two_and_three_host_staged_ranks_on_one_gpu_equal_one_gpu() {
    let m = heavy_tailed(700, 40_000, 5);
    for cfg in configs() {
        let (u, i) = plain(&m, &cfg);
        // Resident, and streamed in chunks (a budget a little over the factors).
        let k = cfg.factors;
        let fixed = (m.n_rows + m.n_cols) * k * 4 + k * k * 4 + 64;
        let budgets = [None, Some(fixed + (64 << 10))];
        for budget in budgets {
            let options = GpuOptions {
                memory_budget: budget,
            };
            for world in [2, 3] {
                for (r, (ru, ri, (ub, ib))) in
                    host_staged(&m, &cfg, world, GramMode::Replicated, options)
                        .iter()
                        .enumerate()
                {
                    assert!(!ub.is_empty() && !ib.is_empty(), "rank {r}: {ub:?} {ib:?}");
                    let what = format!(
                        "{:?}, budget {budget:?}, world {world}, rank {r}",
                        cfg.solver
                    );
                    assert_bits(&format!("{what} users"), &u, ru);
                    assert_bits(&format!("{what} items"), &i, ri);
                }
            }
        }
        // The reduced Gram sums per-rank parts: the same answer to rounding, the same bits
        // on every rank.
        let all = host_staged(&m, &cfg, 3, GramMode::Reduced, GpuOptions::default());
        for (r, (ru, ri, _)) in all.iter().enumerate() {
            let (wu, _) = compare(&u, ru);
            let (wi, _) = compare(&i, ri);
            eprintln!(
                "{:?} reduced Gram, 3 ranks, rank {r}: largest relative difference users \
                 {wu:.3e}, items {wi:.3e}",
                cfg.solver
            );
            assert!(wu < 1e-3 && wi < 1e-3, "rank {r}: {wu:.3e} {wi:.3e}");
            assert_bits(&format!("reduced rank {r} vs 0 users"), &all[0].0, ru);
            assert_bits(&format!("reduced rank {r} vs 0 items"), &all[0].1, ri);
        }
    }
}

#[test]
#[ignore = "needs 2 or more CUDA GPUs and NCCL"]
fn two_and_four_nccl_ranks_on_as_many_gpus_equal_one_gpu() {
    let gpus = encore::gpu::device_count();
    if gpus < 2 {
        eprintln!("skipped: {gpus} GPU(s) visible, this test needs 2 or more");
        return;
    }
    require_nccl();
    let m = heavy_tailed(700, 40_000, 5);
    for cfg in configs() {
        let (u, i) = plain(&m, &cfg);
        for world in [2, 4] {
            if world > gpus {
                eprintln!("skipped world {world}: {gpus} GPUs visible");
                continue;
            }
            let handles: Vec<_> = tcp_world(world, Duration::from_secs(120))
                .into_iter()
                .enumerate()
                .map(|(r, c)| {
                    let (m, cfg) = (m.clone(), cfg.clone());
                    std::thread::spawn(move || {
                        let g = Gpu::open(r).unwrap();
                        let comm =
                            NcclCollective::join(&g, c, Duration::from_secs(120), None).unwrap();
                        rank_train(
                            &m,
                            &cfg,
                            g,
                            Box::new(comm),
                            GramMode::Replicated,
                            GpuOptions::default(),
                        )
                    })
                })
                .collect();
            for (r, h) in handles.into_iter().enumerate() {
                let (ru, ri, _) = h.join().unwrap();
                let what = format!("{:?}, {world} NCCL ranks, rank {r}", cfg.solver);
                assert_bits(&format!("{what} users"), &u, &ru);
                assert_bits(&format!("{what} items"), &i, &ri);
            }
        }
    }
}
