//! The synthetic catalog: genres own artists, artists own albums, albums own tracks.
//!
//! Everything is laid out in one *dense* order, genre-major and then by popularity rank, so a
//! genre or an artist is a contiguous range: per-genre alias tables (O(1) draws) and per-artist
//! prefix sums cover every sampler the listeners need, and a global draw is a genre draw followed
//! by a draw within it. External ids follow a *different*, shuffled artist order, so ids reveal
//! nothing about genre or popularity; an artist's albums and tracks get consecutive ids, as when
//! a crawler meets a discography. Each track's LEs fields (`artist\talbum\ttrack\t`) are
//! pre-formatted once, so writing a billion events copies bytes instead of formatting numbers.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;

use super::SynthConfig;
use super::decimal::put_decimal;
use super::ids::{ALBUM_IDS, ARTIST_IDS, TRACK_IDS};
use super::sampler::{AliasSlot, build_alias, prefix, sample_alias, sample_range};
use crate::util::mix64;

/// Zipf exponent of genre sizes (a few big genres, a long tail of niches).
const GENRE_ZIPF: f64 = 0.7;
/// Zipf exponent of artist popularity by rank within a genre.
const ARTIST_ZIPF: f64 = 0.9;
/// Zipf exponent of track popularity by rank within an artist (hits vs. deep cuts).
const TRACK_ZIPF: f64 = 0.85;
/// Log-scale spread of catalog sizes; ~10 tracks per artist on average, hundreds for a few.
const CATALOG_SIGMA: f64 = 1.1;
/// Popular artists tend to have bigger catalogs: size weight × (rank + 1)^-this.
const CATALOG_RANK_DAMPING: f64 = 0.25;
/// Album sizes are 1 + Geometric(p): mean ~3 tracks, many singles, like LFM-1b's 2 per album.
const ALBUM_GEOMETRIC_P: f64 = 0.3;
const MAX_ALBUM: u32 = 24;
/// Bytes copied per pre-formatted track field group: three ids of at most 9 digits
/// (validation keeps ids below 10^9) and three tabs fit.
pub(crate) const FIELDS_COPY: usize = 32;

const SALT_SIZE: u64 = 0x51_2E;
const SALT_ALBUM: u64 = 0xA1_B0;
const SALT_PERM: u64 = 0x9E_4D;

/// The built catalog. "Dense" indices follow the genre-major layout; "positions" follow id order.
#[derive(Debug)]
pub(crate) struct Catalog {
    pub(crate) genres: usize,
    pub(crate) artists: usize,
    pub(crate) albums: usize,
    pub(crate) tracks: usize,
    /// Popularity prefix over genres (len `genres + 1`, ends at 1).
    pub(crate) genre_cum: Vec<f64>,
    /// Dense artist range of each genre (len `genres + 1`).
    pub(crate) genre_artists: Vec<u32>,
    /// Popularity prefix over dense artists (len `artists + 1`).
    pub(crate) artist_cum: Vec<f64>,
    /// Dense track range of each dense artist (len `artists + 1`).
    pub(crate) artist_tracks: Vec<u32>,
    /// Per dense track: cumulative popularity within its artist, ending at 1 on the artist's last.
    in_artist_cum: Vec<f32>,
    /// Per dense track: the alias table of its genre (indices relative to the genre's start).
    genre_alias: Vec<AliasSlot>,
    /// Dense artist at each id position (the id order).
    pub(crate) artist_at_pos: Vec<u32>,
    /// External id of each dense artist.
    pub(crate) artist_ids: Vec<u32>,
    /// First track position, first album position and album count of each dense artist.
    pub(crate) artist_track_pos: Vec<u32>,
    pub(crate) artist_album_pos: Vec<u32>,
    pub(crate) artist_album_count: Vec<u32>,
    /// Per dense track `t`: `fields[field_at[t]..field_at[t + 1]]` is `artist\talbum\ttrack\t`;
    /// `fields` has [`FIELDS_COPY`] bytes of padding at the end.
    fields: Vec<u8>,
    field_at: Vec<u32>,
}

impl Catalog {
    /// Builds the catalog for `cfg` (already validated).
    pub(crate) fn build(cfg: &SynthConfig) -> Self {
        let seed = cfg.seed;
        let (g, a, t) = (
            cfg.genres as usize,
            cfg.artists as usize,
            cfg.tracks as usize,
        );

        let genre_w: Vec<f64> = (0..g).map(|i| zipf(i, GENRE_ZIPF)).collect();
        let genre_cum = prefix(&genre_w);
        let per_genre = apportion(a as u64, &genre_w);
        let genre_artists = prefix_u32(&per_genre);

        // Artist popularity (share of all listens) and catalog-size weight, both by rank in genre.
        let mut artist_w = Vec::with_capacity(a);
        let mut size_w = Vec::with_capacity(a);
        for (gi, &n) in per_genre.iter().enumerate() {
            let norm: f64 = (0..n as usize).map(|r| zipf(r, ARTIST_ZIPF)).sum();
            let share = genre_cum[gi + 1] - genre_cum[gi];
            for r in 0..n as usize {
                let dense = artist_w.len() as u64;
                artist_w.push(share * zipf(r, ARTIST_ZIPF) / norm);
                let mut rng = Pcg64Mcg::seed_from_u64(mix64(seed ^ SALT_SIZE ^ mix64(dense)));
                let z: f64 = rng.sample(StandardNormal);
                size_w.push((CATALOG_SIGMA * z).exp() * zipf(r, CATALOG_RANK_DAMPING));
            }
        }
        let artist_cum = prefix(&artist_w);
        let sizes = apportion(t as u64, &size_w);
        let artist_tracks = prefix_u32(&sizes);

        // Id order: a seeded shuffle of the artists.
        let mut artist_at_pos: Vec<u32> = (0..a as u32).collect();
        artist_at_pos.shuffle(&mut Pcg64Mcg::seed_from_u64(mix64(seed ^ SALT_PERM)));
        let mut artist_ids = vec![0u32; a];
        let mut artist_track_pos = vec![0u32; a];
        let mut artist_album_pos = vec![0u32; a];
        let mut artist_album_count = vec![0u32; a];
        let (mut next_track, mut next_album) = (0u32, 0u32);
        for (pos, &dense) in artist_at_pos.iter().enumerate() {
            let d = dense as usize;
            artist_ids[d] = ARTIST_IDS.id(seed, pos as u64);
            artist_track_pos[d] = next_track;
            next_track += sizes[d];
            artist_album_pos[d] = next_album;
            artist_album_count[d] = album_sizes(seed, dense, sizes[d]).count() as u32;
            next_album += artist_album_count[d];
        }

        // Per-track popularity and pre-formatted fields, in dense order.
        let max_size = sizes.iter().copied().max().unwrap_or(1) as usize;
        let rank_w: Vec<f64> = (0..max_size).map(|k| zipf(k, TRACK_ZIPF)).collect();
        let mut track_w = Vec::with_capacity(t);
        let mut in_artist_cum = Vec::with_capacity(t);
        let mut fields = Vec::with_capacity(t * 24 + FIELDS_COPY);
        let mut field_at = Vec::with_capacity(t + 1);
        let mut line = [0u8; FIELDS_COPY];
        for d in 0..a {
            let n = sizes[d] as usize;
            let norm: f64 = rank_w[..n].iter().sum();
            let mut acc = 0.0;
            let mut albums = album_sizes(seed, d as u32, sizes[d]).enumerate();
            let (mut album, mut album_left) = (0u64, 0u32);
            for (k, w) in rank_w[..n].iter().enumerate() {
                track_w.push(artist_w[d] * w / norm);
                acc += w / norm;
                in_artist_cum.push(if k + 1 == n { 1.0 } else { acc as f32 });
                if album_left == 0
                    && let Some((j, len)) = albums.next()
                {
                    (album, album_left) = (j as u64, len);
                }
                album_left -= 1;
                let track_id = TRACK_IDS.id(seed, u64::from(artist_track_pos[d]) + k as u64);
                let album_id = ALBUM_IDS.id(seed, u64::from(artist_album_pos[d]) + album);
                let mut at = put_decimal(&mut line, 0, u64::from(artist_ids[d]));
                line[at] = b'\t';
                at = put_decimal(&mut line, at + 1, u64::from(album_id));
                line[at] = b'\t';
                at = put_decimal(&mut line, at + 1, u64::from(track_id));
                line[at] = b'\t';
                field_at.push(fields.len() as u32);
                fields.extend_from_slice(&line[..=at]);
            }
        }
        field_at.push(fields.len() as u32);
        fields.resize(fields.len() + FIELDS_COPY, 0);

        let mut genre_alias = vec![AliasSlot::default(); t];
        for gi in 0..g {
            let lo = artist_tracks[genre_artists[gi] as usize] as usize;
            let hi = artist_tracks[genre_artists[gi + 1] as usize] as usize;
            build_alias(&track_w[lo..hi], &mut genre_alias[lo..hi]);
        }

        Self {
            genres: g,
            artists: a,
            albums: next_album as usize,
            tracks: t,
            genre_cum,
            genre_artists,
            artist_cum,
            artist_tracks,
            in_artist_cum,
            genre_alias,
            artist_at_pos,
            artist_ids,
            artist_track_pos,
            artist_album_pos,
            artist_album_count,
            fields,
            field_at,
        }
    }

    /// Dense track range of dense artist `a`.
    pub(crate) fn artist_track_range(&self, a: usize) -> (usize, usize) {
        (
            self.artist_tracks[a] as usize,
            self.artist_tracks[a + 1] as usize,
        )
    }

    /// A track of genre `g` by popularity, from one random `u64`.
    #[inline]
    pub(crate) fn genre_track(&self, g: usize, r: u64) -> usize {
        let lo = self.artist_tracks[self.genre_artists[g] as usize] as usize;
        let hi = self.artist_tracks[self.genre_artists[g + 1] as usize] as usize;
        lo + sample_alias(&self.genre_alias[lo..hi], r)
    }

    /// A track of the whole catalog by popularity: a genre by its share, then a track in it.
    #[inline]
    pub(crate) fn any_track(&self, u: f64, r: u64) -> usize {
        self.genre_track(sample_range(&self.genre_cum, 0, self.genres, u), r)
    }

    /// A track of dense artist `a` by popularity within the artist.
    #[inline]
    pub(crate) fn artist_track(&self, a: usize, u: f32) -> usize {
        let (lo, hi) = self.artist_track_range(a);
        let k = self.in_artist_cum[lo..hi].partition_point(|&c| c <= u);
        lo + k.min(hi - lo - 1)
    }

    /// `artist\talbum\ttrack\t` of dense track `t`, followed by padding up to [`FIELDS_COPY`]
    /// bytes: copy the fixed-size block, then advance by the returned length.
    #[inline]
    pub(crate) fn fields(&self, t: usize) -> (&[u8], usize) {
        let at = self.field_at[t] as usize;
        let len = self.field_at[t + 1] as usize - at;
        (&self.fields[at..at + FIELDS_COPY], len)
    }

    /// The id of dense track `t` of dense artist `a` (for the tracks file).
    pub(crate) fn track_id(&self, seed: u64, a: usize, t: usize) -> u32 {
        let k = t - self.artist_tracks[a] as usize;
        TRACK_IDS.id(seed, u64::from(self.artist_track_pos[a]) + k as u64)
    }
}

/// The album sizes of an artist with `n` tracks: 1 + Geometric, the last one truncated.
fn album_sizes(seed: u64, artist: u32, n: u32) -> impl Iterator<Item = u32> {
    let mut rng = Pcg64Mcg::seed_from_u64(mix64(seed ^ SALT_ALBUM ^ mix64(u64::from(artist))));
    let mut left = n;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let u: f64 = rng.random();
        let geo = ((1.0 - u).ln() / (1.0 - ALBUM_GEOMETRIC_P).ln()) as u32;
        let size = (1 + geo).min(MAX_ALBUM).min(left);
        left -= size;
        Some(size)
    })
}

fn zipf(rank: usize, s: f64) -> f64 {
    (rank as f64 + 1.0).powf(-s)
}

fn prefix_u32(counts: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(counts.len() + 1);
    out.push(0);
    let mut acc = 0u32;
    for &c in counts {
        acc += c;
        out.push(acc);
    }
    out
}

/// Splits `total` (>= `w.len()`) into one count per weight, each at least 1, proportional to the
/// weights otherwise; the sum is exactly `total`. Leftovers from rounding go to the first items.
fn apportion(total: u64, w: &[f64]) -> Vec<u32> {
    let n = w.len() as u64;
    debug_assert!(total >= n && n > 0);
    let rest = (total - n) as f64;
    let sum: f64 = w.iter().sum();
    let mut counts: Vec<u64> = w
        .iter()
        .map(|x| 1 + (rest * x / sum).floor() as u64)
        .collect();
    let mut assigned: u64 = counts.iter().sum();
    // Floating-point rounding can overshoot by a few; take those back from the largest items.
    let mut i = 0;
    while assigned > total {
        if counts[i] > 1 {
            counts[i] -= 1;
            assigned -= 1;
        }
        i = (i + 1) % counts.len();
    }
    let mut i = 0;
    while assigned < total {
        counts[i] += 1;
        assigned += 1;
        i = (i + 1) % counts.len();
    }
    counts.into_iter().map(|c| c as u32).collect()
}

#[cfg(test)]
mod tests {
    use super::super::Scale;
    use super::*;

    #[test]
    fn apportion_is_exact_and_positive() {
        let w = [5.0, 1.0, 0.001, 3.0];
        for total in [4, 5, 17, 1000, 123_457] {
            let c = apportion(total, &w);
            assert_eq!(c.iter().map(|&x| u64::from(x)).sum::<u64>(), total);
            assert!(c.iter().all(|&x| x >= 1));
        }
    }

    #[test]
    fn catalog_tables_are_consistent() {
        let cfg = SynthConfig {
            tracks: 5_000,
            artists: 400,
            genres: 8,
            ..SynthConfig::from_scale(Scale::Tiny, 3)
        };
        let c = Catalog::build(&cfg);
        assert_eq!(c.artist_tracks.last(), Some(&5_000));
        assert_eq!(c.field_at.len(), 5_001);
        assert_eq!(c.artist_album_count.iter().sum::<u32>() as usize, c.albums);
        for a in 0..c.artists {
            let (lo, hi) = c.artist_track_range(a);
            assert_eq!(c.in_artist_cum[hi - 1], 1.0);
            for t in lo..hi {
                let (block, len) = c.fields(t);
                let text = std::str::from_utf8(&block[..len]).expect("ascii");
                let f: Vec<&str> = text.split('\t').collect();
                assert_eq!(f.len(), 4, "{text:?}");
                assert_eq!(f[0], c.artist_ids[a].to_string());
                assert_eq!(f[2], c.track_id(cfg.seed, a, t).to_string());
                assert!(len <= FIELDS_COPY);
            }
            assert!((lo..hi).contains(&c.artist_track(a, 0.999)));
        }
        for g in 0..c.genres {
            let lo = c.artist_tracks[c.genre_artists[g] as usize] as usize;
            let hi = c.artist_tracks[c.genre_artists[g + 1] as usize] as usize;
            for r in 0..100u64 {
                assert!((lo..hi).contains(&c.genre_track(g, mix64(r))));
            }
        }
    }
}
