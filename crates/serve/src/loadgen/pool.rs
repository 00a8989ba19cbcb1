//! Pool mode: exactly n keep-alive connections (hyper's client connection, one per worker),
//! fed from one queue in schedule order.
//!
//! The pacer puts each request on the queue at its intended time; a free worker takes the next
//! one and sends it on its own connection. When every connection is busy, requests wait in the
//! queue and that wait is part of their latency (it counts from the intended time), so a slow
//! server shows up as latency, not as a client opening ever more sockets (issue 14: the
//! open-loop client once held 19,500 of them). A request that waited longer than the timeout
//! for a connection is counted as a timeout without being sent. A worker whose connection
//! fails or is closed by the server opens a new one for its next request; the result says how
//! many were opened in all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};

use super::outcome::{Outcome, Sample, classify};
use super::{LoadConfig, Timing, pace, path_for, us_between};
use encore::error::{Error, Result};

/// Host and port of an `http://` base URL, for connecting and the `Host` header.
fn authority(url: &str) -> Result<String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| Error::Config(format!("bad --url {url}: {e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(Error::Config(format!(
            "--url {url}: only http:// URLs are supported"
        )));
    }
    let a = uri
        .authority()
        .ok_or_else(|| Error::Config(format!("--url {url} has no host")))?;
    Ok(match a.port_u16() {
        Some(_) => a.as_str().to_string(),
        None => format!("{}:80", a.host()),
    })
}

/// A request waiting for a connection: its intended send time and its path.
type Queued = (Instant, String);

/// Runs the pool (see the module doc).
pub(crate) async fn run(
    cfg: &LoadConfig,
    n: usize,
    plan: Vec<(Duration, String)>,
    start: Instant,
    tx: mpsc::UnboundedSender<Sample>,
) -> Result<Timing> {
    let host = authority(cfg.url.trim_end_matches('/'))?;
    let (qtx, qrx) = mpsc::unbounded_channel::<Queued>();
    let qrx = Arc::new(Mutex::new(qrx));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (qrx, tx, host, timeout) = (qrx.clone(), tx.clone(), host.clone(), cfg.timeout);
        workers.spawn(async move { worker(&host, timeout, &qrx, &tx).await });
    }
    drop(tx);
    let k = cfg.k;
    // Sends fail only once every worker has stopped; the samples then fall short of the plan.
    let done = pace::pace(plan, start, move |intended, user| {
        let _ = qtx.send((intended, path_for(&user, k)));
    })?;
    let paced = done
        .await
        .map_err(|_| Error::Runtime("the pacing thread stopped".into()))??;
    let mut opened = 0;
    while let Some(r) = workers.join_next().await {
        opened += r.unwrap_or(0);
    }
    Ok(Timing {
        last_send: paced.last,
        schedule_lag: Some(paced.lags.hist),
        late: paced.lags.late,
        connections_opened: Some(opened),
    })
}

/// One connection's loop; returns how many connections it opened.
async fn worker(
    host: &str,
    timeout: Duration,
    queue: &Mutex<mpsc::UnboundedReceiver<Queued>>,
    tx: &mpsc::UnboundedSender<Sample>,
) -> u64 {
    let mut conn: Option<SendRequest<Empty<Bytes>>> = None;
    let mut opened = 0;
    loop {
        let next = queue.lock().await.recv().await;
        let Some((intended, path)) = next else {
            return opened;
        };
        let now = Instant::now();
        let lag = us_between(intended, now);
        let sample = |outcome, sent: bool| Sample {
            outcome,
            latency_us: us_between(intended, Instant::now()),
            send_lag_us: sent.then_some(lag),
        };
        if now.saturating_duration_since(intended) > timeout {
            let _ = tx.send(sample(Outcome::Timeout, false));
            continue;
        }
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            match connect(host, timeout).await {
                Ok(c) => {
                    opened += 1;
                    conn = Some(c);
                }
                Err(outcome) => {
                    let _ = tx.send(sample(outcome, true));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let req = hyper::Request::get(path.as_str())
            .header(header::HOST, host)
            .body(Empty::<Bytes>::new());
        let Ok(req) = req else {
            let _ = tx.send(sample(Outcome::Other, false));
            continue;
        };
        let res = tokio::time::timeout(timeout, async {
            c.ready().await?;
            let resp = c.send_request(req).await?;
            let status = resp.status();
            let close = resp
                .headers()
                .get(header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            // Read the whole answer: latency ends when the client has it.
            resp.into_body().collect().await?;
            Ok::<_, hyper::Error>((status, close))
        })
        .await;
        let outcome = match res {
            Ok(Ok((s, close))) => {
                if close {
                    conn = None;
                }
                if s.is_success() {
                    Outcome::Ok
                } else {
                    Outcome::Status(s.as_u16())
                }
            }
            Ok(Err(e)) => {
                conn = None;
                classify(&e, false)
            }
            Err(_) => {
                conn = None;
                Outcome::Timeout
            }
        };
        let _ = tx.send(sample(outcome, true));
    }
}

/// A new keep-alive connection to `host`, its driver on a task of its own.
async fn connect(
    host: &str,
    timeout: Duration,
) -> std::result::Result<SendRequest<Empty<Bytes>>, Outcome> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(host)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(classify(&e, true)),
        Err(_) => return Err(Outcome::Timeout),
    };
    let _ = stream.set_nodelay(true);
    let (send, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| classify(&e, true))?;
    tokio::spawn(async move {
        let _ = driver.await;
    });
    Ok(send)
}

#[cfg(test)]
mod tests {
    use super::authority;

    #[test]
    fn the_authority_of_a_base_url() {
        assert_eq!(
            authority("http://127.0.0.1:8080").unwrap(),
            "127.0.0.1:8080"
        );
        assert_eq!(authority("http://localhost").unwrap(), "localhost:80");
        assert!(authority("https://x:1").is_err());
        assert!(authority("not a url").is_err());
    }
}
