//! The synthetic catalog: genres own artists, artists own albums, albums own tracks.
//!
//! Everything is laid out in one *dense* order, genre-major and then by popularity rank, so a
//! genre, an artist or the whole catalog is a contiguous range. One prefix sum of track
//! popularity then serves as the sampler for all three (binary search, O(log n) per draw) and the
//! tables stay a few hundred MB even at LFM-1b scale. External ids follow a *different*, shuffled
//! artist order, so ids reveal nothing about genre or popularity; an artist's albums and tracks get
//! consecutive ids, as when a crawler meets a discography.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;

use super::SynthConfig;
use super::ids::{ALBUM_IDS, ARTIST_IDS, TRACK_IDS};
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
    /// Popularity prefix over dense tracks (len `tracks + 1`, ends at 1).
    pub(crate) track_cum: Vec<f64>,
    /// Dense artist at each id position (the id order).
    pub(crate) artist_at_pos: Vec<u32>,
    /// External id of each dense artist.
    pub(crate) artist_ids: Vec<u32>,
    /// First album position and album count of each dense artist.
    pub(crate) artist_album_pos: Vec<u32>,
    pub(crate) artist_album_count: Vec<u32>,
    /// External ids per dense track: the track, its album and its artist.
    pub(crate) track_ids: Vec<u32>,
    pub(crate) track_album_ids: Vec<u32>,
    pub(crate) track_artist_ids: Vec<u32>,
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
            let share = genre_w[gi] / genre_cum[g];
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

        // Per-track tables and the popularity prefix, in dense order.
        let max_size = sizes.iter().copied().max().unwrap_or(1) as usize;
        let rank_w: Vec<f64> = (0..max_size).map(|k| zipf(k, TRACK_ZIPF)).collect();
        let mut track_cum = Vec::with_capacity(t + 1);
        track_cum.push(0.0);
        let mut track_ids = Vec::with_capacity(t);
        let mut track_album_ids = Vec::with_capacity(t);
        let mut track_artist_ids = Vec::with_capacity(t);
        let mut acc = 0.0f64;
        for d in 0..a {
            let n = sizes[d] as usize;
            let norm: f64 = rank_w[..n].iter().sum();
            for (k, w) in rank_w[..n].iter().enumerate() {
                acc += artist_w[d] * w / norm;
                track_cum.push(acc);
                track_ids.push(TRACK_IDS.id(seed, u64::from(artist_track_pos[d]) + k as u64));
                track_artist_ids.push(artist_ids[d]);
            }
            for (j, len) in album_sizes(seed, d as u32, sizes[d]).enumerate() {
                let id = ALBUM_IDS.id(seed, u64::from(artist_album_pos[d]) + j as u64);
                track_album_ids.extend(std::iter::repeat_n(id, len as usize));
            }
        }
        normalize(&mut track_cum);

        Self {
            genres: g,
            artists: a,
            albums: next_album as usize,
            tracks: t,
            genre_cum,
            genre_artists,
            artist_cum,
            artist_tracks,
            track_cum,
            artist_at_pos,
            artist_ids,
            artist_album_pos,
            artist_album_count,
            track_ids,
            track_album_ids,
            track_artist_ids,
        }
    }

    /// Dense track range of genre `g`.
    pub(crate) fn genre_tracks(&self, g: usize) -> (usize, usize) {
        let lo = self.artist_tracks[self.genre_artists[g] as usize] as usize;
        let hi = self.artist_tracks[self.genre_artists[g + 1] as usize] as usize;
        (lo, hi)
    }

    /// Dense track range of dense artist `a`.
    pub(crate) fn artist_track_range(&self, a: usize) -> (usize, usize) {
        (
            self.artist_tracks[a] as usize,
            self.artist_tracks[a + 1] as usize,
        )
    }
}

/// Draws an item in `lo..hi` with probability proportional to its weight, given the prefix sum
/// `cum` of weights (`cum[i + 1] - cum[i]` is item `i`'s weight) and a uniform `u` in [0, 1).
pub(crate) fn sample_range(cum: &[f64], lo: usize, hi: usize, u: f64) -> usize {
    let x = cum[lo] + u * (cum[hi] - cum[lo]);
    let i = lo + cum[lo + 1..=hi].partition_point(|&c| c <= x);
    i.min(hi - 1)
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

/// Prefix sums of `w`, normalised to end at 1.
fn prefix(w: &[f64]) -> Vec<f64> {
    let mut cum = Vec::with_capacity(w.len() + 1);
    cum.push(0.0);
    let mut acc = 0.0;
    for x in w {
        acc += x;
        cum.push(acc);
    }
    normalize(&mut cum);
    cum
}

fn normalize(cum: &mut [f64]) {
    if let Some(&total) = cum.last()
        && total > 0.0
    {
        cum.iter_mut().for_each(|c| *c /= total);
    }
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
    fn sample_range_stays_in_range_and_follows_weights() {
        let cum = prefix(&[1.0, 0.0001, 3.0, 6.0]);
        assert_eq!(sample_range(&cum, 0, 4, 0.0), 0);
        assert_eq!(sample_range(&cum, 0, 4, 0.999_999), 3);
        assert_eq!(sample_range(&cum, 1, 3, 0.5), 2);
        assert_eq!(sample_range(&cum, 2, 3, 0.7), 2);
    }

    #[test]
    fn catalog_tables_are_consistent() {
        let cfg = SynthConfig {
            tracks: 5_000,
            artists: 400,
            genres: 8,
            ..SynthConfig::from_scale(super::super::Scale::Tiny, 3)
        };
        let c = Catalog::build(&cfg);
        assert_eq!(c.track_ids.len(), 5_000);
        assert_eq!(c.track_album_ids.len(), 5_000);
        assert_eq!(*c.artist_tracks.last().unwrap_or(&0), 5_000);
        assert_eq!(c.artist_album_count.iter().sum::<u32>() as usize, c.albums);
        assert!((c.track_cum[5_000] - 1.0).abs() < 1e-12);
        assert!(c.track_cum.windows(2).all(|w| w[0] <= w[1]));
    }
}
