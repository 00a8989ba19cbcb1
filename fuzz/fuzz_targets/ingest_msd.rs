//! Ingest of Million Song Dataset Taste Profile triplets (string user and song ids),
//! through `encore::data::prep::parse_input` with `--format msd`.
//!
//! Input: one option byte, then the file (sections split at `--` lines become files where the
//! target says so). See `encore_fuzz::ingest` for the option bits and the invariants pinned.
//!
//! The body is `encore_fuzz::targets::ingest_msd` (replayed by `cargo test` too).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encore_fuzz::targets::ingest_msd(data));
