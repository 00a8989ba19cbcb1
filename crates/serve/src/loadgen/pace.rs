//! The schedule's clock: a thread of its own that hands each request on at its intended time.
//!
//! Tokio's timer rounds sleeps up to whole milliseconds, which would send requests up to 1 ms
//! late and charge that to the server. The first load generator therefore spun on the runtime
//! (`yield_now` in a loop), keeping one runtime thread busy at any rate above ~500/s — on the
//! 2-core dev machine half the CPU, taken from the server it was measuring. This thread sleeps
//! with the OS timer (its timer slack set to 1 ns on Linux, so a sleep ends within
//! microseconds) until shortly before each send and spins only for the rest, so it costs
//! little CPU unless the gaps are shorter than that margin (above ~10,000 requests/s).

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{LagTally, us_between};
use encore::error::{Error, Result};

/// How long before a send the thread stops sleeping and spins.
const SPIN: Duration = Duration::from_micros(100);

/// What the pacing thread measured: its own lateness, and when it handed on the last request.
pub(crate) struct Paced {
    pub lags: LagTally,
    pub last: Instant,
}

/// Calls `each(intended, item)` at `start + offset` for every `(offset, item)` of `plan`, in
/// order, on a new thread; the receiver gets what it measured when it is done.
pub(crate) fn pace<T: Send + 'static>(
    plan: Vec<(Duration, T)>,
    start: Instant,
    mut each: impl FnMut(Instant, T) + Send + 'static,
) -> Result<oneshot::Receiver<Result<Paced>>> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("encore-loadgen-pacer".into())
        .spawn(move || {
            fine_timer_slack();
            let run = || -> Result<Paced> {
                let mut lags = LagTally::new()?;
                for (offset, item) in plan {
                    let t = start + offset;
                    wait_until(t);
                    lags.add(us_between(t, Instant::now()));
                    each(t, item);
                }
                Ok(Paced {
                    lags,
                    last: Instant::now(),
                })
            };
            let _ = tx.send(run());
        })
        .map_err(|e| Error::Runtime(format!("cannot start the pacing thread: {e}")))?;
    Ok(rx)
}

/// Sleeps until [`SPIN`] before `t`, then spins to `t`.
fn wait_until(t: Instant) {
    loop {
        let now = Instant::now();
        if now >= t {
            return;
        }
        let left = t - now;
        if left > SPIN * 2 {
            std::thread::sleep(left - SPIN);
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Asks Linux to end this thread's sleeps as close to their deadline as it can (the default
/// slack of 50 µs would make every send up to that late).
fn fine_timer_slack() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and affects only this thread; a
    // failure leaves the default slack, which is harmless.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_handed_on_in_order_and_not_early() {
        let start = Instant::now();
        let plan: Vec<(Duration, usize)> = (0..50)
            .map(|i| (Duration::from_micros(200 * i as u64), i))
            .collect();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let rx = pace(plan, start, move |t, i| {
            assert!(Instant::now() >= t, "item {i} handed on early");
            s2.lock().unwrap().push(i);
        })
        .unwrap();
        let paced = rx.blocking_recv().unwrap().unwrap();
        assert_eq!(*seen.lock().unwrap(), (0..50).collect::<Vec<_>>());
        assert_eq!(paced.lags.hist.len(), 50);
        assert!(paced.last >= start + Duration::from_micros(200 * 49));
    }
}
