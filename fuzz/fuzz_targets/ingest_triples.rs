//! Ingest of generic `triples` (user, item, count): delimiter and header detection, quoted fields, through `encore::data::prep::parse_input` with `--format triples`.
//!
//! Input: one option byte, then the file. See `encore_fuzz::ingest` for the option bits
//! and the invariants pinned (block-size independence, line accounting, table shape).
//!
//! The body is `encore_fuzz::targets::ingest_triples` (replayed by `cargo test` too).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encore_fuzz::targets::ingest_triples(data));
