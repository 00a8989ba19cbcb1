//! Small shared helpers: atomic output directories, progress bars, peak memory.
//!
//! Artifacts are never left half-written: every stage writes into a hidden temporary directory
//! beside its destination and renames it into place only when everything succeeded.

use std::fs;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, IoContext, Result};

/// The kinds of directory Encore writes, each recognised by a marker file only it contains.
///
/// `--force` replaces a directory only when it holds the marker of the kind being written (or is
/// empty): `train ds -o ds --force` must not delete a dataset, and `prep x -o ~ --force` must not
/// delete a home directory (issue 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// A `prep` dataset (`manifest.json`).
    Dataset,
    /// A trained model (`model.json`).
    Model,
    /// `synth` output (`encore-synth.json`).
    Synth,
    /// `tune` output (`tune.json`).
    Tune,
}

impl OutputKind {
    const ALL: [OutputKind; 4] = [
        OutputKind::Dataset,
        OutputKind::Model,
        OutputKind::Synth,
        OutputKind::Tune,
    ];

    /// The file whose presence marks a directory as this kind of output.
    pub const fn marker(self) -> &'static str {
        match self {
            OutputKind::Dataset => "manifest.json",
            OutputKind::Model => "model.json",
            OutputKind::Synth => "encore-synth.json",
            OutputKind::Tune => "tune.json",
        }
    }

    /// What the kind is called in messages.
    pub const fn name(self) -> &'static str {
        match self {
            OutputKind::Dataset => "dataset",
            OutputKind::Model => "model",
            OutputKind::Synth => "synthetic dataset",
            OutputKind::Tune => "tuning result",
        }
    }
}

/// A directory being written; becomes `dest` on [`AtomicDir::commit`], is removed on drop otherwise.
#[derive(Debug)]
pub struct AtomicDir {
    tmp: PathBuf,
    dest: PathBuf,
    force: bool,
    kind: OutputKind,
    inputs: Vec<PathBuf>,
    committed: bool,
}

/// `p` made absolute with symbolic links resolved as far as it exists, so that two spellings of
/// one place compare equal.
fn resolved(p: &Path) -> PathBuf {
    if let Ok(c) = fs::canonicalize(p) {
        return c;
    }
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => resolved(parent).join(name),
        _ => abs,
    }
}

impl AtomicDir {
    /// Prepares a temporary directory beside `dest` for an output of `kind`, made from `inputs`.
    ///
    /// Fails, before anything is written, when `dest` exists and `force` is false, and — even
    /// with `force` — when replacing `dest` would remove an input or something that is not an
    /// Encore output of this kind (see [`AtomicDir::check`]).
    pub fn create(dest: &Path, force: bool, kind: OutputKind, inputs: &[&Path]) -> Result<Self> {
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // Before the check: the sweep may put back an old output that a killed run had moved
        // aside, and the check must see it.
        if let Some(name) = dest.file_name() {
            remove_stale_temps(&parent, &name.to_string_lossy());
        }
        Self::check(dest, force, kind, inputs)?;
        let name = dest
            .file_name()
            .ok_or_else(|| Error::Config(format!("{} is not a directory name", dest.display())))?
            .to_string_lossy()
            .into_owned();
        fs::create_dir_all(&parent).at(&parent)?;
        let tmp = parent.join(temp_name(&name, std::process::id()));
        if fs::symlink_metadata(&tmp).is_ok() {
            remove_path(&tmp).at(&tmp)?;
        }
        fs::create_dir(&tmp).at(&tmp)?;
        Ok(Self {
            tmp,
            dest: dest.to_path_buf(),
            force,
            kind,
            inputs: inputs.iter().map(|p| p.to_path_buf()).collect(),
            committed: false,
        })
    }

    /// Whether an output of `kind` may be written to `dest` (replacing it only when `force`):
    ///
    /// - `dest` must not be one of `inputs` nor contain one (being *inside* an input directory is
    ///   fine: only `dest` is ever replaced);
    /// - an existing `dest` needs `force`, and must then be an empty directory or one holding
    ///   `kind`'s marker file.
    pub fn check(dest: &Path, force: bool, kind: OutputKind, inputs: &[&Path]) -> Result<()> {
        let refuse = |reason: String| {
            Err(Error::WontReplace {
                path: dest.to_path_buf(),
                reason,
            })
        };
        let d = resolved(dest);
        for input in inputs {
            let i = resolved(input);
            if i == d {
                return refuse(format!("it is an input of this run ({})", input.display()));
            }
            if i.starts_with(&d) {
                return refuse(format!(
                    "it contains {}, an input of this run",
                    input.display()
                ));
            }
        }
        let Ok(meta) = fs::metadata(dest) else {
            // Nothing there (or a dangling link, which the rename replaces): nothing is removed.
            return Ok(());
        };
        if !force {
            return Err(Error::OutputExists {
                path: dest.to_path_buf(),
            });
        }
        if !meta.is_dir() {
            return refuse(format!(
                "it is a file, not an Encore {} directory",
                kind.name()
            ));
        }
        if dest.join(kind.marker()).is_file() {
            return Ok(());
        }
        if let Some(other) = OutputKind::ALL
            .into_iter()
            .find(|k| dest.join(k.marker()).is_file())
        {
            return refuse(format!(
                "it holds a {} ({}), not a {}",
                other.name(),
                other.marker(),
                kind.name()
            ));
        }
        let empty = fs::read_dir(dest).at(dest)?.next().is_none();
        if empty {
            return Ok(());
        }
        refuse(format!(
            "it is not an Encore {} directory (it has no {}), and --force only replaces those; \
             remove it yourself or choose another output",
            kind.name(),
            kind.marker()
        ))
    }

    /// The temporary directory to write into.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Renames the temporary directory to its destination, replacing an old one when forced
    /// (after checking again that the old one may be replaced: it may have changed meanwhile).
    pub fn commit(mut self) -> Result<PathBuf> {
        let inputs: Vec<&Path> = self.inputs.iter().map(PathBuf::as_path).collect();
        Self::check(&self.dest, self.force, self.kind, &inputs)?;
        if fs::symlink_metadata(&self.dest).is_ok() {
            if exchange(&self.tmp, &self.dest).at(&self.dest)? {
                // The old output is now at the temporary path; `committed` stays false until
                // the end, so a failure here still leaves it to `drop` (and a kill, to the next
                // run's stale-temp sweep).
                let _ = remove_path(&self.tmp);
            } else {
                // No atomic exchange here: move the old output aside first so that a failure
                // never leaves neither (a kill between the two renames leaves the old output
                // at `<tmp>.old`, which the next run's sweep puts back).
                let old = self.tmp.with_file_name(format!(
                    "{}.old",
                    self.tmp.file_name().unwrap_or_default().to_string_lossy()
                ));
                fs::rename(&self.dest, &old).at(&self.dest)?;
                if let Err(e) = fs::rename(&self.tmp, &self.dest) {
                    let _ = fs::rename(&old, &self.dest);
                    return Err(e).at(&self.dest);
                }
                let _ = remove_path(&old);
            }
        } else {
            fs::rename(&self.tmp, &self.dest).at(&self.dest)?;
        }
        self.committed = true;
        Ok(self.dest.clone())
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// What every temporary name for `dest_name` starts with.
fn temp_prefix(dest_name: &str) -> String {
    format!(".{dest_name}.tmp-")
}

/// The temporary directory process `pid` writes `dest_name` into: hidden, beside it.
fn temp_name(dest_name: &str, pid: u32) -> String {
    format!("{}{pid}", temp_prefix(dest_name))
}

/// The process id in `entry` and whether it is an old output moved aside, when `entry` is one
/// of the names [`AtomicDir`] gives the temporary directories of `dest_name` (`.NAME.tmp-PID`,
/// or `.NAME.tmp-PID.old` for an old output moved aside).
fn temp_owner(entry: &str, dest_name: &str) -> Option<(u32, bool)> {
    let rest = entry.strip_prefix(&temp_prefix(dest_name))?;
    let (pid, old) = match rest.strip_suffix(".old") {
        Some(pid) => (pid, true),
        None => (rest, false),
    };
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((pid.parse().ok()?, old))
}

/// Whether no process `pid` exists on this machine. Only a definite "no such process" counts:
/// a process of another user (`EPERM`), or any doubt, counts as alive.
fn process_is_gone(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        if pid <= 0 {
            return false;
        }
        // SAFETY: signal 0 sends nothing; it only asks whether `pid` exists.
        let r = unsafe { libc::kill(pid, 0) };
        r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        false
    }
}

/// Removes what killed runs left beside `dest_name` in `parent`: the temporary directories of
/// processes that no longer exist (issue 13: a run killed with SIGKILL never gets to its
/// `drop`, and each run has its own temporary name, so without this they would pile up).
///
/// Only real directories with [`AtomicDir`]'s own names are touched, never a link or a file,
/// and never one whose process is still running (another run writing the same destination).
/// An old output moved aside by a run killed before it renamed the new one into place is put
/// back when the destination is missing, not removed. Best effort: what cannot be removed is
/// left for the next run.
fn remove_stale_temps(parent: &Path, dest_name: &str) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    let me = std::process::id();
    let dest = parent.join(dest_name);
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some((pid, old)) = file_name.to_str().and_then(|n| temp_owner(n, dest_name)) else {
            continue;
        };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if pid == me || !is_dir || !process_is_gone(pid) {
            continue;
        }
        if old && fs::symlink_metadata(&dest).is_err() && fs::rename(entry.path(), &dest).is_ok() {
            continue;
        }
        let _ = fs::remove_dir_all(entry.path());
    }
}

/// Atomically swaps `a` and `b` (Linux `renameat2(RENAME_EXCHANGE)`): after it, `b` is what
/// `a` was and `a` what `b` was, with no moment where `b` is missing. `Ok(false)` where the
/// system or file system cannot exchange; nothing was changed then.
fn exchange(a: &Path, b: &Path) -> std::io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let to_c = |p: &Path| {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        };
        let (ca, cb) = (to_c(a)?, to_c(b)?);
        // SAFETY: both paths are NUL-terminated strings that outlive the call; AT_FDCWD makes
        // them relative to the working directory, as `fs::rename` does.
        let r = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if r == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            // An old kernel, or a file system without exchange (some network ones).
            Some(libc::ENOSYS) | Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => Ok(false),
            _ => Err(e),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b);
        Ok(false)
    }
}

fn remove_path(p: &Path) -> std::io::Result<()> {
    // `symlink_metadata`: an old output that is a link is removed as a link, never followed.
    if fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    }
}

/// How many characters of user input a message quotes.
pub const QUOTE_CHARS: usize = 80;

/// User input for a message, quoted like `{:?}`; longer input is cut to its first
/// [`QUOTE_CHARS`] characters and followed by its size, so that a 20 MB bad field is not echoed
/// whole into an error or `manifest.json` (issue 13). Every message that quotes input uses this.
pub fn quote(bytes: &[u8]) -> String {
    // A character is at most 4 bytes, so this prefix holds at least `QUOTE_CHARS` of them.
    let head = &bytes[..bytes.len().min(QUOTE_CHARS * 4)];
    let text = String::from_utf8_lossy(head);
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], bytes.len()),
        None if head.len() < bytes.len() => format!("{text:?}… ({} bytes)", bytes.len()),
        None => format!("{text:?}"),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader never sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    fs::write(&tmp, bytes).at(&tmp)?;
    fs::rename(&tmp, path).at(path)
}

/// A progress bar over `total` units, hidden when `quiet` or when stderr is not a terminal.
pub fn progress_bar(total: u64, message: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{msg:>10} [{elapsed_precise}] {wide_bar} {percent:>3}% {binary_bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(message.to_string());
    pb
}

/// Peak resident set size of this process in bytes (Linux `VmHWM`); `None` elsewhere.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kib("VmHWM:").map(|k| k * 1024)
}

/// Current resident set size of this process in bytes (Linux `VmRSS`); `None` elsewhere.
pub fn current_rss_bytes() -> Option<u64> {
    proc_status_kib("VmRSS:").map(|k| k * 1024)
}

fn proc_status_kib(key: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// A number for a message: `2`, `0.1`, but `1e30` rather than 31 digits.
pub fn num(v: f32) -> String {
    if v != 0.0 && v.is_finite() && !(1e-4..1e7).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// Formats a byte count for humans (`1.50 GiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

/// A 64-bit mix (SplitMix64 finalizer) used to derive independent per-entity seeds, so results do
/// not depend on how work is split across threads.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Parses a byte count with an optional K/M/G/T suffix (powers of 1024).
pub fn parse_bytes(s: &str) -> std::result::Result<usize, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("unknown size suffix in {s:?} (use K, M, G or T)")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a size: {s:?} (e.g. 512M, 2G)"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("size must be positive: {s:?}"));
    }
    Ok((v * mult as f64) as usize)
}

#[cfg(test)]
mod quote_tests {
    use super::quote;

    #[test]
    fn short_input_is_quoted_whole() {
        assert_eq!(quote(b"abc"), "\"abc\"");
        assert_eq!(quote(b"a\tb"), "\"a\\tb\"");
    }

    #[test]
    fn long_input_is_cut_to_80_characters_with_its_size() {
        let q = quote(&vec![b'x'; 20 << 20]);
        assert_eq!(q, format!("\"{}\"… (20971520 bytes)", "x".repeat(80)));
        // Multi-byte characters are never split.
        let q = quote("é".repeat(100).as_bytes());
        assert_eq!(q, format!("\"{}\"… (200 bytes)", "é".repeat(80)));
    }
}

#[cfg(test)]
mod parse_bytes_tests {
    use super::parse_bytes;

    #[test]
    fn sizes_with_suffixes() {
        assert_eq!(parse_bytes("512"), Ok(512));
        assert_eq!(parse_bytes("2K"), Ok(2048));
        assert_eq!(parse_bytes("1.5g"), Ok(3 << 29));
        assert_eq!(parse_bytes(" 3M "), Ok(3 << 20));
        assert!(parse_bytes("12Q").is_err());
        assert!(parse_bytes("-1G").is_err());
        assert!(parse_bytes("G").is_err());
    }
}

#[cfg(test)]
mod atomic_dir_tests {
    use super::{AtomicDir, OutputKind, temp_name, temp_owner};
    use std::fs;

    /// The id of a process that has ended (and been reaped), so no process has it for now.
    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    }

    #[test]
    fn temporary_names_are_recognised_only_for_their_destination() {
        assert_eq!(temp_owner(&temp_name("ds", 42), "ds"), Some((42, false)));
        assert_eq!(temp_owner(".ds.tmp-42.old", "ds"), Some((42, true)));
        assert_eq!(temp_owner(".ds.tmp-42", "d"), None);
        assert_eq!(temp_owner(".ds.tmp-", "ds"), None);
        assert_eq!(temp_owner(".ds.tmp-4x2", "ds"), None);
        assert_eq!(temp_owner("ds", "ds"), None);
    }

    #[test]
    fn a_new_run_sweeps_temporaries_of_dead_runs_but_not_of_live_ones() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(temp_name("out", dead_pid()));
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join("model.json"), "{}").unwrap();
        // Process 1 always runs: its temporary directory is another run's work in progress.
        let live = dir.path().join(temp_name("out", 1));
        fs::create_dir(&live).unwrap();
        // Another destination's, and a file with a temporary name, are not ours to remove.
        let other = dir.path().join(temp_name("other", dead_pid()));
        fs::create_dir(&other).unwrap();
        let file = dir
            .path()
            .join(format!("{}.old", temp_name("out", dead_pid())));
        fs::write(&file, "x").unwrap();

        let out = dir.path().join("out");
        let a = AtomicDir::create(&out, false, OutputKind::Model, &[]).unwrap();
        assert!(!dead.exists() && live.is_dir() && other.is_dir() && file.is_file());
        fs::write(a.path().join("model.json"), "{}").unwrap();
        a.commit().unwrap();
        assert!(out.join("model.json").is_file());
    }

    #[test]
    fn an_old_output_moved_aside_by_a_killed_run_is_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir
            .path()
            .join(format!("{}.old", temp_name("out", dead_pid())));
        fs::create_dir(&old).unwrap();
        fs::write(old.join("model.json"), "old").unwrap();
        let out = dir.path().join("out");
        // Put back before the check, so without --force the old model is not overwritten.
        let e = AtomicDir::create(&out, false, OutputKind::Model, &[]).unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
        assert_eq!(fs::read_to_string(out.join("model.json")).unwrap(), "old");
        assert!(!old.exists());
    }

    #[test]
    fn a_forced_commit_replaces_the_old_output_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        for content in ["first", "second"] {
            let a = AtomicDir::create(&out, true, OutputKind::Model, &[]).unwrap();
            fs::write(a.path().join("model.json"), content).unwrap();
            a.commit().unwrap();
            assert_eq!(fs::read_to_string(out.join("model.json")).unwrap(), content);
            let names: Vec<_> = fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["out"]);
        }
    }

    #[test]
    fn an_uncommitted_directory_is_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let a = AtomicDir::create(&dir.path().join("out"), false, OutputKind::Model, &[]).unwrap();
        let tmp = a.path().to_path_buf();
        fs::write(tmp.join("half"), "x").unwrap();
        drop(a);
        assert!(!tmp.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
