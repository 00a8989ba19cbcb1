//! `encore::synth` through its public API: the files it writes must look like LFM-1b (formats,
//! ordering, sparse ids, consistent catalog), be reproducible, have LFM-1b-like statistics and
//! carry a taste structure that a model can learn from the files alone.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use encore::Error;
use encore::synth::{
    ALBUMS_FILE, ARTISTS_FILE, LES_FILE, META_FILE, Scale, SynthConfig, SynthReport, TRACKS_FILE,
    USER_EVENT_CAP, USERS_FILE, generate,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

const USERS_HEADER: &str = "user_id\tcountry\tage\tgender\tplaycount\tregistered_unixtime";

fn config(users: u32, tracks: u32, artists: u32, genres: u32, events: u64) -> SynthConfig {
    SynthConfig {
        users,
        tracks,
        artists,
        genres,
        events,
        ..SynthConfig::from_scale(Scale::Tiny, 11)
    }
}

/// A small dataset with some heavy users; quick in debug builds.
fn small_config() -> SynthConfig {
    config(300, 6_000, 600, 10, 150_000)
}

fn generate_into(cfg: &SynthConfig) -> (tempfile::TempDir, PathBuf, SynthReport) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("synth");
    let report = generate(cfg, &out, false, true).expect("generate");
    (tmp, out, report)
}

/// Rows of a tab-separated file, checking UTF-8, LF endings and the column count on the way.
fn rows(path: &Path, columns: usize) -> Vec<Vec<String>> {
    let text = fs::read_to_string(path).expect("file is UTF-8");
    assert!(!text.contains('\r'), "{}: CR found", path.display());
    assert!(text.ends_with('\n'), "{}: no final LF", path.display());
    text.lines()
        .map(|l| {
            let f: Vec<String> = l.split('\t').map(str::to_owned).collect();
            assert_eq!(f.len(), columns, "{}: bad line {l:?}", path.display());
            f
        })
        .collect()
}

fn num(s: &str) -> u64 {
    s.parse()
        .unwrap_or_else(|_| panic!("not a non-negative integer: {s:?}"))
}

/// One parsed listening event.
#[derive(Debug, Clone, Copy)]
struct Le {
    user: u64,
    artist: u64,
    album: u64,
    track: u64,
    ts: u64,
}

fn events(dir: &Path) -> Vec<Le> {
    rows(&dir.join(LES_FILE), 5)
        .iter()
        .map(|r| Le {
            user: num(&r[0]),
            artist: num(&r[1]),
            album: num(&r[2]),
            track: num(&r[3]),
            ts: num(&r[4]),
        })
        .collect()
}

fn assert_sparse_ascending(ids: &[u64], what: &str) {
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "{what}: ids not ascending"
    );
    let span = ids[ids.len() - 1] - ids[0] + 1;
    assert!(
        span > ids.len() as u64 + ids.len() as u64 / 4,
        "{what}: ids look contiguous"
    );
}

#[test]
fn files_have_the_lfm1b_formats_and_agree_with_each_other() {
    let (_tmp, dir, report) = generate_into(&small_config());

    let artists = rows(&dir.join(ARTISTS_FILE), 2);
    let albums = rows(&dir.join(ALBUMS_FILE), 3);
    let tracks = rows(&dir.join(TRACKS_FILE), 3);
    let users_text = fs::read_to_string(dir.join(USERS_FILE)).expect("users file");
    assert_eq!(users_text.lines().next(), Some(USERS_HEADER));
    let users = rows(&dir.join(USERS_FILE), 6);
    let users = &users[1..];
    assert!(dir.join(META_FILE).is_file());
    assert_eq!(artists.len() as u64, report.artists);
    assert_eq!(albums.len() as u64, report.albums);
    assert_eq!(tracks.len() as u64, report.tracks);
    assert_eq!(users.len() as u64, report.users);

    for name in artists
        .iter()
        .map(|r| &r[1])
        .chain(tracks.iter().map(|r| &r[1]))
    {
        assert!(!name.trim().is_empty(), "empty name");
    }
    let artist_ids: Vec<u64> = artists.iter().map(|r| num(&r[0])).collect();
    let album_ids: Vec<u64> = albums.iter().map(|r| num(&r[0])).collect();
    let track_ids: Vec<u64> = tracks.iter().map(|r| num(&r[0])).collect();
    let user_ids: Vec<u64> = users.iter().map(|r| num(&r[0])).collect();
    assert_sparse_ascending(&artist_ids, "artists");
    assert_sparse_ascending(&album_ids, "albums");
    assert_sparse_ascending(&track_ids, "tracks");
    assert_sparse_ascending(&user_ids, "users");

    let known_artists: HashSet<u64> = artist_ids.iter().copied().collect();
    let track_artist: HashMap<u64, u64> = tracks.iter().map(|r| (num(&r[0]), num(&r[2]))).collect();
    let album_artist: HashMap<u64, u64> = albums.iter().map(|r| (num(&r[0]), num(&r[2]))).collect();
    assert!(track_artist.values().all(|a| known_artists.contains(a)));
    assert!(album_artist.values().all(|a| known_artists.contains(a)));

    for u in users {
        assert_eq!(u[1].len(), 2, "country {:?}", u[1]);
        assert!(u[1].chars().all(|c| c.is_ascii_uppercase()));
        let age: i64 = u[2].parse().expect("age");
        assert!(age == -1 || (10..=100).contains(&age), "age {age}");
        assert!(
            ["m", "f", "n"].contains(&u[3].as_str()),
            "gender {:?}",
            u[3]
        );
    }
    let registered: HashMap<u64, u64> = users.iter().map(|u| (num(&u[0]), num(&u[5]))).collect();

    let les = events(&dir);
    assert_eq!(les.len() as u64, report.events);
    let mut users_seen: Vec<u64> = Vec::new();
    for (i, e) in les.iter().enumerate() {
        assert_eq!(
            track_artist.get(&e.track),
            Some(&e.artist),
            "LE {i}: track's artist"
        );
        assert_eq!(
            album_artist.get(&e.album),
            Some(&e.artist),
            "LE {i}: album's artist"
        );
        assert!(
            registered[&e.user] <= e.ts,
            "LE {i}: listen before registration"
        );
        assert!(
            (1_104_537_600..1_409_443_200).contains(&e.ts),
            "LE {i}: timestamp"
        );
        if i > 0 && les[i - 1].user == e.user {
            assert!(les[i - 1].ts <= e.ts, "LE {i}: timestamps go back");
        } else {
            users_seen.push(e.user);
        }
    }
    // Grouped by user, users in ascending id order, and every user has events.
    assert_eq!(users_seen, user_ids);
}

#[test]
fn playcounts_match_the_events_and_distinct_pairs_are_counted() {
    let cfg = small_config();
    let (_tmp, dir, report) = generate_into(&cfg);
    let les = events(&dir);
    let mut per_user: HashMap<u64, u64> = HashMap::new();
    let pairs: HashSet<(u64, u64)> = les.iter().map(|e| (e.user, e.track)).collect();
    for e in &les {
        *per_user.entry(e.user).or_default() += 1;
    }
    let users = rows(&dir.join(USERS_FILE), 6);
    let mut total = 0;
    for u in &users[1..] {
        let playcount = num(&u[4]);
        assert_eq!(per_user[&num(&u[0])], playcount);
        assert!(playcount >= 5 && playcount <= u64::from(USER_EVENT_CAP));
        total += playcount;
    }
    assert_eq!(total, report.events);
    assert_eq!(report.events, cfg.events);
    assert_eq!(pairs.len() as u64, report.distinct_pairs);
    let per_pair = report.events as f64 / report.distinct_pairs as f64;
    assert!((3.5..8.0).contains(&per_pair), "events per pair {per_pair}");
}

#[test]
fn heavy_users_are_capped_at_exactly_20000_events() {
    // 15,000 events per user on average: the lognormal tail must hit the cap.
    let cfg = config(40, 3_000, 300, 6, 600_000);
    let (_tmp, dir, report) = generate_into(&cfg);
    let users = rows(&dir.join(USERS_FILE), 6);
    let counts: Vec<u64> = users[1..].iter().map(|u| num(&u[4])).collect();
    let capped = counts
        .iter()
        .filter(|&&c| c == u64::from(USER_EVENT_CAP))
        .count();
    assert!(counts.iter().all(|&c| c <= u64::from(USER_EVENT_CAP)));
    assert!(capped > 0);
    assert_eq!(capped as u64, report.capped_users);
    assert_eq!(counts.iter().sum::<u64>(), 600_000);
}

fn data_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    [
        LES_FILE,
        USERS_FILE,
        ARTISTS_FILE,
        ALBUMS_FILE,
        TRACKS_FILE,
        META_FILE,
    ]
    .iter()
    .map(|f| (f.to_string(), fs::read(dir.join(f)).expect("read output")))
    .collect()
}

fn generate_with_threads(cfg: &SynthConfig, threads: usize) -> Vec<(String, Vec<u8>)> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("synth");
    pool.install(|| generate(cfg, &out, false, true))
        .expect("generate");
    data_files(&out)
}

#[test]
fn same_seed_gives_identical_bytes_whatever_the_thread_count() {
    let cfg = config(200, 4_000, 400, 8, 120_000);
    let one = generate_with_threads(&cfg, 1);
    let four = generate_with_threads(&cfg, 4);
    for ((name, a), (_, b)) in one.iter().zip(&four) {
        assert!(a == b, "{name} differs between 1 and 4 threads");
    }
    let other = generate_with_threads(&SynthConfig { seed: 12, ..cfg }, 4);
    for ((name, a), (_, b)) in one.iter().zip(&other).take(5) {
        assert!(a != b, "{name} is the same for different seeds");
    }
}

#[test]
fn activity_and_popularity_are_heavy_tailed() {
    let cfg = config(500, 20_000, 2_000, 16, 250_000);
    let (_tmp, dir, _) = generate_into(&cfg);
    let les = events(&dir);

    let mut per_track: HashMap<u64, u64> = HashMap::new();
    let mut per_user: HashMap<u64, u64> = HashMap::new();
    for e in &les {
        *per_track.entry(e.track).or_default() += 1;
        *per_user.entry(e.user).or_default() += 1;
    }
    let mut track_counts: Vec<u64> = per_track.into_values().collect();
    track_counts.sort_unstable_by(|a, b| b.cmp(a));
    let top1: u64 = track_counts[..cfg.tracks as usize / 100].iter().sum();
    let share = top1 as f64 / les.len() as f64;
    eprintln!("top 1% of tracks: {share:.3} of listens");
    assert!(
        share > 0.10,
        "top 1% of tracks get only {share:.3} of listens"
    );

    let mut user_counts: Vec<u64> = per_user.into_values().collect();
    user_counts.sort_unstable();
    let median = user_counts[user_counts.len() / 2] as f64;
    let mean = les.len() as f64 / user_counts.len() as f64;
    eprintln!("user activity: median {median}, mean {mean}");
    assert!(median < 0.8 * mean, "median {median} vs mean {mean}");
    assert!(*user_counts.last().unwrap_or(&0) as f64 > 5.0 * mean);
}

/// Precision@10 of a recommender on held-out tracks, averaged over users.
fn precision_at_10(
    train: &HashMap<u64, Vec<u64>>,
    test: &HashMap<u64, HashSet<u64>>,
    mut recommend: impl FnMut(u64, &HashSet<u64>) -> Vec<u64>,
) -> f64 {
    let mut total = 0.0;
    for (user, held_out) in test {
        let seen: HashSet<u64> = train[user].iter().copied().collect();
        let top = recommend(*user, &seen);
        let hits = top.iter().take(10).filter(|t| held_out.contains(t)).count();
        total += hits as f64 / 10.0;
    }
    total / test.len() as f64
}

#[test]
fn planted_taste_beats_popularity_which_beats_random() {
    let cfg = config(400, 10_000, 1_000, 12, 200_000);
    let (_tmp, dir, _) = generate_into(&cfg);
    let les = events(&dir);
    let track_artist: HashMap<u64, u64> = rows(&dir.join(TRACKS_FILE), 3)
        .iter()
        .map(|r| (num(&r[0]), num(&r[2])))
        .collect();

    // Split each user's distinct tracks in half at random.
    let mut distinct: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut seen_pairs = HashSet::new();
    for e in &les {
        if seen_pairs.insert((e.user, e.track)) {
            distinct.entry(e.user).or_default().push(e.track);
        }
    }
    let mut rng = Pcg64Mcg::seed_from_u64(5);
    let mut train: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut test: HashMap<u64, HashSet<u64>> = HashMap::new();
    let mut users: Vec<u64> = distinct.keys().copied().collect();
    users.sort_unstable();
    for u in users {
        let mut tracks = distinct[&u].clone();
        if tracks.len() < 4 {
            continue;
        }
        tracks.shuffle(&mut rng);
        let half = tracks.len() / 2;
        test.insert(u, tracks[half..].iter().copied().collect());
        train.insert(u, tracks[..half].to_vec());
    }

    // Popularity: number of training users per track. Ranked list, ties broken by id.
    let mut popularity: HashMap<u64, u64> = HashMap::new();
    for tracks in train.values() {
        for t in tracks {
            *popularity.entry(*t).or_default() += 1;
        }
    }
    let mut by_popularity: Vec<u64> = popularity.keys().copied().collect();
    by_popularity.sort_unstable_by_key(|t| (std::cmp::Reverse(popularity[t]), *t));
    let popular = |seen: &HashSet<u64>| -> Vec<u64> {
        by_popularity
            .iter()
            .filter(|t| !seen.contains(t))
            .take(10)
            .copied()
            .collect()
    };
    let mut tracks_of_artist: HashMap<u64, Vec<u64>> = HashMap::new();
    for t in &by_popularity {
        tracks_of_artist
            .entry(track_artist[t])
            .or_default()
            .push(*t);
    }

    let pop = precision_at_10(&train, &test, |_, seen| popular(seen));

    // Artist affinity: the user's training tracks per artist, ties broken by popularity.
    let taste = precision_at_10(&train, &test, |user, seen| {
        let mut affinity: HashMap<u64, u64> = HashMap::new();
        for t in &train[&user] {
            *affinity.entry(track_artist[t]).or_default() += 1;
        }
        let mut candidates: Vec<(u64, u64, u64)> = Vec::new();
        for (artist, n) in &affinity {
            for t in tracks_of_artist.get(artist).into_iter().flatten() {
                if !seen.contains(t) {
                    candidates.push((*n, popularity[t], *t));
                }
            }
        }
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        let mut top: Vec<u64> = candidates.iter().take(10).map(|c| c.2).collect();
        for t in popular(seen) {
            if top.len() == 10 {
                break;
            }
            if !top.contains(&t) {
                top.push(t);
            }
        }
        top
    });

    let random = precision_at_10(&train, &test, |_, seen| {
        let mut top = Vec::new();
        while top.len() < 10 {
            let t = by_popularity[rng.random_range(0..by_popularity.len())];
            if !seen.contains(&t) && !top.contains(&t) {
                top.push(t);
            }
        }
        top
    });

    eprintln!("precision@10: artist affinity {taste:.4}, popularity {pop:.4}, random {random:.4}");
    assert!(
        taste > 1.5 * pop,
        "artist affinity {taste:.4} vs popularity {pop:.4}"
    );
    assert!(
        pop > 5.0 * random,
        "popularity {pop:.4} vs random {random:.4}"
    );
}

#[test]
fn validate_rejects_nonsense_configs() {
    let good = small_config();
    good.validate().expect("valid");
    let bad = [
        SynthConfig {
            users: 0,
            ..good.clone()
        },
        SynthConfig {
            artists: 0,
            ..good.clone()
        },
        SynthConfig {
            artists: good.tracks + 1,
            ..good.clone()
        },
        SynthConfig {
            genres: 0,
            ..good.clone()
        },
        SynthConfig {
            genres: encore::synth::MAX_GENRES + 1,
            ..good.clone()
        },
        SynthConfig {
            tracks: 0,
            ..good.clone()
        },
        SynthConfig {
            events: u64::from(good.users) - 1,
            ..good.clone()
        },
        SynthConfig {
            events: u64::from(good.users) * u64::from(USER_EVENT_CAP) + 1,
            ..good.clone()
        },
        SynthConfig {
            activity_sigma: -1.0,
            ..good.clone()
        },
        SynthConfig {
            activity_sigma: f64::NAN,
            ..good.clone()
        },
        SynthConfig {
            repeat_target: 0.5,
            ..good.clone()
        },
        SynthConfig {
            global_share: 0.7,
            favourite_share: 0.5,
            ..good.clone()
        },
    ];
    for cfg in bad {
        match cfg.validate() {
            Err(Error::Config(msg)) => assert!(!msg.is_empty()),
            other => panic!("{cfg:?} was not rejected: {other:?}"),
        }
    }
}

fn leftovers(parent: &Path) -> Vec<String> {
    fs::read_dir(parent)
        .expect("list parent")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect()
}

#[test]
fn refuses_an_existing_dir_unless_forced_and_leaves_no_temp_dir() {
    let cfg = config(20, 500, 50, 4, 2_000);
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("synth");
    fs::create_dir(&out).expect("mkdir");
    fs::write(out.join("keep.txt"), "old").expect("marker");

    let err = generate(&cfg, &out, false, true).expect_err("must refuse");
    assert!(matches!(err, Error::OutputExists { .. }), "{err:?}");
    assert!(out.join("keep.txt").is_file(), "existing output touched");
    assert!(leftovers(tmp.path()).is_empty());

    let bad = SynthConfig {
        users: 0,
        ..cfg.clone()
    };
    let other = tmp.path().join("other");
    assert!(generate(&bad, &other, false, true).is_err());
    assert!(!other.exists());

    // The parent is a file: fails before anything is written.
    let blocker = tmp.path().join("file");
    fs::write(&blocker, "x").expect("file");
    assert!(generate(&cfg, &blocker.join("synth"), true, true).is_err());
    assert!(leftovers(tmp.path()).is_empty());

    // Even forced, a directory that is not synth output is never replaced.
    let err = generate(&cfg, &out, true, true).expect_err("not synth output");
    assert!(matches!(err, Error::WontReplace { .. }), "{err:?}");
    assert!(
        out.join("keep.txt").is_file(),
        "a foreign directory was replaced"
    );
    assert!(leftovers(tmp.path()).is_empty());

    fs::remove_file(out.join("keep.txt")).expect("empty it");
    generate(&cfg, &out, true, true).expect("an empty directory is replaced");
    fs::write(out.join("stale.txt"), "old").expect("marker");
    let report = generate(&cfg, &out, true, true).expect("forced over synth output");
    assert!(!out.join("stale.txt").exists(), "old output kept");
    assert!(out.join(LES_FILE).is_file());
    assert_eq!(report.events, 2_000);
    assert!(leftovers(tmp.path()).is_empty());
}

#[test]
fn a_small_tracks_count_on_a_preset_is_valid_with_one_genre_per_artist() {
    // `encore synth --tracks 10` keeps the preset's 16 genres but gets 1 artist: this used to
    // fail with "genres must be 1..=1, got 16", about an option the user cannot set.
    let mut cfg = SynthConfig::from_scale(Scale::Tiny, 3);
    cfg.users = 20;
    cfg.events = 500;
    cfg.tracks = 10;
    cfg.artists = 1;
    assert!(cfg.genres > cfg.artists);
    cfg.validate().expect("valid");
    let tmp = tempfile::tempdir().expect("temp dir");
    let report = generate(&cfg, &tmp.path().join("s"), false, true).expect("generates");
    assert_eq!((report.tracks, report.artists, report.events), (10, 1, 500));
    let e = SynthConfig { tracks: 0, ..cfg }
        .validate()
        .expect_err("no tracks");
    assert!(e.to_string().contains("tracks must be 1..="), "{e}");
}
