//! `encore train` on several ranks: `--ranks N` writes the one-process model bit for bit; ranks
//! started by hand refuse a wrong world or other settings; a rank killed mid-training stops
//! the others within seconds, with a message naming it, and no model is written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_encore")
}

fn encore(args: &[&str]) -> Output {
    Command::new(exe()).args(args).output().unwrap()
}

fn hetrec(dir: &Path) -> PathBuf {
    let raw =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/hetrec2011-lastfm-2k");
    let ds = dir.join("ds");
    let o = encore(&[
        "prep",
        raw.to_str().unwrap(),
        "-o",
        ds.to_str().unwrap(),
        "-q",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ds
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn ranks_3_writes_the_single_process_factors() {
    let dir = tempfile::tempdir().unwrap();
    let ds = hetrec(dir.path());
    let (one, three) = (dir.path().join("one"), dir.path().join("three"));
    for (out, extra) in [(&one, vec![]), (&three, vec!["--ranks", "3"])] {
        let mut args = vec!["train", ds.to_str().unwrap(), "-o", out.to_str().unwrap()];
        args.extend(["--device", "cpu", "--iterations", "4"]);
        args.extend(extra);
        let o = encore(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for f in ["user_factors.npy", "item_factors.npy"] {
        let a = std::fs::read(one.join(f)).unwrap();
        let b = std::fs::read(three.join(f)).unwrap();
        assert!(a == b, "{f} differs between 1 and 3 ranks");
    }
    let meta = std::fs::read_to_string(three.join("model.json")).unwrap();
    assert!(meta.contains("3 ranks"), "{meta}");
}

#[test]
fn ranks_started_by_hand_with_a_wrong_world_both_fail() {
    let dir = tempfile::tempdir().unwrap();
    let ds = hetrec(dir.path());
    let rv = format!("127.0.0.1:{}", free_port());
    let out = dir.path().join("m");
    let args = |rank: &str, world: &str| {
        let mut c = Command::new(exe());
        c.args([
            "train",
            ds.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--device",
            "cpu",
        ])
        .args([
            "--rank",
            rank,
            "--world",
            world,
            "--rendezvous",
            &rv,
            "--dist-timeout",
            "20",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        c
    };
    let r0 = args("0", "2").spawn().unwrap();
    let r1 = args("1", "3").spawn().unwrap();
    let (o0, o1) = (
        r0.wait_with_output().unwrap(),
        r1.wait_with_output().unwrap(),
    );
    let (e0, e1) = (
        String::from_utf8_lossy(&o0.stderr),
        String::from_utf8_lossy(&o1.stderr),
    );
    assert_eq!(o0.status.code(), Some(1), "{e0}");
    assert_eq!(o1.status.code(), Some(1), "{e1}");
    assert!(
        e0.contains("--world 3") && e1.contains("--world 3"),
        "{e0}\n{e1}"
    );
    assert!(!out.exists(), "a model was written");
}

#[test]
fn a_rank_killed_mid_training_stops_the_others_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let ds = hetrec(dir.path());
    let rv = format!("127.0.0.1:{}", free_port());
    let out = dir.path().join("m");
    let start = |rank: &str| {
        Command::new(exe())
            .args(["train", ds.to_str().unwrap(), "-o", out.to_str().unwrap()])
            .args([
                "--device",
                "cpu",
                "--iterations",
                "100000",
                "--threads",
                "1",
            ])
            .args(["--rank", rank, "--world", "3", "--rendezvous", &rv])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let r0 = start("0");
    let r1 = start("1");
    let mut r2 = start("2");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        r2.try_wait().unwrap().is_none(),
        "rank 2 ended before it was killed"
    );
    r2.kill().unwrap();
    let _ = r2.wait();
    let killed = Instant::now();
    let (o0, o1) = (
        r0.wait_with_output().unwrap(),
        r1.wait_with_output().unwrap(),
    );
    let waited = killed.elapsed();
    let (e0, e1) = (
        String::from_utf8_lossy(&o0.stderr),
        String::from_utf8_lossy(&o1.stderr),
    );
    assert_eq!(o0.status.code(), Some(1), "{e0}");
    assert_eq!(o1.status.code(), Some(1), "{e1}");
    assert!(e0.contains("lost rank 2"), "rank 0: {e0}");
    assert!(e1.contains("lost rank 2"), "rank 1: {e1}");
    assert!(
        waited < Duration::from_secs(10),
        "the others took {waited:?} to stop"
    );
    assert!(!out.exists(), "a model was written");
}
