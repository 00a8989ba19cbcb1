//! Track and artist names for the items of a dataset (`items.tsv`).
//!
//! Names are only looked up for items that survived filtering, so memory follows the output,
//! not the (much larger) catalog files.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use crate::data::formats::NameSource;
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

/// Calls `f(line_number, line)` for every non-empty line (BOM and line ending removed).
fn for_each_line(path: &Path, mut f: impl FnMut(u64, &str) -> Result<()>) -> Result<()> {
    let mut r = open_text(path)?;
    let mut buf = Vec::new();
    let mut n = 0u64;
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf).at(path)? == 0 {
            return Ok(());
        }
        n += 1;
        // Only the line ending is removed: trailing tabs can be empty fields.
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let mut line = body.strip_suffix(b"\r").unwrap_or(body);
        if n == 1 {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            continue;
        }
        f(n, &String::from_utf8_lossy(line))?;
    }
}

fn bad(path: &Path, line: u64, reason: impl Into<String>) -> Error {
    Error::BadLine {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

fn id(path: &Path, line: u64, text: &str, what: &str) -> Result<u64> {
    parse_field(text.as_bytes(), what).map_err(|e| bad(path, line, e.to_string()))
}

/// Loads names for `item_ids` (ascending original ids) from `src`.
pub fn load(src: &NameSource, item_ids: &[u64]) -> Result<ItemNames> {
    let n = item_ids.len();
    let mut out = ItemNames {
        names: vec![String::new(); n],
        artist_ids: vec![None; n],
        artist_names: vec![String::new(); n],
        missing: 0,
    };
    let mut found = vec![false; n];
    match src {
        NameSource::Lfm1b { tracks, artists } => {
            for_each_line(tracks, |ln, line| {
                let (Some(a), Some(b)) = (line.find('\t'), line.rfind('\t')) else {
                    return Err(bad(
                        tracks,
                        ln,
                        "expected 3 tab-separated fields (track_id, track_name, artist_id)",
                    ));
                };
                if a == b {
                    return Err(bad(
                        tracks,
                        ln,
                        "expected 3 tab-separated fields (track_id, track_name, artist_id)",
                    ));
                }
                let track = id(tracks, ln, &line[..a], "track_id")?;
                if let Ok(i) = item_ids.binary_search(&track) {
                    out.names[i] = line[a + 1..b].to_string();
                    out.artist_ids[i] = Some(id(tracks, ln, &line[b + 1..], "artist_id")?);
                    found[i] = true;
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
                for_each_line(artists, |ln, line| {
                    let Some(a) = line.find('\t') else {
                        return Err(bad(
                            artists,
                            ln,
                            "expected 2 tab-separated fields (artist_id, artist_name)",
                        ));
                    };
                    let artist = id(artists, ln, &line[..a], "artist_id")?;
                    let from = wanted.partition_point(|&(x, _)| x < artist);
                    for &(_, i) in wanted[from..].iter().take_while(|&&(x, _)| x == artist) {
                        out.artist_names[i] = line[a + 1..].to_string();
                    }
                    Ok(())
                })?;
            }
        }
        NameSource::Hetrec { artists } => {
            for_each_line(artists, |ln, line| {
                let mut f = line.split('\t');
                let (Some(idf), Some(name)) = (f.next(), f.next()) else {
                    return Err(bad(
                        artists,
                        ln,
                        "expected tab-separated fields (id, name, url, pictureURL)",
                    ));
                };
                if ln == 1 && idf.trim() == "id" {
                    return Ok(()); // header
                }
                let artist = id(artists, ln, idf, "id")?;
                if let Ok(i) = item_ids.binary_search(&artist) {
                    out.names[i] = name.to_string();
                    out.artist_ids[i] = Some(artist);
                    out.artist_names[i] = name.to_string();
                    found[i] = true;
                }
                Ok(())
            })?;
        }
    }
    out.missing = found.iter().filter(|&&f| !f).count() as u64;
    Ok(out)
}

/// Writes `items.tsv`: item_index, item_id, name, artist_id, artist_name (header line first).
/// Tabs and newlines inside names are replaced by spaces so the file stays one row per item.
pub fn write_items_tsv(path: &Path, item_ids: &[u64], names: &ItemNames) -> Result<()> {
    let f = File::create(path).at(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    writeln!(w, "item_index\titem_id\tname\tartist_id\tartist_name").at(path)?;
    for (i, &id) in item_ids.iter().enumerate() {
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
    for_each_line(path, |ln, line| {
        if ln == 1 {
            return Ok(());
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 5 {
            return Err(bad(path, ln, "expected 5 tab-separated fields"));
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
        let n = load(&src, &[10, 20, 40]).unwrap();
        assert_eq!(n.names, vec!["Song A", "Song\twith tab", ""]);
        assert_eq!(n.artist_names, vec!["Band Seven", "Band Eight", ""]);
        assert_eq!(n.missing, 1);
        let out = dir.path().join("items.tsv");
        write_items_tsv(&out, &[10, 20, 40], &n).unwrap();
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
        let e = load(&src, &[10]).unwrap_err().to_string();
        assert!(e.contains("LFM-1b_tracks.txt:2"), "{e}");
    }
}
