//! Body of the `serve_requests` target: arbitrary bytes as the query string or JSON body of
//! `encore serve`'s routes, through the real axum router (`tower::ServiceExt::oneshot`, no
//! socket) over a tiny in-memory recommender (2 users `10`, `20`; 3 tracks `1`, `5`, `9`;
//! k = 2), built once per process.
//!
//! Input: option byte, then the query string or body. Option bits 0-1 route:
//! `GET /v1/recommend?…`, `POST /v1/recommend`, `POST /v1/recommend/history`,
//! `GET /v1/similar?…`; bit 2 leaves out `content-type: application/json` (POST).
//! Query strings that are not a valid URI are skipped (hyper rejects them before axum).
//! Pins: no panic; every answer is 2xx or 4xx, never 5xx; every error body is JSON
//! `{"error": "..."}`; a many-user answer may hold `{"user", "error"}` in place of a user's
//! answer; a POST body that is not JSON, or a POST without the JSON content type,
//! is a 400 (or a 413 over the body limit); a 2xx answer lists at most `k` known tracks.
//!
//! Also a module of `crates/serve/tests/fuzz_regressions.rs` (with `#[path]`), which replays `fuzz/corpus/serve_requests/` and `fuzz/regressions/serve_requests/` in `cargo test`.

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use encore::als::AlsConfig;
use encore::data::dataset::Dataset;
use encore::data::prep::{PrepConfig, prep};
use encore::gpu::DeviceChoice;
use encore::recommend::Recommender;
use encore::train::{FitOptions, fit};
use encore_serve::{ServeConfig, default_batch, router, state};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// Request bodies over this many bytes are refused with 413 (fuzz inputs reach 4 KiB).
pub const BODY_LIMIT: usize = 1024;
/// Original track ids in the tiny recommender (its users are 10 and 20).
pub const TRACKS: [u64; 3] = [1, 5, 9];

struct App {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
}

/// The router and its runtime, built on first use.
fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("encore-fuzz-serve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("fuzz scratch directory");
        // Users 10 and 20 over tracks 1, 5 and 9, through `prep` (no names file).
        let plays = dir.join("plays.csv");
        std::fs::write(
            &plays,
            "user,item,count\n10,1,1\n10,9,4\n10,5,1\n20,5,2\n20,9,1\n20,1,3\n",
        )
        .expect("fuzz scratch file");
        let mut prep_cfg = PrepConfig::new(&plays, dir.join("ds"));
        (prep_cfg.min_user_tracks, prep_cfg.min_track_users) = (1, 1);
        prep_cfg.quiet = true;
        prep(&prep_cfg).expect("tiny dataset");
        let ds = Dataset::load(&dir.join("ds")).expect("dataset loads");
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = AlsConfig {
            factors: 2,
            iterations: 1,
            ..AlsConfig::default()
        };
        let opts = FitOptions {
            device: DeviceChoice::Cpu,
            quiet: true,
            ..FitOptions::default()
        };
        let model = fit(ds.clone(), &cfg, &opts, |_| {}).expect("tiny model");
        let rec = Recommender::cpu(model, ds).expect("recommender");
        let serve_cfg = ServeConfig {
            body_limit: BODY_LIMIT,
            ..ServeConfig::new(([127, 0, 0, 1], 0).into(), default_batch())
        };
        let st = state(rec, &serve_cfg).expect("server state");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        App {
            rt,
            router: router(st, BODY_LIMIT),
        }
    })
}

/// One request from the input; `None` when the query string is not a URI.
fn request(o: u8, rest: &[u8]) -> Option<(Method, Request<Body>)> {
    let (method, path) = match o & 3 {
        0 => (Method::GET, "/v1/recommend"),
        1 => (Method::POST, "/v1/recommend"),
        2 => (Method::POST, "/v1/recommend/history"),
        _ => (Method::GET, "/v1/similar"),
    };
    let mut b = Request::builder().method(method.clone());
    let body = if method == Method::GET {
        let mut uri = format!("{path}?").into_bytes();
        uri.extend_from_slice(rest);
        let uri = axum::http::Uri::try_from(uri).ok()?;
        b = b.uri(uri);
        Body::empty()
    } else {
        b = b.uri(path);
        if o & 4 == 0 {
            b = b.header(header::CONTENT_TYPE, "application/json");
        }
        Body::from(rest.to_vec())
    };
    Some((method, b.body(body).ok()?))
}

/// The target: one request, the pins in the module doc.
pub fn serve_requests(data: &[u8]) {
    let _ = answer(data);
}

/// One request and the pins; its status, or `None` when the input made no request.
pub fn answer(data: &[u8]) -> Option<StatusCode> {
    // An empty input is option byte 0 with nothing after it.
    let (o, body_in) = data.split_first().map_or((0, data), |(&o, r)| (o, r));
    let (method, req) = request(o, body_in)?;
    let route = (o & 3, o & 4 != 0);
    let app = app();
    let (status, bytes) = app.rt.block_on(async {
        let resp = app
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("router is infallible");
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .expect("response body")
            .to_bytes();
        (status, bytes)
    });
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        status.is_success() || status.is_client_error(),
        "{method} route {} answered {status}: {text}",
        route.0
    );
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{status} answer is not JSON ({e}): {text}"));
    if !status.is_success() {
        assert!(
            json["error"].is_string(),
            "{status} without an error message: {text}"
        );
    }
    if method == Method::POST {
        let too_big = body_in.len() > BODY_LIMIT;
        let not_json = serde_json::from_slice::<serde_json::Value>(body_in).is_err();
        if too_big && !route.1 {
            assert_eq!(
                status,
                StatusCode::PAYLOAD_TOO_LARGE,
                "{} byte body: {text}",
                body_in.len()
            );
        } else if route.1 || not_json {
            assert!(
                status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE,
                "malformed body (no content type: {}) answered {status}: {text}",
                route.1
            );
        }
    }
    if status.is_success() {
        let answers = match &json {
            serde_json::Value::Array(a) => a.clone(),
            v if v.get("tracks").is_some() => vec![v.clone()],
            v => panic!("2xx answer without tracks: {v}"),
        };
        for a in &answers {
            if a.get("error").is_some() {
                // An unknown user, answered in place (issue 14).
                assert!(a["error"].is_string() && a.get("user").is_some(), "{a}");
                continue;
            }
            let k = a["k"].as_u64().expect("answer k") as usize;
            let tracks = a["tracks"].as_array().expect("answer tracks");
            assert!(
                tracks.len() <= k.min(TRACKS.len()),
                "{} tracks for k = {k}",
                tracks.len()
            );
            for t in tracks {
                let id = t["id"].as_u64().expect("track id");
                assert!(TRACKS.contains(&id), "unknown track {id} in {text}");
            }
        }
    }
    Some(status)
}
