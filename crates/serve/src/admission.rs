//! Admission control for the `/v1` routes: a bound on requests in flight, answered 503 with
//! `Retry-After` the moment it is reached, and a deadline on every admitted request.
//!
//! This is tower's `ConcurrencyLimit` under `load_shed` in a dozen lines: a semaphore whose
//! permit is tried, never awaited, so an excess request costs one failed compare-and-swap and a
//! static answer — microseconds — instead of a place in a queue (issue 14: the old server
//! let the excess wait in front of the batch queue and answered it after seconds). Health,
//! metrics and reload are outside the bound, so they keep answering under overload.
//!
//! The deadline (`request_timeout`) bounds what one admitted request can hold: a client that
//! trickles its body, or a scorer that stalls, gives its permit back when the time is up.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::api::error_response;
use crate::metrics::Shed;
use crate::server::Shared;

/// The bound and the deadline.
pub struct Admission {
    permits: Semaphore,
    limit: usize,
    timeout: Duration,
}

impl Admission {
    pub(crate) fn new(limit: usize, timeout: Duration) -> Self {
        Self {
            permits: Semaphore::new(limit),
            limit,
            timeout,
        }
    }

    /// Requests admitted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.limit - self.permits.available_permits()
    }
}

/// The body of every shed answer, made once.
const BUSY: &str = r#"{"error":"server busy: too many requests in flight, retry later"}"#;
/// The body of the answer on a connection over the connection limit.
const BUSY_CONNECTIONS: &str = r#"{"error":"server busy: too many connections, retry later"}"#;

/// The 503 for a request over the bound: no allocation beyond the response itself.
pub(crate) fn busy() -> Response {
    static_503(BUSY)
}

/// The 503 on a connection over the connection limit.
pub(crate) fn busy_connections() -> Response {
    static_503(BUSY_CONNECTIONS)
}

fn static_503(body: &'static str) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Admits `req` to `app` under the bound (with the deadline), or answers [`busy`].
pub(crate) async fn admit(st: &Shared, app: Router, req: Request) -> Response {
    let a = &st.admission;
    let Ok(permit) = a.permits.try_acquire() else {
        st.metrics.shed(Shed::InFlight);
        return busy();
    };
    st.metrics.in_flight_max(a.in_flight());
    let out = tokio::time::timeout(a.timeout, async {
        match app.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    })
    .await;
    drop(permit);
    match out {
        Ok(r) => r,
        Err(_) => {
            st.metrics.shed(Shed::Timeout);
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "the request took longer than {:.1} s (--request-timeout)",
                    a.timeout.as_secs_f64()
                ),
            )
        }
    }
}
