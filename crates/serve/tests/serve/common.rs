//! Shared by the server's tests: a real server on an ephemeral loopback port (its own thread and
//! runtime), HTTP helpers, metrics lookup, slow scorers and models saved to disk.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use encore::als::AlsConfig;
use encore::als::model::Model;
use encore::data::dataset::Dataset;
use encore::gpu::DeviceChoice;
use encore::infer::{Ranked, Scorer};
use encore::recommend::Recommender;
use encore::train::{FitOptions, fit};
use encore_serve::batcher::BatchConfig;
use encore_serve::{Log, ServeConfig, Shared, TrackOut, serve_until, state};

/// The small recommender's integer user and item ids.
pub fn int_ids(ds: &Dataset) -> (Vec<u64>, Vec<u64>) {
    let ids = |i: &encore::data::ids::Ids| i.as_int().expect("integer ids").to_vec();
    (ids(&ds.user_ids), ids(&ds.item_ids))
}

/// A track's integer id.
pub fn tid(t: &TrackOut) -> u64 {
    match t.id {
        encore::data::ids::IdBuf::Int(v) => v,
        encore::data::ids::IdBuf::Str(ref s) => panic!("string track id {s} in an integer dataset"),
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub state: Shared,
    /// Every message the server logged.
    pub log: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<encore::Result<()>>>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops accepting, drains, and returns the serve result.
    pub fn stop(mut self) -> encore::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.thread.take().unwrap().join().unwrap()
    }

    /// Signals shutdown and waits up to `limit` for the server to return: `Some(result)` when
    /// it did (the thread is left behind otherwise).
    pub fn stop_within(mut self, limit: Duration) -> Option<encore::Result<()>> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let t = Instant::now();
        let th = self.thread.take().unwrap();
        while t.elapsed() < limit {
            if th.is_finished() {
                return Some(th.join().unwrap());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn logged(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// A server of `rec` with `batch` (the in-flight bound lowered to its queue when above it),
/// the other settings as `edit` leaves them.
pub fn start_with(
    rec: Recommender,
    batch: BatchConfig,
    edit: impl FnOnce(&mut ServeConfig),
) -> Server {
    let mut cfg = ServeConfig::new("127.0.0.1:0".parse().unwrap(), batch);
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    cfg.log = Log(Arc::new(move |m| l2.lock().unwrap().push(m.to_string())));
    cfg.limits.max_in_flight = cfg.limits.max_in_flight.min(batch.queue);
    edit(&mut cfg);
    let st = state(rec, &cfg).unwrap();
    let shared = st.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(serve_until(
            st,
            &cfg,
            move |a| addr_tx.send(a).unwrap(),
            async move {
                let _ = stop_rx.await;
            },
        ))
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    Server {
        addr,
        state: shared,
        log,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

/// A server with default limits.
pub fn start(rec: Recommender, batch: BatchConfig, body_limit: usize) -> Server {
    start_with(rec, batch, |c| c.body_limit = body_limit)
}

pub fn batch(max_batch: usize, wait_ms: u64, queue: usize) -> BatchConfig {
    BatchConfig {
        max_batch,
        max_wait: Duration::from_millis(wait_ms),
        queue,
    }
}

/// The value of the first Prometheus sample line starting with `prefix` (0 when absent: a
/// counter not yet incremented has no line).
pub fn metric_or_zero(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// The value of the first Prometheus sample line starting with `prefix`.
pub fn metric(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no metric {prefix} in:\n{metrics}"))
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

pub fn get(url: &str) -> (u16, String) {
    let mut r = agent().get(url).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

/// Status, body and `x-encore-model` header.
pub fn get_with_model(agent: &ureq::Agent, url: &str) -> (u16, String, String) {
    let mut r = agent.get(url).call().unwrap();
    let model = r
        .headers()
        .get("x-encore-model")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap(),
        model,
    )
}

pub fn post(url: &str, body: &str) -> (u16, String) {
    let mut r = agent()
        .post(url)
        .header("content-type", "application/json")
        .send(body)
        .unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

/// One raw HTTP/1.1 request on `s` and the answer's head and body, read up to its
/// Content-Length (this API always sends one).
pub fn raw_request(s: &mut TcpStream, path: &str) -> (String, String) {
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before the answer");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return (head, text[end + 4..end + 4 + len].to_string());
            }
        }
    }
}

/// Whether the server closed `s` (EOF) within `limit`.
pub fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue, // an answer (e.g. 408) before the close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// A scorer that sleeps before every call: a server of known, small capacity.
pub struct Slow {
    pub inner: Box<dyn Scorer>,
    pub delay: Duration,
}

impl Scorer for Slow {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn n_items(&self) -> usize {
        self.inner.n_items()
    }
    fn n_factors(&self) -> usize {
        self.inner.n_factors()
    }
    fn top_k(&self, q: &[f32], ex: Option<&[&[u32]]>, k: usize) -> encore::Result<Vec<Ranked>> {
        std::thread::sleep(self.delay);
        self.inner.top_k(q, ex, k)
    }
}

/// `rec` with every scoring call delayed by `delay`.
pub fn slow(rec: Recommender, delay: Duration) -> Recommender {
    rec.map_scorer(|inner| Box::new(Slow { inner, delay }))
}

/// A model of `ds` trained with `seed` and `factors`, saved to `dir`.
pub fn save_model(ds: &Dataset, dir: &Path, seed: u64, factors: usize) -> Model {
    let cfg = AlsConfig {
        factors,
        iterations: 2,
        seed,
        ..AlsConfig::default()
    };
    let opts = FitOptions {
        device: DeviceChoice::Cpu,
        quiet: true,
        ..FitOptions::default()
    };
    let model = fit(ds.clone(), &cfg, &opts, |_| {}).unwrap();
    model.save(dir, false).unwrap();
    model
}

/// Two models of `ds` saved under `root` (`a`, 8 factors; `b`, 6 factors, another seed).
pub fn two_models(ds: &Dataset, root: &Path) -> (PathBuf, PathBuf) {
    let (a, b) = (root.join("model-a"), root.join("model-b"));
    save_model(ds, &a, 1, 8);
    save_model(ds, &b, 2, 6);
    (a, b)
}

/// A recommender of the model in `dir` over `ds`, on the CPU.
pub fn load(dir: &Path, ds: &Dataset) -> Recommender {
    Recommender::cpu(Model::load(dir).unwrap(), ds.clone()).unwrap()
}
