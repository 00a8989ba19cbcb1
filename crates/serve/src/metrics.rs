//! `/metrics` in the Prometheus text format (prometheus-client): requests by route and status,
//! latency histograms by route, batch sizes and scoring time, queue depth, the admission bound
//! (requests in flight, their high-water mark, load shed by reason), connections (open, accepted,
//! refused, timed out), the model being served and its reloads, the process's memory and file
//! descriptors, and the device.
//!
//! Labels are `&'static str` wherever the value set is fixed (routes, reasons), so recording a
//! request allocates nothing; a request's route is one of the known paths or `other`.

use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::batcher::BatchObserver;
use crate::generation::ModelVersion;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Device {
    device: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    version: String,
    trained_at: String,
    dataset_hash: String,
}

/// Latency buckets: 50 µs doubling to ~3.3 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(50e-6, 2.0, 17))
}

/// The route label of a request path: one of the served paths, or `other`.
pub fn route_label(path: &str) -> &'static str {
    match path {
        "/v1/recommend" => "/v1/recommend",
        "/v1/recommend/history" => "/v1/recommend/history",
        "/v1/similar" => "/v1/similar",
        "/healthz" => "/healthz",
        "/metrics" => "/metrics",
        "/admin/reload" => "/admin/reload",
        _ => "other",
    }
}

/// Why a request or connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The in-flight bound was reached.
    InFlight,
    /// The batch queue was full.
    Queue,
    /// The request took longer than the request timeout.
    Timeout,
    /// The server is shutting down.
    Draining,
    /// The connection was over the connection limit.
    Connections,
}

impl Shed {
    fn label(self) -> &'static str {
        match self {
            Shed::InFlight => "in_flight",
            Shed::Queue => "queue",
            Shed::Timeout => "timeout",
            Shed::Draining => "draining",
            Shed::Connections => "connections",
        }
    }
}

/// What happened to an accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnEvent {
    /// Served normally (under the connection limit).
    Served,
    /// Over the limit: answered 503 and closed.
    Refused,
    /// Over the limit and its overflow allowance: closed at once.
    Dropped,
    /// Closed because its request headers did not arrive in time.
    HeaderTimeout,
    /// Closed after the idle timeout.
    IdleTimeout,
    /// Still open at the drain deadline, closed.
    DrainDeadline,
}

impl ConnEvent {
    fn label(self) -> &'static str {
        match self {
            ConnEvent::Served => "served",
            ConnEvent::Refused => "refused",
            ConnEvent::Dropped => "dropped",
            ConnEvent::HeaderTimeout => "header_timeout",
            ConnEvent::IdleTimeout => "idle_timeout",
            ConnEvent::DrainDeadline => "drain_deadline",
        }
    }
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    latency: Family<Route, Histogram, fn() -> Histogram>,
    batch_size: Histogram,
    batch_seconds: Histogram,
    queue_depth: Gauge,
    in_flight: Gauge,
    in_flight_limit: Gauge,
    in_flight_max: Gauge,
    shed: Family<Reason, Counter>,
    connections_open: Gauge,
    connections_limit: Gauge,
    connections: Family<Reason, Counter>,
    model: Family<ModelLabels, Gauge>,
    reloads: Family<Reason, Counter>,
    resident: Gauge,
    trims: Counter,
    open_fds: Gauge,
    nofile: Gauge,
    /// Connections open now (counted here and copied to the gauge, so concurrent opens and
    /// closes never leave the gauge behind).
    open: AtomicI64,
    /// The in-flight high-water mark (copied to its gauge at each scrape).
    max: AtomicI64,
}

impl Metrics {
    /// Registers every metric; `device` labels the scorer.
    pub fn new(device: &str) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RouteStatus, Counter>::default();
        let latency = Family::<Route, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let batch_seconds = latency_histogram();
        let info = Family::<Device, Gauge>::default();
        info.get_or_create(&Device {
            device: device.to_string(),
        })
        .set(1);
        let m = Self {
            requests,
            latency,
            batch_size,
            batch_seconds,
            queue_depth: Gauge::default(),
            in_flight: Gauge::default(),
            in_flight_limit: Gauge::default(),
            in_flight_max: Gauge::default(),
            shed: Family::default(),
            connections_open: Gauge::default(),
            connections_limit: Gauge::default(),
            connections: Family::default(),
            model: Family::default(),
            reloads: Family::default(),
            resident: Gauge::default(),
            trims: Counter::default(),
            open_fds: Gauge::default(),
            nofile: Gauge::default(),
            open: AtomicI64::new(0),
            max: AtomicI64::new(0),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "encore_requests",
            "HTTP requests by route and status",
            m.requests.clone(),
        );
        r.register(
            "encore_request_seconds",
            "Request latency by route, from arrival to response",
            m.latency.clone(),
        );
        r.register(
            "encore_batch_size",
            "Queries per scoring batch",
            m.batch_size.clone(),
        );
        r.register(
            "encore_batch_seconds",
            "Time to score one batch (top-K call)",
            m.batch_seconds.clone(),
        );
        r.register(
            "encore_queue_depth",
            "Queries accepted by the batcher and not yet answered",
            m.queue_depth.clone(),
        );
        r.register(
            "encore_in_flight",
            "Requests admitted to the /v1 routes and not yet answered",
            m.in_flight.clone(),
        );
        r.register(
            "encore_in_flight_limit",
            "The bound on requests in flight (--max-in-flight)",
            m.in_flight_limit.clone(),
        );
        r.register(
            "encore_in_flight_max",
            "Most requests in flight at once since start",
            m.in_flight_max.clone(),
        );
        r.register(
            "encore_shed",
            "Requests answered 503 by reason (in_flight, queue, timeout, draining, connections)",
            m.shed.clone(),
        );
        r.register(
            "encore_connections_open",
            "Connections open now",
            m.connections_open.clone(),
        );
        r.register(
            "encore_connections_limit",
            "The connection limit (--max-connections)",
            m.connections_limit.clone(),
        );
        r.register(
            "encore_connections",
            "Connections by what happened to them (served, refused with 503, dropped, \
             header_timeout, idle_timeout, drain_deadline)",
            m.connections.clone(),
        );
        r.register(
            "encore_model",
            "The model being served (value 1): content hash, training time, dataset hash",
            m.model.clone(),
        );
        r.register(
            "encore_model_reloads",
            "Model reloads by result (ok, refused)",
            m.reloads.clone(),
        );
        r.register(
            "process_resident_memory_bytes",
            "Resident memory of the server process",
            m.resident.clone(),
        );
        r.register(
            "encore_memory_trims",
            "Times freed heap memory was handed back to the OS after a burst of connections",
            m.trims.clone(),
        );
        r.register(
            "process_open_fds",
            "Open file descriptors of the server process",
            m.open_fds.clone(),
        );
        r.register(
            "process_max_fds",
            "The soft open-file limit, after raising it to the hard limit",
            m.nofile.clone(),
        );
        r.register("encore_scorer", "The scoring device (value 1)", info);
        Self { registry, ..m }
    }

    /// Records one finished request.
    pub fn request(&self, route: &'static str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RouteStatus { route, status })
            .inc();
        self.latency
            .get_or_create(&Route { route })
            .observe(seconds);
    }

    /// Records a request answered 503.
    pub fn shed(&self, why: Shed) {
        self.shed
            .get_or_create(&Reason {
                reason: why.label(),
            })
            .inc();
    }

    /// Records what happened to a connection.
    pub fn connection(&self, what: ConnEvent) {
        self.connections
            .get_or_create(&Reason {
                reason: what.label(),
            })
            .inc();
    }

    /// A connection opened (+1) or closed (-1).
    pub fn connections_open(&self, delta: i64) {
        let now = self.open.fetch_add(delta, Ordering::AcqRel) + delta;
        self.connections_open.set(now);
    }

    /// Connections open now.
    pub fn open_connections(&self) -> i64 {
        self.open.load(Ordering::Acquire)
    }

    /// Freed memory was handed back to the OS.
    pub fn trimmed(&self) {
        self.trims.inc();
    }

    /// Records a new high-water mark of requests in flight.
    pub fn in_flight_max(&self, n: usize) {
        self.max.fetch_max(n as i64, Ordering::AcqRel);
    }

    /// The fixed limits, once at start.
    pub fn limits(&self, in_flight: usize, connections: usize, nofile: u64) {
        self.in_flight_limit.set(in_flight as i64);
        self.connections_limit.set(connections as i64);
        self.nofile.set(nofile.min(i64::MAX as u64) as i64);
    }

    /// The model now served (replacing the previous one's labels).
    pub fn model(&self, v: &ModelVersion) {
        self.model.clear();
        self.model
            .get_or_create(&ModelLabels {
                version: v.id.clone(),
                trained_at: v.trained_at.clone(),
                dataset_hash: v.dataset_hash.clone(),
            })
            .set(1);
    }

    /// A reload finished (`ok`) or was refused.
    pub fn reload(&self, ok: bool) {
        self.reloads
            .get_or_create(&Reason {
                reason: if ok { "ok" } else { "refused" },
            })
            .inc();
    }

    /// The text exposition, with the gauges sampled now.
    pub fn render(&self, queue_depth: usize, in_flight: usize) -> String {
        self.queue_depth.set(queue_depth as i64);
        self.in_flight.set(in_flight as i64);
        self.in_flight_max.set(self.max.load(Ordering::Acquire));
        if let Some(b) = crate::limits::resident_bytes() {
            self.resident.set(b.min(i64::MAX as u64) as i64);
        }
        if let Ok(rd) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(rd.count() as i64);
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out = "# metrics could not be encoded\n".into();
        }
        out
    }
}

impl BatchObserver for Metrics {
    fn batch(&self, size: usize, seconds: f64) {
        self.batch_size.observe(size as f64);
        self.batch_seconds.observe(seconds);
    }
}
