//! The CPU communicator: a star of TCP connections through rank 0.
//!
//! Rank 0 listens at the rendezvous address; every other rank connects there (retrying until
//! rank 0 is up), says who it is, and waits for rank 0 to confirm that the whole world has
//! arrived with matching sizes. The same connections then carry the collectives: each rank
//! sends its block to rank 0, which sends every rank the blocks of all. It is the simplest
//! transport that is correct and testable without a GPU; on GPUs the bulk traffic goes through
//! NCCL, and this star only carries the rendezvous (NCCL's unique id) and small messages.
//!
//! Failure is loud and quick: a rank that exits or is killed closes its sockets, so its peers
//! see the connection end at once and fail naming it; a rank that is alive but silent for
//! `timeout` (stopped, or its host gone without closing the connection) fails them after that
//! timeout. A rank that fails on its own sends an abort message first, so the others report
//! the real cause.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::collective::{Collective, Traffic};
use super::launch::WorldSpec;
use crate::error::{Error, Result};

/// First bytes of every hello: the protocol and its version.
const MAGIC: &[u8; 8] = b"ENCORE\x01\x00";
/// The largest frame accepted (a corrupt length must not turn into a huge allocation).
const MAX_FRAME: u64 = 1 << 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Hello = 1,
    Welcome = 2,
    Data = 3,
    Abort = 4,
    /// A rank that finished cleanly (watchdog mode): its closing connection is no loss.
    Bye = 5,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Self> {
        [
            Kind::Hello,
            Kind::Welcome,
            Kind::Data,
            Kind::Abort,
            Kind::Bye,
        ]
        .into_iter()
        .find(|k| *k as u8 == b)
    }
}

/// A rank's connections to the others (see the module docs).
#[derive(Debug)]
pub struct TcpCollective {
    rank: usize,
    world: usize,
    /// Rank 0: the stream of rank `i + 1` at index `i`. Other ranks: the stream to rank 0.
    peers: Vec<TcpStream>,
    timeout: Duration,
    traffic: Traffic,
}

fn comm(rank: usize, msg: impl std::fmt::Display) -> Error {
    Error::Runtime(format!("distributed training, rank {rank}: {msg}"))
}

/// What an I/O error on the connection to `peer` means, for a message.
fn lost(e: &std::io::Error, peer: usize, timeout: Duration) -> String {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => format!(
            "no message from rank {peer} for {} s (--dist-timeout); it is stuck, or its host \
             is gone",
            timeout.as_secs()
        ),
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe => {
            format!("lost rank {peer}: its connection closed (it exited or was killed)")
        }
        _ => format!("connection to rank {peer}: {e}"),
    }
}

fn write_frame(s: &mut TcpStream, kind: Kind, payload: &[u8]) -> std::io::Result<()> {
    let mut head = [0u8; 9];
    head[0] = kind as u8;
    head[1..].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    s.write_all(&head)?;
    s.write_all(payload)?;
    s.flush()
}

/// Reads one frame.
fn read_frame(s: &mut TcpStream) -> std::io::Result<(Kind, Vec<u8>)> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head)?;
    let bad = |m: String| std::io::Error::new(ErrorKind::InvalidData, m);
    let kind = Kind::from_byte(head[0]).ok_or_else(|| bad(format!("frame kind {}", head[0])))?;
    let mut len = [0u8; 8];
    len.copy_from_slice(&head[1..]);
    let len = u64::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(bad(format!("frame of {len} bytes")));
    }
    let mut buf = Vec::new();
    buf.try_reserve_exact(len as usize)
        .map_err(|_| bad(format!("cannot allocate a frame of {len} bytes")))?;
    buf.resize(len as usize, 0);
    s.read_exact(&mut buf)?;
    Ok((kind, buf))
}

fn hello(rank: usize, world: usize, fingerprint: &str) -> Vec<u8> {
    let mut p = MAGIC.to_vec();
    p.extend_from_slice(&(rank as u64).to_le_bytes());
    p.extend_from_slice(&(world as u64).to_le_bytes());
    p.extend_from_slice(fingerprint.as_bytes());
    p
}

fn parse_hello(p: &[u8]) -> Option<(usize, usize, String)> {
    if p.len() < 24 || &p[..8] != MAGIC {
        return None;
    }
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&p[i..i + 8]);
        u64::from_le_bytes(b) as usize
    };
    Some((
        word(8),
        word(16),
        String::from_utf8_lossy(&p[24..]).into_owned(),
    ))
}

/// The address rank 0 listens on for the rendezvous `host:port`: the loopback address itself
/// when the host is local, else every interface (a cluster host name may resolve, on the host
/// itself, to an address the others cannot reach).
pub fn listen_addr(rendezvous: &str) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = rendezvous
        .to_socket_addrs()
        .map_err(|e| {
            Error::Config(format!(
                "--rendezvous {rendezvous:?}: not a reachable HOST:PORT ({e})"
            ))
        })?
        .collect();
    let Some(first) = addrs.first().copied() else {
        return Err(Error::Config(format!(
            "--rendezvous {rendezvous:?}: the host has no address"
        )));
    };
    Ok(if first.ip().is_loopback() {
        first
    } else if first.is_ipv6() {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, first.port()))
    } else {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, first.port()))
    })
}

impl TcpCollective {
    /// Joins the world described by `spec`: rank 0 listens at the rendezvous, the others
    /// connect. Every rank must pass the same `fingerprint` (dataset and settings); `timeout`
    /// bounds the wait for the whole world to arrive and, afterwards, any single wait for a
    /// peer.
    pub fn join(spec: &WorldSpec, fingerprint: &str, timeout: Duration) -> Result<Self> {
        spec.validate()?;
        if spec.rank == 0 {
            let addr = listen_addr(&spec.rendezvous)?;
            let listener = TcpListener::bind(addr).map_err(|e| {
                comm(
                    0,
                    format!(
                        "cannot listen at {addr} for the rendezvous {}: {e}",
                        spec.rendezvous
                    ),
                )
            })?;
            Self::host(listener, spec.world, fingerprint, timeout)
        } else {
            Self::connect(spec, fingerprint, timeout)
        }
    }

    /// Rank 0 of a world of `world`, on an already bound listener (a local launch binds port 0
    /// and passes the port it got to the ranks it starts).
    pub fn host(
        listener: TcpListener,
        world: usize,
        fingerprint: &str,
        timeout: Duration,
    ) -> Result<Self> {
        let here = listener
            .local_addr()
            .map_or_else(|_| "the rendezvous".to_string(), |a| a.to_string());
        let deadline = Instant::now() + timeout;
        let mut slots: Vec<Option<TcpStream>> = (1..world).map(|_| None).collect();
        listener
            .set_nonblocking(true)
            .map_err(|e| comm(0, format!("rendezvous socket: {e}")))?;
        let fail = |slots: &mut Vec<Option<TcpStream>>, msg: String| {
            for s in slots.iter_mut().flatten() {
                let _ = write_frame(s, Kind::Abort, msg.as_bytes());
            }
            comm(0, msg)
        };
        while slots.iter().any(Option::is_none) {
            let (mut s, from) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        let missing: Vec<String> = slots
                            .iter()
                            .enumerate()
                            .filter(|(_, s)| s.is_none())
                            .map(|(i, _)| (i + 1).to_string())
                            .collect();
                        let msg = format!(
                            "after {} s, ranks {} of {world} had not joined at {here}; start \
                             every rank with the same --world and --rendezvous",
                            timeout.as_secs(),
                            missing.join(", ")
                        );
                        return Err(fail(&mut slots, msg));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(e) => return Err(fail(&mut slots, format!("rendezvous accept: {e}"))),
            };
            let setup = s
                .set_nonblocking(false)
                .and_then(|_| s.set_nodelay(true))
                .and_then(|_| s.set_read_timeout(Some(Duration::from_secs(10))));
            if setup.is_err() {
                continue;
            }
            // Something that is not a rank (a port scanner, a stray client) is ignored.
            let Ok((Kind::Hello, p)) = read_frame(&mut s) else {
                continue;
            };
            let Some((rank, their_world, their_print)) = parse_hello(&p) else {
                continue;
            };
            let problem = if their_world != world {
                Some(format!(
                    "rank {rank} (from {from}) was started with --world {their_world}, rank 0 \
                     with --world {world}"
                ))
            } else if rank == 0 || rank >= world {
                Some(format!(
                    "a process from {from} says it is rank {rank}, outside 1..{world}"
                ))
            } else if slots[rank - 1].is_some() {
                Some(format!(
                    "two processes say they are rank {rank} (the second from {from})"
                ))
            } else if their_print != fingerprint {
                Some(format!(
                    "rank {rank} (from {from}) was started on a different dataset or with \
                     different training settings than rank 0 (rank {rank} vs rank 0: {})",
                    super::collective::fingerprint_diff(&their_print, fingerprint)
                ))
            } else {
                None
            };
            if let Some(msg) = problem {
                let _ = write_frame(&mut s, Kind::Abort, msg.as_bytes());
                return Err(fail(&mut slots, msg));
            }
            slots[rank - 1] = Some(s);
        }
        let mut peers: Vec<TcpStream> = slots.into_iter().flatten().collect();
        for (i, s) in peers.iter_mut().enumerate() {
            let ok = s
                .set_read_timeout(Some(timeout))
                .and_then(|_| s.set_write_timeout(Some(timeout)))
                .and_then(|_| write_frame(s, Kind::Welcome, &[]));
            if let Err(e) = ok {
                return Err(comm(0, lost(&e, i + 1, timeout)));
            }
        }
        Ok(Self {
            rank: 0,
            world,
            peers,
            timeout,
            traffic: Traffic::default(),
        })
    }

    fn connect(spec: &WorldSpec, fingerprint: &str, timeout: Duration) -> Result<Self> {
        let rank = spec.rank;
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no address");
        let mut stream = None;
        while stream.is_none() {
            match spec.rendezvous.to_socket_addrs() {
                Ok(addrs) => {
                    for a in addrs {
                        let left = deadline.saturating_duration_since(Instant::now());
                        match TcpStream::connect_timeout(&a, left.max(Duration::from_millis(50))) {
                            Ok(s) => {
                                stream = Some(s);
                                break;
                            }
                            Err(e) => last = e.to_string(),
                        }
                    }
                }
                Err(e) => last = e.to_string(),
            }
            if stream.is_none() {
                if Instant::now() >= deadline {
                    return Err(comm(
                        rank,
                        format!(
                            "could not reach rank 0 at {} within {} s ({last}); is rank 0 \
                             running, with this --rendezvous?",
                            spec.rendezvous,
                            timeout.as_secs()
                        ),
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let Some(mut s) = stream else {
            return Err(comm(rank, "no connection"));
        };
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        s.set_nodelay(true)
            .and_then(|_| s.set_read_timeout(Some(left)))
            .and_then(|_| s.set_write_timeout(Some(timeout)))
            .and_then(|_| write_frame(&mut s, Kind::Hello, &hello(rank, spec.world, fingerprint)))
            .map_err(|e| comm(rank, lost(&e, 0, timeout)))?;
        match read_frame(&mut s) {
            Ok((Kind::Welcome, _)) => {}
            Ok((Kind::Abort, m)) => {
                return Err(comm(
                    rank,
                    format!("rank 0 refused to start: {}", String::from_utf8_lossy(&m)),
                ));
            }
            Ok((k, _)) => return Err(comm(rank, format!("unexpected {k:?} from rank 0"))),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(comm(
                    rank,
                    format!(
                        "rank 0 did not see the whole world of {} arrive within {} s",
                        spec.world,
                        timeout.as_secs()
                    ),
                ));
            }
            Err(e) => return Err(comm(rank, lost(&e, 0, timeout))),
        }
        s.set_read_timeout(Some(timeout))
            .map_err(|e| comm(rank, lost(&e, 0, timeout)))?;
        Ok(Self {
            rank,
            world: spec.world,
            peers: vec![s],
            timeout,
            traffic: Traffic::default(),
        })
    }

    fn send(&mut self, to: usize, kind: Kind, payload: &[u8]) -> Result<()> {
        let i = if self.rank == 0 { to - 1 } else { 0 };
        let Some(stream) = self.peers.get_mut(i) else {
            return Err(comm(
                self.rank,
                "the connections are closed (after an abort)",
            ));
        };
        if let Err(e) = write_frame(stream, kind, payload) {
            let err = comm(self.rank, lost(&e, to, self.timeout));
            if self.rank == 0 {
                self.abort(&err.to_string());
            }
            return Err(err);
        }
        self.traffic.sent += 9 + payload.len() as u64;
        Ok(())
    }

    fn receive(&mut self, from: usize) -> Result<Vec<u8>> {
        let i = if self.rank == 0 { from - 1 } else { 0 };
        let Some(stream) = self.peers.get_mut(i) else {
            return Err(comm(
                self.rank,
                "the connections are closed (after an abort)",
            ));
        };
        let (kind, p) = match read_frame(stream) {
            Ok(x) => x,
            Err(e) => {
                let err = comm(self.rank, lost(&e, from, self.timeout));
                // Rank 0 tells the others, so they stop with the cause rather than "lost rank 0".
                if self.rank == 0 {
                    self.abort(&err.to_string());
                }
                return Err(err);
            }
        };
        self.traffic.received += 9 + p.len() as u64;
        match kind {
            Kind::Data => Ok(p),
            Kind::Abort => {
                let msg = String::from_utf8_lossy(&p).into_owned();
                // Rank 0 passes the cause on, so every rank stops with it.
                if self.rank == 0 {
                    self.abort(&msg);
                }
                Err(Error::Runtime(msg))
            }
            k => Err(comm(
                self.rank,
                format!("unexpected {k:?} from rank {from}"),
            )),
        }
    }
}

impl Collective for TcpCollective {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.world
    }

    fn all_gather_bytes(&mut self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        if self.rank != 0 {
            self.send(0, Kind::Data, mine)?;
            let all = self.receive(0)?;
            return split_blocks(&all, self.world)
                .ok_or_else(|| comm(self.rank, "a malformed all-gather from rank 0"));
        }
        let mut blocks = vec![mine.to_vec()];
        for r in 1..self.world {
            blocks.push(self.receive(r)?);
        }
        let mut all =
            Vec::with_capacity(8 * self.world + blocks.iter().map(Vec::len).sum::<usize>());
        for b in &blocks {
            all.extend_from_slice(&(b.len() as u64).to_le_bytes());
        }
        for b in &blocks {
            all.extend_from_slice(b);
        }
        for r in 1..self.world {
            self.send(r, Kind::Data, &all)?;
        }
        Ok(blocks)
    }

    fn broadcast_bytes(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        if self.rank == 0 {
            for r in 1..self.world {
                self.send(r, Kind::Data, buf)?;
            }
        } else {
            *buf = self.receive(0)?;
        }
        Ok(())
    }

    fn abort(&mut self, message: &str) {
        let msg = if message.contains("distributed training, rank") {
            message.to_string()
        } else {
            format!("rank {} failed: {message}", self.rank)
        };
        for s in &mut self.peers {
            let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
            let _ = write_frame(s, Kind::Abort, msg.as_bytes());
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        // Closing a socket with unread input sends a reset, and a reset makes the peer drop
        // what it had not read yet: the abort itself. So read until each peer closes (it does
        // once it has read the abort), for at most two seconds in all.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut sink = [0u8; 1 << 16];
        for s in &mut self.peers {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
                    break;
                }
                match s.read(&mut sink) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        self.peers.clear();
    }

    fn traffic(&self) -> Traffic {
        self.traffic
    }
}

/// Splits rank 0's all-gather message (W lengths, then the blocks) into the blocks.
fn split_blocks(all: &[u8], world: usize) -> Option<Vec<Vec<u8>>> {
    let head = all.get(..8 * world)?;
    let mut at = 8 * world;
    let mut out = Vec::with_capacity(world);
    for w in head.chunks_exact(8) {
        let len = usize::try_from(bytemuck::pod_read_unaligned::<u64>(w)).ok()?;
        let end = at.checked_add(len)?;
        out.push(all.get(at..end)?.to_vec());
        at = end;
    }
    (at == all.len()).then_some(out)
}

/// Called from the watchdog's thread with the message when this process is stuck (see
/// [`Watchdog`]); the CLI prints it and exits.
pub type OnStuck = Box<dyn Fn(&str) + Send + Sync>;

/// The TCP star turned into a failure detector while NCCL carries the data.
///
/// One thread per connection reads until the peer says goodbye: a connection that closes
/// without one (the peer exited or was killed) or an abort message marks the world lost, and
/// rank 0 passes the cause on to the others. The training thread asks [`Watchdog::lost`]
/// between polls of its GPU work. A call that can block inside NCCL (joining, launching a
/// group) is wrapped in [`Watchdog::blocking`]: if the world is lost while it blocks, or it
/// blocks longer than the timeout, a ticker thread calls `on_stuck`, since the training thread
/// cannot notice then.
pub struct Watchdog {
    rank: usize,
    shared: Arc<Shared>,
    writers: Arc<Mutex<Vec<TcpStream>>>,
}

struct Shared {
    rank: usize,
    timeout: Duration,
    lost: Mutex<Option<(String, Instant)>>,
    /// The training thread has seen the loss.
    noticed: AtomicBool,
    /// A blocking call in progress, and since when.
    busy: Mutex<Option<(String, Instant)>>,
    done: AtomicBool,
}

impl Shared {
    fn set_lost(&self, msg: String) {
        if let Ok(mut l) = self.lost.lock()
            && l.is_none()
        {
            *l = Some((msg, Instant::now()));
        }
    }
}

/// Writes `kind` to every stream, each within two seconds.
fn tell_all(writers: &Mutex<Vec<TcpStream>>, kind: Kind, payload: &[u8]) {
    if let Ok(mut ws) = writers.lock() {
        for s in ws.iter_mut() {
            let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
            let _ = write_frame(s, kind, payload);
        }
    }
}

impl TcpCollective {
    /// Hands the connections to a [`Watchdog`]; no collective runs over them afterwards.
    pub fn into_watchdog(mut self, timeout: Duration, on_stuck: Option<OnStuck>) -> Watchdog {
        let rank = self.rank;
        let shared = Arc::new(Shared {
            rank,
            timeout,
            lost: Mutex::new(None),
            noticed: AtomicBool::new(false),
            busy: Mutex::new(None),
            done: AtomicBool::new(false),
        });
        let peers = std::mem::take(&mut self.peers);
        let mut readers = Vec::with_capacity(peers.len());
        for (i, s) in peers.iter().enumerate() {
            let peer = if rank == 0 { i + 1 } else { 0 };
            match s.try_clone() {
                Ok(r) => readers.push((peer, r)),
                Err(e) => {
                    shared.set_lost(comm(rank, format!("watching rank {peer}: {e}")).to_string())
                }
            }
        }
        let writers = Arc::new(Mutex::new(peers));
        for (peer, mut r) in readers {
            let (sh, writers) = (shared.clone(), writers.clone());
            let _ = r.set_read_timeout(None);
            let spawned = std::thread::Builder::new()
                .name(format!("encore-watch-{peer}"))
                .spawn(move || {
                    let shared = sh;
                    let msg = match read_frame_until_news(&mut r) {
                        News::Bye => return,
                        News::Abort(m) => m,
                        News::Closed(e) => {
                            if shared.done.load(Ordering::SeqCst) {
                                return;
                            }
                            comm(shared.rank, lost(&e, peer, shared.timeout)).to_string()
                        }
                    };
                    shared.set_lost(msg.clone());
                    // Rank 0 tells the others, so every rank stops with the cause.
                    if shared.rank == 0 && !shared.done.load(Ordering::SeqCst) {
                        tell_all(&writers, Kind::Abort, msg.as_bytes());
                    }
                });
            if let Err(e) = spawned {
                shared.set_lost(comm(rank, format!("starting a watchdog thread: {e}")).to_string());
            }
        }
        if let Some(on_stuck) = on_stuck {
            let shared = shared.clone();
            let _ = std::thread::Builder::new()
                .name("encore-watchdog".into())
                .spawn(move || ticker(&shared, on_stuck));
        }
        Watchdog {
            rank,
            shared,
            writers,
        }
    }
}

enum News {
    Bye,
    Abort(String),
    Closed(std::io::Error),
}

/// Reads frames until a goodbye, an abort or the end of the connection.
fn read_frame_until_news(s: &mut TcpStream) -> News {
    loop {
        match read_frame(s) {
            Ok((Kind::Bye, _)) => return News::Bye,
            Ok((Kind::Abort, m)) => return News::Abort(String::from_utf8_lossy(&m).into_owned()),
            Ok(_) => {}
            Err(e) => return News::Closed(e),
        }
    }
}

/// Calls `on_stuck` once the training thread has not noticed a loss for a while (1 s while it
/// is inside a blocking call, 5 s otherwise), or a blocking call has run past the timeout.
fn ticker(shared: &Shared, on_stuck: OnStuck) {
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if shared.done.load(Ordering::SeqCst) {
            return;
        }
        let busy = shared.busy.lock().ok().and_then(|b| b.clone());
        let lost = shared.lost.lock().ok().and_then(|l| l.clone());
        if let Some((msg, at)) = lost
            && !shared.noticed.load(Ordering::SeqCst)
        {
            let grace = if busy.is_some() { 1 } else { 5 };
            if at.elapsed() >= Duration::from_secs(grace) {
                on_stuck(&msg);
                return;
            }
        }
        if let Some((what, since)) = busy
            && since.elapsed() > shared.timeout
        {
            on_stuck(
                &comm(
                    shared.rank,
                    format!(
                        "{what} did not return within {} s (--dist-timeout); a rank is stuck \
                         or gone",
                        shared.timeout.as_secs()
                    ),
                )
                .to_string(),
            );
            return;
        }
    }
}

impl Watchdog {
    /// Why the world is lost, if it is (the training thread then stops).
    pub fn lost(&self) -> Option<String> {
        let l = self.shared.lost.lock().ok()?.as_ref()?.0.clone();
        self.shared.noticed.store(true, Ordering::SeqCst);
        Some(l)
    }

    /// Runs `f`, a call that may block until every rank takes part, under the watch of the
    /// ticker (see the type's docs); a loss seen meanwhile is its error.
    pub fn blocking<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        if let Ok(mut b) = self.shared.busy.lock() {
            *b = Some((what.to_string(), Instant::now()));
        }
        let r = f();
        if let Ok(mut b) = self.shared.busy.lock() {
            *b = None;
        }
        match (r, self.lost()) {
            (Err(_), Some(l)) => Err(Error::Runtime(l)),
            (r, _) => r,
        }
    }

    /// Tells the other ranks this one fails with `message` and stops watching.
    pub fn abort(&mut self, message: &str) {
        if self.shared.done.swap(true, Ordering::SeqCst) {
            return;
        }
        let msg = if message.contains("distributed training, rank") {
            message.to_string()
        } else {
            format!("rank {} failed: {message}", self.rank)
        };
        tell_all(&self.writers, Kind::Abort, msg.as_bytes());
        if let Ok(ws) = self.writers.lock() {
            for s in ws.iter() {
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
        }
    }

    /// A clean end: says goodbye to the others and stops watching.
    pub fn finish(self) {
        if !self.shared.done.swap(true, Ordering::SeqCst) {
            tell_all(&self.writers, Kind::Bye, &[]);
        }
    }
}

impl Drop for Watchdog {
    /// Without [`Watchdog::finish`] this is a loss to the others (as when the process dies):
    /// the connections close at once, although the watching threads still hold them.
    fn drop(&mut self) {
        self.shared.done.store(true, Ordering::SeqCst);
        if let Ok(ws) = self.writers.lock() {
            for s in ws.iter() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}
