//! Connections: the accept loop, the connection limit, header-read and idle timeouts, and the
//! drain after the shutdown signal.
//!
//! `axum::serve` set no timer on hyper, so hyper's header-read timeout never ran: a client that
//! sent part of its headers held its connection forever, and SIGTERM waited for it (issue 14).
//! It also accepted every connection the kernel offered, until the process ran out of file
//! descriptors. This loop drives hyper's HTTP/1 connections itself:
//!
//! - **Limit.** At most `max_connections` are served. The next ones (up to an overflow of
//!   1/8 of the limit, at least 16, at most 1,024) are read just far enough to answer
//!   `503 Retry-After` with `Connection: close`, so a client is told to back off rather than
//!   left waiting in the kernel's backlog; beyond that they are closed at once. The limit is
//!   capped below the open-file limit.
//! - **Header-read timeout.** hyper's own (with tokio's timer): a request's headers must arrive
//!   within `header_timeout`, counted from when the connection is ready for them.
//! - **Idle timeout.** A connection with no request in progress for `idle_timeout` is closed
//!   (hyper's graceful shutdown of an idle connection closes it at once).
//! - **Drain.** On shutdown the listener closes, every connection is asked to finish its
//!   request in progress and close, and after `drain_timeout` whatever is left is closed: the
//!   process always exits on time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::metrics::{ConnEvent, Metrics, Shed};
use crate::server::{Limits, Log, Shared};
use encore::error::{Error, Result};

/// Pending connections the kernel may hold for `accept` (it caps this at `somaxconn`): bursts
/// of new connections under overload wait here rather than being refused by the kernel.
const BACKLOG: u32 = 4096;

/// hyper's read buffer per connection, and so the largest request head: 64 KiB, ample for
/// this API's headers, and a bound on what each of thousands of connections can hold.
const MAX_BUF: usize = 64 << 10;

/// Over-limit connections get this long to send the request they are refused.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds `addr` with a deep accept backlog.
pub(crate) fn listen(addr: SocketAddr) -> Result<TcpListener> {
    let fail = |e: std::io::Error| Error::Runtime(format!("cannot listen on {addr}: {e}"));
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(fail)?;
    sock.set_reuseaddr(true).map_err(fail)?;
    sock.bind(addr).map_err(fail)?;
    sock.listen(BACKLOG).map_err(fail)
}

/// The connection settings, resolved against the open-file limit.
pub(crate) struct ConnLimits {
    pub max_connections: usize,
    pub overflow: usize,
    pub nofile: u64,
    header_timeout: Duration,
    idle_timeout: Duration,
    drain_timeout: Duration,
}

/// Over-limit connections answered 503 beyond `max`: an eighth, at least 16, at most 1,024.
fn overflow_for(max: usize) -> usize {
    (max / 8).clamp(16, 1024)
}

impl ConnLimits {
    /// `limits` with the connection limit (and its overflow) capped below the soft open-file
    /// limit now in force (a note in the log when it is).
    pub(crate) fn new(limits: &Limits, log: &Log) -> Self {
        let nofile = current_nofile();
        let allowed = crate::limits::connections_allowed(nofile);
        let mut max = limits.max_connections;
        let mut overflow = overflow_for(max);
        if max + overflow > allowed {
            max = (allowed - allowed.min(overflow_for(allowed))).max(1);
            overflow = allowed.saturating_sub(max);
            log.say(&format!(
                "--max-connections {} lowered to {max}: the open-file limit is {nofile}",
                limits.max_connections
            ));
        }
        Self {
            max_connections: max,
            overflow,
            nofile,
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
            drain_timeout: limits.drain_timeout,
        }
    }
}

/// The soft open-file limit now (unlimited where there is none).
fn current_nofile() -> u64 {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid, writable rlimit that outlives the call.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0
            && lim.rlim_cur != libc::RLIM_INFINITY
        {
            #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not on every unix
            return lim.rlim_cur as u64;
        }
    }
    u64::MAX
}

/// What a connection has been doing: requests in progress, and when the last one ended.
struct Activity {
    busy: AtomicU32,
    /// Nanoseconds after `base` at which the connection last went idle.
    last: AtomicU64,
    base: Instant,
}

impl Activity {
    fn new() -> Self {
        Self {
            busy: AtomicU32::new(0),
            last: AtomicU64::new(0),
            base: Instant::now(),
        }
    }

    /// When the connection went idle, or `None` while a request is in progress.
    fn idle_since(&self) -> Option<Instant> {
        if self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.base + Duration::from_nanos(self.last.load(Ordering::Acquire)))
    }
}

/// Marks a request in progress on its connection until dropped (answered or cancelled).
struct Busy(Arc<Activity>);

impl Busy {
    fn new(a: &Arc<Activity>) -> Self {
        a.busy.fetch_add(1, Ordering::AcqRel);
        Self(a.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        let now = a.base.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        a.last.store(now, Ordering::Release);
        a.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts a connection open for as long as it lives (aborted at the drain deadline included).
struct Open(Arc<Metrics>);

impl Open {
    fn new(m: &Arc<Metrics>) -> Self {
        m.connections_open(1);
        Self(m.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.connections_open(-1);
    }
}

/// Accepts until `shutdown`, then drains (see the module doc).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    app: Router,
    st: Shared,
    limits: ConnLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Some(limits.header_timeout))
        .max_buf_size(MAX_BUF)
        .keep_alive(true);
    let http = Arc::new(http);
    let mut refuse = http1::Builder::new();
    refuse
        .timer(TokioTimer::new())
        .header_read_timeout(Some(limits.header_timeout.min(REFUSE_TIMEOUT)))
        .max_buf_size(MAX_BUF)
        .keep_alive(false);
    let refuse = Arc::new(refuse);
    let served = Arc::new(Semaphore::new(limits.max_connections));
    let overflow = Arc::new(Semaphore::new(limits.overflow));
    let (stop_tx, stop_rx) = watch::channel(false);
    let trimmer = tokio::spawn(trim_after_bursts(st.metrics.clone()));
    let mut conns = JoinSet::new();
    let mut last_accept_error: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            a = listener.accept() => a,
        };
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors or memory: say so (once a second at most) and pause
                // rather than spin; a connection reset before accept is nothing.
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                ) {
                    if last_accept_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        st.log.say(&format!("accept failed: {e}; pausing 50 ms"));
                        last_accept_error = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if let Ok(permit) = served.clone().try_acquire_owned() {
            st.metrics.connection(ConnEvent::Served);
            let open = Open::new(&st.metrics);
            let (app, http, stop) = (app.clone(), http.clone(), stop_rx.clone());
            let (st2, idle) = (st.clone(), limits.idle_timeout);
            conns.spawn(async move {
                serve_conn(stream, peer, app, st2, &http, idle, stop).await;
                drop((permit, open));
            });
        } else if let Ok(permit) = overflow.clone().try_acquire_owned() {
            st.metrics.connection(ConnEvent::Refused);
            let open = Open::new(&st.metrics);
            let (refuse, metrics) = (refuse.clone(), st.metrics.clone());
            conns.spawn(async move {
                refuse_conn(stream, &refuse, metrics).await;
                drop((permit, open));
            });
        } else {
            st.metrics.connection(ConnEvent::Dropped);
            drop(stream);
        }
    }
    drop(listener);
    trimmer.abort();
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        let left = conns.len();
        for _ in 0..left {
            st.metrics.connection(ConnEvent::DrainDeadline);
        }
        st.log.say(&format!(
            "drain deadline ({:.1} s) reached: closing {left} connection(s) still open",
            limits.drain_timeout.as_secs_f64()
        ));
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

/// Gives freed memory back to the OS once a burst of connections is over: checked every
/// second, a trim runs when the open connections have fallen to a quarter of their peak since
/// the last trim (a peak of at least 64), so memory after an overload returns near its start.
async fn trim_after_bursts(metrics: Arc<Metrics>) {
    let mut peak = 0i64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let open = metrics.open_connections();
        peak = peak.max(open);
        if peak >= 64 && open * 4 <= peak {
            peak = open;
            let m = metrics.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if crate::limits::trim_heap() {
                    m.trimmed();
                }
            })
            .await;
        }
    }
}

/// Serves one connection under the limit until it closes, times out or is drained.
async fn serve_conn(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    st: Shared,
    http: &http1::Builder,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let metrics = st.metrics.clone();
    let activity = Arc::new(Activity::new());
    let act = activity.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let busy = Busy::new(&act);
        // Only the admin route asks who is calling; inserting the first extension allocates
        // its map, so other requests skip it.
        if req.uri().path().starts_with("/admin/") {
            req.extensions_mut().insert(ConnectInfo(peer));
        }
        let (app, st) = (app.clone(), st.clone());
        async move {
            let r = crate::server::handle(&st, app, req.map(Body::new)).await;
            drop(busy);
            Ok::<_, std::convert::Infallible>(r)
        }
    });
    let conn = http.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let mut check = Instant::now() + idle;
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r
                    && e.is_timeout()
                {
                    metrics.connection(ConnEvent::HeaderTimeout);
                }
                return;
            }
            _ = stop.changed(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tokio::time::sleep_until(check), if !closing => {
                match activity.idle_since() {
                    None => check = Instant::now() + idle,
                    Some(t) if t + idle <= Instant::now() => {
                        metrics.connection(ConnEvent::IdleTimeout);
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    Some(t) => check = t + idle,
                }
            }
        }
    }
}

/// Answers every request of an over-limit connection 503 and closes it.
async fn refuse_conn(stream: TcpStream, http: &http1::Builder, metrics: Arc<Metrics>) {
    let m = metrics.clone();
    let svc = hyper::service::service_fn(move |_req: hyper::Request<Incoming>| {
        m.shed(Shed::Connections);
        async {
            let mut r = crate::admission::busy_connections();
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Ok::<_, std::convert::Infallible>(r)
        }
    });
    if let Err(e) = http.serve_connection(TokioIo::new(stream), svc).await
        && e.is_timeout()
    {
        metrics.connection(ConnEvent::HeaderTimeout);
    }
}
