//! `model.json` as `encore::als::model::Model::load` reads it (serde into `ModelMeta`, then
//! the factor shapes it declares are checked).
//!
//! The input is model.json; the factor files are fixed and valid (2 × 2 users, 3 × 2 items).
//! Pins: no panic; a model that loads agrees with its model.json.
//!
//! The body is `encore_fuzz::targets::model_json` (replayed by `cargo test` too).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encore_fuzz::targets::model_json(data));
