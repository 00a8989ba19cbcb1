//! `/metrics` in the Prometheus text format (prometheus-client): requests by route and status,
//! latency histograms by route, batch sizes and scoring time, queue depth, and the device.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::batcher::BatchObserver;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Device {
    device: String,
}

/// Latency buckets: 50 µs doubling to ~3.3 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(50e-6, 2.0, 17))
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
        let queue_depth = Gauge::default();
        let info = Family::<Device, Gauge>::default();
        info.get_or_create(&Device {
            device: device.to_string(),
        })
        .set(1);
        registry.register(
            "encore_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "encore_request_seconds",
            "Request latency by route, from arrival to response",
            latency.clone(),
        );
        registry.register(
            "encore_batch_size",
            "Queries per scoring batch",
            batch_size.clone(),
        );
        registry.register(
            "encore_batch_seconds",
            "Time to score one batch (top-K call)",
            batch_seconds.clone(),
        );
        registry.register(
            "encore_queue_depth",
            "Queries waiting for a batch",
            queue_depth.clone(),
        );
        registry.register("encore_scorer", "The scoring device (value 1)", info);
        Self {
            registry,
            requests,
            latency,
            batch_size,
            batch_seconds,
            queue_depth,
        }
    }

    /// Records one finished request.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RouteStatus {
                route: route.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&Route {
                route: route.to_string(),
            })
            .observe(seconds);
    }

    /// The text exposition, with the queue depth as of now.
    pub fn render(&self, queue_depth: usize) -> String {
        self.queue_depth.set(queue_depth as i64);
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
