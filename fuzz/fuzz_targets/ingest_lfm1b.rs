//! Ingest of LFM-1b `LFM-1b_LEs.txt` (user_id, artist_id, album_id, track_id, timestamp; tab; no header), through `encore::data::prep::parse_input` with `--format lfm1b`.
//!
//! Input: one option byte, then the file. See `encore_fuzz::ingest` for the option bits
//! and the invariants pinned (block-size independence, line accounting, table shape).
//!
//! The body is `encore_fuzz::targets::ingest_lfm1b` (replayed by `cargo test` too).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encore_fuzz::targets::ingest_lfm1b(data));
