//! A whole `encore::data::prep::prep` run (parse, filter, names, split, write) on a small
//! input in a fresh temporary directory, then `Dataset::load` + `verify` of its output.
//!
//! Input: option byte, then sections split at `--` lines: [data file, names file, artists].
//! Option bits 0-1 format and file (LFM-1b dir with `LFM-1b_tracks.txt`/`LFM-1b_artists.txt`,
//! LFM-2b `listening-counts.tsv`, HetRec dir with `artists.dat`, triples `plays.csv`), bit 2
//! time split (LFM-1b only; else random 20 %), bit 3 filter once (else to a fixed point),
//! bit 4 `--skip-bad-lines`, bits 5-6 thresholds (1, 1), (2, 1), (1, 2), (5, 2).
//! Pins: no panic anywhere in `prep`; whatever `prep` writes loads back and verifies.
//!
//! The body is `encore_fuzz::targets::prep` (replayed by `cargo test` too).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encore_fuzz::targets::prep(data));
