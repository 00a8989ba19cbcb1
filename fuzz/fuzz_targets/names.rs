//! Names files: `encore::data::names::load` (LFM-1b `LFM-1b_tracks.txt` + `LFM-1b_artists.txt`,
//! HetRec `artists.dat`) and `read_items_tsv` (a dataset's `items.tsv`).
//!
//! Input: option byte, then sections split at `--` lines: [tracks-or-artists.dat, artists].
//! Option bits: 0 HetRec (else LFM-1b), 1 no LFM-1b artists file, 2 gzip the files, 3
//! `--skip-bad-lines` (malformed and duplicate lines counted, not errors).
//! Looked-up item ids are fixed (0-10, 42, 100, 1000, 2^32, u64::MAX).
//! Pins: no panic; one name per item; names written by `write_items_tsv` read back with
//! tabs and line breaks turned into spaces and the same artist ids; the first section read as
//! an `items.tsv` never panics.
//!
//! The body is `encore_fuzz::targets::names` (replayed by `cargo test` too).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encore_fuzz::targets::names(data));
