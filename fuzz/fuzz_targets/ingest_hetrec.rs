//! Ingest of HetRec 2011 `user_artists.dat` (userID, artistID, weight; tab; header; CRLF), through `encore::data::prep::parse_input` with `--format hetrec`.
//!
//! Input: one option byte, then the file. See `encore_fuzz::ingest` for the option bits
//! and the invariants pinned (block-size independence, line accounting, table shape).
//!
//! The body is `encore_fuzz::targets::ingest_hetrec` (replayed by `cargo test` too).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encore_fuzz::targets::ingest_hetrec(data));
