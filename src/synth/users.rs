//! Users: how many events each one has, when they registered, and the users file.
//!
//! Activity is planned up front so the event total can land *exactly* on the configured target
//! and each user's `playcount` is known before their listens are generated. Raw activity is
//! lognormal (heavy-tailed), with a small share of casual users far below the bulk; one global
//! scale factor is searched so that the clamped, rounded counts sum to the target, and the few
//! events of rounding slack are handed out one per user.
//! The clamp to [`USER_EVENT_CAP`] mirrors LFM-1b, which kept at most 20,000 events per user.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;

use super::ids::USER_IDS;
use super::{SynthConfig, USER_EVENT_CAP};
use crate::error::{IoContext, Result};
use crate::util::mix64;

/// Fewest events any user gets (less when the configured total is smaller than this per user).
pub(crate) const MIN_USER_EVENTS: u64 = 5;
/// Registrations span Last.fm's launch to shortly before the LFM-1b crawl.
const REGISTERED_FIRST: u64 = 1_035_763_200; // 2002-10-28
const REGISTERED_LAST: u64 = 1_401_580_800; // 2014-06-01
/// Listening events fall between these (LFM-1b: January 2005 to August 2014).
pub(crate) const LISTEN_FIRST: u64 = 1_104_537_600; // 2005-01-01
pub(crate) const LISTEN_END: u64 = 1_409_443_200; // 2014-08-31
/// A user registered at least this many seconds per event (plus [`SETTLE_IN`] twice) before the
/// end of the crawl, so that even a capped user has room for their sessions.
const SECONDS_PER_EVENT_ROOM: u64 = 900;
/// Users start listening at least this long after registering (or after [`LISTEN_FIRST`]).
pub(crate) const SETTLE_IN: u64 = 86_400;

/// Share of casual users, whose activity is scaled down by [`CASUAL_FACTOR`]: they give the
/// distribution a long lower tail (a few events) even where the lognormal bulk is narrow.
const CASUAL_SHARE: f64 = 0.08;
const CASUAL_FACTOR: f64 = 0.05;

const SALT_ACTIVITY: u64 = 0xAC_71;
const SALT_DEMOGRAPHICS: u64 = 0xDE_30;
const SALT_REGISTERED: u64 = 0x4E_61;

/// Roughly LFM-1b's country mix (Last.fm writes the United Kingdom as `UK`).
const COUNTRIES: [(&str, u32); 30] = [
    ("US", 190),
    ("RU", 90),
    ("DE", 80),
    ("UK", 70),
    ("PL", 70),
    ("BR", 60),
    ("FI", 30),
    ("NL", 30),
    ("ES", 30),
    ("SE", 30),
    ("UA", 25),
    ("CA", 25),
    ("FR", 20),
    ("IT", 20),
    ("JP", 20),
    ("AU", 15),
    ("MX", 15),
    ("NO", 15),
    ("CZ", 15),
    ("TR", 10),
    ("BY", 10),
    ("AR", 10),
    ("CL", 10),
    ("BE", 10),
    ("AT", 10),
    ("CH", 10),
    ("DK", 8),
    ("PT", 8),
    ("HU", 8),
    ("RO", 8),
];

/// The per-user event counts.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) events: Vec<u32>,
    pub(crate) capped: u64,
}

impl Plan {
    /// Plans `cfg.events` events over `cfg.users` users (config already validated).
    pub(crate) fn new(cfg: &SynthConfig) -> Self {
        let users = u64::from(cfg.users);
        let floor = MIN_USER_EVENTS.min(cfg.events / users).max(1) as f64;
        let cap = f64::from(USER_EVENT_CAP);
        let raw: Vec<f64> = (0..users)
            .into_par_iter()
            .map(|i| {
                let mut rng = user_rng(cfg.seed, SALT_ACTIVITY, i);
                let z: f64 = rng.sample(StandardNormal);
                let casual = rng.random::<f64>() < CASUAL_SHARE;
                (cfg.activity_sigma * z).exp() * if casual { CASUAL_FACTOR } else { 1.0 }
            })
            .collect();
        let count = |c: f64, a: f64| (c * a).round().clamp(floor, cap);
        let total = |c: f64| -> u64 { raw.par_iter().map(|&a| count(c, a) as u64).sum() };

        // Largest scale whose total does not exceed the target (bisection in log space).
        let max_raw = raw.iter().copied().fold(f64::MIN_POSITIVE, f64::max);
        let min_raw = raw.iter().copied().fold(f64::MAX, f64::min);
        let (mut lo, mut hi) = ((0.5 / max_raw).ln(), (2.0 * cap / min_raw).ln());
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if total(mid.exp()) <= cfg.events {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let c = lo.exp();
        let mut events: Vec<u32> = raw.iter().map(|&a| count(c, a) as u32).collect();

        // Hand out the rounding slack one event per user (validate() ensures it fits under the cap).
        let mut left = cfg.events - events.iter().map(|&n| u64::from(n)).sum::<u64>();
        while left > 0 {
            for n in events.iter_mut().filter(|n| **n < USER_EVENT_CAP) {
                if left == 0 {
                    break;
                }
                *n += 1;
                left -= 1;
            }
        }
        let capped = events.iter().filter(|&&n| n == USER_EVENT_CAP).count() as u64;
        Self { events, capped }
    }
}

/// A per-user random stream for one purpose (`salt`), independent of how work is scheduled.
pub(crate) fn user_rng(seed: u64, salt: u64, user: u64) -> Pcg64Mcg {
    Pcg64Mcg::seed_from_u64(mix64(seed ^ salt ^ mix64(user)))
}

/// Registration time of user `user` with `events` events: uniform, but early enough to leave
/// [`SECONDS_PER_EVENT_ROOM`] seconds per event before the end of the crawl.
pub(crate) fn registered(seed: u64, user: u64, events: u32) -> u64 {
    let room = SECONDS_PER_EVENT_ROOM * u64::from(events) + 2 * SETTLE_IN;
    let latest = REGISTERED_LAST.min(LISTEN_END - room);
    let u: f64 = user_rng(seed, SALT_REGISTERED, user).random();
    REGISTERED_FIRST + (u * (latest - REGISTERED_FIRST) as f64) as u64
}

/// Writes `LFM-1b_users.txt` (with its header line); returns the bytes written.
pub(crate) fn write_users(path: &Path, cfg: &SynthConfig, plan: &Plan) -> Result<u64> {
    let country_total: u32 = COUNTRIES.iter().map(|c| c.1).sum();
    let mut out = Vec::with_capacity(plan.events.len() * 48 + 64);
    out.extend_from_slice(b"user_id\tcountry\tage\tgender\tplaycount\tregistered_unixtime\n");
    let mut buf = itoa::Buffer::new();
    for (i, &n) in plan.events.iter().enumerate() {
        let i = i as u64;
        let mut rng = user_rng(cfg.seed, SALT_DEMOGRAPHICS, i);
        let mut pick = rng.random_range(0..country_total);
        let country = COUNTRIES
            .iter()
            .find(|c| {
                let hit = pick < c.1;
                pick = pick.saturating_sub(c.1);
                hit
            })
            .map_or("US", |c| c.0);
        // A quarter of users hide their age; the rest skew young (median ~24).
        let age: i64 = if rng.random::<f64>() < 0.25 {
            -1
        } else {
            let z: f64 = rng.sample(StandardNormal);
            (15.0 + (2.2 + 0.45 * z).exp()).min(90.0) as i64
        };
        let gender = match rng.random::<f64>() {
            x if x < 0.56 => "m",
            x if x < 0.76 => "f",
            _ => "n",
        };
        out.extend_from_slice(buf.format(USER_IDS.id(cfg.seed, i)).as_bytes());
        out.push(b'\t');
        out.extend_from_slice(country.as_bytes());
        out.push(b'\t');
        out.extend_from_slice(buf.format(age).as_bytes());
        out.push(b'\t');
        out.extend_from_slice(gender.as_bytes());
        out.push(b'\t');
        out.extend_from_slice(buf.format(n).as_bytes());
        out.push(b'\t');
        out.extend_from_slice(buf.format(registered(cfg.seed, i, n)).as_bytes());
        out.push(b'\n');
    }
    std::fs::write(path, &out).at(path)?;
    Ok(out.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::super::{Scale, SynthConfig};
    use super::*;

    #[test]
    fn plan_hits_the_total_exactly_within_floor_and_cap() {
        for (users, events) in [(1, 1), (7, 7), (100, 12_345), (50, 999_000), (3, 60_000)] {
            let cfg = SynthConfig {
                users,
                events,
                ..SynthConfig::from_scale(Scale::Tiny, 9)
            };
            let plan = Plan::new(&cfg);
            let total: u64 = plan.events.iter().map(|&n| u64::from(n)).sum();
            assert_eq!(total, events, "{users} users");
            assert!(
                plan.events
                    .iter()
                    .all(|&n| (1..=USER_EVENT_CAP).contains(&n))
            );
            let floor = MIN_USER_EVENTS.min(events / u64::from(users)) as u32;
            assert!(plan.events.iter().all(|&n| n >= floor));
        }
    }

    #[test]
    fn registration_leaves_room_before_the_crawl_ends() {
        for n in [1, 100, USER_EVENT_CAP] {
            for user in 0..100 {
                let r = registered(3, user, n);
                assert!(r >= REGISTERED_FIRST && r + 2 * SETTLE_IN < LISTEN_END);
            }
        }
    }
}
