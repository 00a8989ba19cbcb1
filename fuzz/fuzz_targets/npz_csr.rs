//! `encore::data::npz::read_csr`: a scipy CSR `.npz` (`train.npz`, `valid.npz`).
//!
//! An input starting with `PK` is the `.npz` itself (fuzzes the zip container too). Any
//! other input is split at `--` lines into the `.npy` members `indices`, `indptr`, `shape`,
//! `data`, `format` and zipped here with valid CRCs, so mutations reach the array checks
//! instead of dying at the zip CRC.
//! Pins: no panic (headers, dtypes, shapes, offsets and columns are all untrusted); a matrix
//! that loads is valid and (when it has < 2^31 columns, all `write_csr` supports) survives
//! `write_csr` → `read_csr` unchanged.
#![no_main]
use std::io::Write;

use encore::data::npz::{read_csr, write_csr};
use libfuzzer_sys::fuzz_target;

fn zip_members(parts: &[&[u8]]) -> Vec<u8> {
    let names = ["indices.npy", "indptr.npy", "shape.npy", "data.npy", "format.npy"];
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored);
    for (name, part) in names.iter().zip(parts) {
        z.start_file(*name, opts).expect("zip");
        z.write_all(part).expect("zip");
    }
    z.finish().expect("zip").into_inner()
}

fuzz_target!(|data: &[u8]| {
    let dir = encore_fuzz::scratch();
    let bytes = if data.starts_with(b"PK") {
        data.to_vec()
    } else {
        zip_members(&encore_fuzz::sections(data))
    };
    let p = encore_fuzz::write(dir, "in.npz", &bytes);
    let Ok(m) = read_csr(&p) else { return };
    m.validate("fuzz").expect("read_csr returned an invalid matrix");
    if m.n_cols > i32::MAX as usize {
        return;
    }
    let q = dir.join("out.npz");
    write_csr(&q, &m).expect("write_csr of a matrix read_csr accepted");
    let back = read_csr(&q).expect("read_csr of what write_csr wrote");
    assert!(back.n_rows == m.n_rows && back.n_cols == m.n_cols && back.indptr == m.indptr);
    assert!(back.indices == m.indices);
    assert!(back.data.iter().zip(&m.data).all(|(a, b)| a.to_bits() == b.to_bits()));
});
