//! `manifest.json` as `encore::data::dataset::Dataset::load` reads it, then `verify`.
//!
//! The input is manifest.json; the rest of the dataset (train/valid `.npz`, id `.npy`,
//! `items.tsv`) is fixed and valid, written once with Encore's own writers.
//! Pins: no panic in loading or in the content-hash check.
//!
//! The body is `encore_fuzz::targets::manifest_json` (replayed by `cargo test` too).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encore_fuzz::targets::manifest_json(data));
