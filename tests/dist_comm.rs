//! The TCP communicator and rendezvous, with every rank a thread of this test over loopback.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use encore::dist::collective::{all_gather_f32, all_reduce_sum_f64, check_same};
use encore::dist::tcp::TcpCollective;
use encore::dist::{Collective, WorldSpec};

/// Starts a world of `world` ranks (rank 0 on a port-0 listener) and runs `body` on each,
/// returning each rank's result in rank order.
fn world<T: Send + 'static>(
    world: usize,
    timeout: Duration,
    body: impl Fn(&mut dyn Collective) -> encore::Result<T> + Send + Sync + Copy + 'static,
) -> Vec<encore::Result<T>> {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let mut handles = Vec::new();
    handles.push(std::thread::spawn(move || {
        let mut c = TcpCollective::host(l, world, "fp", timeout)?;
        body(&mut c)
    }));
    for rank in 1..world {
        let addr = addr.clone();
        handles.push(std::thread::spawn(move || {
            let spec = WorldSpec {
                rank,
                world,
                rendezvous: addr,
                local_rank: rank,
            };
            let mut c = TcpCollective::join(&spec, "fp", timeout)?;
            body(&mut c)
        }));
    }
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn all_gather_and_sums_agree_on_every_rank_for_1_to_4_ranks() {
    for w in 1..=4 {
        let out = world(w, Duration::from_secs(20), |c| {
            let r = c.rank();
            // Blocks of different lengths: rank r sends r + 1 values.
            let mine: Vec<f32> = (0..=r).map(|i| (10 * r + i) as f32).collect();
            let all = all_gather_f32(c, &mine)?;
            let sums = all_reduce_sum_f64(c, &[r as f64 + 0.1, 1e-17 * r as f64, 1.0])?;
            let mut b = if r == 0 {
                b"from zero".to_vec()
            } else {
                Vec::new()
            };
            c.broadcast_bytes(&mut b)?;
            Ok((all, sums, b, c.traffic()))
        });
        let expect: Vec<f32> = (0..w)
            .flat_map(|r| (0..=r).map(move |i| (10 * r + i) as f32))
            .collect();
        let mut first_sum = None;
        for (r, o) in out.into_iter().enumerate() {
            let (all, sums, b, traffic) = o.unwrap();
            assert_eq!(all, expect, "world {w}, rank {r}");
            assert_eq!(b, b"from zero", "world {w}, rank {r}");
            let bits: Vec<u64> = sums.iter().map(|v| v.to_bits()).collect();
            assert_eq!(
                *first_sum.get_or_insert(bits.clone()),
                bits,
                "sums differ by rank"
            );
            assert!((sums[2] - w as f64).abs() < 1e-12);
            if w > 1 {
                assert!(traffic.sent > 0 && traffic.received > 0);
            }
        }
    }
}

#[test]
fn a_wrong_world_size_stops_every_rank_with_a_message() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let t = Duration::from_secs(20);
    let h0 = std::thread::spawn(move || TcpCollective::host(l, 2, "fp", t).map(|_| ()));
    let spec = WorldSpec {
        rank: 1,
        world: 3,
        rendezvous: addr,
        local_rank: 0,
    };
    let e1 = TcpCollective::join(&spec, "fp", t).unwrap_err().to_string();
    let e0 = h0.join().unwrap().unwrap_err().to_string();
    assert!(e0.contains("--world 3") && e0.contains("--world 2"), "{e0}");
    assert!(
        e1.contains("rank 0 refused to start") && e1.contains("--world 3"),
        "{e1}"
    );
}

#[test]
fn a_different_dataset_or_setting_is_refused() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let t = Duration::from_secs(20);
    let h0 = std::thread::spawn(move || TcpCollective::host(l, 2, "data A", t).map(|_| ()));
    let spec = WorldSpec {
        rank: 1,
        world: 2,
        rendezvous: addr,
        local_rank: 0,
    };
    let e1 = TcpCollective::join(&spec, "data B", t)
        .unwrap_err()
        .to_string();
    let e0 = h0.join().unwrap().unwrap_err().to_string();
    assert!(e0.contains("different dataset"), "{e0}");
    assert!(e1.contains("different dataset"), "{e1}");
}

#[test]
fn a_rank_that_never_arrives_fails_the_others_after_the_timeout() {
    let t0 = Instant::now();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let t = Duration::from_secs(2);
    let h0 = std::thread::spawn(move || TcpCollective::host(l, 3, "fp", t).map(|_| ()));
    let spec = WorldSpec {
        rank: 1,
        world: 3,
        rendezvous: addr,
        local_rank: 0,
    };
    let e1 = TcpCollective::join(&spec, "fp", t).unwrap_err().to_string();
    let e0 = h0.join().unwrap().unwrap_err().to_string();
    assert!(e0.contains("ranks 2 of 3 had not joined"), "{e0}");
    assert!(e1.contains("rank 1"), "{e1}");
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn no_rank_zero_is_reported_after_the_timeout() {
    // A port nobody listens on: bind, read the port, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec = WorldSpec {
        rank: 1,
        world: 2,
        rendezvous: format!("127.0.0.1:{port}"),
        local_rank: 0,
    };
    let e = TcpCollective::join(&spec, "fp", Duration::from_secs(1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("could not reach rank 0"), "{e}");
}

#[test]
fn a_rank_that_dies_mid_run_fails_every_other_rank_quickly() {
    let t0 = Instant::now();
    let out = world(4, Duration::from_secs(60), |c| {
        all_gather_f32(c, &[1.0])?;
        if c.rank() == 2 {
            // Dies without a word: its sockets close when the collective drops.
            return Ok(());
        }
        all_gather_f32(c, &[2.0])?;
        Ok(())
    });
    assert!(out[2].is_ok());
    for r in [0, 1, 3] {
        let e = out[r].as_ref().unwrap_err().to_string();
        assert!(
            e.contains("lost rank 2") || e.contains("rank 2"),
            "rank {r}: {e}"
        );
    }
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn a_failing_rank_tells_the_others_why() {
    let out = world(3, Duration::from_secs(60), |c| {
        if c.rank() == 1 {
            c.abort("train.npz: bad row");
            return Err(encore::Error::Runtime("train.npz: bad row".into()));
        }
        all_gather_f32(c, &[2.0])?;
        Ok(())
    });
    for r in [0, 2] {
        let e = out[r].as_ref().unwrap_err().to_string();
        assert!(
            e.contains("rank 1 failed: train.npz: bad row"),
            "rank {r}: {e}"
        );
    }
}

#[test]
fn check_same_names_the_odd_rank() {
    let out = world(3, Duration::from_secs(20), |c| {
        let fp = if c.rank() == 2 { "λ 3" } else { "λ 10" };
        check_same(c, "configuration", fp)
    });
    let e = out[0].as_ref().unwrap_err().to_string();
    assert!(
        e.contains("rank 2 was started with a different configuration"),
        "{e}"
    );
    assert!(out.iter().all(|o| o.is_err()));
}
