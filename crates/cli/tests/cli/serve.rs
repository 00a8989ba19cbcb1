//! `encore serve` as a process (issue 14): the open-file limit raised at start and said so,
//! SIGHUP reloading a retrained model, SIGTERM with a partial-header client exiting within the
//! drain deadline; and one track schema with float32 scores in the CLI's own JSON.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{fixture, json_lines, ok, s, stdout, user_ids};

/// A running `encore serve`, its address, and everything it has written to stderr so far.
struct Serve {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Serve {
    /// `encore serve MODEL --addr 127.0.0.1:0 --device cpu ARGS`, its soft open-file limit set
    /// to `soft_nofile` first when given; waits for "listening on".
    fn start(model: &Path, args: &[&str], soft_nofile: Option<u64>) -> Self {
        let bin = env!("CARGO_BIN_EXE_encore");
        let mut c = Command::new("sh");
        let limit = soft_nofile
            .map(|n| format!("ulimit -Sn {n} && "))
            .unwrap_or_default();
        c.arg("-c")
            .arg(format!("{limit}exec \"$0\" \"$@\""))
            .arg(bin)
            .args([
                "serve",
                s(model),
                "--addr",
                "127.0.0.1:0",
                "--device",
                "cpu",
            ])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("starting encore serve");
        let err = Arc::new(Mutex::new(String::new()));
        let (e2, mut pipe) = (err.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                e2.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line)
            .expect("reading serve's first line");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}; stderr: {}", err.lock().unwrap()))
            .to_string();
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = out.read_to_string(&mut rest);
        });
        Self {
            child,
            addr,
            stderr: err,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits up to `limit` for the process to exit: its exit code.
    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Some(st) = self.child.try_wait().expect("waiting for serve") {
                return Some(st.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// `GET path` on a fresh connection: status and body.
    fn get(&self, path: &str) -> (u16, String) {
        let mut c = TcpStream::connect(&self.addr).expect("connecting to serve");
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        (status, body.to_string())
    }

    fn version(&self) -> String {
        let (code, body) = self.get("/healthz");
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["model"]["id"].as_str().unwrap().to_string()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hard_nofile() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `l` is a valid, writable rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) }, 0);
    l.rlim_max
}

#[test]
fn serve_raises_the_open_file_limit_to_the_hard_limit_and_says_so() {
    let f = fixture();
    let hard = hard_nofile();
    let soft = (hard / 2).min(512);
    let srv = Serve::start(&f.model, &[], Some(soft));
    let err = srv.stderr();
    assert!(
        err.contains(&format!("open-file limit raised from {soft} to {hard}")),
        "{err}"
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", srv.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let got: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(got, [hard, hard], "{line}");
    let (_, metrics) = srv.get("/metrics");
    assert!(
        metrics.contains(&format!("process_max_fds {hard}")),
        "{metrics}"
    );
}

#[test]
fn sighup_reloads_a_retrained_model_in_place() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    let train = |seed: &str| {
        ok(&[
            "-q",
            "train",
            s(&f.dataset),
            "-o",
            s(&model),
            "--iterations",
            "2",
            "--factors",
            "8",
            "--device",
            "cpu",
            "--seed",
            seed,
            "--force",
        ]);
    };
    train("1");
    let srv = Serve::start(&model, &[], None);
    let before = srv.version();
    train("2");
    srv.signal(libc::SIGHUP);
    let t = Instant::now();
    let mut now = before.clone();
    while now == before && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
        now = srv.version();
    }
    assert_ne!(now, before, "SIGHUP did not reload: {}", srv.stderr());
    assert!(srv.stderr().contains("SIGHUP: reloading the model"));
    assert!(
        srv.stderr().contains(&format!("model {now}")),
        "{}",
        srv.stderr()
    );
    // And the new model answers.
    let user = user_ids(&f.dataset)[0];
    let (code, body) = srv.get(&format!("/v1/recommend?user={user}&k=3"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&now), "{body}");
    // A broken model is refused on SIGHUP too, and the running one stays.
    std::fs::write(model.join("item_factors.npy"), b"not a npy file").unwrap();
    srv.signal(libc::SIGHUP);
    let t = Instant::now();
    while !srv.stderr().contains("refused") && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        srv.stderr()
            .contains(&format!("refused, still serving {now}")),
        "{}",
        srv.stderr()
    );
    assert_eq!(srv.version(), now);
}

#[test]
fn sigterm_with_a_partial_header_client_exits_within_the_drain_deadline() {
    let f = fixture();
    let mut srv = Serve::start(
        &f.model,
        &[
            "--drain-timeout",
            "0.5",
            "--header-timeout",
            "600",
            "--idle-timeout",
            "600",
        ],
        None,
    );
    let mut slow = TcpStream::connect(&srv.addr).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    // The server has accepted it once it answers on another connection.
    assert_eq!(srv.get("/healthz").0, 200);
    let t = Instant::now();
    srv.signal(libc::SIGTERM);
    let code = srv.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(0), "serve did not exit: {}", srv.stderr());
    assert!(t.elapsed() < Duration::from_secs(60));
    assert!(
        srv.stderr().contains("drain deadline (0.5 s) reached"),
        "{}",
        srv.stderr()
    );
}

/// The `"score":` values of a JSON text, as written.
fn score_texts(json: &str) -> Vec<String> {
    json.split("\"score\":")
        .skip(1)
        .map(|rest| {
            rest.trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit() || "-.eE+".contains(*c))
                .collect()
        })
        .collect()
}

/// Every track object of `v` has exactly the schema's keys.
fn assert_track_schema(v: &serde_json::Value) {
    let tracks = v["tracks"].as_array().expect("tracks");
    assert!(!tracks.is_empty());
    for t in tracks {
        let mut keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["artist", "artist_id", "id", "name", "score"], "{t}");
    }
}

#[test]
fn cli_json_uses_the_track_schema_with_float32_scores() {
    let f = fixture();
    let ids = user_ids(&f.dataset);
    let user = ids[0].to_string();
    let rec = ok(&[
        "-q",
        "recommend",
        s(&f.model),
        "--user",
        &user,
        "-k",
        "4",
        "--json",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.txt");
    std::fs::write(&file, format!("{user}\n")).unwrap();
    let lines = ok(&[
        "-q",
        "recommend",
        s(&f.model),
        "--users-file",
        s(&file),
        "-k",
        "4",
    ]);
    let rec_v: serde_json::Value = serde_json::from_str(&stdout(&rec)).unwrap();
    let item = rec_v["tracks"][0]["id"].to_string();
    let sim = ok(&[
        "-q",
        "similar",
        s(&f.model),
        "--item",
        &item,
        "-k",
        "3",
        "--json",
    ]);
    let line_v = json_lines(&lines).remove(0);
    for (text, v) in [
        (stdout(&rec), rec_v.clone()),
        (stdout(&lines), line_v.clone()),
        (stdout(&sim), serde_json::from_str(&stdout(&sim)).unwrap()),
    ] {
        assert_track_schema(&v);
        let scores = score_texts(&text);
        assert!(!scores.is_empty(), "{text}");
        for t in scores {
            let f: f32 = t.parse().unwrap();
            // serde_json writes large and tiny values with an exponent; Display never does.
            assert!(
                t == f.to_string() || t.contains('e'),
                "score {t} is written beyond float32 precision"
            );
        }
    }
    assert_eq!(
        rec_v["tracks"], line_v["tracks"],
        "the same tracks either way"
    );
}
