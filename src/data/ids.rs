//! Original user and item ids: integers or strings, in one type every stage shares.
//!
//! Inputs name users and items by integers (LFM-1b, HetRec, MovieLens) or by strings of any
//! length (the Million Song Dataset's 40-hex user ids and `SO…` song ids, ListenBrainz user names
//! and MusicBrainz ids). `prep` maps either to dense rows and columns and keeps the originals,
//! ascending, as an [`Ids`]: `recommend`, `serve` and Python answer in them.
//!
//! **The API for ids is this module** (re-exported by [`crate::data::dataset::Dataset`]'s
//! `user_ids` / `item_ids` fields):
//!
//! - [`Ids::len`], [`Ids::get`] (dense index → [`Id`], which prints and serialises as the
//!   number or the string), [`Ids::iter`], [`Ids::kind`], [`Ids::as_int`];
//! - [`Ids::lookup`] (the text of an id, as typed in a URL, a CLI flag or a JSON string →
//!   dense index, or why not), [`Ids::find`] (the same as an `Option`), [`Ids::find_id`];
//! - [`IdBuf`]: an owned id for answers and requests (a JSON number or string).
//!
//! **Files** (`user_ids.npy`, `item_ids.npy`), both readable by `numpy.load`:
//!
//! - integer ids: int64, shape `(n,)`, strictly ascending (unchanged since the first release);
//! - string ids: `|S{w}`, shape `(n,)`: UTF-8 bytes, NUL-padded to the longest id's `w` bytes
//!   (numpy strips the padding), strictly ascending byte-wise, which is numpy's own order, so
//!   `np.searchsorted(ids, b"...")` finds an id; `np.char.decode(ids, "utf-8")` gives `str`s.
//!   Ids are at most [`MAX_ID_BYTES`] bytes, valid UTF-8, without NUL bytes. Reading also
//!   accepts numpy's `<U{w}` (UTF-32) string arrays, as `np.save` writes for `str` arrays.

use std::fmt;
use std::fs::File;
use std::hash::Hasher;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// The longest string id accepted, in bytes: ids are stored fixed-width (`|S{w}`, `w` the
/// longest), so one huge id would make every row that wide. MusicBrainz user names and
/// MBIDs are far shorter.
pub const MAX_ID_BYTES: usize = 256;

/// Whether a dataset's ids are integers or strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum IdKind {
    /// Non-negative integers (stored as int64).
    #[default]
    Int,
    /// UTF-8 strings (stored as `|S{w}`).
    Str,
}

impl IdKind {
    /// `int` or `string`.
    pub fn name(self) -> &'static str {
        match self {
            IdKind::Int => "int",
            IdKind::Str => "string",
        }
    }
}

/// One original id, borrowed from an [`Ids`]. Prints as the number or the string itself, and
/// serialises as a JSON number or string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Id<'a> {
    Int(u64),
    Str(&'a str),
}

impl Id<'_> {
    /// An owned copy.
    pub fn to_owned(self) -> IdBuf {
        match self {
            Id::Int(v) => IdBuf::Int(v),
            Id::Str(s) => IdBuf::Str(s.to_string()),
        }
    }
}

impl fmt::Display for Id<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Int(v) => write!(f, "{v}"),
            Id::Str(s) => f.write_str(s),
        }
    }
}

impl Serialize for Id<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Id::Int(v) => s.serialize_u64(*v),
            Id::Str(v) => s.serialize_str(v),
        }
    }
}

/// An owned id: a JSON number or a JSON string (requests may use either; answers use the
/// dataset's own kind).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IdBuf {
    Int(u64),
    Str(String),
}

impl IdBuf {
    /// The id as text (what [`Ids::lookup`] takes).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            IdBuf::Int(v) => v.to_string().into(),
            IdBuf::Str(s) => s.as_str().into(),
        }
    }
}

impl fmt::Display for IdBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdBuf::Int(v) => write!(f, "{v}"),
            IdBuf::Str(s) => f.write_str(s),
        }
    }
}

/// Why [`Ids::lookup`] found no index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// The text cannot be an id of this kind (not an integer, for integer ids).
    NotAnId,
    /// A well-formed id that the dataset does not have.
    Unknown,
}

/// String ids: concatenated UTF-8 with end offsets (no padding in memory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StrIds {
    text: String,
    ends: Vec<u64>,
}

impl StrIds {
    /// Appends one id (callers keep the order ascending; [`check_ascending`] verifies it).
    pub fn push(&mut self, id: &str) {
        self.text.push_str(id);
        self.ends.push(self.text.len() as u64);
    }

    /// With room for `n` ids of `bytes` bytes in all.
    pub fn with_capacity(n: usize, bytes: usize) -> Self {
        Self {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Id `i` ("" when out of range).
    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 {
            0
        } else {
            self.ends.get(i - 1).copied().unwrap_or(0)
        };
        let end = self.ends.get(i).copied().unwrap_or(start);
        self.text.get(start as usize..end as usize).unwrap_or("")
    }

    /// The longest id's length in bytes.
    pub fn max_len(&self) -> usize {
        let mut prev = 0u64;
        let mut max = 0u64;
        for &e in &self.ends {
            max = max.max(e - prev);
            prev = e;
        }
        max as usize
    }

    /// Bytes of all ids together.
    pub fn total_bytes(&self) -> usize {
        self.text.len()
    }
}

/// The original ids of a dataset's rows or columns, strictly ascending (numerically, or
/// byte-wise for strings), so every lookup is a binary search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ids {
    Int(Vec<u64>),
    Str(StrIds),
}

impl Default for Ids {
    fn default() -> Self {
        Ids::Int(Vec::new())
    }
}

impl From<Vec<u64>> for Ids {
    fn from(v: Vec<u64>) -> Self {
        Ids::Int(v)
    }
}

impl Ids {
    /// String ids from already ascending strings.
    pub fn from_strs<'a>(ids: impl IntoIterator<Item = &'a str>) -> Self {
        let mut s = StrIds::default();
        for id in ids {
            s.push(id);
        }
        Ids::Str(s)
    }

    pub fn len(&self) -> usize {
        match self {
            Ids::Int(v) => v.len(),
            Ids::Str(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn kind(&self) -> IdKind {
        match self {
            Ids::Int(_) => IdKind::Int,
            Ids::Str(_) => IdKind::Str,
        }
    }

    /// The integer ids, when they are integers.
    pub fn as_int(&self) -> Option<&[u64]> {
        match self {
            Ids::Int(v) => Some(v),
            Ids::Str(_) => None,
        }
    }

    /// Id `i`. Out of range gives `Int(0)` or `Str("")`; callers index with dense indices
    /// below [`Ids::len`].
    pub fn get(&self, i: usize) -> Id<'_> {
        match self {
            Ids::Int(v) => Id::Int(v.get(i).copied().unwrap_or(0)),
            Ids::Str(s) => Id::Str(s.get(i)),
        }
    }

    /// Every id in index order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Id<'_>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The dense index of the id written as `text` (surrounding whitespace ignored): an
    /// integer's decimal digits for integer ids, the string itself for string ids.
    pub fn lookup(&self, text: &str) -> std::result::Result<usize, Miss> {
        let text = text.trim();
        match self {
            Ids::Int(v) => {
                let id: u64 = text.parse().map_err(|_| Miss::NotAnId)?;
                v.binary_search(&id).map_err(|_| Miss::Unknown)
            }
            Ids::Str(s) => {
                if text.is_empty() {
                    return Err(Miss::NotAnId);
                }
                let key = text.as_bytes();
                let (mut lo, mut hi) = (0, s.len());
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    match s.get(mid).as_bytes().cmp(key) {
                        std::cmp::Ordering::Less => lo = mid + 1,
                        std::cmp::Ordering::Greater => hi = mid,
                        std::cmp::Ordering::Equal => return Ok(mid),
                    }
                }
                Err(Miss::Unknown)
            }
        }
    }

    /// [`Ids::lookup`] as an `Option`.
    pub fn find(&self, text: &str) -> Option<usize> {
        self.lookup(text).ok()
    }

    /// The dense index of `id` (a number matches integer ids, a string string ids; a number
    /// is also looked up as its digits among string ids, and digits among integer ids).
    pub fn find_id(&self, id: &IdBuf) -> Option<usize> {
        self.find(&id.text())
    }

    /// The ids whose `keep` flag is set, in order.
    pub fn select(&self, keep: &[bool]) -> Ids {
        match self {
            Ids::Int(v) => Ids::Int(
                v.iter()
                    .zip(keep)
                    .filter(|(_, k)| **k)
                    .map(|(&x, _)| x)
                    .collect(),
            ),
            Ids::Str(s) => {
                let mut out = StrIds::default();
                for (i, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
                    out.push(s.get(i));
                }
                Ids::Str(out)
            }
        }
    }

    /// A stable 64-bit key of id `i` (the id itself for integers, a hash of the bytes for
    /// strings), for seeding per-user randomness independently of the dense index.
    pub fn seed_key(&self, i: usize) -> u64 {
        match self.get(i) {
            Id::Int(v) => v,
            Id::Str(s) => {
                let h = blake3::hash(s.as_bytes());
                let mut b = [0u8; 8];
                b.copy_from_slice(&h.as_bytes()[..8]);
                u64::from_le_bytes(b)
            }
        }
    }

    /// Feeds the ids to a content hash. Integer ids hash exactly as they always have (their
    /// little-endian bytes), so datasets written before string ids keep their hashes.
    pub fn hash_into(&self, h: &mut blake3::Hasher) {
        match self {
            Ids::Int(v) => {
                h.update_rayon(bytemuck::cast_slice(v));
            }
            Ids::Str(s) => {
                h.update(b"encore-string-ids");
                h.update(&(s.len() as u64).to_le_bytes());
                let mut prev = 0u64;
                for &e in &s.ends {
                    h.update(&(e - prev).to_le_bytes());
                    prev = e;
                }
                h.update_rayon(s.text.as_bytes());
            }
        }
    }
}

/// Checks that ids are strictly ascending (every lookup is a binary search, and a duplicate id
/// would silently answer for only one of its rows).
pub fn check_ascending(path: &Path, ids: &Ids) -> Result<()> {
    let bad = |i: usize| {
        let (a, b) = (ids.get(i), ids.get(i + 1));
        let reason = if a == b {
            format!("duplicate id {a} (rows {i} and {})", i + 1)
        } else {
            format!(
                "ids are not in ascending order (row {i}: {a}, row {}: {b})",
                i + 1
            )
        };
        Err(Error::bad_input(path, reason))
    };
    match ids {
        Ids::Int(v) => match v.windows(2).position(|w| w[0] >= w[1]) {
            Some(i) => bad(i),
            None => Ok(()),
        },
        Ids::Str(s) => match (1..s.len()).find(|&i| s.get(i - 1).as_bytes() >= s.get(i).as_bytes())
        {
            Some(i) => bad(i - 1),
            None => Ok(()),
        },
    }
}

/// Why a string field cannot be an id, if it cannot.
pub fn check_str_id(raw: &[u8]) -> std::result::Result<&str, String> {
    if raw.len() > MAX_ID_BYTES {
        return Err(format!(
            "is {} bytes long; string ids may be at most {MAX_ID_BYTES} bytes",
            raw.len()
        ));
    }
    if raw.contains(&0) {
        return Err("contains a NUL byte".into());
    }
    std::str::from_utf8(raw).map_err(|_| "is not valid UTF-8".into())
}

/// A fast, deterministic 64-bit hash of bytes for the interning tables (SipHash-1-3 with
/// fixed keys: [`std::hash::DefaultHasher::new`]).
#[inline]
pub fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    h.write(b);
    h.finish()
}

/// Interned byte strings: each distinct string gets the next id (0, 1, ...) in first-seen
/// order. Strings live in one arena; the table holds each id with its string's hash, so a
/// lookup touches the arena only for a full hash match, rehashing never touches it, and a
/// string is hashed once however often it is looked up or merged.
#[derive(Default)]
pub struct Interner {
    bytes: Vec<u8>,
    ends: Vec<u64>,
    hashes: Vec<u64>,
    table: hashbrown::HashTable<(u64, u32)>,
}

impl Interner {
    /// An empty interner with room for `n` strings of `bytes` bytes in all.
    pub fn with_capacity(n: usize, bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(n),
            hashes: Vec::with_capacity(n),
            table: hashbrown::HashTable::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of all strings together.
    pub fn total_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// String `i`.
    pub fn get(&self, i: u32) -> &[u8] {
        let i = i as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }

    /// The hash of string `i`.
    pub fn hash_of(&self, i: u32) -> u64 {
        self.hashes[i as usize]
    }

    /// The id of `key` (hash `h`), if interned.
    #[inline]
    pub fn find_hashed(&self, key: &[u8], h: u64) -> Option<u32> {
        self.table
            .find(h, |&(eh, id)| eh == h && self.get(id) == key)
            .map(|&(_, id)| id)
    }

    /// The id of `key` (hash `h`), interning it if new; `None` once 2^32 − 1 strings are held.
    pub fn intern_hashed(&mut self, key: &[u8], h: u64) -> Option<u32> {
        if let Some(id) = self.find_hashed(key, h) {
            return Some(id);
        }
        self.insert_new(key, h)
    }

    /// Interns `key` (hash `h`), known not to be interned yet.
    pub fn insert_new(&mut self, key: &[u8], h: u64) -> Option<u32> {
        let id = u32::try_from(self.ends.len())
            .ok()
            .filter(|&id| id != u32::MAX)?;
        self.table.insert_unique(h, (h, id), |&(eh, _)| eh);
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len() as u64);
        self.hashes.push(h);
        Some(id)
    }

    /// [`Interner::intern_hashed`] with the hash computed here.
    pub fn intern(&mut self, key: &[u8]) -> Option<u32> {
        self.intern_hashed(key, hash_bytes(key))
    }

    /// The id of `key`, if interned.
    pub fn find(&self, key: &[u8]) -> Option<u32> {
        self.find_hashed(key, hash_bytes(key))
    }

    /// Ids in ascending byte order of their strings (the permutation that sorts them).
    pub fn sorted_order(&self) -> Vec<u32> {
        use rayon::prelude::*;
        let mut order: Vec<u32> = (0..self.len() as u32).collect();
        order.par_sort_unstable_by(|&a, &b| self.get(a).cmp(self.get(b)));
        order
    }

    /// The strings in `order` as [`Ids`] (every string was checked as an id when interned).
    pub fn to_ids(&self, order: &[u32]) -> Ids {
        let mut s = StrIds::with_capacity(order.len(), self.bytes.len());
        for &i in order {
            s.push(std::str::from_utf8(self.get(i)).unwrap_or(""));
        }
        Ids::Str(s)
    }

    /// Bytes held (arena, offsets, hashes and table), for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + 16 * self.ends.capacity() + 13 * self.table.capacity()
    }
}

/// Writes ids as `.npy`: int64 for integers, `|S{w}` for strings (see the module docs).
pub fn write(path: &Path, ids: &Ids) -> Result<()> {
    let file = File::create(path).at(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let (descr, item) = match ids {
        Ids::Int(_) => ("<i8".to_string(), 8),
        Ids::Str(s) => {
            let width = s.max_len().max(1);
            (format!("|S{width}"), width)
        }
    };
    w.write_all(&npy_header(&descr, ids.len())).at(path)?;
    match ids {
        Ids::Int(v) => {
            for &x in v {
                w.write_all(&(x as i64).to_le_bytes()).at(path)?;
            }
        }
        Ids::Str(s) => {
            let pad = vec![0u8; item];
            for i in 0..s.len() {
                let b = s.get(i).as_bytes();
                w.write_all(b).at(path)?;
                w.write_all(&pad[b.len()..]).at(path)?;
            }
        }
    }
    w.flush().at(path)?;
    Ok(())
}

/// A version-1 `.npy` header for a 1-D array of `n` elements of type `descr`.
fn npy_header(descr: &str, n: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({n},), }}");
    let mut header = dict.into_bytes();
    // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64, as numpy pads.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(&header);
    out
}

/// Reads ids written by [`write()`] (or by numpy: int64, `|S`, `<U`), checking the size against
/// the header first and the order after.
pub fn read(path: &Path) -> Result<Ids> {
    let h = crate::data::npz::check_npy_file(path)?;
    let descr = h.descr.clone();
    let ids = if descr.starts_with("|S") || descr.starts_with("<U") || descr.starts_with(">U") {
        if h.shape.len() != 1 {
            return Err(Error::npy(
                path,
                format!("ids must be 1-D, found shape {:?}", h.shape),
            ));
        }
        if descr.starts_with('>') {
            return Err(Error::npy(
                path,
                "big-endian string arrays are not supported",
            ));
        }
        let n = h.shape[0] as usize;
        let w = h.item_bytes as usize;
        let mut r = BufReader::new(File::open(path).at(path)?);
        let mut skip = vec![0u8; h.header_bytes as usize];
        r.read_exact(&mut skip).at(path)?;
        let mut s = StrIds::default();
        let mut buf = vec![0u8; w];
        for i in 0..n {
            r.read_exact(&mut buf).at(path)?;
            let text = if descr.starts_with('|') {
                let end = buf.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                std::str::from_utf8(&buf[..end])
                    .map_err(|_| Error::npy(path, format!("id at row {i} is not valid UTF-8")))?
                    .to_string()
            } else {
                let chars: Option<String> = buf
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .take_while(|&c| c != 0)
                    .map(char::from_u32)
                    .collect();
                chars
                    .ok_or_else(|| Error::npy(path, format!("id at row {i} is not valid UTF-32")))?
            };
            if text.is_empty() {
                return Err(Error::npy(path, format!("id at row {i} is empty")));
            }
            s.push(&text);
        }
        Ids::Str(s)
    } else {
        Ids::Int(crate::data::npz::read_ids(path)?)
    };
    check_ascending(path, &ids)?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_ids_round_trip_through_npy_and_look_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ids.npy");
        let ids = Ids::from_strs(["SOAAA", "b80344d0", "zz", "é-user"]);
        write(&p, &ids).unwrap();
        let back = read(&p).unwrap();
        assert_eq!(back, ids);
        assert_eq!(back.lookup("zz"), Ok(2));
        assert_eq!(back.lookup(" b80344d0 "), Ok(1));
        assert_eq!(back.lookup("nope"), Err(Miss::Unknown));
        assert_eq!(back.get(3), Id::Str("é-user"));
        assert_eq!(
            serde_json::to_string(&back.get(0)).unwrap(),
            "\"SOAAA\"".to_string()
        );
        // The header is numpy's: |S + the longest id in bytes.
        let raw = std::fs::read(&p).unwrap();
        let text = String::from_utf8_lossy(&raw[..128]);
        assert!(text.contains("'descr': '|S8'"), "{text}");
    }

    #[test]
    fn integer_ids_keep_their_format_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ids.npy");
        let ids = Ids::Int(vec![3, 10, 1 << 40]);
        write(&p, &ids).unwrap();
        assert_eq!(
            crate::data::npz::read_ids(&p).unwrap(),
            vec![3, 10, 1 << 40]
        );
        assert_eq!(read(&p).unwrap(), ids);
        assert_eq!(ids.lookup("10"), Ok(1));
        assert_eq!(ids.lookup("abc"), Err(Miss::NotAnId));
        let mut a = blake3::Hasher::new();
        ids.hash_into(&mut a);
        let mut b = blake3::Hasher::new();
        b.update(bytemuck::cast_slice(&[3u64, 10, 1 << 40]));
        assert_eq!(a.finalize(), b.finalize());
    }

    #[test]
    fn unsorted_or_duplicate_string_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ids.npy");
        write(&p, &Ids::from_strs(["b", "a"])).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("not in ascending order"), "{e}");
        write(&p, &Ids::from_strs(["a", "a"])).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("duplicate id a"), "{e}");
    }

    #[test]
    fn interner_numbers_in_first_seen_order_and_sorts() {
        let mut t = Interner::default();
        assert_eq!(t.intern(b"zeta"), Some(0));
        assert_eq!(t.intern(b"alpha"), Some(1));
        assert_eq!(t.intern(b"zeta"), Some(0));
        for i in 0..10_000u32 {
            t.intern(format!("k{i}").as_bytes());
        }
        assert_eq!(t.find(b"k9999"), Some(10_001));
        assert_eq!(t.get(1), b"alpha");
        let order = t.sorted_order();
        assert_eq!(order[0], 1);
        assert_eq!(*order.last().unwrap(), 0);
    }
}
