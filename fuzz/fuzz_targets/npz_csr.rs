//! `encore::data::npz::read_csr`: a scipy CSR `.npz` (`train.npz`, `valid.npz`).
//!
//! An input starting with `PK` is the `.npz` itself (fuzzes the zip container too). Any
//! other input is split at `--` lines into the `.npy` members `indices`, `indptr`, `shape`,
//! `data`, `format` and zipped here with valid CRCs, so mutations reach the array checks
//! instead of dying at the zip CRC.
//! Pins: no panic (headers, dtypes, shapes, offsets and columns are all untrusted); a matrix
//! that loads is valid and (when it has < 2^31 columns, all `write_csr` supports) survives
//! `write_csr` → `read_csr` unchanged.
//!
//! The body is `encore_fuzz::targets::npz_csr` (replayed by `cargo test` too).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encore_fuzz::targets::npz_csr(data));
