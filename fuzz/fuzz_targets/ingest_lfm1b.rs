//! Ingest of LFM-1b `LFM-1b_LEs.txt` (user_id, artist_id, album_id, track_id, timestamp; tab; no header), through `encore::data::prep::parse_input` with `--format lfm1b`.
//!
//! Input: one option byte, then the file. See `encore_fuzz::ingest` for the option bits
//! and the invariants pinned (block-size independence, line accounting, table shape).
#![no_main]
use encore::data::formats::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encore_fuzz::ingest(Format::Lfm1b, "LFM-1b_LEs.txt", data));
