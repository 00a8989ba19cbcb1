//! Synthetic listening logs in the exact LFM-1b file format, with planted taste structure.
//!
//! LFM-1b is no longer distributed, so Encore needs data of the same shape and size to develop,
//! test and benchmark against: the same five tab-separated files, sparse non-contiguous ids, rows
//! grouped by user in time order, heavy-tailed users, tracks and repeat counts, and up to the real
//! 1.09 billion events. The data also has to be *learnable*: users have latent genres and
//! favourite artists, so a recommender can beat the popularity baseline on held-out listens, and
//! evaluation numbers mean something.
//!
//! Output is a pure function of [`SynthConfig`]: every user and catalog entity draws from its own
//! seeded stream, so the bytes do not depend on the number of threads. Memory is bounded by the
//! catalog tables plus two groups of output buffers, independent of the number of events.
//!
//! Layout: `catalog` builds genres → artists → albums → tracks, with `sampler`'s alias tables for
//! popularity; `users` plans per-user activity and writes the users file; `listen` generates one
//! user's history; `write` runs the parallel in-order writer; `names` and `ids` make names and ids.

mod catalog;
mod decimal;
mod ids;
mod listen;
mod names;
mod sampler;
mod users;
mod write;

use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, IoContext, Result};
use crate::util::{AtomicDir, OutputKind, progress_bar};
use catalog::Catalog;
use ids::{ALBUM_IDS, ARTIST_IDS, TRACK_IDS, USER_IDS};
use listen::{Listener, Scratch};
use users::Plan;
use write::{CatalogFile, write_catalog, write_ordered};

/// Listening events file: `user_id, artist_id, album_id, track_id, timestamp`, no header.
pub const LES_FILE: &str = "LFM-1b_LEs.txt";
/// Users file, with a header line.
pub const USERS_FILE: &str = "LFM-1b_users.txt";
/// Artists file: `artist_id, artist_name`.
pub const ARTISTS_FILE: &str = "LFM-1b_artists.txt";
/// Albums file: `album_id, album_name, artist_id`.
pub const ALBUMS_FILE: &str = "LFM-1b_albums.txt";
/// Tracks file: `track_id, track_name, artist_id`.
pub const TRACKS_FILE: &str = "LFM-1b_tracks.txt";
/// Config, dataset statistics and model description of a generated dataset (no timings, so it is
/// as reproducible as the data).
pub const META_FILE: &str = OutputKind::Synth.marker();

/// Most events any user has; LFM-1b kept at most 20,000 per user.
pub const USER_EVENT_CAP: u32 = 20_000;
/// Largest catalog accepted (the tables take ~50 bytes per track, so this is ~5 GB).
pub const MAX_TRACKS: u32 = 100_000_000;
/// Most latent genres.
pub const MAX_GENRES: u32 = 4096;
/// Largest user count accepted.
pub const MAX_USERS: u32 = 10_000_000;
/// Users per LEs batch are cut at about this many events (~1.3 MB of text).
const BATCH_EVENTS: u64 = 1 << 15;

/// Preset sizes. `Lfm1b` matches the real dataset's users and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// 1,000 users, 10,000 tracks, 500,000 events: the demo default, well under a second.
    Tiny,
    /// 10,000 users, 200,000 tracks, 20 M events.
    Small,
    /// 30,000 users, 1 M tracks, 150 M events.
    Medium,
    /// 120,322 users, 5.6 M tracks, 1,088,161,692 events (~47.8 GB of LEs text).
    Lfm1b,
}

/// What to generate. Build one with [`SynthConfig::from_scale`] and adjust fields as needed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SynthConfig {
    pub users: u32,
    pub tracks: u32,
    /// Artists own the tracks (heavy-tailed catalog sizes); `tracks / artists` is the mean.
    pub artists: u32,
    /// Latent genres; every artist belongs to one, so with fewer artists than genres only as many
    /// genres as artists are used (a preset with a small `--tracks` stays valid).
    pub genres: u32,
    /// Total listening events (hit exactly).
    pub events: u64,
    pub seed: u64,
    /// Lognormal sigma of per-user activity before scaling and the 20,000 cap.
    pub activity_sigma: f64,
    /// Inverse of the discovery rate: listens per distinct (user, track) pair before collisions.
    /// The realised mean is ~5% higher, since a discovery that keeps hitting known tracks
    /// becomes a repeat; 5.3 gives ~5.6 and ~195 M pairs at LFM-1b scale.
    pub repeat_target: f64,
    /// Share of discoveries drawn from global popularity rather than the user's taste.
    pub global_share: f64,
    /// Share of discoveries drawn from the user's favourite artists.
    pub favourite_share: f64,
}

impl SynthConfig {
    /// The preset for `scale`.
    pub fn from_scale(scale: Scale, seed: u64) -> Self {
        let (users, tracks, genres, events, activity_sigma) = match scale {
            Scale::Tiny => (1_000, 10_000, 16, 500_000, 1.0),
            Scale::Small => (10_000, 200_000, 32, 20_000_000, 1.0),
            Scale::Medium => (30_000, 1_000_000, 48, 150_000_000, 1.0),
            // Mean ~9,044 events per user with ~4% capped, as in LFM-1b, needs a narrower spread.
            Scale::Lfm1b => (120_322, 5_600_000, 64, 1_088_161_692, 0.47),
        };
        Self {
            users,
            tracks,
            artists: tracks / 10,
            genres,
            events,
            seed,
            activity_sigma,
            repeat_target: 5.3,
            global_share: 0.2,
            favourite_share: 0.45,
        }
    }

    /// Rejects sizes and knobs that cannot produce a sensible dataset.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        let cap = u64::from(USER_EVENT_CAP);
        if self.users == 0 || self.users > MAX_USERS {
            return fail(format!("users must be 1..={MAX_USERS}, got {}", self.users));
        }
        // Sizes a user sets (users, tracks, events) are checked before the ones derived from
        // them, so that an error speaks about what the user can change (issue 13).
        if self.tracks == 0 || self.tracks > MAX_TRACKS {
            return fail(format!(
                "tracks must be 1..={MAX_TRACKS}, got {}",
                self.tracks
            ));
        }
        if self.artists == 0 || self.artists > self.tracks {
            return fail(format!(
                "need 1 <= artists <= tracks, got {} artists for {} tracks",
                self.artists, self.tracks
            ));
        }
        // More genres than artists is not an error: `generate` uses one genre per artist then.
        if self.genres == 0 || self.genres > MAX_GENRES {
            return fail(format!(
                "genres must be 1..={MAX_GENRES}, got {}",
                self.genres
            ));
        }
        if self.events < u64::from(self.users) {
            return fail(format!(
                "events ({}) must be at least users ({}): every user listens at least once",
                self.events, self.users
            ));
        }
        if self.events > u64::from(self.users) * cap {
            return fail(format!(
                "events ({}) exceed users x {USER_EVENT_CAP} (the per-user cap) = {}",
                self.events,
                u64::from(self.users) * cap
            ));
        }
        if !(0.0..=4.0).contains(&self.activity_sigma) {
            return fail(format!(
                "activity_sigma must be in [0, 4], got {}",
                self.activity_sigma
            ));
        }
        if !(1.0..=1000.0).contains(&self.repeat_target) {
            return fail(format!(
                "repeat_target must be in [1, 1000], got {}",
                self.repeat_target
            ));
        }
        let shares_ok = (0.0..=1.0).contains(&self.global_share)
            && (0.0..=1.0).contains(&self.favourite_share)
            && self.global_share + self.favourite_share <= 1.0;
        if !shares_ok {
            return fail(format!(
                "global_share ({}) and favourite_share ({}) must be in [0, 1] with sum <= 1",
                self.global_share, self.favourite_share
            ));
        }
        Ok(())
    }
}

/// What [`generate`] produced.
#[derive(Debug, Clone, Serialize)]
pub struct SynthReport {
    pub users: u64,
    pub tracks: u64,
    pub artists: u64,
    pub albums: u64,
    pub events: u64,
    /// Distinct (user, track) pairs: the nonzeros of the interaction matrix.
    pub distinct_pairs: u64,
    /// Bytes of all files written.
    pub bytes_written: u64,
    /// Wall-clock seconds for the whole generation.
    pub seconds: f64,
    /// Users at exactly [`USER_EVENT_CAP`] events.
    pub capped_users: u64,
}

impl SynthReport {
    /// Output throughput in MB/s (10^6 bytes).
    pub fn mb_per_second(&self) -> f64 {
        self.bytes_written as f64 / 1e6 / self.seconds.max(1e-9)
    }

    /// Events generated per second.
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }
}

/// Contents of [`META_FILE`]. Timings and byte counts stay out so the file is as reproducible as
/// the data.
#[derive(Serialize)]
struct Meta<'a> {
    generator: &'static str,
    encore_version: &'static str,
    model: &'static [&'static str],
    config: &'a SynthConfig,
    dataset: Dataset,
}

#[derive(Serialize)]
struct Dataset {
    users: u64,
    tracks: u64,
    artists: u64,
    albums: u64,
    events: u64,
    distinct_pairs: u64,
    capped_users: u64,
}

const MODEL: &[&str] = &[
    "Genres have Zipf sizes; each artist belongs to one genre and has Zipf popularity by its rank there.",
    "Artists own lognormal-sized catalogs (albums of 1 + Geometric tracks); tracks have Zipf popularity within the artist.",
    "Per-user activity is lognormal (8% casual users scaled down), scaled so the total is exact, clamped to [5, 20000].",
    "Each user has 1-3 genres and a few favourite artists (half popular, half niche in their genres).",
    "A listen discovers a new track with probability max(1/repeat_target, 5/(i+5)) for the user's i-th listen:",
    "from a favourite artist (favourite_share), global popularity (global_share) or one of the user's genres.",
    "Otherwise it repeats a known track by affinity (40% of discoveries get none, the rest Pareto(1.6)) or one of the last 30 listens.",
    "Timestamps: sessions of ~12 songs 2-6 minutes apart, exponential gaps between sessions, after registration.",
    "Ids are sparse: base + index * stride + jitter; artist id order is a shuffle, so ids reveal no genre.",
];

/// Writes the dataset into directory `out` atomically (a temporary directory renamed into place;
/// `force` replaces an existing one). `quiet` hides the progress bar.
pub fn generate(cfg: &SynthConfig, out: &Path, force: bool, quiet: bool) -> Result<SynthReport> {
    let started = Instant::now();
    cfg.validate()?;
    let cfg = &SynthConfig {
        genres: cfg.genres.min(cfg.artists),
        ..cfg.clone()
    };
    let dir = AtomicDir::create(out, force, OutputKind::Synth, &[])?;
    let catalog = Catalog::build(cfg);
    let plan = Plan::new(cfg);
    let pb = progress_bar(estimate_bytes(cfg, &catalog), "synth", quiet);
    let tmp = dir.path();

    let mut bytes = 0;
    for (name, which) in [
        (ARTISTS_FILE, CatalogFile::Artists),
        (ALBUMS_FILE, CatalogFile::Albums),
        (TRACKS_FILE, CatalogFile::Tracks),
    ] {
        bytes += write_catalog(&tmp.join(name), which, &catalog, cfg.seed, &pb)?.0;
    }
    bytes += users::write_users(&tmp.join(USERS_FILE), cfg, &plan)?;

    let bounds = batch_bounds(&plan.events);
    let listener = Listener {
        cfg,
        catalog: &catalog,
        events: &plan.events,
    };
    let pool = Mutex::new(Vec::<Scratch>::new());
    let fill = |b: usize, buf: &mut Vec<u8>| -> u64 {
        // Lines average ~45 bytes; reserving up front avoids doubling the buffer.
        let batch_events: u64 = plan.events[bounds[b]..bounds[b + 1]]
            .iter()
            .map(|&n| u64::from(n))
            .sum();
        buf.reserve((batch_events * 48) as usize);
        let taken = pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut scratch = taken.unwrap_or_else(|| Scratch::new(catalog.tracks));
        let distinct = (bounds[b]..bounds[b + 1])
            .map(|u| listener.user(&mut scratch, u, buf))
            .sum();
        pool.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(scratch);
        distinct
    };
    let (les_bytes, distinct_pairs) =
        write_ordered(&tmp.join(LES_FILE), bounds.len() - 1, fill, &pb)?;
    bytes += les_bytes;
    pb.finish_and_clear();

    let dataset = Dataset {
        users: u64::from(cfg.users),
        tracks: catalog.tracks as u64,
        artists: catalog.artists as u64,
        albums: catalog.albums as u64,
        events: cfg.events,
        distinct_pairs,
        capped_users: plan.capped,
    };
    let meta_path = tmp.join(META_FILE);
    let mut meta = serde_json::to_vec_pretty(&Meta {
        generator: "encore synth",
        encore_version: crate::VERSION,
        model: MODEL,
        config: cfg,
        dataset,
    })
    .map_err(|e| Error::io(&meta_path, std::io::Error::other(e)))?;
    meta.push(b'\n');
    std::fs::write(&meta_path, &meta).at(&meta_path)?;
    bytes += meta.len() as u64;
    dir.commit()?;
    Ok(SynthReport {
        users: u64::from(cfg.users),
        tracks: catalog.tracks as u64,
        artists: catalog.artists as u64,
        albums: catalog.albums as u64,
        events: cfg.events,
        distinct_pairs,
        bytes_written: bytes,
        seconds: started.elapsed().as_secs_f64(),
        capped_users: plan.capped,
    })
}

/// Cuts users into consecutive batches of about [`BATCH_EVENTS`] events (fixed by the plan, not
/// by the thread count). Returns the batch boundaries, starting at 0 and ending at the user count.
fn batch_bounds(events: &[u32]) -> Vec<usize> {
    let mut bounds = vec![0];
    let mut acc = 0u64;
    for (i, &n) in events.iter().enumerate() {
        acc += u64::from(n);
        if acc >= BATCH_EVENTS {
            bounds.push(i + 1);
            acc = 0;
        }
    }
    if bounds.last() != Some(&events.len()) {
        bounds.push(events.len());
    }
    bounds
}

/// Rough size of all output, for the progress bar.
fn estimate_bytes(cfg: &SynthConfig, c: &Catalog) -> u64 {
    let digits = |x: u32| u64::from(x.max(1).ilog10() + 1);
    let last = |space: ids::IdSpace, n: usize| digits(space.id(cfg.seed, n as u64));
    let (user, artist) = (
        last(USER_IDS, cfg.users as usize),
        last(ARTIST_IDS, c.artists),
    );
    let (album, track) = (last(ALBUM_IDS, c.albums), last(TRACK_IDS, c.tracks));
    let line = user + artist + album + track + 10 + 5;
    cfg.events * line + c.tracks as u64 * (track + artist + 20) + c.albums as u64 * (album + 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate() {
        for s in [Scale::Tiny, Scale::Small, Scale::Medium, Scale::Lfm1b] {
            SynthConfig::from_scale(s, 1)
                .validate()
                .expect("preset is valid");
        }
    }

    #[test]
    fn id_spaces_hold_the_largest_config() {
        assert!(u64::from(MAX_TRACKS) <= TRACK_IDS.max_count());
        assert!(u64::from(MAX_TRACKS) <= ALBUM_IDS.max_count());
        assert!(u64::from(MAX_USERS) <= USER_IDS.max_count());
    }

    #[test]
    fn batches_cover_all_users_in_order() {
        let events = vec![20_000u32, 3, 40_000, 5, 5, 1];
        let b = batch_bounds(&events);
        assert_eq!(b.first(), Some(&0));
        assert_eq!(b.last(), Some(&events.len()));
        assert!(b.windows(2).all(|w| w[0] < w[1]));
    }
}
