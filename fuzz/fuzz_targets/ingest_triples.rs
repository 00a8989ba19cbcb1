//! Ingest of generic `triples` (user, item, count): delimiter and header detection, quoted fields, through `encore::data::prep::parse_input` with `--format triples`.
//!
//! Input: one option byte, then the file. See `encore_fuzz::ingest` for the option bits
//! and the invariants pinned (block-size independence, line accounting, table shape).
#![no_main]
use encore::data::formats::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encore_fuzz::ingest(Format::Triples, "plays.txt", data));
