//! The HTTP server for real: a server on an ephemeral loopback port, every route and error
//! status, concurrent callers each getting their own answer through the batcher, load shedding
//! with a tiny queue, fold-in against the training solve, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use encore::als::cpu::CpuCholesky;
use encore::als::foldin::FoldIn;
use encore::als::{HalfStep, Solver, linalg};
use encore::data::csr::Csr;
use encore::data::dataset::Dataset;
use encore::data::ids::IdBuf;
use encore::recommend::Recommender;
use encore_serve::batcher::BatchConfig;
use encore_serve::{ServeConfig, TrackOut, UserAnswer, serve_until, small_recommender, state};

/// The small recommender's integer user and item ids.
fn int_ids(ds: &Dataset) -> (Vec<u64>, Vec<u64>) {
    let ids = |i: &encore::data::ids::Ids| i.as_int().expect("integer ids").to_vec();
    (ids(&ds.user_ids), ids(&ds.item_ids))
}

/// A track's integer id.
fn tid(t: &TrackOut) -> u64 {
    match t.track_id {
        IdBuf::Int(v) => v,
        IdBuf::Str(ref s) => panic!("string track id {s} in an integer dataset"),
    }
}

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<encore::Result<()>>>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops accepting, drains, and returns the serve result.
    fn stop(mut self) -> encore::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.thread.take().unwrap().join().unwrap()
    }
}

fn start(rec: Recommender, batch: BatchConfig, body_limit: usize) -> Server {
    let cfg = ServeConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        batch,
        body_limit,
    };
    let st = state(rec, &cfg).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(serve_until(
            st,
            &cfg,
            move |a| addr_tx.send(a).unwrap(),
            async move {
                let _ = stop_rx.await;
            },
        ))
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    Server {
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

fn batch(max_batch: usize, wait_ms: u64, queue: usize) -> BatchConfig {
    BatchConfig {
        max_batch,
        max_wait: Duration::from_millis(wait_ms),
        queue,
    }
}

/// The value of the first Prometheus sample line starting with `prefix`.
fn metric(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no metric {prefix} in:\n{metrics}"))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn get(url: &str) -> (u16, String) {
    let mut r = agent().get(url).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

fn post(url: &str, body: &str) -> (u16, String) {
    let mut r = agent()
        .post(url)
        .header("content-type", "application/json")
        .send(body)
        .unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

#[test]
fn every_route_answers_and_every_error_has_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, rec) = small_recommender(dir.path()).unwrap();
    let (uids, iids) = int_ids(&ds);
    let user = uids[3];
    let track = iids[5];
    let expected = rec.recommend_rows(&[3], 5, true).unwrap();
    let want_ids: Vec<u64> = expected[0]
        .items
        .iter()
        .map(|&i| iids[i as usize])
        .collect();
    let s = start(rec, batch(64, 1, 64), 4096);

    let (code, body) = get(&s.url(&format!("/v1/recommend?user={user}&k=5")));
    assert_eq!(code, 200, "{body}");
    let a: UserAnswer = serde_json::from_str(&body).unwrap();
    let got: Vec<u64> = a.tracks.iter().map(tid).collect();
    assert_eq!(
        got, want_ids,
        "GET /v1/recommend answers what the library does"
    );

    let (code, body) = post(
        &s.url("/v1/recommend"),
        &format!("{{\"users\":[{user},{}],\"k\":3}}", uids[0]),
    );
    assert_eq!(code, 200, "{body}");
    let many: Vec<UserAnswer> = serde_json::from_str(&body).unwrap();
    assert_eq!(many.len(), 2);
    assert_eq!(many[0].tracks.len(), 3);

    let (code, body) = post(
        &s.url("/v1/recommend/history"),
        &format!("{{\"history\":[{{\"track\":{track},\"plays\":12}}],\"k\":4}}"),
    );
    assert_eq!(code, 200, "{body}");
    let h: UserAnswer = serde_json::from_str(&body).unwrap();
    assert_eq!(h.tracks.len(), 4);
    assert!(
        h.tracks.iter().all(|t| tid(t) != track),
        "history tracks are filtered"
    );

    let (code, body) = get(&s.url(&format!("/v1/similar?item={track}&k=3")));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"tracks\""));
    assert_eq!(get(&s.url("/healthz")), (200, "ok\n".to_string()));

    // Errors: unknown ids 404, bad parameters and malformed JSON 400, big bodies 413.
    assert_eq!(get(&s.url("/v1/recommend?user=987654321987")).0, 404);
    assert_eq!(get(&s.url("/v1/similar?item=987654321987&k=2")).0, 404);
    assert_eq!(
        get(&s.url(&format!("/v1/recommend?user={user}&k=0"))).0,
        400
    );
    assert_eq!(
        get(&s.url(&format!("/v1/recommend?user={user}&k=100000"))).0,
        400
    );
    assert_eq!(get(&s.url("/v1/recommend?user=abc")).0, 400);
    assert_eq!(post(&s.url("/v1/recommend"), "{\"users\": [").0, 400);
    assert_eq!(post(&s.url("/v1/recommend"), "{\"users\": []}").0, 400);
    assert_eq!(
        post(&s.url("/v1/recommend"), "{\"users\": [987654321987]}").0,
        404
    );
    assert_eq!(
        post(
            &s.url("/v1/recommend/history"),
            &format!("{{\"history\":[{{\"track\":{track},\"plays\":-1}}]}}")
        )
        .0,
        400
    );
    let big = format!("{{\"users\":[{}]}}", vec![user.to_string(); 2000].join(","));
    assert_eq!(post(&s.url("/v1/recommend"), &big).0, 413);
    assert_eq!(get(&s.url("/nope")).0, 404);

    let (code, metrics) = get(&s.url("/metrics"));
    assert_eq!(code, 200);
    for needle in [
        "encore_requests_total{route=\"/v1/recommend\",status=\"200\"}",
        "encore_requests_total{route=\"/v1/recommend\",status=\"404\"}",
        "encore_request_seconds_bucket",
        "encore_batch_size_bucket",
        "encore_queue_depth",
        "encore_scorer{device=\"cpu\"} 1",
    ] {
        assert!(metrics.contains(needle), "metrics lack {needle}");
    }
    s.stop().unwrap();
}

#[test]
fn concurrent_callers_each_get_their_own_answer_through_the_batcher() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, rec) = small_recommender(dir.path()).unwrap();
    let (uids, iids) = int_ids(&ds);
    let rows: Vec<usize> = (0..40).collect();
    let expected = rec.recommend_rows(&rows, 7, true).unwrap();
    // A 20 ms window so the 40 callers land in shared batches.
    let s = Arc::new(start(rec, batch(16, 20, 256), 1 << 20));
    let handles: Vec<_> = rows
        .iter()
        .map(|&r| {
            let url = s.url(&format!("/v1/recommend?user={}&k=7", uids[r]));
            std::thread::spawn(move || get(&url))
        })
        .collect();
    for (r, h) in rows.iter().zip(handles) {
        let (code, body) = h.join().unwrap();
        assert_eq!(code, 200, "{body}");
        let a: UserAnswer = serde_json::from_str(&body).unwrap();
        let want: Vec<u64> = expected[*r]
            .items
            .iter()
            .map(|&i| iids[i as usize])
            .collect();
        let got: Vec<u64> = a.tracks.iter().map(tid).collect();
        assert_eq!(got, want, "user row {r}");
    }
    let (_, metrics) = get(&s.url("/metrics"));
    // Some batch held more than one query.
    let single = metric(&metrics, "encore_batch_size_bucket{le=\"1.0\"}");
    let total = metric(&metrics, "encore_batch_size_count");
    assert!(
        single < total,
        "every batch had one query ({single} of {total})"
    );
    Arc::try_unwrap(s).ok().unwrap().stop().unwrap();
}

#[test]
fn greedy_batching_answers_lone_and_concurrent_callers_exactly() {
    // max_wait 0: a lone request is scored on the handler's thread, concurrent ones queue for
    // the worker; either way each caller gets its own exact answer and every query is counted.
    let dir = tempfile::tempdir().unwrap();
    let (ds, rec) = small_recommender(dir.path()).unwrap();
    let (uids, iids) = int_ids(&ds);
    let rows: Vec<usize> = (0..30).collect();
    let expected = rec.recommend_rows(&rows, 6, true).unwrap();
    let s = Arc::new(start(rec, batch(8, 0, 256), 1 << 20));
    let want = |r: usize| -> Vec<u64> {
        expected[r]
            .items
            .iter()
            .map(|&i| iids[i as usize])
            .collect()
    };
    let check = |r: usize, code: u16, body: &str| {
        assert_eq!(code, 200, "{body}");
        let a: UserAnswer = serde_json::from_str(body).unwrap();
        let got: Vec<u64> = a.tracks.iter().map(tid).collect();
        assert_eq!(got, want(r), "user row {r}");
    };
    for &r in &rows[..5] {
        let (code, body) = get(&s.url(&format!("/v1/recommend?user={}&k=6", uids[r])));
        check(r, code, &body);
    }
    let handles: Vec<_> = rows
        .iter()
        .map(|&r| {
            let url = s.url(&format!("/v1/recommend?user={}&k=6", uids[r]));
            std::thread::spawn(move || get(&url))
        })
        .collect();
    for (&r, h) in rows.iter().zip(handles) {
        let (code, body) = h.join().unwrap();
        check(r, code, &body);
    }
    // A batch is recorded just after its answers go out, so the last may lag the last reply.
    let want_scored = (5 + rows.len()) as f64;
    let mut scored = 0.0;
    for _ in 0..200 {
        scored = metric(&get(&s.url("/metrics")).1, "encore_batch_size_sum");
        if scored >= want_scored {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(scored, want_scored, "queries counted in batches");
    Arc::try_unwrap(s).ok().unwrap().stop().unwrap();
}

#[test]
fn a_full_queue_sheds_load_with_503_and_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, rec) = small_recommender(dir.path()).unwrap();
    let (uids, _) = int_ids(&ds);
    // One slot and a long window: the worker holds one batch open while callers pile up.
    let s = Arc::new(start(rec, batch(1000, 300, 1), 1 << 20));
    let handles: Vec<_> = (0..12)
        .map(|i| {
            let url = s.url(&format!("/v1/recommend?user={}", uids[i]));
            std::thread::spawn(move || {
                let r = agent().get(&url).call().unwrap();
                (
                    r.status().as_u16(),
                    r.headers().get("retry-after").is_some(),
                )
            })
        })
        .collect();
    let results: Vec<(u16, bool)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(results.iter().any(|&(c, _)| c == 503), "{results:?}");
    assert!(results.iter().any(|&(c, _)| c == 200), "{results:?}");
    assert!(
        results.iter().all(|&(c, retry)| c != 503 || retry),
        "503 without Retry-After"
    );
    Arc::try_unwrap(s).ok().unwrap().stop().unwrap();
}

#[test]
fn a_many_user_request_is_queued_whole_or_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, rec) = small_recommender(dir.path()).unwrap();
    let (uids, _) = int_ids(&ds);
    let s = start(rec, batch(64, 1, 3), 1 << 20);
    let users: Vec<String> = uids[..5].iter().map(|u| u.to_string()).collect();
    let (code, body) = post(
        &s.url("/v1/recommend"),
        &format!("{{\"users\":[{}]}}", users.join(",")),
    );
    assert_eq!(code, 503, "five users do not fit a queue of three: {body}");
    // Nothing of it stayed queued: a request that fits is answered.
    let (code, body) = post(
        &s.url("/v1/recommend"),
        &format!("{{\"users\":[{}]}}", users[..3].join(",")),
    );
    assert_eq!(code, 200, "{body}");
    // The worker counts a batch as answered just after its replies go out: poll briefly.
    let mut depth = f64::NAN;
    for _ in 0..200 {
        depth = metric(&get(&s.url("/metrics")).1, "encore_queue_depth");
        if depth == 0.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(depth, 0.0, "depth not back to 0");
    s.stop().unwrap();
}

#[test]
fn fold_in_equals_the_training_solve_for_that_row() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, rec) = small_recommender(dir.path()).unwrap();
    let cfg = rec.model.meta.config.clone();
    let (cols, plays) = ds.train.row(4);
    let history: Vec<(u32, f32)> = cols.iter().copied().zip(plays.iter().copied()).collect();
    let x = FoldIn::new(&rec.model.items, &cfg)
        .solve(&rec.model.items, &history)
        .unwrap();
    // The same row through the CPU reference half-step.
    let conf = Csr {
        n_rows: 1,
        n_cols: ds.train.n_cols,
        indptr: vec![0, cols.len() as u64],
        indices: cols.to_vec(),
        data: plays.iter().map(|&p| cfg.confidence_minus_one(p)).collect(),
    };
    let g = linalg::gram(&rec.model.items.data, cfg.factors);
    let mut target = encore::als::Factors::zeros(1, cfg.factors);
    CpuCholesky
        .solve(
            &HalfStep {
                conf: &conf,
                fixed: &rec.model.items,
                gram: &g,
                regularization: cfg.regularization,
                reg_exponent: 0.0,
                mean_row: None,
            },
            &mut target,
        )
        .unwrap();
    for (a, b) in x.iter().zip(&target.data) {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs().max(1e-2),
            "{x:?} vs {:?}",
            target.data
        );
    }
}

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
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
}

#[test]
fn loadgen_holds_its_target_rate_and_counts_every_answer() {
    use encore_serve::loadgen::{LoadConfig, run};
    let dir = tempfile::tempdir().unwrap();
    let (ds, rec) = small_recommender(dir.path()).unwrap();
    let (uids, _) = int_ids(&ds);
    let s = start(rec, batch(64, 1, 4096), 1 << 20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cfg = LoadConfig {
        url: s.url(""),
        users: uids.iter().map(|u| u.to_string()).collect(),
        k: 5,
        rate: 300.0,
        duration: Duration::from_secs(2),
        seed: 3,
    };
    let r = rt.block_on(run(&cfg)).unwrap();
    // A Poisson count over 2 s at 300/s has a standard deviation of ~4%; 15% is > 3 sigma.
    assert!((r.sent_rate - 300.0).abs() < 45.0, "sent {}/s", r.sent_rate);
    assert_eq!(r.ok + r.shed + r.errors, r.sent);
    assert_eq!(r.ok, r.sent, "shed {} errors {}", r.shed, r.errors);
    assert_eq!(r.latency.count, r.ok);
    assert!(r.latency.p50_us <= r.latency.p95_us && r.latency.p95_us <= r.latency.p999_us);
    // Unknown users are errors, not successes (404 is counted apart from 503).
    let bad = LoadConfig {
        users: vec!["987654321987".to_string()],
        duration: Duration::from_millis(300),
        ..cfg
    };
    let r = rt.block_on(run(&bad)).unwrap();
    assert!(r.errors > 0 && r.ok == 0 && r.shed == 0);
    s.stop().unwrap();
}

/// A recommender over an MSD-style triplets file: 40-hex users, `SO…` songs.
fn string_id_recommender(root: &std::path::Path) -> (Dataset, Recommender) {
    use encore::data::prep::{PrepConfig, prep};
    let mut text = String::new();
    for u in 0..30u64 {
        let user = format!("{:040x}", u.wrapping_mul(0x9e3779b97f4a7c15) | 1);
        for k in 0..10u64 {
            text += &format!(
                "{user}\tSO{:016X}\t{}\n",
                (u * 7 + k * 3) % 25,
                1 + (u + k) % 5
            );
        }
    }
    let data = root.join("train_triplets.txt");
    std::fs::write(&data, text).unwrap();
    let mut c = PrepConfig::new(&data, root.join("ds"));
    c.min_track_users = 1;
    prep(&c).unwrap();
    let ds = Dataset::load(&root.join("ds")).unwrap();
    let cfg = encore::als::AlsConfig {
        factors: 4,
        iterations: 2,
        ..encore::als::AlsConfig::default()
    };
    let opts = encore::train::FitOptions {
        device: encore::gpu::DeviceChoice::Cpu,
        quiet: true,
        ..encore::train::FitOptions::default()
    };
    let model = encore::train::fit(ds.clone(), &cfg, &opts, |_| {}).unwrap();
    (ds.clone(), Recommender::cpu(model, ds).unwrap())
}

#[test]
fn string_ids_answer_in_the_original_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, rec) = string_id_recommender(dir.path());
    let user = ds.user_ids.get(4).to_string();
    let song = ds.item_ids.get(2).to_string();
    let want: Vec<IdBuf> = rec.recommend_rows(&[4], 3, true).unwrap()[0]
        .items
        .iter()
        .map(|&i| ds.item_ids.get(i as usize).to_owned())
        .collect();
    let s = start(rec, batch(64, 1, 64), 1 << 20);
    let (code, body) = get(&s.url(&format!("/v1/recommend?user={user}&k=3")));
    assert_eq!(code, 200, "{body}");
    let a: UserAnswer = serde_json::from_str(&body).unwrap();
    assert_eq!(a.user, Some(IdBuf::Str(user.clone())));
    let got: Vec<IdBuf> = a.tracks.iter().map(|t| t.track_id.clone()).collect();
    assert_eq!(got, want);
    assert!(body.contains(&format!("\"user\":\"{user}\"")), "{body}");
    // POST takes string ids; history and similar take string track ids.
    let (code, body) = post(
        &s.url("/v1/recommend"),
        &format!(
            "{{\"users\":[\"{user}\",\"{}\"],\"k\":2}}",
            ds.user_ids.get(0)
        ),
    );
    assert_eq!(code, 200, "{body}");
    let many: Vec<UserAnswer> = serde_json::from_str(&body).unwrap();
    assert_eq!(many[1].user, Some(ds.user_ids.get(0).to_owned()));
    let (code, body) = post(
        &s.url("/v1/recommend/history"),
        &format!("{{\"history\":[{{\"track\":\"{song}\",\"plays\":3}}],\"k\":3}}"),
    );
    assert_eq!(code, 200, "{body}");
    let h: UserAnswer = serde_json::from_str(&body).unwrap();
    assert!(
        h.tracks
            .iter()
            .all(|t| t.track_id != IdBuf::Str(song.clone()))
    );
    let (code, body) = get(&s.url(&format!("/v1/similar?item={song}&k=2")));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["item"], serde_json::json!(song));
    // Unknown string ids are 404; a number is looked up as its digits (and is unknown).
    assert_eq!(get(&s.url("/v1/recommend?user=nobody")).0, 404);
    assert_eq!(post(&s.url("/v1/recommend"), "{\"users\": [42]}").0, 404);
    assert_eq!(get(&s.url("/v1/similar?item=SOnope")).0, 404);
}
