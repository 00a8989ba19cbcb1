//! Reading an input file as large blocks that end on line boundaries.
//!
//! `prep` parses blocks in parallel while the next wave of blocks is read, so memory is bounded
//! by (blocks in flight × block size), never by the size of the input. `.gz` inputs are decoded
//! as a stream. Buffers are recycled so steady-state reading allocates nothing.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, IoContext, Result};

/// Default block size: large enough to amortise per-block work, small enough that a wave of
/// blocks (two per thread) stays in the tens of MiB on a laptop.
pub const DEFAULT_BLOCK_BYTES: usize = 8 << 20;

/// The longest line accepted. A line this long is not a listening record: it is a binary file,
/// `/dev/zero` or a broken export, and reading on would take unbounded memory (issue 13).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The error for a line longer than [`MAX_LINE_BYTES`].
pub fn line_too_long(path: &Path, line: u64) -> Error {
    Error::BadLine {
        path: path.to_path_buf(),
        line,
        reason: "line longer than 1 MiB (is this a text file?)".into(),
    }
}

/// Counts the raw (possibly compressed) bytes read, for progress and throughput.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A source of newline-aligned blocks.
pub struct BlockReader {
    path: PathBuf,
    src: Box<dyn Read + Send>,
    block: usize,
    carry: Vec<u8>,
    pool: Vec<Vec<u8>>,
    eof: bool,
    first: bool,
    raw_read: Arc<AtomicU64>,
    /// Newlines in the blocks handed out so far (for the line number of an over-long line).
    newlines: u64,
    /// Bytes searched for a newline so far (at most twice the input: each byte once when read,
    /// once more if it is carried into the next block).
    scanned: u64,
    /// Size of the file on disk (compressed size for `.gz`).
    pub file_bytes: u64,
    /// Uncompressed bytes handed out so far.
    pub bytes: u64,
}

impl BlockReader {
    /// Opens `path` (gzip-decoded when it ends in `.gz`).
    pub fn open(path: &Path, block: usize) -> Result<Self> {
        let file = File::open(path).at(path)?;
        let meta = file.metadata().at(path)?;
        if meta.is_dir() {
            return Err(Error::bad_input(path, "is a directory, expected a file"));
        }
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if let Some(tool) = match ext.as_str() {
            "bz2" => Some("bunzip2 -k"),
            "xz" => Some("unxz -k"),
            "zst" => Some("unzstd"),
            "zip" => Some("unzip"),
            _ => None,
        } {
            return Err(Error::bad_input(
                path,
                format!(
                    ".{ext} files are not read directly (only plain text and .gz): \
                     decompress first, e.g. `{tool} {}`",
                    path.display()
                ),
            ));
        }
        let raw_read = Arc::new(AtomicU64::new(0));
        let counted = Counting {
            inner: file,
            read: Arc::clone(&raw_read),
        };
        let gz = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
        let src: Box<dyn Read + Send> = if gz {
            // Up to 1 MiB reads from the compressed file, but no larger than the file: the
            // buffer is zeroed on first use, which for a small file cost more than reading it.
            let cap = usize::try_from(meta.len()).map_or(1 << 20, |n| n.clamp(8 << 10, 1 << 20));
            Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
                cap, counted,
            )))
        } else {
            Box::new(counted)
        };
        Ok(Self {
            path: path.to_path_buf(),
            src,
            block: block.max(1 << 10),
            carry: Vec::new(),
            pool: Vec::new(),
            eof: false,
            first: true,
            raw_read,
            newlines: 0,
            scanned: 0,
            file_bytes: meta.len(),
            bytes: 0,
        })
    }

    /// Raw bytes consumed from the file so far (compressed bytes for `.gz`).
    pub fn raw_bytes_read(&self) -> u64 {
        self.raw_read.load(Ordering::Relaxed)
    }

    /// Whether every block has been handed out (the next [`Self::next_block`] is `None`).
    pub fn finished(&self) -> bool {
        self.eof && self.carry.is_empty()
    }

    /// Returns a buffer to the pool for reuse.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        self.pool.push(buf);
    }

    /// The next block: whole lines only (the last block may lack a final newline). A UTF-8 byte
    /// order mark at the start of the file is removed. A line longer than [`MAX_LINE_BYTES`]
    /// that does not fit a block is an error; each byte is scanned for a newline once, so
    /// reading stays linear however long a line grows (issue 13).
    pub fn next_block(&mut self) -> Result<Option<Vec<u8>>> {
        if self.eof && self.carry.is_empty() {
            return Ok(None);
        }
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(&self.carry);
        self.carry.clear();
        // Bytes before `scan_from` are known to hold no newline.
        let mut scan_from = 0;
        loop {
            let start = buf.len();
            if !self.eof {
                let want = self.block.max(start + (self.block / 4));
                buf.resize(want, 0);
                let n = read_full(&mut self.src, &mut buf[start..]).at(&self.path)?;
                buf.truncate(start + n);
                if n < want - start {
                    self.eof = true;
                }
            }
            if self.first {
                self.first = false;
                if buf.starts_with(b"\xEF\xBB\xBF") {
                    buf.drain(..3);
                }
            }
            self.scanned += (buf.len() - scan_from) as u64;
            match memchr::memrchr(b'\n', &buf[scan_from..]) {
                Some(_) if self.eof => break,
                Some(pos) => {
                    let pos = scan_from + pos;
                    self.carry.extend_from_slice(&buf[pos + 1..]);
                    buf.truncate(pos + 1);
                    break;
                }
                // No newline at all: the whole buffer is one line.
                None if buf.len() > MAX_LINE_BYTES => {
                    return Err(line_too_long(&self.path, self.newlines + 1));
                }
                None if self.eof => break,
                // A single line longer than the block: keep reading until it ends.
                None => scan_from = buf.len(),
            }
        }
        if buf.is_empty() {
            self.pool.push(buf);
            return Ok(None);
        }
        self.bytes += buf.len() as u64;
        self.newlines += memchr::memchr_iter(b'\n', &buf).count() as u64;
        Ok(Some(buf))
    }

    /// Reads up to `n` blocks.
    pub fn next_wave(&mut self, n: usize) -> Result<Vec<Vec<u8>>> {
        let mut wave = Vec::with_capacity(n);
        while wave.len() < n {
            match self.next_block()? {
                Some(b) => wave.push(b),
                None => break,
            }
        }
        Ok(wave)
    }
}

/// Reads until `buf` is full or the source is exhausted.
fn read_full(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Iterates the lines of a block (without `\n`), each with its 1-based index within the block.
pub fn lines(block: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let body = block.strip_suffix(b"\n").unwrap_or(block);
    let empty = block.is_empty();
    body.split(|&b| b == b'\n')
        .take(if empty { 0 } else { usize::MAX })
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(path: &Path, block: usize) -> Vec<Vec<u8>> {
        let mut r = BlockReader::open(path, block).unwrap();
        let mut out = Vec::new();
        while let Some(b) = r.next_block().unwrap() {
            out.push(b);
        }
        out
    }

    #[test]
    fn blocks_end_on_newlines_and_concatenate_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.txt");
        let mut text = Vec::new();
        for i in 0..5000 {
            writeln!(text, "{i}\t{}\t{}", i * 7, i % 13).unwrap();
        }
        text.extend_from_slice(b"last\tline\twithout newline");
        std::fs::write(&p, &text).unwrap();
        let blocks = read_all(&p, 1024);
        assert!(blocks.len() > 10);
        for b in &blocks[..blocks.len() - 1] {
            assert_eq!(*b.last().unwrap(), b'\n');
        }
        assert_eq!(blocks.concat(), text);
        let n_lines: usize = blocks.iter().map(|b| lines(b).count()).sum();
        assert_eq!(n_lines, 5001);
    }

    #[test]
    fn bom_is_removed_and_long_lines_survive() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.txt");
        let long = "9".repeat(5000);
        std::fs::write(&p, format!("\u{feff}a\n{long}\nb\n")).unwrap();
        let blocks = read_all(&p, 1024);
        let all = blocks.concat();
        assert_eq!(all, format!("a\n{long}\nb\n").into_bytes());
    }

    #[test]
    fn a_line_longer_than_1_mib_is_an_error_naming_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.txt");
        let mut text = b"1\t2\t3\n4\t5\t6\n".to_vec();
        text.resize(text.len() + MAX_LINE_BYTES + 10, b'7');
        std::fs::write(&p, &text).unwrap();
        let mut r = BlockReader::open(&p, 1024).unwrap();
        let e = loop {
            match r.next_block() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("read a line longer than the cap"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(
            e.ends_with("x.txt:3: line longer than 1 MiB (is this a text file?)"),
            "{e}"
        );
    }

    #[test]
    fn a_long_line_is_read_in_linear_time() {
        // 1 MiB without a newline, read in 1 KiB blocks: growing by a quarter block at a time
        // used to rescan the whole buffer on every growth (quadratic: ~2^31 byte visits).
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.txt");
        let mut text = vec![b'9'; MAX_LINE_BYTES - 10];
        text.extend_from_slice(b"\n1\n");
        std::fs::write(&p, &text).unwrap();
        let mut r = BlockReader::open(&p, 1024).unwrap();
        let mut all = Vec::new();
        while let Some(b) = r.next_block().unwrap() {
            all.extend_from_slice(&b);
        }
        assert_eq!(all, text);
        assert!(
            r.scanned <= 2 * text.len() as u64,
            "{} bytes scanned for a {}-byte file",
            r.scanned,
            text.len()
        );
    }

    #[test]
    fn gzip_input_is_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.tsv.gz");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&p).unwrap(), flate2::Compression::fast());
        enc.write_all(b"1\t2\t3\n4\t5\t6\n").unwrap();
        enc.finish().unwrap();
        assert_eq!(read_all(&p, 1024).concat(), b"1\t2\t3\n4\t5\t6\n");
    }

    #[test]
    fn unsupported_compression_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("listening-counts.tsv.bz2");
        std::fs::write(&p, b"BZh91AY&SY").unwrap();
        let e = BlockReader::open(&p, 1024).err().unwrap().to_string();
        assert!(
            e.contains("decompress first") && e.contains("bunzip2"),
            "{e}"
        );
    }

    #[test]
    fn line_iteration_numbers_from_one() {
        let v: Vec<_> = lines(b"a\nb\n\nc").collect();
        assert_eq!(
            v,
            vec![
                (1, &b"a"[..]),
                (2, &b"b"[..]),
                (3, &b""[..]),
                (4, &b"c"[..])
            ]
        );
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"x\n").count(), 1);
    }
}
