//! Every route and error status, one track schema in every answer, unknown users answered in
//! place, concurrent callers each getting their own answer through the batcher, a many-user
//! request queued whole or refused whole, fold-in against the training solve, string ids.

use std::sync::Arc;
use std::time::Duration;

use encore::als::cpu::CpuCholesky;
use encore::als::foldin::FoldIn;
use encore::als::{HalfStep, Solver, linalg};
use encore::data::csr::Csr;
use encore::data::dataset::Dataset;
use encore::data::ids::IdBuf;
use encore::recommend::Recommender;
use encore_serve::{Health, UserAnswer, UserResult, small_recommender};

use crate::common::*;

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
    let version = s.state.version().id;
    assert!(
        many.iter().all(|a| a.model == version),
        "every answer names the model"
    );

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
    let (code, body) = get(&s.url("/healthz"));
    assert_eq!(code, 200, "{body}");
    let h: Health = serde_json::from_str(&body).unwrap();
    assert_eq!((h.status.as_str(), h.model.id.len()), ("ok", 16));
    assert_eq!(h.model, s.state.version());

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
    // An unknown user in a batch is answered in place, not with a 404 for the whole batch.
    assert_eq!(
        post(&s.url("/v1/recommend"), "{\"users\": [987654321987]}").0,
        200
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
        "encore_in_flight_limit 64",
        "encore_connections_total{reason=\"served\"}",
        "process_resident_memory_bytes",
        "process_max_fds",
    ] {
        assert!(metrics.contains(needle), "metrics lack {needle}");
    }
    let model_line = format!("encore_model{{version=\"{version}\",trained_at=\"");
    assert!(metrics.contains(&model_line), "metrics lack {model_line}");
    s.stop().unwrap();
}

#[test]
fn unknown_users_in_a_batch_are_answered_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, rec) = small_recommender(dir.path()).unwrap();
    let (uids, iids) = int_ids(&ds);
    let expected = rec.recommend_rows(&[2, 7], 3, true).unwrap();
    let s = start(rec, batch(64, 0, 64), 1 << 20);
    let body = format!(
        "{{\"users\":[{}, 987654321987, \"abc\", {}],\"k\":3}}",
        uids[2], uids[7]
    );
    let (code, text) = post(&s.url("/v1/recommend"), &body);
    assert_eq!(code, 200, "{text}");
    let out: Vec<UserResult> = serde_json::from_str(&text).unwrap();
    assert_eq!(out.len(), 4, "one element per user, in order: {text}");
    for (i, row) in [(0, 0), (3, 1)] {
        let UserResult::Answer(a) = &out[i] else {
            panic!("user {i} not answered: {text}")
        };
        let want: Vec<u64> = expected[row]
            .items
            .iter()
            .map(|&t| iids[t as usize])
            .collect();
        assert_eq!(a.tracks.iter().map(tid).collect::<Vec<_>>(), want);
    }
    match &out[1] {
        UserResult::Error { user, error } => {
            assert_eq!(*user, IdBuf::Int(987654321987));
            assert!(error.contains("unknown user"), "{error}");
        }
        other => panic!("an unknown user answered {other:?}"),
    }
    match &out[2] {
        UserResult::Error { user, error } => {
            assert_eq!(*user, IdBuf::Str("abc".into()));
            assert!(error.contains("must be an integer id"), "{error}");
        }
        other => panic!("a non-id answered {other:?}"),
    }
    s.stop().unwrap();
}

/// The `"score":` values of a JSON text, as written.
fn score_texts(json: &str) -> Vec<String> {
    json.split("\"score\":")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_digit() || "-.eE+".contains(*c))
                .collect()
        })
        .collect()
}

#[test]
fn every_answer_uses_the_one_track_schema_with_float32_scores() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, rec) = small_recommender(dir.path()).unwrap();
    let (uids, iids) = int_ids(&ds);
    let want_rec = rec.describe(&rec.recommend_rows(&[5], 4, true).unwrap()[0]);
    let want_sim = rec.describe(&rec.similar_rows(&[9], 3).unwrap()[0]);
    let s = start(rec, batch(64, 0, 64), 1 << 20);
    let (_, rec_text) = get(&s.url(&format!("/v1/recommend?user={}&k=4", uids[5])));
    let (_, sim_text) = get(&s.url(&format!("/v1/similar?item={}&k=3", iids[9])));
    for (text, want) in [(&rec_text, &want_rec), (&sim_text, &want_sim)] {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        // The core's Track, serialised: the same keys and values (ids, names, scores). Through
        // text, not `to_value`, which would widen the f32 scores to f64.
        let want_json: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(want).unwrap()).unwrap();
        assert_eq!(v["tracks"], want_json, "{text}");
        let keys: Vec<&str> = v["tracks"][0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 5, "{keys:?}");
        for k in ["id", "name", "artist_id", "artist", "score"] {
            assert!(keys.contains(&k), "{k} missing: {keys:?}");
        }
        // Scores are written at float32 precision: the shortest text of the f32 itself.
        let scores = score_texts(text);
        assert_eq!(scores.len(), want.len());
        for (t, w) in scores.iter().zip(want.iter()) {
            assert_eq!(*t, w.score.to_string(), "score written as {t}");
        }
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
    let got: Vec<IdBuf> = a.tracks.iter().map(|t| t.id.clone()).collect();
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
    assert!(h.tracks.iter().all(|t| t.id != IdBuf::Str(song.clone())));
    let (code, body) = get(&s.url(&format!("/v1/similar?item={song}&k=2")));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["item"], serde_json::json!(song));
    // Unknown string ids are 404; a number is looked up as its digits (and is unknown).
    assert_eq!(get(&s.url("/v1/recommend?user=nobody")).0, 404);
    let (code, body) = post(&s.url("/v1/recommend"), "{\"users\": [42]}");
    assert_eq!(code, 200);
    assert!(body.contains("\"error\":\"unknown user 42\""), "{body}");
    assert_eq!(get(&s.url("/v1/similar?item=SOnope")).0, 404);
}
