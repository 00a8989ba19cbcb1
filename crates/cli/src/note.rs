//! Notes to the user on stderr: what the command decided for them (a device fallback, a capped
//! flag, a skipped benchmark run). `-q` silences them; a note repeated by several stages of one
//! command (the demo trains, evaluates and recommends, each resolving `--device auto`) is
//! printed once per process (issue 13).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

static QUIET: AtomicBool = AtomicBool::new(false);
static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Silences every later note (`-q`).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Prints `note: {msg}` to stderr unless quiet or already printed by this process.
pub fn note(msg: &str) {
    if QUIET.load(Ordering::Relaxed) {
        return;
    }
    // A panic while holding the set only loses the de-duplication, never the note.
    let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    if seen.get_or_insert_with(HashSet::new).insert(msg.to_owned()) {
        eprintln!("note: {msg}");
    }
}
