//! Track and artist names for the items of a dataset (`items.tsv`).
//!
//! Names are only looked up for items that survived filtering, so memory follows the output,
//! not the (much larger) catalog files.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use crate::data::aggregate::MAX_BAD_EXAMPLES;
use crate::data::blocks::{MAX_LINE_BYTES, line_too_long};
use crate::data::formats::NameSource;
use crate::data::ids::Ids;
use crate::data::lines::parse_field;
use crate::error::{Error, IoContext, Result};

/// Names of the dataset's items, by dense index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemNames {
    pub names: Vec<String>,
    pub artist_ids: Vec<Option<u64>>,
    pub artist_names: Vec<String>,
    /// Items the catalog files did not name.
    pub missing: u64,
    /// Catalog lines skipped as malformed (only under `--skip-bad-lines`).
    pub skipped: Skipped,
}

fn open_text(path: &Path) -> Result<Box<dyn BufRead>> {
    let f = File::open(path).at(path)?;
    let gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    Ok(if gz {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(f)))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, f))
    })
}

/// Malformed catalog lines skipped under `--skip-bad-lines`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    pub lines: u64,
    /// The first few: `file:line: reason`.
    pub examples: Vec<String>,
}

/// Calls `f(line_number, line)` for every non-empty line (BOM and line ending removed). A line
/// `f` rejects (with its reason) is an error naming file and line, or, with `skip`, counted
/// there and passed over. A line longer than [`MAX_LINE_BYTES`] is always an error, found
/// without reading more than that much of it.
fn for_each_line(
    path: &Path,
    mut skip: Option<&mut Skipped>,
    mut f: impl FnMut(u64, &str) -> Result<(), String>,
) -> Result<()> {
    let mut r = open_text(path)?;
    let mut buf = Vec::new();
    let mut n = 0u64;
    loop {
        buf.clear();
        n += 1;
        let mut ended = false;
        while !ended {
            let avail = r.fill_buf().at(path)?;
            if avail.is_empty() {
                break;
            }
            let (take, nl) = match memchr::memchr(b'\n', avail) {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            buf.extend_from_slice(&avail[..take]);
            r.consume(take);
            ended = nl;
            if buf.len() > MAX_LINE_BYTES + 2 {
                return Err(line_too_long(path, n));
            }
        }
        if buf.is_empty() {
            return Ok(());
        }
        // Only the line ending is removed: trailing tabs can be empty fields.
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let mut line = body.strip_suffix(b"\r").unwrap_or(body);
        if n == 1 {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            continue;
        }
        if line.len() > MAX_LINE_BYTES {
            return Err(line_too_long(path, n));
        }
        // MovieLens 100K and 1M catalogs are Latin-1: a line that is not UTF-8 is read as that.
        let text = match std::str::from_utf8(line) {
            Ok(t) => std::borrow::Cow::Borrowed(t),
            Err(_) => std::borrow::Cow::Owned(line.iter().map(|&b| char::from(b)).collect()),
        };
        if let Err(reason) = f(n, &text) {
            match skip.as_deref_mut() {
                Some(s) => {
                    s.lines += 1;
                    if s.examples.len() < MAX_BAD_EXAMPLES {
                        s.examples.push(format!("{}:{n}: {reason}", path.display()));
                    }
                }
                None => {
                    return Err(Error::BadLine {
                        path: path.to_path_buf(),
                        line: n,
                        reason,
                    });
                }
            }
        }
    }
}

fn id(text: &str, what: &str) -> Result<u64, String> {
    parse_field(text.as_bytes(), what).map_err(|e| e.to_string())
}

impl ItemNames {
    /// Names and artist names by column, without artist ids (ListenBrainz).
    pub fn from_names_and_artists(v: Vec<(String, String)>) -> Self {
        let missing = v.iter().filter(|(n, _)| n.is_empty()).count() as u64;
        let (names, artist_names): (Vec<String>, Vec<String>) = v.into_iter().unzip();
        Self {
            artist_ids: vec![None; names.len()],
            names,
            artist_names,
            missing,
            skipped: Skipped::default(),
        }
    }
}

/// Loads names for `item_ids` (ascending original ids; catalogs name integer ids) from `src`.
/// A malformed line, or a second line for an id that is needed (which would otherwise
/// silently win), is an error naming file and line; with `skip_bad` it is counted in
/// [`ItemNames::skipped`] instead and the first line for an id is kept.
pub fn load(src: &NameSource, ids: &Ids, skip_bad: bool) -> Result<ItemNames> {
    let empty = Vec::new();
    let item_ids: &[u64] = match (ids.as_int(), src) {
        (Some(v), _) => v,
        (None, NameSource::Listens) => &empty,
        (None, _) => {
            return Err(Error::Config(
                "item names from a catalog file need integer item ids (--ids int)".into(),
            ));
        }
    };
    let n = item_ids.len();
    let mut out = ItemNames {
        names: vec![String::new(); n],
        artist_ids: vec![None; n],
        artist_names: vec![String::new(); n],
        missing: 0,
        skipped: Skipped::default(),
    };
    let mut skipped = Skipped::default();
    // The line that named each item (0: none yet).
    let mut named_on = vec![0u64; n];
    let duplicate = |what: &str, id: u64, first: u64| {
        Err(format!("duplicate {what} {id} (first on line {first})"))
    };
    fn skip(s: &mut Skipped, on: bool) -> Option<&mut Skipped> {
        on.then_some(s)
    }
    match src {
        NameSource::Lfm1b { tracks, artists } => {
            for_each_line(tracks, skip(&mut skipped, skip_bad), |ln, line| {
                const FIELDS: &str =
                    "expected 3 tab-separated fields (track_id, track_name, artist_id)";
                let (Some(a), Some(b)) = (line.find('\t'), line.rfind('\t')) else {
                    return Err(FIELDS.into());
                };
                if a == b {
                    return Err(FIELDS.into());
                }
                let track = id(&line[..a], "track_id")?;
                if let Ok(i) = item_ids.binary_search(&track) {
                    if named_on[i] != 0 {
                        return duplicate("track_id", track, named_on[i]);
                    }
                    out.artist_ids[i] = Some(id(&line[b + 1..], "artist_id")?);
                    out.names[i] = line[a + 1..b].to_string();
                    named_on[i] = ln;
                }
                Ok(())
            })?;
            if let Some(artists) = artists {
                let mut wanted: Vec<(u64, usize)> = out
                    .artist_ids
                    .iter()
                    .enumerate()
                    .filter_map(|(i, a)| a.map(|a| (a, i)))
                    .collect();
                wanted.sort_unstable();
                let mut artist_on: Vec<u64> = vec![0; wanted.len()];
                for_each_line(artists, skip(&mut skipped, skip_bad), |ln, line| {
                    let Some(a) = line.find('\t') else {
                        return Err(
                            "expected 2 tab-separated fields (artist_id, artist_name)".into()
                        );
                    };
                    let artist = id(&line[..a], "artist_id")?;
                    let from = wanted.partition_point(|&(x, _)| x < artist);
                    if let Some(&first) = artist_on.get(from).filter(|&&l| l != 0)
                        && wanted[from].0 == artist
                    {
                        return duplicate("artist_id", artist, first);
                    }
                    for (j, &(_, i)) in wanted[from..]
                        .iter()
                        .enumerate()
                        .take_while(|&(_, &(x, _))| x == artist)
                    {
                        out.artist_names[i] = line[a + 1..].to_string();
                        artist_on[from + j] = ln;
                    }
                    Ok(())
                })?;
            }
        }
        NameSource::Listens => {}
        NameSource::Movielens { movies } => {
            let base = movies
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let layout = if base.starts_with("movies.csv") {
                b','
            } else if base.starts_with("movies.dat") {
                b':'
            } else {
                b'|'
            };
            for_each_line(movies, skip(&mut skipped, skip_bad), |ln, line| {
                let (id_text, title) = match layout {
                    // movieId,title,genres: the title may hold commas (then it is quoted),
                    // genres never do.
                    b',' => match (line.find(','), line.rfind(',')) {
                        (Some(a), Some(b)) if a < b => {
                            let t = line[a + 1..b].trim();
                            let t = match t.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                                Some(q) => q.replace("\"\"", "\""),
                                None => t.to_string(),
                            };
                            (&line[..a], t)
                        }
                        _ => {
                            return Err(
                                "expected 3 comma-separated fields (movieId, title, genres)".into(),
                            );
                        }
                    },
                    // MovieID::Title::Genres
                    b':' => match (line.find("::"), line.rfind("::")) {
                        (Some(a), Some(b)) if a < b => (&line[..a], line[a + 2..b].to_string()),
                        _ => {
                            return Err(
                                "expected 3 '::'-separated fields (MovieID, Title, Genres)".into(),
                            );
                        }
                    },
                    // movie id | movie title | release date | ...
                    _ => {
                        let mut f = line.split('|');
                        match (f.next(), f.next()) {
                            (Some(i), Some(t)) => (i, t.to_string()),
                            _ => {
                                return Err(
                                    "expected '|'-separated fields (movie id | movie title | ...)"
                                        .into(),
                                );
                            }
                        }
                    }
                };
                if ln == 1 && id_text.trim().eq_ignore_ascii_case("movieId") {
                    return Ok(()); // header
                }
                let movie = id(id_text, "movie id")?;
                if let Ok(i) = item_ids.binary_search(&movie) {
                    if named_on[i] != 0 {
                        return duplicate("movie id", movie, named_on[i]);
                    }
                    out.names[i] = title;
                    named_on[i] = ln;
                }
                Ok(())
            })?;
        }
        NameSource::Hetrec { artists } => {
            for_each_line(artists, skip(&mut skipped, skip_bad), |ln, line| {
                let mut f = line.split('\t');
                let (Some(idf), Some(name)) = (f.next(), f.next()) else {
                    return Err("expected tab-separated fields (id, name, url, pictureURL)".into());
                };
                if ln == 1 && idf.trim() == "id" {
                    return Ok(()); // header
                }
                let artist = id(idf, "id")?;
                if let Ok(i) = item_ids.binary_search(&artist) {
                    if named_on[i] != 0 {
                        return duplicate("id", artist, named_on[i]);
                    }
                    out.names[i] = name.to_string();
                    out.artist_ids[i] = Some(artist);
                    out.artist_names[i] = name.to_string();
                    named_on[i] = ln;
                }
                Ok(())
            })?;
        }
    }
    out.missing = named_on.iter().filter(|&&l| l == 0).count() as u64;
    out.skipped = skipped;
    Ok(out)
}

/// Writes `items.tsv`: item_index, item_id, name, artist_id, artist_name (header line first).
/// Tabs and newlines inside names are replaced by spaces so the file stays one row per item.
pub fn write_items_tsv(path: &Path, item_ids: &Ids, names: &ItemNames) -> Result<()> {
    let f = File::create(path).at(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    writeln!(w, "item_index\titem_id\tname\tartist_id\tartist_name").at(path)?;
    for (i, id) in item_ids.iter().enumerate() {
        let artist = names.artist_ids[i]
            .map(|a| a.to_string())
            .unwrap_or_default();
        writeln!(
            w,
            "{i}\t{id}\t{}\t{artist}\t{}",
            clean(&names.names[i]),
            clean(&names.artist_names[i])
        )
        .at(path)?;
    }
    w.flush().at(path)?;
    Ok(())
}

/// Reads `items.tsv` back (for recommendations with names).
pub fn read_items_tsv(path: &Path) -> Result<ItemNames> {
    let mut out = ItemNames::default();
    for_each_line(path, None, |ln, line| {
        if ln == 1 {
            return Ok(());
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 5 {
            return Err("expected 5 tab-separated fields".into());
        }
        out.names.push(f[2].to_string());
        out.artist_ids.push(f.get(3).and_then(|a| a.parse().ok()));
        out.artist_names
            .push(f.get(4).map(|s| s.to_string()).unwrap_or_default());
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lfm1b_names_follow_tracks_and_artists() {
        let dir = tempfile::tempdir().unwrap();
        let tracks = dir.path().join("LFM-1b_tracks.txt");
        let artists = dir.path().join("LFM-1b_artists.txt");
        std::fs::write(
            &tracks,
            "10\tSong A\t7\n20\tSong\twith tab\t8\n30\tUnused\t9\n",
        )
        .unwrap();
        std::fs::write(&artists, "7\tBand Seven\n8\tBand Eight\n").unwrap();
        let src = NameSource::Lfm1b {
            tracks,
            artists: Some(artists),
        };
        let n = load(&src, &Ids::Int(vec![10, 20, 40]), false).unwrap();
        assert_eq!(n.names, vec!["Song A", "Song\twith tab", ""]);
        assert_eq!(n.artist_names, vec!["Band Seven", "Band Eight", ""]);
        assert_eq!(n.missing, 1);
        let out = dir.path().join("items.tsv");
        write_items_tsv(&out, &Ids::Int(vec![10, 20, 40]), &n).unwrap();
        let back = read_items_tsv(&out).unwrap();
        assert_eq!(back.names, vec!["Song A", "Song with tab", ""]);
        assert_eq!(back.artist_ids, vec![Some(7), Some(8), None]);
    }

    #[test]
    fn malformed_catalog_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let tracks = dir.path().join("LFM-1b_tracks.txt");
        std::fs::write(&tracks, "10\tSong A\t7\nbroken line\n").unwrap();
        let src = NameSource::Lfm1b {
            tracks,
            artists: None,
        };
        let e = load(&src, &Ids::Int(vec![10]), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("LFM-1b_tracks.txt:2"), "{e}");
    }

    #[test]
    fn a_duplicate_track_id_is_refused_naming_both_lines() {
        let dir = tempfile::tempdir().unwrap();
        let tracks = dir.path().join("LFM-1b_tracks.txt");
        std::fs::write(&tracks, "10\tFirst\t7\n20\tOther\t7\n10\tSecond\t7\n").unwrap();
        let src = NameSource::Lfm1b {
            tracks,
            artists: None,
        };
        let e = load(&src, &Ids::Int(vec![10, 20]), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("LFM-1b_tracks.txt:3: duplicate track_id 10 (first on line 1)"),
            "{e}"
        );
        // Skipping bad lines: the first name is kept and the duplicate counted.
        let n = load(&src, &Ids::Int(vec![10, 20]), true).unwrap();
        assert_eq!(n.names, vec!["First", "Other"]);
        assert_eq!(n.skipped.lines, 1);
        assert!(n.skipped.examples[0].contains("LFM-1b_tracks.txt:3: duplicate"));
    }

    #[test]
    fn malformed_catalog_lines_are_skipped_and_counted_with_skip_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let artists = dir.path().join("artists.dat");
        std::fs::write(
            &artists,
            "id\tname\turl\tpictureURL\n1\tOne\tu\tp\nbroken\n2\tTwo\tu\tp\n1\tAgain\tu\tp\n",
        )
        .unwrap();
        let src = NameSource::Hetrec { artists };
        let e = load(&src, &Ids::Int(vec![1, 2]), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("artists.dat:3:"), "{e}");
        let n = load(&src, &Ids::Int(vec![1, 2]), true).unwrap();
        assert_eq!(n.names, vec!["One", "Two"]);
        assert_eq!((n.skipped.lines, n.missing), (2, 0));
        assert!(n.skipped.examples[1].contains("artists.dat:5: duplicate id 1"));
    }

    #[test]
    fn movielens_titles_from_each_layout() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("movies.csv");
        std::fs::write(
            &csv,
            "movieId,title,genres\r\n1,Toy Story (1995),Adventure|Animation\r\n\
             11,\"American President, The (1995)\",Comedy|Drama\r\n12,\"Say \"\"Hi\"\"\",Drama\r\n",
        )
        .unwrap();
        let ids = Ids::Int(vec![1, 11, 12, 99]);
        let n = load(&NameSource::Movielens { movies: csv }, &ids, false).unwrap();
        assert_eq!(
            n.names,
            vec![
                "Toy Story (1995)",
                "American President, The (1995)",
                "Say \"Hi\"",
                ""
            ]
        );
        assert_eq!(n.missing, 1);
        let dat = dir.path().join("movies.dat");
        std::fs::write(&dat, "1::Toy Story (1995)::Animation|Children's\n").unwrap();
        let n = load(&NameSource::Movielens { movies: dat }, &ids, false).unwrap();
        assert_eq!(n.names[0], "Toy Story (1995)");
        // u.item is Latin-1.
        let item = dir.path().join("u.item");
        std::fs::write(&item, b"11|Caf\xe9 (1995)|01-Jan-1995||http://x|0|1\n").unwrap();
        let n = load(
            &NameSource::Movielens {
                movies: item.clone(),
            },
            &ids,
            false,
        )
        .unwrap();
        assert_eq!(n.names[1], "Café (1995)");
        std::fs::write(&item, b"11|A|x\nbroken\n").unwrap();
        let e = load(&NameSource::Movielens { movies: item }, &ids, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("u.item:2:"), "{e}");
    }
}
