//! Ingest of LFM-2b `listening-counts.tsv` (user_id, track_id, count; tab; header), through `encore::data::prep::parse_input` with `--format lfm2b`.
//!
//! Input: one option byte, then the file. See `encore_fuzz::ingest` for the option bits
//! and the invariants pinned (block-size independence, line accounting, table shape).
//!
//! The body is `encore_fuzz::targets::ingest_lfm2b` (replayed by `cargo test` too).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encore_fuzz::targets::ingest_lfm2b(data));
