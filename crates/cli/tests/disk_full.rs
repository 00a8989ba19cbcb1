//! A full disk (issue 13): `encore prep` and `encore train` writing to a file system with no room
//! for their output fail with exit status 1 and a message naming the path (never a panic, 101,
//! or an abort, 134), and leave nothing half-written: no output directory and no temporary one.
//!
//! The full disk is a 1 MiB tmpfs, which needs root; without it the tests print a note and pass.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use encore::data::dataset::Dataset;

/// A tmpfs mounted on a directory, unmounted on drop (also when the test fails).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// A `size` tmpfs on `dir`, or `None` (with a note) where mounting is not allowed.
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Self {
                dir: dir.to_path_buf(),
            }),
            Ok(o) => {
                eprintln!(
                    "note: skipping the disk-full test, cannot mount a tmpfs (not root?): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("note: skipping the disk-full test, cannot run mount: {e}");
                None
            }
        }
    }

    /// Fills the file system with one file, then frees `leave` bytes of it again.
    fn fill_leaving(&self, leave: u64) {
        let path = self.dir.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0xA5u8; 4096];
        let mut written = 0u64;
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        f.set_len(written.saturating_sub(leave)).unwrap();
    }

    /// What the file system holds besides the filler.
    fn contents(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "filler")
            .collect();
        names.sort();
        names
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still has it open: detach it now, gone when the last user closes it.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

fn encore(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_encore"))
        .arg("--quiet")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn run_ok(args: &[&str]) {
    let out = encore(args);
    assert!(
        out.status.success(),
        "encore {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Synthetic listening logs in `root/raw` whose dataset takes well over 64 KiB.
fn raw_logs(root: &Path) -> PathBuf {
    let raw = root.join("raw");
    run_ok(&[
        "synth",
        "--scale",
        "tiny",
        "--users",
        "300",
        "--tracks",
        "3000",
        "--events",
        "60000",
        "-o",
        raw.to_str().unwrap(),
    ]);
    raw
}

/// `encore args` failed cleanly because `disk` is full: status 1, a message naming the path on
/// the full disk and the cause, and nothing left on it.
fn assert_fails_cleanly(args: &[&str], disk: &Tmpfs) {
    let out = encore(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "encore {args:?} ended with {}, not status 1:\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains(disk.dir.to_str().unwrap()) && stderr.contains("No space left on device"),
        "the message does not name the path and the cause:\n{stderr}"
    );
    // Said once, by the error message: no library beneath prints its own failure as well.
    assert_eq!(
        stderr.matches("No space left on device").count(),
        1,
        "{stderr}"
    );
    assert_eq!(disk.contents(), Vec::<String>::new(), "left behind");
}

#[test]
fn prep_onto_a_full_disk_fails_with_status_1_and_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let raw = raw_logs(root.path());
    let Some(disk) = Tmpfs::mount(&root.path().join("disk"), "1m") else {
        return;
    };
    // Room for the first files, not for the whole dataset: the write fails half-way.
    disk.fill_leaving(64 << 10);
    let ds = disk.dir.join("ds");
    assert_fails_cleanly(
        &["prep", raw.to_str().unwrap(), "-o", ds.to_str().unwrap()],
        &disk,
    );
    // With room again, the same command succeeds: nothing was left in its way.
    std::fs::remove_file(disk.dir.join("filler")).unwrap();
    run_ok(&["prep", raw.to_str().unwrap(), "-o", ds.to_str().unwrap()]);
    Dataset::load(&ds).unwrap().verify().unwrap();
}

#[test]
fn train_onto_a_full_disk_fails_with_status_1_and_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let raw = raw_logs(root.path());
    let ds = root.path().join("ds");
    run_ok(&["prep", raw.to_str().unwrap(), "-o", ds.to_str().unwrap()]);
    let Some(disk) = Tmpfs::mount(&root.path().join("disk"), "1m") else {
        return;
    };
    let model = disk.dir.join("model");
    let train = [
        "train",
        ds.to_str().unwrap(),
        "-o",
        model.to_str().unwrap(),
        "--iterations",
        "2",
        "--factors",
        "8",
        "--device",
        "cpu",
    ];
    // Completely full, and nearly full (the first factor file fits, the second does not).
    for leave in [0, 16 << 10] {
        disk.fill_leaving(leave);
        assert_fails_cleanly(&train, &disk);
    }
    std::fs::remove_file(disk.dir.join("filler")).unwrap();
    run_ok(&train);
    encore::als::model::Model::load(&model).unwrap();
}
