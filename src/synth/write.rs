//! Parallel generation with in-order writing, and the catalog files.
//!
//! Work is cut into a fixed list of batches (so the bytes never depend on the thread count). A
//! group of batches is formatted in parallel into reusable buffers while the previous group is
//! written, so the disk and the cores stay busy together and memory is bounded by two groups.

use std::fs::File;
use std::io::Write;
use std::ops::AddAssign;
use std::path::Path;

use indicatif::ProgressBar;
use rayon::prelude::*;

use super::catalog::Catalog;
use super::ids::ALBUM_IDS;
use super::names::{NameKind, push_name};
use crate::error::{IoContext, Result};

/// Artists per batch in the catalog files (~10 tracks each, so about 0.3 MB of text).
const ARTISTS_PER_BATCH: usize = 1024;

/// Creates `path` and writes `batches` batches into it in order, `fill(b, buf)` formatting batch
/// `b` into `buf` and returning a statistic that is summed over batches. Returns (bytes, sum).
pub(crate) fn write_ordered<S, F>(
    path: &Path,
    batches: usize,
    fill: F,
    pb: &ProgressBar,
) -> Result<(u64, S)>
where
    S: Default + Send + Sync + AddAssign,
    F: Fn(usize, &mut Vec<u8>) -> S + Sync,
{
    let mut file = File::create(path).at(path)?;
    // Enough batches per group to keep every worker busy; bounded so memory stays small (two
    // groups of ~1.4 MB batches are alive at a time).
    let group = (2 * rayon::current_num_threads()).clamp(4, 32);
    let mut ready: Vec<(Vec<u8>, S)> = Vec::new();
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let (mut bytes, mut total) = (0u64, S::default());
    let mut start = 0;
    loop {
        let end = (start + group).min(batches);
        let mut next: Vec<(Vec<u8>, S)> = (start..end)
            .map(|_| (spare.pop().unwrap_or_default(), S::default()))
            .collect();
        let (written, ()) = rayon::join(
            || write_group(&mut file, &ready),
            || {
                next.par_iter_mut()
                    .enumerate()
                    .for_each(|(k, (buf, stat))| {
                        buf.clear();
                        *stat = fill(start + k, buf);
                    });
            },
        );
        let written = written.at(path)?;
        bytes += written;
        pb.inc(written);
        for (buf, stat) in ready.drain(..) {
            total += stat;
            spare.push(buf);
        }
        if next.is_empty() {
            break;
        }
        ready = next;
        start = end;
    }
    file.flush().at(path)?;
    Ok((bytes, total))
}

fn write_group<S>(file: &mut File, group: &[(Vec<u8>, S)]) -> std::io::Result<u64> {
    let mut n = 0;
    for (buf, _) in group {
        file.write_all(buf)?;
        n += buf.len() as u64;
    }
    Ok(n)
}

/// Which catalog file to write.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CatalogFile {
    Artists,
    Albums,
    Tracks,
}

/// Writes one catalog file in ascending id order (artists in id order, then their albums or
/// tracks, whose ids follow the same order). Returns (bytes, rows).
pub(crate) fn write_catalog(
    path: &Path,
    which: CatalogFile,
    c: &Catalog,
    seed: u64,
    pb: &ProgressBar,
) -> Result<(u64, u64)> {
    let batches = c.artists.div_ceil(ARTISTS_PER_BATCH);
    let fill = |b: usize, out: &mut Vec<u8>| -> u64 {
        let mut num = itoa::Buffer::new();
        let mut rows = 0u64;
        let lo = b * ARTISTS_PER_BATCH;
        let hi = (lo + ARTISTS_PER_BATCH).min(c.artists);
        for &dense in &c.artist_at_pos[lo..hi] {
            let a = dense as usize;
            let artist_id = c.artist_ids[a];
            match which {
                CatalogFile::Artists => {
                    out.extend_from_slice(num.format(artist_id).as_bytes());
                    out.push(b'\t');
                    push_name(out, seed, NameKind::Artist, a as u64);
                    out.push(b'\n');
                    rows += 1;
                }
                CatalogFile::Albums => {
                    let first = u64::from(c.artist_album_pos[a]);
                    for pos in first..first + u64::from(c.artist_album_count[a]) {
                        out.extend_from_slice(num.format(ALBUM_IDS.id(seed, pos)).as_bytes());
                        out.push(b'\t');
                        push_name(out, seed, NameKind::Album, pos);
                        out.push(b'\t');
                        out.extend_from_slice(num.format(artist_id).as_bytes());
                        out.push(b'\n');
                        rows += 1;
                    }
                }
                CatalogFile::Tracks => {
                    let (first, last) = c.artist_track_range(a);
                    for t in first..last {
                        out.extend_from_slice(num.format(c.track_id(seed, a, t)).as_bytes());
                        out.push(b'\t');
                        push_name(out, seed, NameKind::Track, t as u64);
                        out.push(b'\t');
                        out.extend_from_slice(num.format(artist_id).as_bytes());
                        out.push(b'\n');
                        rows += 1;
                    }
                }
            }
        }
        rows
    };
    write_ordered(path, batches, fill, pb)
}
