//! Live reload (issue 14): models swapped back and forth under concurrent load with no failed
//! request, a request in flight finishing on the model it started with, bad models refused
//! while the old one keeps serving, and who may call the route.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use encore::data::dataset::Dataset;
use encore_serve::{ModelSource, ModelVersion, Reloaded, UserAnswer, small_recommender};

use crate::common::*;

fn reload_body(model: &Path) -> String {
    serde_json::json!({ "model": model }).to_string()
}

fn healthz_version(s: &Server) -> ModelVersion {
    let (code, body) = get(&s.url("/healthz"));
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<encore_serve::Health>(&body)
        .unwrap()
        .model
}

/// A small dataset with two models saved beside it; the server starts on model `a`.
fn setup(root: &Path) -> (Dataset, std::path::PathBuf, std::path::PathBuf) {
    let (ds, _) = small_recommender(root).unwrap();
    let (a, b) = two_models(&ds, root);
    (ds, a, b)
}

#[test]
fn models_swap_under_concurrent_load_with_no_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, a, b) = setup(dir.path());
    let (uids, _) = int_ids(&ds);
    let s = Arc::new(start_with(load(&a, &ds), batch(64, 0, 256), |c| {
        c.source = Some(ModelSource {
            model: a.clone(),
            dataset: None,
        });
    }));
    let first = healthz_version(&s);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (s, stop, uids) = (s.clone(), stop.clone(), uids.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut seen = Vec::new();
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let u = uids[i % uids.len()];
                    let (code, body, model) =
                        get_with_model(&agent, &s.url(&format!("/v1/recommend?user={u}&k=5")));
                    seen.push((code, body, model));
                    i += 4;
                }
                seen
            })
        })
        .collect();
    let mut versions = vec![first.id.clone()];
    for target in [&b, &a, &b, &a] {
        std::thread::sleep(Duration::from_millis(150));
        let (code, body) = post(&s.url("/admin/reload"), &reload_body(target));
        assert_eq!(code, 200, "{body}");
        let r: Reloaded = serde_json::from_str(&body).unwrap();
        assert_eq!(r.previous, *versions.last().unwrap());
        assert_eq!(
            healthz_version(&s).id,
            r.model.id,
            "healthz shows the new model"
        );
        versions.push(r.model.id);
    }
    std::thread::sleep(Duration::from_millis(150));
    stop.store(true, Ordering::Relaxed);
    let results: Vec<(u16, String, String)> = clients
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_ne!(versions[0], versions[1], "a and b are different models");
    assert_eq!(
        versions[0], versions[2],
        "the same files give the same version"
    );
    let failed: Vec<_> = results.iter().filter(|r| r.0 != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the swaps: {:?}",
        failed.len(),
        results.len(),
        failed.first()
    );
    let mut by_model = std::collections::BTreeMap::new();
    for (_, body, header) in &results {
        let ans: UserAnswer = serde_json::from_str(body).unwrap();
        assert_eq!(&ans.model, header, "the body and the header name one model");
        assert!(versions.contains(header), "unknown model {header}");
        *by_model.entry(header.clone()).or_insert(0) += 1;
    }
    assert_eq!(by_model.len(), 2, "both models answered: {by_model:?}");
    let m = get(&s.url("/metrics")).1;
    assert_eq!(metric(&m, "encore_model_reloads_total{reason=\"ok\"}"), 4.0);
    assert!(m.contains(&format!("encore_model{{version=\"{}\"", versions[4])));
    assert!(
        !m.contains(&format!("encore_model{{version=\"{}\"", versions[1])),
        "the replaced model's labels are gone"
    );
    Arc::try_unwrap(s).ok().unwrap().stop().unwrap();
}

#[test]
fn a_request_in_flight_finishes_on_the_model_it_started_with() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, a, b) = setup(dir.path());
    let (uids, iids) = int_ids(&ds);
    let (rec_a, rec_b) = (load(&a, &ds), load(&b, &ds));
    let want = |rec: &encore::recommend::Recommender| -> Vec<u64> {
        rec.recommend_rows(&[3], 5, true).unwrap()[0]
            .items
            .iter()
            .map(|&i| iids[i as usize])
            .collect()
    };
    let (want_a, want_b) = (want(&rec_a), want(&rec_b));
    // A 600 ms batch window keeps the first request in flight across the reload.
    let s = Arc::new(start_with(rec_a, batch(1000, 600, 64), |_| {}));
    let v_a = s.state.version().id;
    let url = s.url(&format!("/v1/recommend?user={}&k=5", uids[3]));
    let u2 = url.clone();
    let in_flight = std::thread::spawn(move || get_with_model(&agent(), &u2));
    std::thread::sleep(Duration::from_millis(150));
    let (code, body) = post(&s.url("/admin/reload"), &reload_body(&b));
    assert_eq!(code, 200, "{body}");
    assert!(
        !in_flight.is_finished(),
        "the reload waited for the request in flight"
    );
    let (code, body, model) = in_flight.join().unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        model, v_a,
        "the request in flight was answered by the old model"
    );
    let got: UserAnswer = serde_json::from_str(&body).unwrap();
    assert_eq!(got.tracks.iter().map(tid).collect::<Vec<_>>(), want_a);
    let (code, body, model) = get_with_model(&agent(), &url);
    assert_eq!(code, 200, "{body}");
    assert_ne!(model, v_a, "a new request goes to the new model");
    let got: UserAnswer = serde_json::from_str(&body).unwrap();
    assert_eq!(got.tracks.iter().map(tid).collect::<Vec<_>>(), want_b);
    Arc::try_unwrap(s).ok().unwrap().stop().unwrap();
}

#[test]
fn a_bad_model_is_refused_and_the_old_one_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, a, _) = setup(dir.path());
    let (uids, _) = int_ids(&ds);
    // Non-finite factors, with valid checksums (saved through Model::save).
    let mut m = encore::als::model::Model::load(&a).unwrap();
    m.items.data[3] = f32::NAN;
    let nan = dir.path().join("model-nan");
    m.save(&nan, false).unwrap();
    // A factor file changed after the model was written.
    let tampered = dir.path().join("model-tampered");
    std::fs::create_dir(&tampered).unwrap();
    for f in ["model.json", "user_factors.npy", "item_factors.npy"] {
        std::fs::copy(a.join(f), tampered.join(f)).unwrap();
    }
    let mut bytes = std::fs::read(tampered.join("item_factors.npy")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(tampered.join("item_factors.npy"), bytes).unwrap();
    // A model of another dataset, named with this one.
    let other_root = dir.path().join("other");
    std::fs::create_dir(&other_root).unwrap();
    let mut synth = encore::synth::SynthConfig::from_scale(encore::synth::Scale::Tiny, 99);
    (synth.users, synth.tracks, synth.artists, synth.events) = (100, 900, 90, 20_000);
    encore::synth::generate(&synth, &other_root.join("raw"), false, true).unwrap();
    encore::data::prep::prep(&encore::data::prep::PrepConfig::new(
        other_root.join("raw"),
        other_root.join("ds"),
    ))
    .unwrap();
    let other_ds = Dataset::load(&other_root.join("ds")).unwrap();
    let other = other_root.join("model");
    save_model(&other_ds, &other, 5, 8);

    let s = start_with(load(&a, &ds), batch(64, 0, 64), |_| {});
    let before = s.state.version().id;
    let cases = [
        (reload_body(&nan), "NaN or infinity"),
        (reload_body(&tampered), "checksum mismatch"),
        (
            serde_json::json!({"model": other, "dataset": ds.dir}).to_string(),
            "does not belong to dataset",
        ),
        (
            reload_body(&dir.path().join("missing")),
            "not a model directory",
        ),
    ];
    for (body, why) in &cases {
        let (code, text) = post(&s.url("/admin/reload"), body);
        assert_eq!(code, 422, "{body}: {text}");
        assert!(text.contains(why), "{body}: {text}");
        let (code, text) = get(&s.url(&format!("/v1/recommend?user={}&k=3", uids[0])));
        assert_eq!(code, 200, "{text}");
        assert!(text.contains(&before), "still the old model: {text}");
    }
    assert_eq!(healthz_version(&s).id, before);
    let m = get(&s.url("/metrics")).1;
    assert_eq!(
        metric(&m, "encore_model_reloads_total{reason=\"refused\"}"),
        cases.len() as f64
    );
    assert!(
        s.logged()
            .contains(&format!("refused, still serving {before}"))
    );
    // Without a source and without a body there is nothing to reload.
    let (code, text) = post(&s.url("/admin/reload"), "");
    assert_eq!(code, 400, "{text}");
    let (code, text) = post(&s.url("/admin/reload"), "{\"modle\": 1}");
    assert_eq!(code, 400, "unknown fields are refused: {text}");
    s.stop().unwrap();
}

#[test]
fn a_token_guards_the_reload_route() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, a, b) = setup(dir.path());
    let s = start_with(load(&a, &ds), batch(64, 0, 64), |c| {
        c.admin_token = Some("s3cret".into());
        c.source = Some(ModelSource {
            model: b.clone(),
            dataset: None,
        });
    });
    let call = |auth: Option<&str>| {
        let mut req = agent().post(&s.url("/admin/reload"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let mut r = req.send("").unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    assert_eq!(call(None).0, 401);
    assert_eq!(call(Some("Bearer wrong")).0, 401);
    assert_eq!(call(Some("s3cret")).0, 401, "the Bearer scheme is required");
    let before = s.state.version().id;
    let (code, body) = call(Some("Bearer s3cret"));
    assert_eq!(code, 200, "{body}");
    assert_ne!(
        s.state.version().id,
        before,
        "the configured source was loaded"
    );
    s.stop().unwrap();
}

#[test]
fn without_a_token_the_reload_route_answers_only_loopback_clients() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, a, _) = setup(dir.path());
    let s = start_with(load(&a, &ds), batch(64, 0, 64), |c| {
        c.addr = "0.0.0.0:0".parse().unwrap();
        c.source = Some(ModelSource {
            model: a.clone(),
            dataset: None,
        });
    });
    let port = s.addr.port();
    let (code, body) = post(&format!("http://127.0.0.1:{port}/admin/reload"), "");
    assert_eq!(code, 200, "loopback is allowed: {body}");
    // This host's own non-loopback address, when it has one (no packet is sent).
    let own = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|u| u.connect("192.0.2.1:9").map(|_| u))
        .and_then(|u| u.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    if let Some(ip) = own {
        let (code, body) = post(&format!("http://{ip}:{port}/admin/reload"), "");
        assert_eq!(code, 403, "from {ip}: {body}");
    }
    s.stop().unwrap();
}
