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
use ndarray_npy::{NpzWriter, WritableElement, WriteDataError, WriteNpyExt};
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

/// The three entries of a `.npy` header, parsed from the Python dict literal numpy writes
/// (`{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`).
///
/// Hand-written rather than a general Python-literal parser: the grammar is fixed (string keys;
/// a string, a boolean or a tuple of integers as values; no nesting), and the general parser
/// took minutes and gigabytes on some 64 KiB headers found by fuzzing (issue 13). This one is a
/// single left-to-right pass, so its time is linear in the header's length.
#[derive(Debug, Default, PartialEq)]
struct HeaderDict {
    descr: Option<String>,
    fortran_order: Option<bool>,
    shape: Option<Vec<u64>>,
}

impl HeaderDict {
    fn parse(text: &str) -> Result<Self, String> {
        let mut p = HeaderParser {
            s: text.as_bytes(),
            at: 0,
        };
        let mut d = HeaderDict::default();
        p.expect(b'{')?;
        loop {
            p.skip_ws();
            if p.eat(b'}') {
                break;
            }
            let key = p.string()?;
            p.skip_ws();
            p.expect(b':')?;
            p.skip_ws();
            let dup = || format!("`{key}` appears twice");
            match key.as_str() {
                "descr" => {
                    if p.peek() == Some(b'[') {
                        return Err("structured (record) arrays are not supported".into());
                    }
                    let v = p.string()?;
                    if d.descr.replace(v).is_some() {
                        return Err(dup());
                    }
                }
                "fortran_order" => {
                    let v = p.boolean()?;
                    if d.fortran_order.replace(v).is_some() {
                        return Err(dup());
                    }
                }
                "shape" => {
                    let v = p.tuple()?;
                    if d.shape.replace(v).is_some() {
                        return Err(dup());
                    }
                }
                _ => return Err(format!("unexpected key `{key}`")),
            }
            p.skip_ws();
            if p.eat(b',') {
                continue;
            }
            p.skip_ws();
            p.expect(b'}')?;
            break;
        }
        p.skip_ws();
        if p.at != p.s.len() {
            return Err(format!("text after the closing brace at byte {}", p.at));
        }
        Ok(d)
    }
}

/// A cursor over a header's bytes; every method consumes what it reads, never backtracks.
struct HeaderParser<'a> {
    s: &'a [u8],
    at: usize,
}

impl HeaderParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.at += usize::from(hit);
        hit
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        if self.eat(b) {
            return Ok(());
        }
        Err(match self.peek() {
            Some(c) => format!(
                "expected `{}` at byte {}, found {}",
                char::from(b),
                self.at,
                crate::util::quote(&[c])
            ),
            None => format!(
                "expected `{}` at byte {}, found the end",
                char::from(b),
                self.at
            ),
        })
    }

    /// A quoted string without escapes (numpy's keys and type strings have none).
    fn string(&mut self) -> Result<String, String> {
        let q = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a quoted string at byte {}", self.at)),
        };
        self.at += 1;
        let start = self.at;
        let len = self.s[start..]
            .iter()
            .position(|&c| c == q || c == b'\\')
            .ok_or_else(|| format!("unterminated string at byte {}", start - 1))?;
        if self.s[start + len] == b'\\' {
            return Err(format!(
                "escapes in strings are not supported (byte {})",
                start + len
            ));
        }
        self.at = start + len + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }

    fn boolean(&mut self) -> Result<bool, String> {
        for (word, v) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.at..].starts_with(word) {
                self.at += word.len();
                return Ok(v);
            }
        }
        Err(format!("expected True or False at byte {}", self.at))
    }

    /// A non-negative decimal integer (Python 2's `L` suffix allowed).
    fn integer(&mut self) -> Result<u64, String> {
        let start = self.at;
        let mut v: u64 = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(c - b'0')))
                .ok_or_else(|| format!("dimension at byte {start} is too large"))?;
            self.at += 1;
        }
        if self.at == start {
            return Err(format!(
                "expected a dimension (a non-negative integer) at byte {start}"
            ));
        }
        self.eat(b'L');
        Ok(v)
    }

    /// `()`, `(3,)`, `(3, 4)`, `(3, 4,)`.
    fn tuple(&mut self) -> Result<Vec<u64>, String> {
        self.expect(b'(')?;
        let (mut dims, mut commas) = (Vec::new(), 0);
        loop {
            self.skip_ws();
            if self.eat(b')') {
                break;
            }
            dims.push(self.integer()?);
            self.skip_ws();
            if self.eat(b',') {
                commas += 1;
                continue;
            }
            self.expect(b')')?;
            break;
        }
        if dims.len() == 1 && commas == 0 {
            // `(3)` is the integer 3 in Python, not a tuple; numpy never writes it.
            return Err("shape `(n)` is not a tuple; numpy writes `(n,)`".into());
        }
        Ok(dims)
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
    let dict = HeaderDict::parse(text.trim()).map_err(|m| format!("{}: {m}", bad()))?;
    let descr = dict
        .descr
        .ok_or_else(|| format!("{}: no `descr` string", bad()))?;
    let fortran_order = dict.fortran_order.unwrap_or(false);
    let shape = dict
        .shape
        .ok_or_else(|| format!("{}: no `shape` tuple", bad()))?;
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

/// Reads a 1-D integer `.npy` of ids (int64 as written by [`write_ids`]; any integer type is
/// accepted). The header is checked against the file's size before anything is allocated.
pub fn read_ids(path: &Path) -> Result<Vec<u64>> {
    let file = File::open(path).at(path)?;
    let len = file.metadata().at(path)?.len();
    let mut r = BufReader::new(file);
    let h = read_npy_header(&mut r).map_err(|m| Error::npy(path, m))?;
    h.check_data_bytes(len.saturating_sub(h.header_bytes))
        .map_err(|m| Error::npy(path, m))?;
    if h.shape.len() != 1 || !matches!(h.dtype, Dtype::Int(_) | Dtype::UInt(_)) {
        return Err(Error::npy(
            path,
            format!(
                "expected a 1-D integer array of ids, found {} of {} dimension(s)",
                h.descr,
                h.shape.len()
            ),
        ));
    }
    // Ids are stored as int64, so an unsigned file's values above 2^63 - 1 are not ids Encore
    // could write back (the fuzzer found `<u8` ids that wrapped to negative on rewrite).
    read_values(&mut r, &h, |i, x| match x.as_u64() {
        None => Err(format!("id {x} at row {i} is negative")),
        Some(v) if v > i64::MAX as u64 => Err(format!(
            "id {v} at row {i} is above the largest id, 2^63 - 1 (ids are int64)"
        )),
        Some(v) => Ok(v),
    })
    .map_err(|m| Error::npy(path, m))
}

/// Reads a 2-D float32 `.npy` (C or Fortran order) from `r`, a file of `len` bytes, as
/// `(rows, cols, row-major data)`. The header is checked against `len` before anything is
/// allocated; the data is read in one pass straight into the result.
pub fn read_f32_matrix(r: &mut impl Read, len: u64) -> Result<(usize, usize, Vec<f32>), String> {
    let h = read_npy_header(r)?;
    if h.shape.len() != 2 || h.dtype != Dtype::Float(4) {
        return Err(format!(
            "expected a float32 2-D array (<f4), found {} of {} dimension(s)",
            h.descr,
            h.shape.len()
        ));
    }
    h.check_data_bytes(len.saturating_sub(h.header_bytes))?;
    let (rows, cols) = (h.shape[0] as usize, h.shape[1] as usize);
    // Checked above: rows × cols × 4 is the data's size in bytes, so it fits in memory terms.
    let mut data = vec![0f32; rows * cols];
    r.read_exact(bytemuck::cast_slice_mut(&mut data))
        .map_err(|e| format!("truncated data ({e})"))?;
    if cfg!(target_endian = "big") {
        for v in &mut data {
            *v = f32::from_bits(u32::from_le(v.to_bits()));
        }
    }
    if h.fortran_order && rows > 1 && cols > 1 {
        let mut c = vec![0f32; rows * cols];
        for (j, col) in data.chunks_exact(rows).enumerate() {
            for (i, &v) in col.iter().enumerate() {
                c[i * cols + j] = v;
            }
        }
        data = c;
    }
    Ok((rows, cols, data))
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

    #[test]
    fn header_dict_reads_what_numpy_writes() {
        let d = HeaderDict::parse("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }")
            .unwrap();
        assert_eq!(d.descr.as_deref(), Some("<f4"));
        assert_eq!(d.fortran_order, Some(false));
        assert_eq!(d.shape, Some(vec![3, 4]));
        let d = HeaderDict::parse(r#"{"shape":(7,),"fortran_order":True,"descr":"|u1"}"#).unwrap();
        assert_eq!((d.shape, d.fortran_order), (Some(vec![7]), Some(true)));
        assert_eq!(
            HeaderDict::parse("{'shape': ()}").unwrap().shape,
            Some(vec![])
        );
        // Python 2 numpy wrote long integers with an `L` suffix.
        assert_eq!(
            HeaderDict::parse("{'shape': (2L, 3L)}").unwrap().shape,
            Some(vec![2, 3])
        );
    }

    #[test]
    fn header_dict_refuses_what_is_not_a_numpy_header() {
        for (text, why) in [
            ("{'shape': (3)}", "not a tuple"),
            ("{'shape': (3,), 'shape': (4,)}", "twice"),
            ("{'descr': '<f4', 'extra': 1}", "unexpected key"),
            ("{'descr': [('a', '<f4')]}", "structured"),
            ("{'descr': '<f4}", "unterminated"),
            ("{'descr': 'a\\b'}", "escapes"),
            ("{'shape': (3,)} x", "after the closing brace"),
            ("{'shape': (99999999999999999999,)}", "too large"),
            ("{'fortran_order': Maybe}", "True or False"),
            ("['descr']", "expected `{`"),
        ] {
            let e = HeaderDict::parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    /// A header made of 64 KiB of nested brackets and quotes is refused at its first wrong byte
    /// (the general literal parser this replaced backtracked over such headers for minutes).
    #[test]
    fn header_dict_refuses_deeply_nested_junk() {
        let junk = format!("{{'descr': {}", "[(".repeat(30_000));
        assert!(HeaderDict::parse(&junk).unwrap_err().contains("structured"));
        let junk = format!("{{'shape': ({}", "(".repeat(60_000));
        assert!(HeaderDict::parse(&junk).unwrap_err().contains("dimension"));
    }

    fn npy_bytes(header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut v = b"\x93NUMPY\x01\x00".to_vec();
        v.extend_from_slice(&(h.len() as u16).to_le_bytes());
        v.extend_from_slice(h.as_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn fortran_order_factors_are_read_row_major() {
        // The 2 × 3 matrix [[1, 2, 3], [4, 5, 6]] stored column by column.
        let col_major: Vec<u8> = [1f32, 4., 2., 5., 3., 6.]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let f = npy_bytes(
            "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
            &col_major,
        );
        let (r, c, data) = read_f32_matrix(&mut &f[..], f.len() as u64).unwrap();
        assert_eq!((r, c), (2, 3));
        assert_eq!(data, vec![1., 2., 3., 4., 5., 6.]);
        let f64s = npy_bytes(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1), }",
            &[0; 8],
        );
        let e = read_f32_matrix(&mut &f64s[..], f64s.len() as u64).unwrap_err();
        assert!(e.contains("expected a float32 2-D array"), "{e}");
    }

    #[test]
    fn ids_of_any_integer_type_are_read_and_negative_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ids.npy");
        let le: Vec<u8> = [7i32, 0, 123456]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(
            &p,
            npy_bytes(
                "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }",
                &le,
            ),
        )
        .unwrap();
        assert_eq!(read_ids(&p).unwrap(), vec![7, 0, 123456]);
        let le: Vec<u8> = [7i64, -2].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(
            &p,
            npy_bytes(
                "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }",
                &le,
            ),
        )
        .unwrap();
        let e = read_ids(&p).unwrap_err().to_string();
        assert!(e.contains("id -2 at row 1 is negative"), "{e}");
        let le: Vec<u8> = [1u64 << 63].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(
            &p,
            npy_bytes(
                "{'descr': '<u8', 'fortran_order': False, 'shape': (1,), }",
                &le,
            ),
        )
        .unwrap();
        let e = read_ids(&p).unwrap_err().to_string();
        assert!(e.contains("above the largest id"), "{e}");
    }
}
