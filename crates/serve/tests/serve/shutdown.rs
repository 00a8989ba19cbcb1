//! Shutdown: requests in flight finish and nothing listens afterwards; a client that has sent
//! only part of its headers cannot hold the exit past the drain deadline (issue 14: it held it
//! forever).

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use encore_serve::small_recommender;

use crate::common::*;

#[test]
fn shutdown_lets_in_flight_requests_finish() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, rec) = small_recommender(dir.path()).unwrap();
    let (uids, _) = int_ids(&ds);
    // A 400 ms batch window keeps the request in flight while shutdown begins.
    let s = start(rec, batch(1000, 400, 16), 1 << 20);
    let url = s.url(&format!("/v1/recommend?user={}", uids[0]));
    let caller = std::thread::spawn(move || get(&url));
    std::thread::sleep(Duration::from_millis(100));
    let addr = s.addr;
    s.stop().unwrap();
    let (code, body) = caller.join().unwrap();
    assert_eq!(code, 200, "{body}");
    // And nothing listens any more.
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
}

#[test]
fn a_partial_header_client_cannot_hold_the_exit_past_the_drain_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (_, rec) = small_recommender(dir.path()).unwrap();
    // Header and idle timeouts far away: only the drain deadline can end this connection.
    let s = start_with(rec, batch(64, 0, 64), |c| {
        c.limits.header_timeout = Duration::from_secs(600);
        c.limits.idle_timeout = Duration::from_secs(600);
        c.limits.drain_timeout = Duration::from_millis(300);
    });
    let mut slow = TcpStream::connect(s.addr).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    // Let the server accept it before shutdown begins.
    std::thread::sleep(Duration::from_millis(200));
    let log = s.log.clone();
    let t = Instant::now();
    let result = s.stop_within(Duration::from_secs(60));
    assert!(
        result.is_some(),
        "the server did not exit with a partial-header client connected"
    );
    result.unwrap().unwrap();
    assert!(t.elapsed() < Duration::from_secs(60));
    let logged = log.lock().unwrap().join("\n");
    assert!(
        logged.contains("drain deadline (0.3 s) reached: closing 1 connection(s)"),
        "{logged}"
    );
    assert!(closed_within(&mut slow, Duration::from_secs(10)));
}
