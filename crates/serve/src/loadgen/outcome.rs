//! What became of each request, and the tally of a step: successes and 503s with their
//! latencies, failures by kind, and how late the client itself was.
//!
//! A failure is named by what the client saw (issue 14: the old report said only "errors"):
//! the connection refused, reset or closed before the answer (`reset`), no answer within the
//! timeout, any other connect failure, any other failure, and every non-2xx answer by status.
//! The kinds come from the error's source chain (`std::io::ErrorKind`, `hyper::Error`), never
//! from its message text.

use std::collections::BTreeMap;
use std::error::Error as StdError;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{Percentiles, latency_histogram, record_us};
use encore::error::Result;

/// A request's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Ok,
    /// Any other answer, by status (503 is load shed).
    Status(u16),
    ConnectRefused,
    ConnectOther,
    /// Reset, or closed before the answer was complete.
    Reset,
    /// No answer within the timeout (or, in pool mode, no free connection within it).
    Timeout,
    Other,
}

/// Failures by kind.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ErrorKinds {
    pub connect_refused: u64,
    pub connect_other: u64,
    pub reset: u64,
    pub timeout: u64,
    pub other: u64,
    /// Answers that were not 2xx, by status; 503 (load shed) included.
    pub status: BTreeMap<u16, u64>,
}

impl ErrorKinds {
    /// Failures that are not a 503 (those are counted as shed).
    pub fn errors(&self) -> u64 {
        self.connect_refused
            + self.connect_other
            + self.reset
            + self.timeout
            + self.other
            + self
                .status
                .iter()
                .filter(|(s, _)| **s != 503)
                .map(|(_, n)| n)
                .sum::<u64>()
    }

    /// Failures without an answer (refused, reset, timeout, connect and other).
    pub fn connection_errors(&self) -> u64 {
        self.connect_refused + self.connect_other + self.reset + self.timeout + self.other
    }

    /// "refused 3, 404 ×2": the non-zero kinds, for a table.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (name, n) in [
            ("refused", self.connect_refused),
            ("connect", self.connect_other),
            ("reset", self.reset),
            ("timeout", self.timeout),
            ("other", self.other),
        ] {
            if n > 0 {
                parts.push(format!("{name} {n}"));
            }
        }
        for (s, n) in &self.status {
            if *s != 503 {
                parts.push(format!("{s} x{n}"));
            }
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The kind of a failed request, from `e`'s source chain; `connecting` when it failed before a
/// connection existed.
pub fn classify(e: &(dyn StdError + 'static), connecting: bool) -> Outcome {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(x) = cur {
        if let Some(io) = x.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::ConnectionRefused => return Outcome::ConnectRefused,
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                    return Outcome::Reset;
                }
                K::TimedOut => return Outcome::Timeout,
                _ => {}
            }
        }
        if let Some(h) = x.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                return Outcome::Timeout;
            }
            if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                return Outcome::Reset;
            }
        }
        cur = x.source();
    }
    if connecting {
        Outcome::ConnectOther
    } else {
        Outcome::Other
    }
}

/// One finished request.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub outcome: Outcome,
    /// Microseconds from the intended send time to the end (answer read, or failure).
    pub latency_us: u64,
    /// Microseconds from the intended send time until the request went to its connection
    /// (`None` when it never did: it timed out waiting for a free connection).
    pub send_lag_us: Option<u64>,
}

/// The running tally of a step.
pub struct Tally {
    pub ok: Histogram<u64>,
    pub shed: Histogram<u64>,
    /// Successes and 503s from the moment the request went to its connection: the server's
    /// answer time as the client sees it, without the wait for a free connection.
    pub ok_service: Histogram<u64>,
    pub shed_service: Histogram<u64>,
    pub send_lag: Histogram<u64>,
    /// Send lags over [`super::LATE_US`].
    pub send_late: u64,
    pub kinds: ErrorKinds,
    pub sent: u64,
    pub count: u64,
}

impl Tally {
    pub fn new() -> Result<Self> {
        Ok(Self {
            ok: latency_histogram()?,
            shed: latency_histogram()?,
            ok_service: latency_histogram()?,
            shed_service: latency_histogram()?,
            send_lag: latency_histogram()?,
            send_late: 0,
            kinds: ErrorKinds::default(),
            sent: 0,
            count: 0,
        })
    }

    pub fn add(&mut self, s: Sample) {
        self.count += 1;
        if let Some(lag) = s.send_lag_us {
            self.sent += 1;
            record_us(&mut self.send_lag, lag);
            self.send_late += u64::from(lag > super::LATE_US);
        }
        let service = s.latency_us.saturating_sub(s.send_lag_us.unwrap_or(0));
        let k = &mut self.kinds;
        match s.outcome {
            Outcome::Ok => {
                record_us(&mut self.ok, s.latency_us);
                record_us(&mut self.ok_service, service);
            }
            Outcome::Status(code) => {
                *k.status.entry(code).or_insert(0) += 1;
                if code == 503 {
                    record_us(&mut self.shed, s.latency_us);
                    record_us(&mut self.shed_service, service);
                }
            }
            Outcome::ConnectRefused => k.connect_refused += 1,
            Outcome::ConnectOther => k.connect_other += 1,
            Outcome::Reset => k.reset += 1,
            Outcome::Timeout => k.timeout += 1,
            Outcome::Other => k.other += 1,
        }
    }

    /// Percentiles of the send lags.
    pub fn send_lag(&self) -> Percentiles {
        Percentiles::from_histogram(&self.send_lag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_kinds_name_the_failure_through_the_source_chain() {
        #[derive(Debug)]
        struct Wrap(std::io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl StdError for Wrap {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let io = |k| Wrap(std::io::Error::from(k));
        use std::io::ErrorKind as K;
        assert_eq!(
            classify(&io(K::ConnectionRefused), true),
            Outcome::ConnectRefused
        );
        assert_eq!(classify(&io(K::ConnectionReset), false), Outcome::Reset);
        assert_eq!(classify(&io(K::TimedOut), false), Outcome::Timeout);
        assert_eq!(classify(&io(K::NotFound), true), Outcome::ConnectOther);
        assert_eq!(classify(&io(K::NotFound), false), Outcome::Other);
    }

    #[test]
    fn the_tally_counts_every_kind_and_503s_apart() {
        let mut t = Tally::new().unwrap();
        let s = |outcome, lag| Sample {
            outcome,
            latency_us: 100,
            send_lag_us: lag,
        };
        t.add(s(Outcome::Ok, Some(5)));
        t.add(s(Outcome::Status(503), Some(5)));
        t.add(s(Outcome::Status(404), Some(5)));
        t.add(s(Outcome::Status(404), Some(5)));
        t.add(s(Outcome::Reset, Some(5)));
        t.add(s(Outcome::Timeout, None));
        assert_eq!((t.count, t.sent), (6, 5));
        assert_eq!(t.ok.len(), 1);
        assert_eq!(t.shed.len(), 1);
        assert_eq!(t.kinds.status.get(&404), Some(&2));
        assert_eq!(t.kinds.errors(), 4, "404 x2, reset, timeout; not the 503");
        assert_eq!(t.kinds.connection_errors(), 2);
        assert_eq!(t.kinds.summary(), "reset 1, timeout 1, 404 x2");
    }
}
