//! One user's listening history: taste, track choices, repeats and timestamps.
//!
//! Each user gets 1–3 genres and a handful of favourite artists. A listen either *discovers* a
//! track (from a favourite artist, from one of the user's genres, or from global popularity) or
//! *repeats* one. Every discovered track gets an affinity: zero for a good share of them (heard
//! once, never chosen again) and Pareto-distributed otherwise; repeats pick a known track by
//! affinity (O(1): each track holds tickets in proportion to its affinity, and a repeat draws a
//! ticket), or now and then one of the last few listens (an album or a song on repeat). This
//! gives heavy-tailed per-(user, track) play counts with many single plays, a mean fixed by the
//! discovery rate, and no rich-get-richer lock-in on the first track. The taste mixture plants the
//! structure a recommender should find. Timestamps come from sessions: a few minutes between
//! songs, hours to days between sessions, all between registration and the end of the crawl.
//!
//! Everything a user produces comes from one random stream seeded by the user's index, so the
//! output does not depend on threads or batching.

use rand::Rng;
use rand_distr::Exp1;
use rand_pcg::Pcg64Mcg;

use super::SynthConfig;
use super::catalog::{Catalog, FIELDS_COPY};
use super::decimal::{MAX_DECIMAL, put_decimal};
use super::ids::USER_IDS;
use super::sampler::sample_range;
use super::users::{LISTEN_END, LISTEN_FIRST, SETTLE_IN, registered, user_rng};

const SALT_LISTEN: u64 = 0;
/// Repeats choose among the last this-many listens some of the time ("on repeat" bursts).
const RECENT_WINDOW: usize = 30;
const RECENT_SHARE: f64 = 0.15;
/// Share of discovered tracks the user never chooses to replay, and the Pareto shape of the
/// affinity of the others (smaller = heavier tail).
const SKIP_SHARE: f64 = 0.4;
const AFFINITY_PARETO: f64 = 1.6;
/// Repeat tickets per unit of affinity (stochastically rounded), and the affinity cap that bounds
/// one track's tickets.
const TICKETS_PER_UNIT: f64 = 4.0;
const MAX_AFFINITY: f64 = 1_000.0;
/// A new user explores first: the discovery probability of listen `i` is at least
/// `EARLY / (i + EARLY)`.
const EARLY: f64 = 5.0;
/// A discovery that hits an already-heard track is redrawn up to this many times.
const DISCOVERY_TRIES: usize = 4;
/// Probability that a user has at least 2 (resp. 3) genres, and the genres' relative weights.
const SECOND_GENRE: f64 = 0.55;
const THIRD_GENRE: f64 = 0.2;
const GENRE_WEIGHTS: [f64; 3] = [1.0, 0.45, 0.25];
/// Favourites are drawn half by popularity, half uniformly within the genre (niche favourites).
const NICHE_FAVOURITES: f64 = 0.5;
const MAX_FAVOURITES: usize = 24;
/// Sessions: mean length in listens, seconds between songs, shortest mean session gap.
const SESSION_LISTENS: f64 = 12.0;
const SONG_SECONDS: (u64, u64) = (120, 360);
const MIN_SESSION_GAP: f64 = 1_800.0;
/// Listens formatted per output-buffer extension.
const FORMAT_CHUNK: usize = 4096;

/// Reusable per-worker buffers; left clean after every user.
pub(crate) struct Scratch {
    seq: Vec<u32>,
    gaps: Vec<u64>,
    distinct: Vec<u32>,
    /// Known tracks, each repeated in proportion to its affinity: a uniform pick is a weighted one.
    tickets: Vec<u32>,
    seen: Vec<u64>,
    favourites: Vec<(u32, f64)>,
}

impl Scratch {
    pub(crate) fn new(tracks: usize) -> Self {
        Self {
            seq: Vec::new(),
            gaps: Vec::new(),
            distinct: Vec::new(),
            tickets: Vec::new(),
            seen: vec![0; tracks.div_ceil(64)],
            favourites: Vec::new(),
        }
    }
}

/// A user's taste: genres with cumulative weights.
struct Taste {
    genres: [usize; 3],
    genre_cum: [f64; 3],
    count: usize,
}

/// Generates listening histories against one catalog.
pub(crate) struct Listener<'a> {
    pub(crate) cfg: &'a SynthConfig,
    pub(crate) catalog: &'a Catalog,
    pub(crate) events: &'a [u32],
}

impl Listener<'_> {
    /// Appends user `user`'s LEs lines to `out`; returns their number of distinct tracks.
    pub(crate) fn user(&self, s: &mut Scratch, user: usize, out: &mut Vec<u8>) -> u64 {
        let n = self.events[user] as usize;
        let mut rng = user_rng(self.cfg.seed, SALT_LISTEN, user as u64);
        let taste = self.taste(&mut rng);
        self.favourites(&mut rng, &taste, n, &mut s.favourites);

        let discover = 1.0 / self.cfg.repeat_target;
        s.seq.clear();
        s.tickets.clear();
        for i in 0..n {
            let explore = discover.max(EARLY / (i as f64 + EARLY));
            let track = if i == 0 || rng.random::<f64>() < explore {
                self.discover(&mut rng, &taste, s)
            } else if s.tickets.is_empty() || rng.random::<f64>() < RECENT_SHARE {
                s.seq[i - 1 - rng.random_range(0..i.min(RECENT_WINDOW))]
            } else {
                s.tickets[rng.random_range(0..s.tickets.len())]
            };
            s.seq.push(track);
        }
        let distinct = s.distinct.len() as u64;
        for &t in &s.distinct {
            s.seen[t as usize / 64] &= !(1u64 << (t % 64));
        }
        s.distinct.clear();

        self.timestamps(&mut rng, user, n, &mut s.gaps);
        self.format(s, user, out);
        distinct
    }

    fn taste(&self, rng: &mut Pcg64Mcg) -> Taste {
        let c = self.catalog;
        let count = 1
            + usize::from(rng.random::<f64>() < SECOND_GENRE)
            + usize::from(rng.random::<f64>() < THIRD_GENRE);
        let count = count.min(c.genres);
        let mut genres = [0usize; 3];
        for k in 0..count {
            // Genres are drawn by popularity, without repeats (a few tries, then any unused one).
            let mut g = sample_range(&c.genre_cum, 0, c.genres, rng.random());
            for _ in 0..8 {
                if !genres[..k].contains(&g) {
                    break;
                }
                g = sample_range(&c.genre_cum, 0, c.genres, rng.random());
            }
            while genres[..k].contains(&g) {
                g = (g + 1) % c.genres;
            }
            genres[k] = g;
        }
        let mut genre_cum = [0.0; 3];
        let total: f64 = GENRE_WEIGHTS[..count].iter().sum();
        let mut acc = 0.0;
        for k in 0..count {
            acc += GENRE_WEIGHTS[k] / total;
            genre_cum[k] = acc;
        }
        Taste {
            genres,
            genre_cum,
            count,
        }
    }

    fn pick_genre(rng: &mut Pcg64Mcg, taste: &Taste) -> usize {
        let u: f64 = rng.random();
        let k = taste.genre_cum[..taste.count]
            .iter()
            .position(|&c| u < c)
            .unwrap_or(taste.count - 1);
        taste.genres[k]
    }

    /// Favourite artists with cumulative weights 1/(rank+1); more for more active users.
    fn favourites(&self, rng: &mut Pcg64Mcg, taste: &Taste, n: usize, out: &mut Vec<(u32, f64)>) {
        let c = self.catalog;
        let count = (1 + (0.8 * (n as f64 + 1.0).ln()) as usize + rng.random_range(0..3))
            .min(MAX_FAVOURITES);
        out.clear();
        let mut acc = 0.0;
        for r in 0..count {
            let g = Self::pick_genre(rng, taste);
            let (lo, hi) = (c.genre_artists[g] as usize, c.genre_artists[g + 1] as usize);
            let artist = if rng.random::<f64>() < NICHE_FAVOURITES {
                rng.random_range(lo..hi)
            } else {
                sample_range(&c.artist_cum, lo, hi, rng.random())
            };
            acc += 1.0 / (r as f64 + 1.0);
            out.push((artist as u32, acc));
        }
        for f in out.iter_mut() {
            f.1 /= acc;
        }
    }

    /// Draws a track the user has not heard yet if it can (a few tries), and records it.
    fn discover(&self, rng: &mut Pcg64Mcg, taste: &Taste, s: &mut Scratch) -> u32 {
        let mut track = 0;
        for _ in 0..DISCOVERY_TRIES {
            track = self.draw(rng, taste, &s.favourites) as u32;
            let (word, bit) = (track as usize / 64, 1u64 << (track % 64));
            if s.seen[word] & bit == 0 {
                s.seen[word] |= bit;
                s.distinct.push(track);
                if rng.random::<f64>() >= SKIP_SHARE {
                    let pareto = (1.0 - rng.random::<f64>()).powf(-1.0 / AFFINITY_PARETO);
                    let x = pareto.min(MAX_AFFINITY) * TICKETS_PER_UNIT;
                    let k = x as usize + usize::from(rng.random::<f64>() < x.fract());
                    s.tickets.extend(std::iter::repeat_n(track, k));
                }
                return track;
            }
        }
        track
    }

    /// One draw from the taste mixture: favourite artist, own genre, or global popularity.
    fn draw(&self, rng: &mut Pcg64Mcg, taste: &Taste, favourites: &[(u32, f64)]) -> usize {
        let c = self.catalog;
        let u: f64 = rng.random();
        if u < self.cfg.favourite_share {
            let v: f64 = rng.random();
            let k = favourites
                .iter()
                .position(|f| v < f.1)
                .unwrap_or(favourites.len() - 1);
            c.artist_track(favourites[k].0 as usize, rng.random())
        } else if u < 1.0 - self.cfg.global_share {
            c.genre_track(Self::pick_genre(rng, taste), rng.random())
        } else {
            c.any_track(rng.random(), rng.random())
        }
    }

    /// Fills `gaps` with seconds since the previous listen (the first entry is the start time).
    fn timestamps(&self, rng: &mut Pcg64Mcg, user: usize, n: usize, gaps: &mut Vec<u64>) {
        let reg = registered(self.cfg.seed, user as u64, n as u32);
        let start = reg.max(LISTEN_FIRST) + SETTLE_IN;
        // Strictly before the end of the crawl.
        let avail = (LISTEN_END - 1).saturating_sub(start).max(1);
        // The user is active over a random share of the time they could have been.
        let span = avail as f64 * rng.random_range(0.25..1.0);
        let mean_song = (SONG_SECONDS.0 + SONG_SECONDS.1) as f64 / 2.0;
        let sessions = (n as f64 / SESSION_LISTENS).max(1.0);
        let session_gap = ((span - n as f64 * mean_song) / sessions).max(MIN_SESSION_GAP);
        gaps.clear();
        gaps.push(0);
        let mut total = 0u64;
        for _ in 1..n {
            let gap = if rng.random::<f64>() < 1.0 / SESSION_LISTENS {
                let e: f64 = rng.sample(Exp1);
                (e * session_gap) as u64 + SONG_SECONDS.1
            } else {
                rng.random_range(SONG_SECONDS.0..SONG_SECONDS.1)
            };
            total += gap;
            gaps.push(gap);
        }
        if total <= avail {
            gaps[0] = start + rng.random_range(0..=avail - total);
        } else {
            // Rare: squeeze the history into the window (keeps timestamps non-decreasing).
            let f = avail as f64 / total as f64;
            let mut prev = 0u64;
            let mut acc = 0u64;
            for g in gaps.iter_mut().skip(1) {
                acc += *g;
                let scaled = (acc as f64 * f) as u64;
                *g = scaled - prev;
                prev = scaled;
            }
            gaps[0] = start;
        }
    }

    fn format(&self, s: &mut Scratch, user: usize, out: &mut Vec<u8>) {
        // Every field is written as a fixed-size block (compiled to plain vector stores) and the
        // cursor then advances by the real length; this bounds how far one line can reach.
        const USER_BLOCK: usize = 16;
        const MAX_LINE: usize = USER_BLOCK + FIELDS_COPY + MAX_DECIMAL + 1;
        let c = self.catalog;
        let mut user_block = [0u8; USER_BLOCK];
        let uid = u64::from(USER_IDS.id(self.cfg.seed, user as u64));
        let user_len = put_decimal(&mut user_block, 0, uid);
        user_block[user_len] = b'\t';
        let mut ts = 0u64;
        // Chunks bound the zeroed slack that `resize` adds beyond the real text.
        for (seq, gaps) in s.seq.chunks(FORMAT_CHUNK).zip(s.gaps.chunks(FORMAT_CHUNK)) {
            let start = out.len();
            out.resize(start + seq.len() * MAX_LINE, 0);
            let buf = &mut out[start..];
            let mut at = 0;
            for (&t, &gap) in seq.iter().zip(gaps) {
                ts += gap;
                buf[at..at + USER_BLOCK].copy_from_slice(&user_block);
                at += user_len + 1;
                let (fields, len) = c.fields(t as usize);
                buf[at..at + FIELDS_COPY].copy_from_slice(fields);
                at = put_decimal(buf, at + len, ts);
                buf[at] = b'\n';
                at += 1;
            }
            out.truncate(start + at);
        }
    }
}
