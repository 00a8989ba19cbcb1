//! `encore::data::lines::parse_line` and `parse_field`: one record line of every schema.
//!
//! Option byte: bits 0-1 schema (LFM-1b LEs, LFM-2b counts, HetRec, triples), bits 2-3
//! delimiter (tab, comma, semicolon, space); the rest of the input is the line.
//! Pins: no panic; a parsed record re-rendered as a plain line parses to the same record
//! (fast path), and with every field quoted and space-padded too (careful path), so the two
//! paths agree; `parse_field` on every field never panics.
//!
//! The body is `encore_fuzz::targets::parse_line` (replayed by `cargo test` too).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encore_fuzz::targets::parse_line(data));
