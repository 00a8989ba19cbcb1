//! Input formats `prep` understands, and how a path on the command line is resolved to one.
//!
//! | format | what | columns |
//! | --- | --- | --- |
//! | `lfm1b` | LFM-1b directory (or its `LFM-1b_LEs.txt`) | user_id, artist_id, album_id, track_id, timestamp; one line per listen |
//! | `lfm2b` | LFM-2b `listening-counts` | user_id, track_id, count (header) |
//! | `hetrec` | HetRec 2011 Last.fm directory (or `user_artists.dat`) | userID, artistID, weight (header); items are artists |
//! | `movielens` | a MovieLens directory, or its `ratings.csv` (ml-latest, 20M, 25M, 32M), `ratings.dat` (1M, 10M) or `u.data` (100K) | user, movie, rating, timestamp |
//! | `msd` | the Million Song Dataset Taste Profile `train_triplets.txt` | user (40 hex), song (`SO…`), play count; tab-separated, string ids |
//! | `listenbrainz` | ListenBrainz listens (JSON lines): a dump or export directory, or one `.listens`/`.jsonl` file | see [`crate::data::listens`] |
//! | `triples` | any delimited file | user, item, count (header optional); other columns by name or position |
//!
//! Any of these files may be gzip-compressed (`.gz`). Names come from the sibling files
//! (`LFM-1b_tracks.txt` + `LFM-1b_artists.txt`, HetRec's `artists.dat`, MovieLens's
//! `movies.csv`, `movies.dat` or `u.item`) when present, and from the listens themselves for
//! ListenBrainz.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::aggregate::LineFormat;
use crate::data::blocks::BlockReader;
use crate::data::ids::IdKind;
use crate::data::lines::{LineError, Schema, parse_field_max, parse_line, trim_end};
use crate::data::listens::ListenSpec;
use crate::data::records::{Delim, FieldSpec, LocalIds, ValueMode, clean};
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
    Movielens,
    Msd,
    Listenbrainz,
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
            Format::Movielens => "movielens",
            Format::Msd => "msd",
            Format::Listenbrainz => "listenbrainz",
            Format::Triples => "triples",
        }
    }

    /// The value mode used when `--value` is not given: ratings for MovieLens, counts
    /// otherwise.
    pub fn default_value(self) -> ValueMode {
        match self {
            Format::Movielens => ValueMode::Rating,
            _ => ValueMode::Count,
        }
    }
}

/// Field delimiter of `triples` inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delimiter {
    /// Tab if the first line has one, else `::`, else comma, else semicolon, else space.
    Auto,
    Tab,
    Comma,
    Semicolon,
    Space,
    /// `::` (MovieLens 1M/10M).
    DoubleColon,
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

/// Whether ids are integers or strings (`--ids`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdsMode {
    /// The format's kind; for `triples`, strings when the first data line's user or item is
    /// not a non-negative integer.
    Auto,
    Int,
    String,
}

/// A column chosen on the command line: a header name or a 1-based position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Column {
    Name(String),
    /// 1 is the first column.
    Position(usize),
    /// No such column (`--value-column none`: every line is one event).
    None,
}

impl Column {
    /// `"userId"` → a name, `"3"` → position 3, `"none"` → no column.
    pub fn parse(text: &str) -> Column {
        let t = text.trim();
        if t.eq_ignore_ascii_case("none") {
            Column::None
        } else if let Ok(p) = t.parse::<usize>() {
            Column::Position(p)
        } else {
            Column::Name(t.to_string())
        }
    }
}

/// Columns chosen on the command line (`None`: the format's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Columns {
    pub user: Option<Column>,
    pub item: Option<Column>,
    pub value: Option<Column>,
    pub time: Option<Column>,
}

impl Columns {
    fn any(&self) -> bool {
        self.user.is_some() || self.item.is_some() || self.value.is_some() || self.time.is_some()
    }
}

/// How to read an input, as the command line says.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadOptions {
    pub format: Format,
    pub delimiter: Delimiter,
    pub header: HeaderMode,
    pub ids: IdsMode,
    pub columns: Columns,
    /// `None`: the format's default ([`Format::default_value`]).
    pub value: Option<ValueMode>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            format: Format::Auto,
            delimiter: Delimiter::Auto,
            header: HeaderMode::Auto,
            ids: IdsMode::Auto,
            columns: Columns::default(),
            value: None,
        }
    }
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
    /// MovieLens `movies.csv` (movieId,title,genres; header, quoted titles), `movies.dat`
    /// (MovieID::Title::Genres) or `u.item` (movie id|title|...): the title names the item.
    Movielens { movies: PathBuf },
    /// Names read from the data file itself (ListenBrainz `track_name`, `artist_name`).
    Listens,
}

/// One data file to parse.
#[derive(Debug, Clone, PartialEq)]
pub struct DataFile {
    pub path: PathBuf,
    /// How its lines are parsed (per file: a listen without a user takes it from the path).
    pub lines: LineFormat,
}

/// A resolved input: what to parse and how.
#[derive(Debug, Clone)]
pub struct Input {
    pub format: Format,
    /// The data file (the directory, for a directory of listens).
    pub data_file: PathBuf,
    /// Every file to parse, in order.
    pub files: Vec<DataFile>,
    /// The header line that will be skipped (in the first file), if any.
    pub header: Option<String>,
    pub names: Option<NameSource>,
    /// The value mode in force (the format's default unless `--value` was given).
    pub value: ValueMode,
    /// Whether ids are integers or strings.
    pub ids: IdKind,
    /// The columns read (names), for the manifest; `None` for fixed layouts.
    pub columns: Option<ColumnNames>,
}

impl Input {
    /// The first file's line format.
    pub fn lines(&self) -> Option<&LineFormat> {
        self.files.first().map(|f| &f.lines)
    }
}

/// The columns a delimited input is read from, by name (or `field N`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnNames {
    pub user: String,
    pub item: String,
    pub value: Option<String>,
    pub time: Option<String>,
    pub fields: usize,
}

const LFM1B_LES: &str = "LFM-1b_LEs.txt";
const HETREC_PAIRS: &str = "user_artists.dat";
const LFM2B_COUNTS: &[&str] = &[
    "listening-counts.tsv",
    "listening-counts.txt",
    "listening-counts",
];
/// MovieLens ratings files, newest layout first.
const MOVIELENS_RATINGS: &[&str] = &["ratings.csv", "ratings.dat", "u.data"];
const MSD_TRIPLETS: &str = "train_triplets.txt";

fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    [name.to_string(), format!("{name}.gz")]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// The file name without a `.gz` suffix.
fn base_name(p: &Path) -> String {
    let n = p
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    n.strip_suffix(".gz").map(str::to_string).unwrap_or(n)
}

fn is_listens_file(p: &Path) -> bool {
    let n = base_name(p);
    p.is_file() && (n.ends_with(".listens") || n.ends_with(".jsonl"))
}

/// Every listens file under `dir` (recursively, at most 6 levels), sorted by path.
fn listens_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        for e in std::fs::read_dir(&d).at(&d)? {
            let p = e.at(&d)?.path();
            if p.is_dir() && depth < 6 {
                stack.push((p, depth + 1));
            } else if is_listens_file(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The user a listens file stands for when its listens name none: the first path component
/// under `dir`, extensions removed.
fn path_user(dir: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(dir).ok()?;
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .to_string();
    let stem = first.split('.').next().unwrap_or("").to_string();
    (!stem.is_empty()).then_some(stem)
}

/// Resolves `path` (file or directory) to an [`Input`], sniffing the first lines for a
/// header, the delimiter and (for `triples`) whether ids are strings.
pub fn resolve(path: &Path, o: &ReadOptions) -> Result<Input> {
    let meta = std::fs::metadata(path).at(path)?;
    let (format, data_file) = if meta.is_dir() {
        // Reading the directory up front reports an unreadable directory by name.
        std::fs::read_dir(path).at(path)?;
        resolve_dir(path, o.format)?
    } else {
        (resolve_file_format(path, o.format), path.to_path_buf())
    };
    let value = o.value.unwrap_or(format.default_value());
    if format == Format::Listenbrainz {
        return resolve_listens(path, &data_file, meta.is_dir(), o, value);
    }
    let dir = data_file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let first = first_lines(&data_file, 2)?;
    let line0 = first.first().cloned().unwrap_or_default();
    let delim = match format {
        Format::Triples => pick_delim(o.delimiter, &line0),
        Format::Movielens => movielens_delim(&data_file),
        _ => match o.delimiter {
            Delimiter::Auto | Delimiter::Tab => Delim::Byte(b'\t'),
            d => pick_delim(d, &line0),
        },
    };
    let names = match format {
        Format::Lfm1b => find(&dir, "LFM-1b_tracks.txt").map(|tracks| NameSource::Lfm1b {
            tracks,
            artists: find(&dir, "LFM-1b_artists.txt"),
        }),
        Format::Hetrec => find(&dir, "artists.dat").map(|artists| NameSource::Hetrec { artists }),
        Format::Movielens => movielens_names(&data_file, &dir),
        _ => None,
    };
    let fixed_numeric = match (format, delim) {
        (Format::Lfm1b, Delim::Byte(d)) => Some(les_schema(d)),
        (Format::Lfm2b, Delim::Byte(d)) => Some(count_schema(d, ["user_id", "track_id", "count"])),
        (Format::Hetrec, Delim::Byte(d)) => Some(count_schema(d, ["userID", "artistID", "weight"])),
        _ => None,
    };
    if let Some(schema) = fixed_numeric
        && !o.columns.any()
        && o.ids != IdsMode::String
    {
        let header = detect_header(&line0, &LineFormat::Numeric(schema.clone()), o.header);
        let lines = LineFormat::Numeric(schema);
        return Ok(Input {
            format,
            data_file: data_file.clone(),
            files: vec![DataFile {
                path: data_file,
                lines,
            }],
            header,
            names,
            value,
            ids: IdKind::Int,
            columns: None,
        });
    }
    // Everything else is a delimited table with columns.
    let (defaults, fixed_ids, default_names): ([Column; 4], Option<IdKind>, Vec<String>) =
        match format {
            Format::Movielens => (
                [1, 2, 3, 4].map(Column::Position),
                Some(IdKind::Int),
                movielens_columns(&data_file),
            ),
            Format::Msd => (
                [
                    Column::Position(1),
                    Column::Position(2),
                    Column::Position(3),
                    Column::None,
                ],
                Some(IdKind::Str),
                ["user", "song", "count"].map(String::from).to_vec(),
            ),
            Format::Lfm1b => (
                [1, 4, 0, 5].map(|p| {
                    if p == 0 {
                        Column::None
                    } else {
                        Column::Position(p)
                    }
                }),
                None,
                les_schema(b'\t').names,
            ),
            Format::Lfm2b => (
                [1, 2, 3, 0].map(|p| {
                    if p == 0 {
                        Column::None
                    } else {
                        Column::Position(p)
                    }
                }),
                None,
                ["user_id", "track_id", "count"].map(String::from).to_vec(),
            ),
            Format::Hetrec => (
                [1, 2, 3, 0].map(|p| {
                    if p == 0 {
                        Column::None
                    } else {
                        Column::Position(p)
                    }
                }),
                None,
                ["userID", "artistID", "weight"].map(String::from).to_vec(),
            ),
            _ => (
                [
                    Column::Position(1),
                    Column::Position(2),
                    Column::Position(3),
                    Column::None,
                ],
                None,
                ["user", "item", "count"].map(String::from).to_vec(),
            ),
        };
    let ids_given = match o.ids {
        IdsMode::Int => Some(IdKind::Int),
        IdsMode::String => Some(IdKind::Str),
        IdsMode::Auto => fixed_ids,
    };
    // The header decides column names; whether line 0 is one depends on the columns, so try
    // line 0 as data first with positional defaults.
    let header_fields = split_all(delim, &line0);
    let probe = |header: bool| -> Result<FieldSpec> {
        let names: Vec<String> = if header {
            header_fields
                .iter()
                .map(|f| String::from_utf8_lossy(clean(f)).into_owned())
                .collect()
        } else if header_fields.len() == default_names.len() {
            default_names.clone()
        } else {
            (1..=header_fields.len())
                .map(|i| format!("field {i}"))
                .collect()
        };
        let n_fields = if o.columns.any() || format != Format::Triples {
            header_fields.len()
        } else {
            3
        };
        let pick = |c: &Option<Column>, d: &Column, what: &str| -> Result<Option<usize>> {
            column_index(
                c.as_ref().unwrap_or(d),
                &names,
                header,
                n_fields,
                what,
                &data_file,
            )
        };
        let user = pick(&o.columns.user, &defaults[0], "--user-column")?
            .ok_or_else(|| Error::Config("--user-column cannot be none".into()))?;
        let item = pick(&o.columns.item, &defaults[1], "--item-column")?
            .ok_or_else(|| Error::Config("--item-column cannot be none".into()))?;
        let value_col = pick(&o.columns.value, &defaults[2], "--value-column")?;
        let time = pick(&o.columns.time, &defaults[3], "--time-column")?;
        let ids = match ids_given {
            Some(k) => k,
            None => sniff_ids(delim, first.get(usize::from(header)), user, item),
        };
        let mut names = names;
        names.resize(n_fields.max(names.len()), String::new());
        for (i, n) in names.iter_mut().enumerate() {
            if n.is_empty() {
                *n = format!("field {}", i + 1);
            }
        }
        Ok(FieldSpec {
            delim,
            n_fields,
            user,
            item,
            value: value_col,
            time,
            names,
            ids,
            mode: value,
        })
    };
    let header = match o.header {
        HeaderMode::Yes => true,
        HeaderMode::No => false,
        HeaderMode::Auto => {
            let as_data = probe(false);
            let is_header = match &as_data {
                Ok(spec) => {
                    let mut f = Vec::new();
                    let mut l = LocalIds::default();
                    matches!(
                        spec.parse(line0.as_bytes(), &mut f, &mut l),
                        Err(LineError::NonNumeric { .. }
                            | LineError::NotANumber { .. }
                            | LineError::NotACount { .. })
                    )
                }
                // Names that only a header can resolve.
                Err(_) => true,
            };
            is_header && line0.chars().any(char::is_alphabetic)
        }
    };
    let spec = probe(header)?;
    if value != ValueMode::Count && spec.value.is_none() {
        return Err(Error::Config(format!(
            "--value {} needs a value column, and this {} input has none (pass --value-column)",
            value.name(),
            format.name()
        )));
    }
    let columns = Some(ColumnNames {
        user: spec.name(spec.user).to_string(),
        item: spec.name(spec.item).to_string(),
        value: spec.value.map(|c| spec.name(c).to_string()),
        time: spec.time.map(|c| spec.name(c).to_string()),
        fields: spec.n_fields,
    });
    let ids = spec.ids;
    // Integer triples with the default columns keep the fast numeric path.
    let lines = match (&spec, delim) {
        (s, Delim::Byte(d))
            if s.ids == IdKind::Int
                && s.mode == ValueMode::Count
                && s.n_fields <= crate::data::lines::MAX_FIELDS
                && matches!(
                    format,
                    Format::Triples | Format::Lfm1b | Format::Lfm2b | Format::Hetrec
                ) =>
        {
            LineFormat::Numeric(Schema {
                delim: d,
                n_fields: s.n_fields,
                user: s.user,
                item: s.item,
                count: s.value,
                ts: s.time,
                names: s.names.clone(),
            })
        }
        _ => LineFormat::Fields(spec),
    };
    Ok(Input {
        format,
        data_file: data_file.clone(),
        files: vec![DataFile {
            path: data_file,
            lines,
        }],
        header: header.then_some(line0),
        names,
        value,
        ids,
        columns,
    })
}

/// A listens file or directory.
fn resolve_listens(
    path: &Path,
    data_file: &Path,
    is_dir: bool,
    o: &ReadOptions,
    value: ValueMode,
) -> Result<Input> {
    if o.columns.any() {
        return Err(Error::Config(
            "--user-column and the other column options are for delimited files, not \
             ListenBrainz listens"
                .into(),
        ));
    }
    if value == ValueMode::Rating {
        return Err(Error::Config(
            "--value rating needs a value column, and listens have none (each is one play)".into(),
        ));
    }
    let files = if is_dir {
        listens_files(path)?
    } else {
        vec![data_file.to_path_buf()]
    };
    if files.is_empty() {
        return Err(Error::bad_input(
            path,
            "directory has no ListenBrainz listens files (*.listens or *.jsonl, .gz too)",
        ));
    }
    let files = files
        .into_iter()
        .map(|f| DataFile {
            lines: LineFormat::Listens(ListenSpec {
                path_user: if is_dir { path_user(path, &f) } else { None },
            }),
            path: f,
        })
        .collect();
    Ok(Input {
        format: Format::Listenbrainz,
        data_file: data_file.to_path_buf(),
        files,
        header: None,
        names: Some(NameSource::Listens),
        value,
        ids: IdKind::Str,
        columns: None,
    })
}

/// MovieLens's delimiter, from the ratings file's name.
fn movielens_delim(data_file: &Path) -> Delim {
    let n = base_name(data_file);
    if n.ends_with(".dat") {
        Delim::DoubleColon
    } else if n.ends_with(".csv") {
        Delim::Byte(b',')
    } else {
        Delim::Byte(b'\t')
    }
}

/// MovieLens's column names as each README gives them (a header, when there is one, wins).
fn movielens_columns(data_file: &Path) -> Vec<String> {
    let n = base_name(data_file);
    let names: [&str; 4] = if n.ends_with(".dat") {
        ["UserID", "MovieID", "Rating", "Timestamp"]
    } else if n.ends_with(".csv") {
        ["userId", "movieId", "rating", "timestamp"]
    } else {
        ["user id", "item id", "rating", "timestamp"]
    };
    names.map(String::from).to_vec()
}

/// The titles file beside a MovieLens ratings file.
fn movielens_names(data_file: &Path, dir: &Path) -> Option<NameSource> {
    let n = base_name(data_file);
    let movies = if n.ends_with(".csv") {
        find(dir, "movies.csv")
    } else if n.ends_with(".dat") {
        find(dir, "movies.dat")
    } else {
        find(dir, "u.item")
    };
    movies.map(|movies| NameSource::Movielens { movies })
}

fn split_all(delim: Delim, line: &str) -> Vec<&[u8]> {
    let mut v = Vec::new();
    delim.split(trim_end(line.as_bytes()), usize::MAX, &mut v);
    v
}

/// The 0-based index of a chosen column (`None` for no column).
fn column_index(
    c: &Column,
    names: &[String],
    header: bool,
    n_fields: usize,
    flag: &str,
    file: &Path,
) -> Result<Option<usize>> {
    match c {
        Column::None => Ok(None),
        Column::Position(0) => Err(Error::Config(format!(
            "{flag} 0: positions count from 1 (the first column)"
        ))),
        Column::Position(p) if *p > n_fields => Err(Error::bad_input(
            file,
            format!("{flag} {p}: the first line has only {n_fields} fields"),
        )),
        Column::Position(p) => Ok(Some(p - 1)),
        Column::Name(n) if !header => Err(Error::bad_input(
            file,
            format!(
                "{flag} {n:?} names a column, but the file has no header line; give a position \
                 (1 = the first column), or --header yes"
            ),
        )),
        Column::Name(n) => names
            .iter()
            .position(|h| h == n)
            .or_else(|| names.iter().position(|h| h.eq_ignore_ascii_case(n)))
            .map(Some)
            .ok_or_else(|| {
                Error::bad_input(
                    file,
                    format!(
                        "{flag} {n:?}: no such column in the header ({})",
                        names.join(", ")
                    ),
                )
            }),
    }
}

/// Strings when the user or item field of `line` is not a non-negative integer id.
fn sniff_ids(delim: Delim, line: Option<&String>, user: usize, item: usize) -> IdKind {
    let Some(line) = line else {
        return IdKind::Int;
    };
    let f = split_all(delim, line);
    let int = |i: usize, max: u64| {
        f.get(i).is_none_or(|v| {
            !matches!(
                parse_field_max(v, "", max),
                Err(LineError::NonNumeric { .. })
            )
        })
    };
    if int(user, i64::MAX as u64) && int(item, u64::from(u32::MAX)) {
        IdKind::Int
    } else {
        IdKind::Str
    }
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
    let movielens = || MOVIELENS_RATINGS.iter().find_map(|n| find(dir, n));
    let msd = || find(dir, MSD_TRIPLETS);
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
        Format::Movielens => Ok((
            Format::Movielens,
            movielens().ok_or_else(|| missing("ratings.csv, ratings.dat or u.data"))?,
        )),
        Format::Msd => Ok((Format::Msd, msd().ok_or_else(|| missing(MSD_TRIPLETS))?)),
        Format::Listenbrainz => Ok((Format::Listenbrainz, dir.to_path_buf())),
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
            } else if let Some(f) = movielens() {
                Ok((Format::Movielens, f))
            } else if let Some(f) = msd() {
                Ok((Format::Msd, f))
            } else if !listens_files(dir)?.is_empty() {
                Ok((Format::Listenbrainz, dir.to_path_buf()))
            } else {
                Err(Error::bad_input(
                    dir,
                    format!(
                        "cannot tell the format: no {LFM1B_LES}, {HETREC_PAIRS}, \
                         listening-counts.tsv, ratings.csv, ratings.dat, u.data, {MSD_TRIPLETS} \
                         or ListenBrainz *.listens/*.jsonl files here; pass a file and --format"
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
    let name = base_name(file);
    if name.starts_with("LFM-1b_LEs") {
        Format::Lfm1b
    } else if name.starts_with("user_artists") {
        Format::Hetrec
    } else if name.contains("listening-counts") {
        Format::Lfm2b
    } else if MOVIELENS_RATINGS.contains(&name.as_str()) {
        Format::Movielens
    } else if name.starts_with("train_triplets")
        || name.starts_with("kaggle_visible_evaluation_triplets")
    {
        Format::Msd
    } else if name.ends_with(".listens") || name.ends_with(".jsonl") {
        Format::Listenbrainz
    } else {
        Format::Triples
    }
}

/// The first `n` non-empty lines of a file (decompressed), without BOM; errors on an empty
/// file.
fn first_lines(file: &Path, n: usize) -> Result<Vec<String>> {
    let mut r = BlockReader::open(file, 1 << 16)?;
    let mut out = Vec::new();
    while let Some(block) = r.next_block()? {
        for line in block
            .split(|&b| b == b'\n')
            .map(trim_end)
            .filter(|l| !l.is_empty())
        {
            out.push(String::from_utf8_lossy(line).into_owned());
            if out.len() == n {
                return Ok(out);
            }
        }
        if !out.is_empty() {
            break;
        }
    }
    if out.is_empty() {
        return Err(Error::EmptyFile {
            path: file.to_path_buf(),
        });
    }
    Ok(out)
}

fn pick_delim(d: Delimiter, first: &str) -> Delim {
    match d {
        Delimiter::Tab => Delim::Byte(b'\t'),
        Delimiter::Comma => Delim::Byte(b','),
        Delimiter::Semicolon => Delim::Byte(b';'),
        Delimiter::Space => Delim::Byte(b' '),
        Delimiter::DoubleColon => Delim::DoubleColon,
        Delimiter::Auto => {
            if first.contains('\t') {
                Delim::Byte(b'\t')
            } else if first.contains("::") {
                Delim::DoubleColon
            } else if first.contains(',') {
                Delim::Byte(b',')
            } else if first.contains(';') {
                Delim::Byte(b';')
            } else {
                Delim::Byte(b' ')
            }
        }
    }
}

fn detect_header(first: &str, lines: &LineFormat, mode: HeaderMode) -> Option<String> {
    let is_header = match mode {
        HeaderMode::Yes => true,
        HeaderMode::No => false,
        HeaderMode::Auto => match lines {
            LineFormat::Numeric(schema) => {
                matches!(
                    parse_line(first.as_bytes(), schema),
                    Err(LineError::NonNumeric { .. })
                ) && first.chars().any(|c| c.is_alphabetic())
            }
            _ => false,
        },
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
        let i = resolve(&p, &ReadOptions::default()).unwrap();
        assert_eq!(i.format, Format::Triples);
        assert!(matches!(i.lines(), Some(LineFormat::Numeric(s)) if s.delim == b','));
        assert_eq!(i.header.as_deref(), Some("user,item,plays"));
        let q = dir.path().join("plays.tsv");
        std::fs::write(&q, "1\t2\t3\n").unwrap();
        let i = resolve(&q, &ReadOptions::default()).unwrap();
        assert!(matches!(i.lines(), Some(LineFormat::Numeric(s)) if s.delim == b'\t'));
        assert_eq!(i.header, None);
    }

    #[test]
    fn directories_resolve_by_their_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("LFM-1b_LEs.txt"), "1\t2\t3\t4\t5\n").unwrap();
        std::fs::write(dir.path().join("LFM-1b_tracks.txt"), "4\tx\t2\n").unwrap();
        let i = resolve(dir.path(), &ReadOptions::default()).unwrap();
        assert_eq!(i.format, Format::Lfm1b);
        assert!(matches!(
            i.names,
            Some(NameSource::Lfm1b { artists: None, .. })
        ));
        let empty = tempfile::tempdir().unwrap();
        let e = resolve(empty.path(), &ReadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot tell the format"), "{e}");
    }

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope.tsv");
        let e = resolve(&p, &ReadOptions::default()).unwrap_err();
        assert!(e.to_string().contains("nope.tsv"));
        std::fs::write(&p, "\n\n").unwrap();
        let e = resolve(&p, &ReadOptions::default()).unwrap_err();
        assert!(matches!(e, Error::EmptyFile { .. }), "{e}");
    }
}
