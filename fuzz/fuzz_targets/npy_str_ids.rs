//! `encore::data::ids::read` on an ids `.npy` (int64, `|S` or `<U` strings), then a
//! write/read round trip.
//!
//! Input: the `.npy` file. Pins: what `read` accepts, `write` writes and `read` reads back
//! equal.
//!
//! The body is `encore_fuzz::targets::npy_str_ids` (replayed by `cargo test` too).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encore_fuzz::targets::npy_str_ids(data));
