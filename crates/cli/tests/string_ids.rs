//! String ids end to end through the binary: an MSD-style triplets file and a ListenBrainz
//! directory go through `prep`, `train` and `recommend`/`similar`, and every answer names users
//! and tracks by their original string ids (and ListenBrainz tracks by name).

use std::path::Path;
use std::process::{Command, Output};

fn encore(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_encore"))
        .args(args)
        .output()
        .expect("running the encore binary")
}

fn ok(args: &[&str]) -> String {
    let o = encore(args);
    assert!(
        o.status.success(),
        "encore {args:?} exited {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// 40 users (40-hex ids) × 12 of 30 songs (`SO` + 16 hex), deterministic.
fn msd_text() -> String {
    let mut out = String::new();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for u in 0..40u64 {
        let user = format!("{:016x}{:016x}{:08x}", u * 7919 + 1, next(), u);
        for k in 0..12u64 {
            let song = format!("SO{:016X}", (u * 3 + k * 5) % 30);
            out += &format!("{user}\t{song}\t{}\n", 1 + next() % 9);
        }
    }
    out
}

#[test]
fn msd_string_ids_round_trip_to_recommend_and_similar() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train_triplets.txt");
    std::fs::write(&data, msd_text()).unwrap();
    let ds = dir.path().join("ds");
    let model = dir.path().join("model");
    ok(&[
        "-q",
        "prep",
        s(&data),
        "-o",
        s(&ds),
        "--min-track-users",
        "1",
    ]);
    ok(&[
        "-q",
        "train",
        s(&ds),
        "-o",
        s(&model),
        "--iterations",
        "2",
        "--factors",
        "8",
        "--device",
        "cpu",
    ]);
    let users = encore::data::ids::read(&ds.join("user_ids.npy")).unwrap();
    let items = encore::data::ids::read(&ds.join("item_ids.npy")).unwrap();
    let user = users.get(3).to_string();
    assert_eq!(user.len(), 40);
    let out = ok(&[
        "-q",
        "recommend",
        s(&model),
        "--user",
        &user,
        "-k",
        "4",
        "--json",
        "--device",
        "cpu",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["user"], serde_json::json!(user));
    let tracks = v["tracks"].as_array().unwrap();
    assert_eq!(tracks.len(), 4);
    for t in tracks {
        let id = t["id"].as_str().expect("string track ids");
        assert!(id.starts_with("SO") && items.find(id).is_some(), "{id}");
    }
    // The table names tracks by id when there are no names.
    let table = ok(&[
        "-q",
        "recommend",
        s(&model),
        "--user",
        &user,
        "-k",
        "2",
        "--device",
        "cpu",
    ]);
    assert!(table.contains(&format!("Top 2 for user {user}")), "{table}");
    assert!(table.contains("track SO"), "{table}");
    // A batch file mixes known and unknown string ids; answers keep the order.
    let batch = dir.path().join("users.txt");
    std::fs::write(&batch, format!("{user}\nnot-a-user\n{}\n", users.get(0))).unwrap();
    let out = ok(&[
        "-q",
        "recommend",
        s(&model),
        "--users-file",
        s(&batch),
        "-k",
        "2",
        "--device",
        "cpu",
    ]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["user"], serde_json::json!(user));
    assert_eq!(lines[1]["error"], "unknown user id");
    assert_eq!(lines[1]["user"], "not-a-user");
    assert_eq!(
        lines[2]["user"],
        serde_json::json!(users.get(0).to_string())
    );
    // similar takes a string track id.
    let song = items.get(0).to_string();
    let out = ok(&[
        "-q",
        "similar",
        s(&model),
        "--item",
        &song,
        "-k",
        "3",
        "--json",
        "--device",
        "cpu",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["item"], serde_json::json!(song));
    assert!(v["tracks"][0]["id"].as_str().unwrap().starts_with("SO"));
    // Unknown ids fail with a message, exit 1.
    let o = encore(&[
        "-q",
        "recommend",
        s(&model),
        "--user",
        "nobody",
        "--device",
        "cpu",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown user id nobody"));
}

#[test]
fn listenbrainz_answers_name_users_and_recordings() {
    let dir = tempfile::tempdir().unwrap();
    let lb = dir.path().join("listens");
    std::fs::create_dir_all(lb.join("2024")).unwrap();
    let mut text = String::new();
    for (u, user) in ["rob", "Zoë Smith", "iliekcomputers", "mayhem", "x y"]
        .iter()
        .enumerate()
    {
        for k in 0..8usize {
            let r = (u * 2 + k) % 10;
            text += &format!(
                "{{\"user_name\": \"{user}\", \"listened_at\": {}, \"recording_msid\": \
                 \"00000000-0000-4000-8000-{r:012}\", \"track_metadata\": {{\"artist_name\": \
                 \"Artist {r}\", \"track_name\": \"Track {r}\"}}}}\n",
                1_700_000_000 + u * 100 + k
            );
        }
    }
    std::fs::write(lb.join("2024/1.listens"), text).unwrap();
    let ds = dir.path().join("ds");
    let model = dir.path().join("model");
    ok(&[
        "-q",
        "prep",
        s(&lb),
        "-o",
        s(&ds),
        "--min-track-users",
        "1",
        "--split",
        "time",
        "--last-n",
        "2",
    ]);
    ok(&[
        "-q",
        "train",
        s(&ds),
        "-o",
        s(&model),
        "--iterations",
        "2",
        "--factors",
        "4",
        "--device",
        "cpu",
    ]);
    let out = ok(&[
        "-q",
        "recommend",
        s(&model),
        "--user",
        "Zoë Smith",
        "-k",
        "3",
        "--json",
        "--device",
        "cpu",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["user"], "Zoë Smith");
    for t in v["tracks"].as_array().unwrap() {
        let id = t["id"].as_str().unwrap();
        let r: usize = id.rsplit('-').next().unwrap().parse().unwrap();
        assert_eq!(t["name"], serde_json::json!(format!("Track {r}")), "{t}");
        assert_eq!(t["artist"], serde_json::json!(format!("Artist {r}")), "{t}");
    }
}
