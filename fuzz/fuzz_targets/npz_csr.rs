//! `encore::data::npz::read_csr`: a scipy CSR `.npz` (`train.npz`, `valid.npz`) from raw bytes.
//!
//! Pins: no panic (zip, `.npy` headers, dtypes, shapes, offsets and columns are all
//! untrusted); a matrix that loads is valid and survives `write_csr` → `read_csr` unchanged.
#![no_main]
use encore::data::npz::{read_csr, write_csr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = encore_fuzz::scratch();
    let p = encore_fuzz::write(dir, "in.npz", data);
    let Ok(m) = read_csr(&p) else { return };
    m.validate("fuzz").expect("read_csr returned an invalid matrix");
    let q = dir.join("out.npz");
    write_csr(&q, &m).expect("write_csr of a matrix read_csr accepted");
    let back = read_csr(&q).expect("read_csr of what write_csr wrote");
    assert!(back.n_rows == m.n_rows && back.n_cols == m.n_cols && back.indptr == m.indptr);
    assert!(back.indices == m.indices);
    assert!(back.data.iter().zip(&m.data).all(|(a, b)| a.to_bits() == b.to_bits()));
});
