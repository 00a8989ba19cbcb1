//! scipy-compatible `.npz` (sparse CSR) and `.npy` files, via `ndarray-npy`.
//!
//! `scipy.sparse.save_npz` stores a zip of `indices`, `indptr`, `format` (the bytes `csr`),
//! `shape` and `data`. We write exactly that, uncompressed with zip64 enabled (arrays can pass
//! 4 GiB), with int32 offsets when the matrix allows and int64 otherwise, int32 column indices and
//! float32 values, so `scipy.sparse.load_npz` and `numpy.load` read the files directly.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

use ndarray::{Array1, ArrayView1, aview1};
use ndarray_npy::{NpzReader, NpzWriter, ReadNpyExt, WritableElement, WriteDataError, WriteNpyExt};
use py_literal::Value as PyValue;

use crate::data::csr::Csr;
use crate::error::{Error, IoContext, Result};

/// A fixed-width byte string, numpy's `|S3`, used for scipy's `format` entry.
#[derive(Debug, Clone, Copy)]
struct Bytes3([u8; 3]);

impl WritableElement for Bytes3 {
    fn type_descriptor() -> PyValue {
        PyValue::String("|S3".into())
    }
    fn write<W: std::io::Write>(&self, mut writer: W) -> Result<(), WriteDataError> {
        writer.write_all(&self.0)?;
        Ok(())
    }
    fn write_slice<W: std::io::Write>(slice: &[Self], mut writer: W) -> Result<(), WriteDataError> {
        for s in slice {
            writer.write_all(&s.0)?;
        }
        Ok(())
    }
}

/// Whether offsets of a matrix with `nnz` entries fit scipy's int32 index type.
pub fn fits_i32(nnz: usize) -> bool {
    nnz <= i32::MAX as usize
}

/// Writes `m` as a scipy CSR `.npz` at `path`.
pub fn write_csr(path: &Path, m: &Csr) -> Result<()> {
    if m.n_cols > i32::MAX as usize {
        return Err(Error::npy(path, "more than 2^31 columns are not supported"));
    }
    let err = |e: &dyn std::fmt::Display| Error::npy(path, e);
    let file = File::create(path).at(path)?;
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let mut npz = NpzWriter::new_with_options(BufWriter::with_capacity(1 << 20, file), opts);
    // Column indices are below 2^31 (checked above), so their u32 bits are valid i32s.
    let indices: &[i32] = bytemuck::cast_slice(&m.indices);
    npz.add_array("indices", &aview1(indices))
        .map_err(|e| err(&e))?;
    if fits_i32(m.nnz()) {
        let indptr: Array1<i32> = m.indptr.iter().map(|&v| v as i32).collect();
        npz.add_array("indptr", &indptr).map_err(|e| err(&e))?;
    } else {
        let indptr: Array1<i64> = m.indptr.iter().map(|&v| v as i64).collect();
        npz.add_array("indptr", &indptr).map_err(|e| err(&e))?;
    }
    npz.add_array("format", &ndarray::arr0(Bytes3(*b"csr")))
        .map_err(|e| err(&e))?;
    let shape = [m.n_rows as i64, m.n_cols as i64];
    npz.add_array("shape", &aview1(&shape))
        .map_err(|e| err(&e))?;
    npz.add_array("data", &aview1(&m.data))
        .map_err(|e| err(&e))?;
    let mut w = npz.finish().map_err(|e| err(&e))?;
    w.flush().at(path)?;
    w.into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?
        .sync_all()
        .at(path)?;
    Ok(())
}

/// Reads a scipy CSR `.npz` (int32 or int64 indices, float32 or float64 data) and validates it.
pub fn read_csr(path: &Path) -> Result<Csr> {
    let file = File::open(path).at(path)?;
    let mut npz = NpzReader::new(BufReader::new(file)).map_err(|e| Error::npy(path, e))?;
    let names = npz.names().map_err(|e| Error::npy(path, e))?;
    for want in ["indices", "indptr", "shape", "data"] {
        if !names
            .iter()
            .any(|n| n == want || n == &format!("{want}.npy"))
        {
            return Err(Error::npy(path, format!("missing array `{want}`")));
        }
    }
    let shape = read_index_array(&mut npz, "shape", path)?;
    if shape.len() != 2 {
        return Err(Error::npy(path, "shape is not 2-dimensional"));
    }
    let indptr = read_index_array(&mut npz, "indptr", path)?;
    let indices_raw = read_index_array(&mut npz, "indices", path)?;
    let indices = indices_raw
        .into_iter()
        .map(|v| u32::try_from(v).map_err(|_| Error::npy(path, "column index out of range")))
        .collect::<Result<Vec<u32>>>()?;
    let data: Vec<f32> = match npz.by_name::<ndarray::OwnedRepr<f32>, ndarray::Ix1>("data") {
        Ok(a) => a.into_raw_vec_and_offset().0,
        Err(_) => npz
            .by_name::<ndarray::OwnedRepr<f64>, ndarray::Ix1>("data")
            .map_err(|e| Error::npy(path, format!("data: {e}")))?
            .iter()
            .map(|&v| v as f32)
            .collect(),
    };
    let m = Csr {
        n_rows: usize::try_from(shape[0]).map_err(|_| Error::npy(path, "negative shape"))?,
        n_cols: usize::try_from(shape[1]).map_err(|_| Error::npy(path, "negative shape"))?,
        indptr: indptr
            .into_iter()
            .map(|v| u64::try_from(v).map_err(|_| Error::npy(path, "negative offset")))
            .collect::<Result<_>>()?,
        indices,
        data,
    };
    m.validate(&path.display().to_string())?;
    Ok(m)
}

fn read_index_array<R: std::io::Read + std::io::Seek>(
    npz: &mut NpzReader<R>,
    name: &str,
    path: &Path,
) -> Result<Vec<i64>> {
    if let Ok(a) = npz.by_name::<ndarray::OwnedRepr<i32>, ndarray::Ix1>(name) {
        return Ok(a.iter().map(|&v| i64::from(v)).collect());
    }
    npz.by_name::<ndarray::OwnedRepr<i64>, ndarray::Ix1>(name)
        .map(|a| a.into_raw_vec_and_offset().0)
        .map_err(|e| Error::npy(path, format!("{name}: {e}")))
}

/// Writes original ids as an int64 `.npy`.
pub fn write_ids(path: &Path, ids: &[u64]) -> Result<()> {
    let as_i64: Vec<i64> = ids.iter().map(|&v| v as i64).collect();
    let file = File::create(path).at(path)?;
    let mut w = BufWriter::new(file);
    ArrayView1::from(&as_i64[..])
        .write_npy(&mut w)
        .map_err(|e| Error::npy(path, e))?;
    w.flush().at(path)?;
    Ok(())
}

/// Reads an int64 `.npy` of ids.
pub fn read_ids(path: &Path) -> Result<Vec<u64>> {
    let file = File::open(path).at(path)?;
    let a = Array1::<i64>::read_npy(BufReader::new(file)).map_err(|e| Error::npy(path, e))?;
    Ok(a.iter().map(|&v| v as u64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_round_trips_through_npz() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.npz");
        let m = Csr {
            n_rows: 3,
            n_cols: 5,
            indptr: vec![0, 2, 2, 3],
            indices: vec![1, 4, 0],
            data: vec![1.0, 7.0, 3.5],
        };
        write_csr(&p, &m).unwrap();
        assert_eq!(read_csr(&p).unwrap(), m);
        let ids = vec![5u64, 1 << 40, 0];
        let q = dir.path().join("ids.npy");
        write_ids(&q, &ids).unwrap();
        assert_eq!(read_ids(&q).unwrap(), ids);
    }

    #[test]
    fn truncated_npz_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.npz");
        write_csr(&p, &Csr::empty(2, 2)).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        assert!(read_csr(&p).is_err());
    }
}
