//! The process's open-file limit: every connection is a file descriptor, so a server whose soft
//! `RLIMIT_NOFILE` is the common default of 1,024 runs out of descriptors long before it runs
//! out of anything else (issue 14: 15,000–19,500 sockets held against a 20,000 limit during an
//! overload). At start the server raises the soft limit to the hard one, which an unprivileged
//! process may do, and sizes its connection limit below what that allows.

/// The open-file limit before and after [`raise_nofile_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// Soft limit found at start.
    pub before: u64,
    /// Soft limit now (the hard limit, unless raising failed).
    pub after: u64,
    /// The hard limit.
    pub hard: u64,
}

impl NofileLimit {
    /// One line for the log.
    pub fn describe(&self) -> String {
        let show = |v: u64| {
            if v == u64::MAX {
                "unlimited".to_string()
            } else {
                v.to_string()
            }
        };
        if self.after > self.before {
            format!(
                "open-file limit raised from {} to {} (the hard limit)",
                show(self.before),
                show(self.after)
            )
        } else {
            format!(
                "open-file limit {} (hard limit {})",
                show(self.after),
                show(self.hard)
            )
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. `Err` carries the OS error's text; on a
/// platform without rlimits the limit is reported as unlimited and nothing changes.
#[cfg(unix)]
pub fn raise_nofile_limit() -> Result<NofileLimit, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit that outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!(
            "getrlimit(RLIMIT_NOFILE): {}",
            std::io::Error::last_os_error()
        ));
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not on every unix
    let to_u64 = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            u64::MAX
        } else {
            v as u64
        }
    };
    let before = to_u64(lim.rlim_cur);
    let hard = to_u64(lim.rlim_max);
    if lim.rlim_cur == lim.rlim_max {
        return Ok(NofileLimit {
            before,
            after: before,
            hard,
        });
    }
    let raised = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: `raised` is a valid rlimit; raising the soft limit up to the hard one is always
    // permitted, and a refusal is reported through the return value.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(format!(
            "setrlimit(RLIMIT_NOFILE, {hard}): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(NofileLimit {
        before,
        after: hard,
        hard,
    })
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (no rlimits here: nothing to do).
#[cfg(not(unix))]
pub fn raise_nofile_limit() -> Result<NofileLimit, String> {
    Ok(NofileLimit {
        before: u64::MAX,
        after: u64::MAX,
        hard: u64::MAX,
    })
}

/// Descriptors kept free of connections: the listener, model and dataset files during a reload,
/// the runtime's own (epoll, eventfd), standard streams and some slack.
pub const RESERVED_FDS: u64 = 256;

/// The most connections `nofile` descriptors allow with [`RESERVED_FDS`] kept aside (at least 1).
pub fn connections_allowed(nofile: u64) -> usize {
    nofile
        .saturating_sub(RESERVED_FDS)
        .clamp(1, usize::MAX as u64) as usize
}

/// CPU seconds (user + system) this process has used so far, for the load generator's report
/// of its own cost; `None` where the OS does not say.
#[cfg(unix)]
pub fn process_cpu_seconds() -> Option<f64> {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable rusage that outlives the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    Some(secs(u.ru_utime) + secs(u.ru_stime))
}

/// CPU seconds this process has used so far (not available here).
#[cfg(not(unix))]
pub fn process_cpu_seconds() -> Option<f64> {
    None
}

/// Hands freed heap memory back to the OS (glibc's `malloc_trim`); `false` where there is
/// nothing to call. glibc keeps what thousands of connections freed in its per-thread arenas,
/// so without this the resident size after an overload stays at its peak (issue 14: 158 → 594
/// → 772 MB over four runs).
pub fn trim_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim has no preconditions; it only releases free memory.
        unsafe {
            libc::malloc_trim(0);
        }
        true
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Resident memory of this process in bytes (Linux: `/proc/self/statm`), for `/metrics`.
pub fn resident_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions; a failure returns -1, handled below.
    #[cfg(unix)]
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    #[cfg(not(unix))]
    let page = 4096;
    (page > 0).then(|| pages * page as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_allowed_keeps_descriptors_aside() {
        assert_eq!(connections_allowed(20_000), 20_000 - RESERVED_FDS as usize);
        assert_eq!(connections_allowed(100), 1, "never zero");
        assert!(connections_allowed(u64::MAX) > 1 << 30);
    }

    #[test]
    fn the_log_line_says_what_changed() {
        let raised = NofileLimit {
            before: 1024,
            after: 4096,
            hard: 4096,
        };
        assert_eq!(
            raised.describe(),
            "open-file limit raised from 1024 to 4096 (the hard limit)"
        );
        let same = NofileLimit {
            before: 4096,
            after: 4096,
            hard: 4096,
        };
        assert_eq!(same.describe(), "open-file limit 4096 (hard limit 4096)");
    }

    #[test]
    fn this_process_has_used_some_cpu_and_memory() {
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(process_cpu_seconds().is_some_and(|s| s > 0.0));
        if cfg!(target_os = "linux") {
            assert!(resident_bytes().is_some_and(|b| b > 1 << 20));
        }
    }
}
