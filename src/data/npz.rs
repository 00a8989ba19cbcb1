//! scipy-compatible `.npz` (sparse CSR) and `.npy` files, via `ndarray-npy`.
//!
//! `scipy.sparse.save_npz` stores a zip of `indices`, `indptr`, `format` (the bytes `csr`),
//! `shape` and `data`. We write exactly that, uncompressed with zip64 enabled (arrays can pass
//! 4 GiB), with int32 offsets when the matrix allows and int64 otherwise, int32 column indices and
//! float32 values, so `scipy.sparse.load_npz` and `numpy.load` read the files directly.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use ndarray::{Array1, ArrayView1, aview1};
use ndarray_npy::{NpzWriter, ReadNpyExt, WritableElement, WriteDataError, WriteNpyExt};
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

/// The file under a `.npz` being written, which discards everything written after its first
/// write error. On any error the zip writer's `drop` still tries to finish the archive, and when
/// that fails too (a full disk, issue 13) it prints `ZipWriter drop failed: …` to stderr beside
/// the real error, which has already been returned; the half-written file is removed with the
/// temporary directory it is in. [`write_csr`] checks `failed` before reporting success.
struct StopAfterError {
    file: File,
    failed: bool,
}

impl Write for StopAfterError {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.failed {
            return Ok(buf.len());
        }
        self.file.write(buf).inspect_err(|_| self.failed = true)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.failed {
            return Ok(());
        }
        self.file.flush().inspect_err(|_| self.failed = true)
    }
}

impl Seek for StopAfterError {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
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
    let file = StopAfterError {
        file,
        failed: false,
    };
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
    let out = w
        .into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?;
    if out.failed {
        // Unreachable while the zip writer passes on every write error; never report a file
        // that lost writes as written.
        return Err(Error::npy(path, "a write failed part-way"));
    }
    out.file.sync_all().at(path)?;
    Ok(())
}

/// The members of a scipy CSR `.npz`, in the order they are read.
const CSR_MEMBERS: [&str; 5] = ["format", "shape", "indptr", "indices", "data"];

/// Largest ratio of uncompressed to compressed size that deflate can reach (≈1032:1); a member
/// claiming more is corrupt, and believing it would let a small file demand any allocation.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// Reads a scipy CSR `.npz` (int32 or int64 indices, float32 or float64 data) and validates it.
///
/// Every member's header is checked against the member's actual size before anything is
/// allocated, so a header claiming a huge shape is an error naming the file, never an
/// allocation failure (issue 13). Only the `csr` format is accepted.
pub fn read_csr(path: &Path) -> Result<Csr> {
    let file = File::open(path).at(path)?;
    let file_len = file.metadata().at(path)?.len();
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| Error::npy(path, format!("not a readable .npz (zip) file: {e}")))?;
    let names: Vec<String> = zip.file_names().map(String::from).collect();
    let member_name = |want: &str| {
        let with_ext = format!("{want}.npy");
        names
            .iter()
            .find(|n| **n == with_ext || *n == want)
            .cloned()
    };
    let missing: Vec<&str> = CSR_MEMBERS
        .into_iter()
        .filter(|m| member_name(m).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(Error::npy(
            path,
            format!(
                "missing array{} {} (a scipy CSR .npz holds format, shape, indptr, indices and \
                 data)",
                if missing.len() == 1 { "" } else { "s" },
                missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let full = |name: &str| member_name(name).unwrap_or_default();
    let in_array = |name: &str, m: String| Error::npy(path, format!("array `{name}`: {m}"));

    let (h, mut f) = open_member(&mut zip, path, file_len, "format", &full("format"))?;
    let mut raw = Vec::new();
    f.read_to_end(&mut raw)
        .map_err(|e| in_array("format", e.to_string()))?;
    drop(f);
    let format = match h.dtype {
        Dtype::Utf32 => raw
            .chunks_exact(4)
            .filter_map(|c| char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect::<String>(),
        _ => String::from_utf8_lossy(&raw).into_owned(),
    };
    let format = format.trim_end_matches('\0');
    if format != "csr" {
        return Err(Error::npy(
            path,
            format!(
                "sparse format is {}, but only CSR (`csr`) matrices are supported; convert it \
                 with scipy (`m.tocsr()`) and save again",
                crate::util::quote(format.as_bytes())
            ),
        ));
    }
    // Integers in 0..=max, each converted as it is read (no wider intermediate copy).
    let int = |max: u64| {
        move |i: usize, x: Scalar| {
            x.as_u64()
                .filter(|&x| x <= max)
                .ok_or_else(|| format!("element {i} = {x} is not an integer in 0..={max}"))
        }
    };
    let (h, mut f) = open_member(&mut zip, path, file_len, "shape", &full("shape"))?;
    let shape =
        read_values(&mut f, &h, int(usize::MAX as u64)).map_err(|m| in_array("shape", m))?;
    drop(f);
    let [n_rows, n_cols] = shape[..] else {
        return Err(in_array(
            "shape",
            format!("holds {} values, not 2", shape.len()),
        ));
    };
    let (n_rows, n_cols) = (n_rows as usize, n_cols as usize);
    let (h, mut f) = open_member(&mut zip, path, file_len, "indptr", &full("indptr"))?;
    let indptr = read_values(&mut f, &h, int(u64::MAX)).map_err(|m| in_array("indptr", m))?;
    drop(f);
    let (h, mut f) = open_member(&mut zip, path, file_len, "indices", &full("indices"))?;
    let indices = read_values(&mut f, &h, |i, x| {
        int(u64::from(u32::MAX))(i, x).map(|c| c as u32)
    })
    .map_err(|m| in_array("indices", m))?;
    drop(f);
    let (h, mut f) = open_member(&mut zip, path, file_len, "data", &full("data"))?;
    if !matches!(h.dtype, Dtype::Float(_)) {
        return Err(in_array(
            "data",
            format!("is {}, expected float32 or float64", h.descr),
        ));
    }
    let data =
        read_values(&mut f, &h, |_, x| Ok(x.as_f64() as f32)).map_err(|m| in_array("data", m))?;
    drop(f);
    let m = Csr {
        n_rows,
        n_cols,
        indptr,
        indices,
        data,
    };
    m.validate(&path.display().to_string())?;
    Ok(m)
}

/// Opens member `full` (array `name`) of an `.npz` and checks its header against its size.
fn open_member<'a, R: Read + std::io::Seek>(
    zip: &'a mut zip::ZipArchive<R>,
    path: &Path,
    file_len: u64,
    name: &str,
    full: &str,
) -> Result<(NpyHeader, zip::read::ZipFile<'a, R>)> {
    let what = |m: &dyn std::fmt::Display| Error::npy(path, format!("array `{name}`: {m}"));
    let mut f = zip.by_name(full).map_err(|e| what(&e))?;
    let (size, packed) = (f.size(), f.compressed_size());
    let plausible = match f.compression() {
        zip::CompressionMethod::Stored => size == packed,
        _ => {
            size <= packed
                .saturating_mul(MAX_DEFLATE_RATIO)
                .saturating_add(1024)
        }
    };
    if packed > file_len || !plausible {
        return Err(what(&format!(
            "zip entry claims {size} bytes ({packed} stored) in a {file_len}-byte file; \
             the file is corrupt"
        )));
    }
    let h = read_npy_header(&mut f).map_err(|m| what(&m))?;
    let data_bytes = size.saturating_sub(h.header_bytes);
    h.check_data_bytes(data_bytes).map_err(|m| what(&m))?;
    Ok((h, f))
}

/// The element types Encore reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    /// Signed little-endian integer of this many bytes.
    Int(u8),
    /// Unsigned little-endian integer of this many bytes.
    UInt(u8),
    /// Little-endian IEEE float of this many bytes (4 or 8).
    Float(u8),
    /// Fixed-width byte string (`|S`).
    Bytes,
    /// Fixed-width UTF-32 string (`<U`).
    Utf32,
}

/// What a `.npy` header says.
#[derive(Debug, Clone)]
pub struct NpyHeader {
    /// numpy's type string, e.g. `<f4`.
    pub descr: String,
    dtype: Dtype,
    /// Bytes per element.
    pub item_bytes: u64,
    pub shape: Vec<u64>,
    pub fortran_order: bool,
    /// Bytes before the data (magic, version, length and the header itself).
    pub header_bytes: u64,
}

impl NpyHeader {
    /// Elements the shape holds (`None` on overflow).
    fn elements(&self) -> Option<u64> {
        self.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d))
    }

    /// Fails unless the shape × element size is exactly `available` bytes.
    fn check_data_bytes(&self, available: u64) -> Result<(), String> {
        let shape = self
            .shape
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let need = self.elements().and_then(|n| n.checked_mul(self.item_bytes));
        match need {
            Some(n) if n == available => Ok(()),
            Some(n) => Err(format!(
                "header says shape ({shape}) of {} = {n} bytes, but {available} bytes of data \
                 follow; the file is truncated or corrupt",
                self.descr
            )),
            None => Err(format!(
                "header says shape ({shape}) of {}, more bytes than exist; the file is corrupt",
                self.descr
            )),
        }
    }
}

/// Reads and parses a `.npy` header (format versions 1 to 3).
fn read_npy_header(r: &mut impl Read) -> Result<NpyHeader, String> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)
        .map_err(|e| format!("no .npy header ({e})"))?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err("not a .npy array (bad magic bytes)".into());
    }
    let (len, len_bytes) = match magic[6] {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).map_err(|e| e.to_string())?;
            (u64::from(u16::from_le_bytes(b)), 2)
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).map_err(|e| e.to_string())?;
            (u64::from(u32::from_le_bytes(b)), 4)
        }
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    // numpy pads headers to 64 bytes; anything near this is not a header.
    if len > 1 << 16 {
        return Err(format!("header of {len} bytes is implausibly long"));
    }
    let mut text = vec![0u8; len as usize];
    r.read_exact(&mut text)
        .map_err(|e| format!("truncated header ({e})"))?;
    let text = String::from_utf8_lossy(&text);
    let bad = || format!("unreadable header {}", crate::util::quote(text.as_bytes()));
    let value: PyValue = text.trim().parse().map_err(|_| bad())?;
    let PyValue::Dict(items) = value else {
        return Err(bad());
    };
    let get = |key: &str| {
        items
            .iter()
            .find(|(k, _)| matches!(k, PyValue::String(s) if s == key))
            .map(|(_, v)| v)
    };
    let descr = match get("descr") {
        Some(PyValue::String(s)) => s.clone(),
        _ => return Err(format!("{}: no `descr` string", bad())),
    };
    let fortran_order = matches!(get("fortran_order"), Some(PyValue::Boolean(true)));
    let shape = match get("shape") {
        Some(PyValue::Tuple(dims)) => dims
            .iter()
            .map(|d| match d {
                PyValue::Integer(i) => i.to_string().parse::<u64>().ok(),
                _ => None,
            })
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(|| format!("{}: shape is not a tuple of sizes", bad()))?,
        _ => return Err(format!("{}: no `shape` tuple", bad())),
    };
    let (order, kind, size) = {
        let b = descr.as_bytes();
        let size = descr.get(2..).and_then(|n| n.parse::<u8>().ok());
        match (b.first(), b.get(1), size) {
            (Some(&o), Some(&k), Some(n)) => (o, k, n),
            _ => return Err(format!("unsupported element type {descr:?}")),
        }
    };
    if order == b'>' && size > 1 {
        return Err(format!("big-endian arrays ({descr}) are not supported"));
    }
    let (dtype, item_bytes) = match (kind, size) {
        (b'i', 1 | 2 | 4 | 8) => (Dtype::Int(size), u64::from(size)),
        (b'u', 1 | 2 | 4 | 8) => (Dtype::UInt(size), u64::from(size)),
        (b'f', 4 | 8) => (Dtype::Float(size), u64::from(size)),
        (b'S', _) => (Dtype::Bytes, u64::from(size)),
        (b'U', _) => (Dtype::Utf32, 4 * u64::from(size)),
        _ => return Err(format!("unsupported element type {descr:?}")),
    };
    Ok(NpyHeader {
        descr,
        dtype,
        item_bytes,
        shape,
        fortran_order,
        header_bytes: 6 + 2 + len_bytes + len,
    })
}

/// Checks that the `.npy` file at `path` holds exactly the data its header describes, before
/// anything is allocated for it; returns the header.
pub fn check_npy_file(path: &Path) -> Result<NpyHeader> {
    let file = File::open(path).at(path)?;
    let len = file.metadata().at(path)?.len();
    let h = read_npy_header(&mut BufReader::new(file)).map_err(|m| Error::npy(path, m))?;
    h.check_data_bytes(len.saturating_sub(h.header_bytes))
        .map_err(|m| Error::npy(path, m))?;
    Ok(h)
}

/// One number of a numeric array.
#[derive(Debug, Clone, Copy)]
enum Scalar {
    I(i64),
    U(u64),
    F(f64),
}

impl Scalar {
    fn as_u64(self) -> Option<u64> {
        match self {
            Scalar::I(v) => u64::try_from(v).ok(),
            Scalar::U(v) => Some(v),
            Scalar::F(_) => None,
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Scalar::I(v) => v as f64,
            Scalar::U(v) => v as f64,
            Scalar::F(v) => v,
        }
    }
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::I(v) => write!(f, "{v}"),
            Scalar::U(v) => write!(f, "{v}"),
            Scalar::F(v) => write!(f, "{v}"),
        }
    }
}

/// Reads the (size-checked) numeric data that follows header `h`, converting each element
/// with `conv(index, value)`.
fn read_values<T>(
    r: &mut impl Read,
    h: &NpyHeader,
    mut conv: impl FnMut(usize, Scalar) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    if matches!(h.dtype, Dtype::Bytes | Dtype::Utf32) {
        return Err(format!("is {}, not a numeric array", h.descr));
    }
    let n = h.elements().unwrap_or(0) as usize;
    let w = h.item_bytes as usize;
    const CHUNK: usize = 8192;
    let mut out = Vec::with_capacity(n);
    let mut buf = vec![0u8; w * CHUNK];
    while out.len() < n {
        let take = (n - out.len()).min(CHUNK);
        let chunk = &mut buf[..take * w];
        r.read_exact(chunk)
            .map_err(|e| format!("truncated data ({e})"))?;
        for b in chunk.chunks_exact(w) {
            let mut le = [0u8; 8];
            le[..w].copy_from_slice(b);
            let bits = u64::from_le_bytes(le);
            let x = match h.dtype {
                Dtype::Int(s) => {
                    let shift = 64 - 8 * u32::from(s);
                    Scalar::I(((bits << shift) as i64) >> shift)
                }
                Dtype::Float(4) => Scalar::F(f64::from(f32::from_bits(bits as u32))),
                Dtype::Float(_) => Scalar::F(f64::from_bits(bits)),
                _ => Scalar::U(bits),
            };
            out.push(conv(out.len(), x)?);
        }
    }
    Ok(out)
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

/// Reads an int64 `.npy` of ids (its size checked against its header first).
pub fn read_ids(path: &Path) -> Result<Vec<u64>> {
    check_npy_file(path)?;
    let file = File::open(path).at(path)?;
    let a = Array1::<i64>::read_npy(BufReader::new(file)).map_err(|e| Error::npy(path, e))?;
    a.iter()
        .enumerate()
        .map(|(i, &v)| {
            u64::try_from(v).map_err(|_| Error::npy(path, format!("id {v} at row {i} is negative")))
        })
        .collect()
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
