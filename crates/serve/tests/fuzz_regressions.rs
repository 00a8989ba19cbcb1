//! The `serve_requests` fuzz corpus in `cargo test`: every seed (`fuzz/corpus/serve_requests/`)
//! and minimized crash (`fuzz/regressions/serve_requests/`) goes once through the fuzz target's
//! own body (`fuzz/src/serve.rs`, included with `#[path]`): the real router on a tiny
//! recommender, asserting no panic, no 5xx, JSON errors and a 400 for a malformed body.

#[path = "../../../fuzz/src/serve.rs"]
mod serve;

use std::path::{Path, PathBuf};

fn inputs() -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut v = Vec::new();
    for kind in ["corpus", "regressions"] {
        if let Ok(rd) = std::fs::read_dir(fuzz.join(kind).join("serve_requests")) {
            v.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    v.sort();
    v
}

#[test]
fn every_serve_requests_input_replays_without_a_panic() {
    let files = inputs();
    assert!(
        files.len() >= 8,
        "only {} serve_requests inputs",
        files.len()
    );
    let mut panicked = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if std::panic::catch_unwind(|| serve::serve_requests(&data)).is_err() {
            panicked.push(f.display().to_string());
        }
    }
    assert!(
        panicked.is_empty(),
        "inputs that panic:\n  {}",
        panicked.join("\n  ")
    );
}

#[test]
fn the_target_answers_known_requests_as_the_server_should() {
    use axum::http::StatusCode;
    let cases: &[(&[u8], StatusCode)] = &[
        (b"", StatusCode::BAD_REQUEST), // GET /v1/recommend? without a user
        (b"\x00user=10&k=2", StatusCode::OK),
        (b"\x00user=99", StatusCode::NOT_FOUND),
        (b"\x00user=10&k=0", StatusCode::BAD_REQUEST),
        (b"\x00user=ten", StatusCode::BAD_REQUEST),
        (b"\x01{\"users\":[10,20],\"k\":3}", StatusCode::OK),
        (b"\x01{\"users\":[]}", StatusCode::BAD_REQUEST),
        (b"\x01not json", StatusCode::BAD_REQUEST),
        (b"\x05{\"users\":[10]}", StatusCode::BAD_REQUEST), // no content type
        (
            b"\x02{\"history\":[{\"track\":1,\"plays\":2.5}],\"k\":2}",
            StatusCode::OK,
        ),
        (
            b"\x02{\"history\":[{\"track\":1,\"plays\":-1}]}",
            StatusCode::BAD_REQUEST,
        ),
        (
            b"\x02{\"history\":[{\"track\":4,\"plays\":1}]}",
            StatusCode::NOT_FOUND,
        ),
        (b"\x03item=5&k=2", StatusCode::OK),
    ];
    for &(input, want) in cases {
        assert_eq!(
            serve::answer(input),
            Some(want),
            "{}",
            String::from_utf8_lossy(input)
        );
    }
    // Not a URI: no request.
    assert_eq!(serve::answer(b"\x00user=1 0"), None);
    // Over the body limit: 413.
    let mut big = b"\x01{\"users\":[".to_vec();
    big.extend(std::iter::repeat_n(b'1', serve::BODY_LIMIT + 10));
    big.extend_from_slice(b"]}");
    assert_eq!(serve::answer(&big), Some(StatusCode::PAYLOAD_TOO_LARGE));
}
