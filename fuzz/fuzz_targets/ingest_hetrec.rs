//! Ingest of HetRec 2011 `user_artists.dat` (userID, artistID, weight; tab; header; CRLF), through `encore::data::prep::parse_input` with `--format hetrec`.
//!
//! Input: one option byte, then the file. See `encore_fuzz::ingest` for the option bits
//! and the invariants pinned (block-size independence, line accounting, table shape).
#![no_main]
use encore::data::formats::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encore_fuzz::ingest(Format::Hetrec, "user_artists.dat", data));
