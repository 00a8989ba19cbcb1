//! Multi-rank CPU training gives the single-process factors, bit for bit, at 1 to 4 ranks
//! (every rank a thread of this test, talking TCP over loopback), on synthetic data with
//! heavy-tailed rows and several Gram parts, and on HetRec.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use encore::als::{self, AlsConfig, CpuBackend, Factors, SolverKind};
use encore::data::csr::Csr;
use encore::dist::tcp::TcpCollective;
use encore::dist::{Collective, ShardedCpu, Single, WorldSpec};
use encore::util::mix64;

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

fn single(m: &Csr, cfg: &AlsConfig) -> (Factors, Factors) {
    let mut b = CpuBackend::new(cfg).unwrap();
    let t = als::train(m.clone(), cfg, &mut b, false, |_, _, _, _| Ok(())).unwrap();
    (t.users, t.items)
}

/// Trains on `world` ranks, each a thread; returns every rank's factors.
fn ranks(m: &Csr, cfg: &AlsConfig, world: usize) -> Vec<(Factors, Factors)> {
    ranks_and_blocks(m, cfg, world)
        .into_iter()
        .map(|(u, i, _)| (u, i))
        .collect()
}

type Blocks = (std::ops::Range<usize>, std::ops::Range<usize>);

fn ranks_and_blocks(m: &Csr, cfg: &AlsConfig, world: usize) -> Vec<(Factors, Factors, Blocks)> {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let mut listener = Some(l);
    let handles: Vec<_> = (0..world)
        .map(|rank| {
            let (m, cfg, addr) = (m.clone(), cfg.clone(), addr.clone());
            let l = if rank == 0 { listener.take() } else { None };
            std::thread::spawn(move || {
                let t = Duration::from_secs(60);
                let comm: Box<dyn Collective> = match (world, l) {
                    (1, _) => Box::new(Single),
                    (_, Some(l)) => Box::new(TcpCollective::host(l, world, "t", t).unwrap()),
                    _ => {
                        let spec = WorldSpec {
                            rank,
                            world,
                            rendezvous: addr,
                            local_rank: rank,
                        };
                        Box::new(TcpCollective::join(&spec, "t", t).unwrap())
                    }
                };
                let mut b = ShardedCpu::new(comm, als::cpu_solver(&cfg).unwrap());
                let t = als::train(m, &cfg, &mut b, false, |_, _, _, _| Ok(())).unwrap();
                (t.users, t.items, b.blocks().unwrap())
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn assert_same(what: &str, a: &Factors, b: &Factors) {
    assert_eq!((a.n, a.k), (b.n, b.k), "{what}: shapes");
    let diff = a
        .data
        .iter()
        .zip(&b.data)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(diff, 0, "{what}: {diff} of {} values differ", a.data.len());
}

#[test]
fn one_to_four_ranks_give_the_single_process_factors_bit_for_bit() {
    // 40,000 tracks: three Gram parts on the item side, so ranks compute different parts.
    let m = heavy_tailed(700, 40_000, 5);
    for solver in [SolverKind::Cg, SolverKind::Cholesky] {
        let cfg = AlsConfig {
            factors: 8,
            iterations: 3,
            solver,
            ..AlsConfig::default()
        };
        let (u, i) = single(&m, &cfg);
        for world in 1..=4 {
            for (r, (ru, ri, (ub, ib))) in ranks_and_blocks(&m, &cfg, world).iter().enumerate() {
                // Every rank really solved rows of both sides.
                assert!(
                    !ub.is_empty() && !ib.is_empty(),
                    "world {world} rank {r}: {ub:?} {ib:?}"
                );
                let what = format!("{solver:?}, world {world}, rank {r}");
                assert_same(&format!("{what} users"), &u, ru);
                assert_same(&format!("{what} items"), &i, ri);
            }
        }
    }
}

#[test]
fn hetrec_on_three_ranks_equals_one_process() {
    let raw = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/hetrec2011-lastfm-2k");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    let mut pc = encore::data::prep::PrepConfig::new(&raw, &out);
    pc.quiet = true;
    encore::data::prep::prep(&pc).unwrap();
    let ds = encore::data::dataset::Dataset::load(&out).unwrap();
    let cfg = AlsConfig {
        iterations: 4,
        ..AlsConfig::default()
    };
    let (u, i) = single(&ds.train, &cfg);
    let all = ranks(&ds.train, &cfg, 3);
    for (r, (ru, ri)) in all.iter().enumerate() {
        assert_same(&format!("HetRec rank {r} users"), &u, ru);
        assert_same(&format!("HetRec rank {r} items"), &i, ri);
    }
}
