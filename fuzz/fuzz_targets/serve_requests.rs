//! `encore serve`'s request decoding and validation: arbitrary bytes as the query string or
//! JSON body of `GET/POST /v1/recommend`, `POST /v1/recommend/history` and `GET /v1/similar`,
//! through the real axum router on a tiny in-memory recommender.
//!
//! The body, input layout and pins are `encore_fuzz::serve` (replayed by `cargo test -p
//! encore-serve` too).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encore_fuzz::serve::serve_requests(data));
