//! Input formats `prep` understands, and how a path on the command line is resolved to one.
//!
//! | format | what | columns |
//! | --- | --- | --- |
//! | `lfm1b` | LFM-1b directory (or its `LFM-1b_LEs.txt`) | user_id, artist_id, album_id, track_id, timestamp; one line per listen |
//! | `lfm2b` | LFM-2b `listening-counts` | user_id, track_id, count (header) |
//! | `hetrec` | HetRec 2011 Last.fm directory (or `user_artists.dat`) | userID, artistID, weight (header); items are artists |
//! | `triples` | any delimited file | user, item, count (header optional) |
//!
//! Any of these files may be gzip-compressed (`.gz`). Names come from the sibling files
//! (`LFM-1b_tracks.txt` + `LFM-1b_artists.txt`, or HetRec's `artists.dat`) when present.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::blocks::BlockReader;
use crate::data::lines::{LineError, Schema, parse_line, trim_end};
use crate::error::{Error, IoContext, Result};

/// Which kind of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Decide from the file or directory names.
    Auto,
    Lfm1b,
    Lfm2b,
    Hetrec,
    Triples,
}

impl Format {
    /// The name used on the command line (`lfm1b`, `hetrec`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Lfm1b => "lfm1b",
            Format::Lfm2b => "lfm2b",
            Format::Hetrec => "hetrec",
            Format::Triples => "triples",
        }
    }
}

/// Field delimiter of `triples` inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delimiter {
    /// Tab if the first line has one, else comma, else semicolon, else space.
    Auto,
    Tab,
    Comma,
    Semicolon,
    Space,
}

/// Whether the first line is a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeaderMode {
    /// A first line that does not parse as data and contains a letter is a header.
    Auto,
    Yes,
    No,
}

/// Where item names come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum NameSource {
    /// `LFM-1b_tracks.txt` (track_id, track_name, artist_id) and optionally `LFM-1b_artists.txt`.
    Lfm1b {
        tracks: PathBuf,
        artists: Option<PathBuf>,
    },
    /// HetRec `artists.dat` (id, name, url, pictureURL; header): items are artists.
    Hetrec { artists: PathBuf },
}

/// A resolved input: what to parse and how.
#[derive(Debug, Clone)]
pub struct Input {
    pub format: Format,
    pub data_file: PathBuf,
    pub schema: Schema,
    /// The header line that will be skipped, if any.
    pub header: Option<String>,
    pub names: Option<NameSource>,
}

const LFM1B_LES: &str = "LFM-1b_LEs.txt";
const HETREC_PAIRS: &str = "user_artists.dat";
const LFM2B_COUNTS: &[&str] = &[
    "listening-counts.tsv",
    "listening-counts.txt",
    "listening-counts",
];

fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    [name.to_string(), format!("{name}.gz")]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// Resolves `path` (file or directory) and `format` to an [`Input`], sniffing the first line
/// for a header and (for `triples`) the delimiter.
pub fn resolve(path: &Path, format: Format, delim: Delimiter, header: HeaderMode) -> Result<Input> {
    let meta = std::fs::metadata(path).at(path)?;
    let (format, data_file) = if meta.is_dir() {
        // Reading the directory up front reports an unreadable directory by name.
        std::fs::read_dir(path).at(path)?;
        resolve_dir(path, format)?
    } else {
        (resolve_file_format(path, format), path.to_path_buf())
    };
    let dir = data_file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let first = first_line(&data_file)?;
    let delim_byte = match format {
        Format::Triples => pick_delim(delim, &first),
        _ => match delim {
            Delimiter::Auto | Delimiter::Tab => b'\t',
            d => pick_delim(d, &first),
        },
    };
    let schema = match format {
        Format::Lfm1b => les_schema(delim_byte),
        Format::Lfm2b => count_schema(delim_byte, ["user_id", "track_id", "count"]),
        Format::Hetrec => count_schema(delim_byte, ["userID", "artistID", "weight"]),
        Format::Triples | Format::Auto => count_schema(delim_byte, ["user", "item", "count"]),
    };
    let header = detect_header(&first, &schema, header);
    let name_source = match format {
        Format::Lfm1b => find(&dir, "LFM-1b_tracks.txt").map(|tracks| NameSource::Lfm1b {
            tracks,
            artists: find(&dir, "LFM-1b_artists.txt"),
        }),
        Format::Hetrec => find(&dir, "artists.dat").map(|artists| NameSource::Hetrec { artists }),
        _ => None,
    };
    Ok(Input {
        format,
        data_file,
        schema,
        header,
        names: name_source,
    })
}

/// LFM-1b listening events: `user_id, artist_id, album_id, track_id, timestamp`, one per line.
pub fn les_schema(delim: u8) -> Schema {
    Schema {
        delim,
        n_fields: 5,
        user: 0,
        item: 3,
        count: None,
        ts: Some(4),
        names: ["user_id", "artist_id", "album_id", "track_id", "timestamp"]
            .map(String::from)
            .to_vec(),
    }
}

/// Play-count triples `user, item, count` with the given column names.
pub fn count_schema(delim: u8, names: [&str; 3]) -> Schema {
    let names = names.map(String::from).to_vec();
    Schema {
        delim,
        n_fields: 3,
        user: 0,
        item: 1,
        count: Some(2),
        ts: None,
        names,
    }
}

fn resolve_dir(dir: &Path, format: Format) -> Result<(Format, PathBuf)> {
    let lfm1b = || find(dir, LFM1B_LES);
    let hetrec = || find(dir, HETREC_PAIRS);
    let lfm2b = || LFM2B_COUNTS.iter().find_map(|n| find(dir, n));
    let missing = |what: &str| {
        Error::bad_input(
            dir,
            format!("directory has no {what} (expected for this --format)"),
        )
    };
    match format {
        Format::Lfm1b => Ok((Format::Lfm1b, lfm1b().ok_or_else(|| missing(LFM1B_LES))?)),
        Format::Hetrec => Ok((
            Format::Hetrec,
            hetrec().ok_or_else(|| missing(HETREC_PAIRS))?,
        )),
        Format::Lfm2b => Ok((
            Format::Lfm2b,
            lfm2b().ok_or_else(|| missing("listening-counts.tsv"))?,
        )),
        Format::Triples => Err(Error::bad_input(
            dir,
            "is a directory; --format triples takes a file",
        )),
        Format::Auto => {
            if let Some(f) = lfm1b() {
                Ok((Format::Lfm1b, f))
            } else if let Some(f) = hetrec() {
                Ok((Format::Hetrec, f))
            } else if let Some(f) = lfm2b() {
                Ok((Format::Lfm2b, f))
            } else {
                Err(Error::bad_input(
                    dir,
                    format!(
                        "cannot tell the format: no {LFM1B_LES}, {HETREC_PAIRS} or \
                         listening-counts.tsv here; pass a file and --format"
                    ),
                ))
            }
        }
    }
}

fn resolve_file_format(file: &Path, format: Format) -> Format {
    if format != Format::Auto {
        return format;
    }
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if name.starts_with("LFM-1b_LEs") {
        Format::Lfm1b
    } else if name.starts_with("user_artists") {
        Format::Hetrec
    } else if name.contains("listening-counts") {
        Format::Lfm2b
    } else {
        Format::Triples
    }
}

/// The first non-empty line of a file (decompressed), without BOM; errors on an empty file.
fn first_line(file: &Path) -> Result<String> {
    let mut r = BlockReader::open(file, 1 << 16)?;
    while let Some(block) = r.next_block()? {
        if let Some(line) = block
            .split(|&b| b == b'\n')
            .map(trim_end)
            .find(|l| !l.is_empty())
        {
            return Ok(String::from_utf8_lossy(line).into_owned());
        }
    }
    Err(Error::EmptyFile {
        path: file.to_path_buf(),
    })
}

fn pick_delim(d: Delimiter, first: &str) -> u8 {
    match d {
        Delimiter::Tab => b'\t',
        Delimiter::Comma => b',',
        Delimiter::Semicolon => b';',
        Delimiter::Space => b' ',
        Delimiter::Auto => {
            if first.contains('\t') {
                b'\t'
            } else if first.contains(',') {
                b','
            } else if first.contains(';') {
                b';'
            } else {
                b' '
            }
        }
    }
}

fn detect_header(first: &str, schema: &Schema, mode: HeaderMode) -> Option<String> {
    let is_header = match mode {
        HeaderMode::Yes => true,
        HeaderMode::No => false,
        HeaderMode::Auto => {
            matches!(
                parse_line(first.as_bytes(), schema),
                Err(LineError::NonNumeric { .. })
            ) && first.chars().any(|c| c.is_alphabetic())
        }
    };
    is_header.then(|| first.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triples_sniff_delimiter_and_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plays.csv");
        std::fs::write(&p, "user,item,plays\n1,2,3\n").unwrap();
        let i = resolve(&p, Format::Auto, Delimiter::Auto, HeaderMode::Auto).unwrap();
        assert_eq!(i.format, Format::Triples);
        assert_eq!(i.schema.delim, b',');
        assert_eq!(i.header.as_deref(), Some("user,item,plays"));
        let q = dir.path().join("plays.tsv");
        std::fs::write(&q, "1\t2\t3\n").unwrap();
        let i = resolve(&q, Format::Auto, Delimiter::Auto, HeaderMode::Auto).unwrap();
        assert_eq!((i.schema.delim, i.header), (b'\t', None));
    }

    #[test]
    fn directories_resolve_by_their_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("LFM-1b_LEs.txt"), "1\t2\t3\t4\t5\n").unwrap();
        std::fs::write(dir.path().join("LFM-1b_tracks.txt"), "4\tx\t2\n").unwrap();
        let i = resolve(dir.path(), Format::Auto, Delimiter::Auto, HeaderMode::Auto).unwrap();
        assert_eq!(i.format, Format::Lfm1b);
        assert!(matches!(
            i.names,
            Some(NameSource::Lfm1b { artists: None, .. })
        ));
        let empty = tempfile::tempdir().unwrap();
        let e = resolve(
            empty.path(),
            Format::Auto,
            Delimiter::Auto,
            HeaderMode::Auto,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("cannot tell the format"), "{e}");
    }

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope.tsv");
        let e = resolve(&p, Format::Auto, Delimiter::Auto, HeaderMode::Auto).unwrap_err();
        assert!(e.to_string().contains("nope.tsv"));
        std::fs::write(&p, "\n\n").unwrap();
        let e = resolve(&p, Format::Auto, Delimiter::Auto, HeaderMode::Auto).unwrap_err();
        assert!(matches!(e, Error::EmptyFile { .. }), "{e}");
    }
}
