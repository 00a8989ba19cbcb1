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

/// `encore train --gpus 2` with `env` set (and ENCORE_NCCL_LIB unset unless `env` sets it), on
/// a dataset that need not exist: NCCL is looked for before anything is loaded.
fn gpus_2_with(env: &[(&str, &std::ffi::OsStr)], tmp: &Path) -> (Option<i32>, String, Duration) {
    let t = Instant::now();
    let mut c = Command::new(exe());
    c.args(["train", "no-such-dataset", "-o"])
        .arg(tmp.join("m"))
        .args(["--gpus", "2"])
        .env_remove("ENCORE_NCCL_LIB")
        .env_remove("ENCORE_NCCL_REEXEC")
        .env("TMPDIR", tmp);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        t.elapsed(),
    )
}

#[test]
fn a_missing_nccl_is_a_clear_error_naming_where_it_was_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    // Named, but holding no library.
    let (code, err, took) = gpus_2_with(&[("ENCORE_NCCL_LIB", empty.as_os_str())], dir.path());
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("ENCORE_NCCL_LIB=") && err.contains("without libnccl.so"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    // Named, and missing.
    let gone = dir.path().join("gone");
    let (code, err, _) = gpus_2_with(&[("ENCORE_NCCL_LIB", gone.as_os_str())], dir.path());
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    // Searched for: an empty LD_LIBRARY_PATH directory is among the places named (on a host
    // with NCCL installed it is found elsewhere, and the GPU is what is missing).
    let (code, err, _) = gpus_2_with(&[("LD_LIBRARY_PATH", empty.as_os_str())], dir.path());
    assert_eq!(code, Some(1), "{err}");
    if err.contains("NCCL was not found") {
        assert!(err.contains(empty.to_str().unwrap()), "{err}");
        assert!(err.contains("pip install nvidia-nccl-cu13"), "{err}");
    } else {
        assert!(err.contains("GPU"), "{err}");
    }
    assert!(!dir.path().join("m").exists());
}

#[test]
fn a_library_that_does_not_load_is_reported_after_one_restart() {
    // A file named like pip's library that is no library: encore links it as libnccl.so in a
    // private directory under TMPDIR, restarts itself with that directory on LD_LIBRARY_PATH,
    // and, since it still does not load, says so (once: no restart loop).
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("pip/nvidia/nccl/lib/libnccl.so.2");
    std::fs::create_dir_all(fake.parent().unwrap()).unwrap();
    std::fs::write(&fake, b"not a shared library").unwrap();
    let (code, err, took) = gpus_2_with(&[("ENCORE_NCCL_LIB", fake.as_os_str())], dir.path());
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("still does not load") && err.contains("libnccl.so.2"),
        "{err}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    let shims: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("encore-nccl-"))
        .collect();
    assert_eq!(shims.len(), 1, "one private directory for the library");
    let link = std::fs::read_link(shims[0].path().join("libnccl.so")).unwrap();
    assert_eq!(link, std::fs::canonicalize(&fake).unwrap());
}
