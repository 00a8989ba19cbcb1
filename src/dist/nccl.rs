//! NCCL: the GPU communicator of multi-GPU training, loaded at run time.
//!
//! Why it looks like this:
//! - cudarc opens `libnccl` on the first NCCL call and panics when no library is found, so
//!   nothing here calls NCCL before [`loadable`] has said the library opens; every status is
//!   checked and becomes an [`Error::Gpu`] holding NCCL's own name and text for it.
//! - cudarc's loader tries `libnccl.so` (and `.so.13`, `.so.12`, ... `.so.9`, `.so.1`) but not
//!   `libnccl.so.2`, the name every NCCL 2 release (pip's `nvidia-nccl-cu13` included) ships.
//!   [`LibrarySearch`] finds the library where it usually lives, and [`shim_dir`] makes a
//!   private directory whose `libnccl.so` links to it: a process started with that directory
//!   first on `LD_LIBRARY_PATH` loads it (the CLI re-executes itself so, since the dynamic
//!   loader reads `LD_LIBRARY_PATH` only at start-up).
//! - Only calls whose signatures are unchanged since NCCL 2.12 are used (`ncclGetVersion`,
//!   `ncclGetUniqueId`, `ncclCommInitRank`, `ncclBroadcast`, `ncclAllReduce`,
//!   `ncclGroupStart/End`, `ncclCommGetAsyncError`, `ncclCommAbort`, `ncclCommDestroy`,
//!   `ncclGetErrorString`); no multicast (NVLS) API is called, and launchers keep
//!   `NCCL_NVLS_ENABLE=0` in the environment.
//! - NCCL's kernels wait forever for a peer that died. [`NcclCollective`] therefore never blocks
//!   on the stream: it polls an event and, between polls, the TCP watchdog (which notices a
//!   peer's closed connection at once) and NCCL's asynchronous error, and aborts the
//!   communicator (`ncclCommAbort`, which ends its kernels) on either, or after the timeout.

use std::ffi::CStr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cudarc::nccl::sys::{self, ncclComm_t, ncclDataType_t, ncclRedOp_t, ncclResult_t};

use super::collective::Traffic;
use super::device::DeviceCollective;
use super::tcp::Watchdog;
use crate::error::{Error, Result};
use crate::gpu::memory::DeviceBuffer;
use crate::gpu::{Gpu, GpuError, gpu_err};

/// The variable that names the NCCL library (a file, or a directory holding it).
pub const LIB_VAR: &str = "ENCORE_NCCL_LIB";

/// Where to look for the NCCL library, in this order.
#[derive(Debug, Clone, Default)]
pub struct LibrarySearch {
    /// [`LIB_VAR`]: the library file, or a directory holding it. When set, nothing else is
    /// searched.
    pub explicit: Option<PathBuf>,
    /// The directories of `LD_LIBRARY_PATH`.
    pub ld_library_path: Vec<PathBuf>,
    /// Python's package directories; pip's `nvidia-nccl-cu13` puts the library in
    /// `nvidia/nccl/lib` below one of them.
    pub site_packages: Vec<PathBuf>,
    /// The usual system directories.
    pub system: Vec<PathBuf>,
}

/// The system directories searched last.
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
    "/usr/local/cuda/lib64",
    "/usr/local/nccl/lib",
];

impl LibrarySearch {
    /// From this process's environment: [`LIB_VAR`], `LD_LIBRARY_PATH`, the package
    /// directories `python3` reports (skipped when there is no `python3`), [`SYSTEM_DIRS`].
    pub fn from_env() -> Self {
        let explicit = std::env::var_os(LIB_VAR)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let ld_library_path = std::env::var_os("LD_LIBRARY_PATH")
            .map(|v| {
                std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let site_packages = if explicit.is_some() {
            Vec::new()
        } else {
            python_package_dirs()
        };
        Self {
            explicit,
            ld_library_path,
            site_packages,
            system: SYSTEM_DIRS.iter().map(PathBuf::from).collect(),
        }
    }

    /// The directories searched, in order (without [`LibrarySearch::explicit`]).
    pub fn directories(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.ld_library_path.clone();
        dirs.extend(
            self.site_packages
                .iter()
                .map(|d| d.join("nvidia").join("nccl").join("lib")),
        );
        dirs.extend(self.system.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        dirs.retain(|d| seen.insert(d.clone()));
        dirs
    }

    /// The library file, or an error that names everything searched and how to fix it.
    pub fn find(&self) -> Result<PathBuf> {
        if let Some(e) = &self.explicit {
            if e.is_file() {
                return Ok(e.clone());
            }
            if e.is_dir() {
                return library_in(e).ok_or_else(|| {
                    Error::no_gpu(format!(
                        "{LIB_VAR}={} is a directory without libnccl.so or libnccl.so.2 in it",
                        e.display()
                    ))
                });
            }
            return Err(Error::no_gpu(format!(
                "{LIB_VAR}={} does not exist (set it to the NCCL library file, e.g. \
                 .../site-packages/nvidia/nccl/lib/libnccl.so.2, or its directory)",
                e.display()
            )));
        }
        let dirs = self.directories();
        for d in &dirs {
            if let Some(f) = library_in(d) {
                return Ok(f);
            }
        }
        let list = |v: &[PathBuf]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        Err(Error::no_gpu(format!(
            "NCCL was not found (no libnccl.so or libnccl.so.2): searched LD_LIBRARY_PATH ({}), \
             Python's packages ({}), and {}. Install it (pip install nvidia-nccl-cu13, or your \
             distribution's libnccl2), or set {LIB_VAR} to the library file",
            list(&self.ld_library_path),
            list(
                &self
                    .site_packages
                    .iter()
                    .map(|d| d.join("nvidia/nccl/lib"))
                    .collect::<Vec<_>>()
            ),
            list(&self.system),
        )))
    }
}

/// The NCCL library in `dir`: `libnccl.so`, else `libnccl.so.2`, else the highest-numbered
/// `libnccl.so.2.*` there.
pub fn library_in(dir: &Path) -> Option<PathBuf> {
    for name in ["libnccl.so", "libnccl.so.2"] {
        let f = dir.join(name);
        if f.is_file() {
            return Some(f);
        }
    }
    let mut versioned: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let rest = name.strip_prefix("libnccl.so.2.")?;
            let version: Option<Vec<u64>> = rest.split('.').map(|p| p.parse().ok()).collect();
            let path = e.path();
            path.is_file().then_some((version?, path))
        })
        .collect();
    versioned.sort();
    versioned.pop().map(|(_, p)| p)
}

/// Python's package directories, from `python3` (none when it is missing or fails).
fn python_package_dirs() -> Vec<PathBuf> {
    let script = "import site, sys\n\
                  dirs = list(site.getsitepackages()) + [site.getusersitepackages()] + sys.path\n\
                  print('\\n'.join(d for d in dirs if d))";
    let out = std::process::Command::new("python3")
        .args(["-I", "-c", script])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let mut seen = std::collections::HashSet::new();
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(PathBuf::from)
                .filter(|p| p.is_dir() && seen.insert(p.clone()))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// A private directory under `base` whose `libnccl.so` is a link to `lib` (the name cudarc's
/// loader opens): `base/encore-nccl-<uid>-<hash of lib's path>`, reused while it links there.
pub fn shim_dir(lib: &Path, base: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let lib = std::fs::canonicalize(lib).map_err(|e| Error::Io {
        path: lib.to_path_buf(),
        error: e,
    })?;
    let hash = blake3::hash(lib.as_os_str().as_encoded_bytes()).to_hex();
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let dir = base.join(format!("encore-nccl-{uid}-{}", &hash.as_str()[..16]));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| Error::Io { path, error }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let meta = std::fs::symlink_metadata(&dir).map_err(io(&dir))?;
    if !meta.is_dir() || meta.uid() != uid {
        return Err(Error::Config(format!(
            "{} exists but is not a directory of this user; remove it, or set TMPDIR",
            dir.display()
        )));
    }
    let link = dir.join("libnccl.so");
    if std::fs::read_link(&link).ok().as_deref() == Some(lib.as_path()) {
        return Ok(dir);
    }
    // A new link beside it, renamed over the old one: concurrent ranks never see a partial one.
    let tmp = dir.join(format!("libnccl.so.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&lib, &tmp).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &link).map_err(io(&link))?;
    Ok(dir)
}

/// Whether cudarc can open the NCCL library in this process (only then is any NCCL call
/// made: cudarc panics on a missing library).
pub fn loadable() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: only tries to open the shared library by cudarc's candidate names; no NCCL call.
    *PRESENT.get_or_init(|| unsafe { sys::is_culib_present() })
}

fn require() -> Result<()> {
    if loadable() {
        Ok(())
    } else {
        Err(Error::no_gpu(
            "libnccl.so could not be loaded by this process: start it through `encore train \
             --gpus N` (which finds the library), or put a directory holding libnccl.so (a link \
             to libnccl.so.2 will do) first on LD_LIBRARY_PATH",
        ))
    }
}

/// NCCL's text for a status.
fn status_text(r: ncclResult_t) -> String {
    // SAFETY: ncclGetErrorString returns a static NUL-terminated string for any status (the
    // library is loaded: callers got `r` from NCCL).
    let p = unsafe { sys::ncclGetErrorString(r) };
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null, NUL-terminated and static (above).
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// `Ok` for `ncclSuccess`, else the typed error naming `what`.
fn check(what: &str, r: ncclResult_t) -> Result<()> {
    if r == ncclResult_t::ncclSuccess {
        return Ok(());
    }
    Err(gpu_err(
        what,
        GpuError::Nccl {
            name: format!("{r:?}"),
            text: status_text(r),
        },
    ))
}

/// The loaded library's version (major, minor, patch).
pub fn version() -> Result<(u32, u32, u32)> {
    require()?;
    let mut code: std::ffi::c_int = 0;
    // SAFETY: `code` is a valid out-pointer.
    check("ncclGetVersion", unsafe { sys::ncclGetVersion(&mut code) })?;
    let c = code.max(0) as u32;
    // NCCL_VERSION_CODE is major·10000 + minor·100 + patch from 2.9 on, major·1000 + ... before.
    Ok(if c >= 10_000 {
        (c / 10_000, c / 100 % 100, c % 100)
    } else {
        (c / 1000, c / 100 % 10, c % 100)
    })
}

/// The bytes of an `ncclUniqueId`: made by rank 0, sent to the others over the TCP rendezvous.
pub const UNIQUE_ID_BYTES: usize = 128;

/// A new NCCL unique id (rank 0 makes it; every rank initialises with it).
pub fn unique_id() -> Result<Vec<u8>> {
    require()?;
    let mut id = sys::ncclUniqueId {
        internal: [0; UNIQUE_ID_BYTES],
    };
    // SAFETY: `id` is a valid out-pointer of the binding's type.
    check("ncclGetUniqueId", unsafe { sys::ncclGetUniqueId(&mut id) })?;
    Ok(id.internal.iter().map(|&c| c as u8).collect())
}

/// One rank's NCCL communicator, bound to the GPU that was current when it was made.
pub struct NcclComm {
    comm: ncclComm_t,
    rank: usize,
    world: usize,
    /// After `ncclCommAbort` the handle is gone.
    aborted: bool,
}

// SAFETY: an NCCL communicator may be used from any thread as long as calls on it are not
// concurrent; `NcclComm` is only used through `&mut` (or by its owner), never shared.
unsafe impl Send for NcclComm {}

impl NcclComm {
    /// Joins the communicator of `world` ranks named by `id` (from [`unique_id`] on rank 0) as
    /// `rank`, on `gpu`. Blocks until every rank has joined.
    pub fn init(gpu: &Gpu, id: &[u8], rank: usize, world: usize) -> Result<Self> {
        require()?;
        if id.len() != UNIQUE_ID_BYTES {
            return Err(Error::Runtime(format!(
                "an NCCL unique id of {} bytes (expected {UNIQUE_ID_BYTES})",
                id.len()
            )));
        }
        let (nranks, r) = (
            i32::try_from(world).map_err(|_| Error::Config(format!("world {world}")))?,
            i32::try_from(rank).map_err(|_| Error::Config(format!("rank {rank}")))?,
        );
        let mut uid = sys::ncclUniqueId {
            internal: [0; UNIQUE_ID_BYTES],
        };
        for (d, s) in uid.internal.iter_mut().zip(id) {
            *d = *s as std::ffi::c_char;
        }
        // NCCL uses the current device: this GPU's context.
        gpu.bind()?;
        let mut comm: ncclComm_t = std::ptr::null_mut();
        // SAFETY: `comm` is a valid out-pointer; `uid` came from ncclGetUniqueId on rank 0.
        check("ncclCommInitRank", unsafe {
            sys::ncclCommInitRank(&mut comm, nranks, uid, r)
        })?;
        if comm.is_null() {
            return Err(Error::gpu_internal(
                "ncclCommInitRank returned no communicator",
            ));
        }
        Ok(Self {
            comm,
            rank,
            world,
            aborted: false,
        })
    }

    fn live(&self) -> Result<ncclComm_t> {
        if self.aborted {
            Err(Error::Runtime(
                "the NCCL communicator was aborted after an earlier failure".into(),
            ))
        } else {
            Ok(self.comm)
        }
    }

    /// Rank `root`'s `len` floats at `buf + at` to every rank's `buf + at`, enqueued on the
    /// compute stream (in place).
    fn broadcast(
        &self,
        gpu: &Gpu,
        buf: &DeviceBuffer<f32>,
        at: Range<usize>,
        root: usize,
    ) -> Result<()> {
        let comm = self.live()?;
        if at.end > buf.len() || at.start > at.end {
            return Err(Error::gpu_internal(format!(
                "broadcast of {at:?} from a buffer of {}",
                buf.len()
            )));
        }
        let p = buf.ptr_at(at.start) as *mut std::ffi::c_void;
        // SAFETY: `p` holds at.len() floats (checked above) and lives until the stream has
        // passed this point (the backend waits before freeing); in place is allowed.
        check("ncclBroadcast", unsafe {
            sys::ncclBroadcast(
                p,
                p,
                at.len(),
                ncclDataType_t::ncclFloat32,
                root as std::ffi::c_int,
                comm,
                gpu.stream.cu_stream() as sys::cudaStream_t,
            )
        })
    }

    /// The sum over ranks of `len` floats at `buf`, in place, enqueued on the compute stream.
    fn all_reduce(&self, gpu: &Gpu, buf: &DeviceBuffer<f32>, len: usize) -> Result<()> {
        let comm = self.live()?;
        if len > buf.len() {
            return Err(Error::gpu_internal("all-reduce larger than its buffer"));
        }
        let p = buf.ptr() as *mut std::ffi::c_void;
        // SAFETY: as in `broadcast`.
        check("ncclAllReduce", unsafe {
            sys::ncclAllReduce(
                p,
                p,
                len,
                ncclDataType_t::ncclFloat32,
                ncclRedOp_t::ncclSum,
                comm,
                gpu.stream.cu_stream() as sys::cudaStream_t,
            )
        })
    }

    /// An error NCCL found asynchronously (a network peer gone, a failed kernel), if any.
    fn async_error(&self) -> Result<()> {
        let comm = self.live()?;
        let mut r = ncclResult_t::ncclSuccess;
        // SAFETY: a live communicator and a valid out-pointer.
        check("ncclCommGetAsyncError", unsafe {
            sys::ncclCommGetAsyncError(comm, &mut r)
        })?;
        if r == ncclResult_t::ncclInProgress {
            return Ok(());
        }
        check("an NCCL operation", r)
    }

    /// Aborts the communicator: its pending operations end (their kernels return), and it can
    /// no longer be used.
    pub fn abort(&mut self) {
        if !self.aborted {
            self.aborted = true;
            // SAFETY: a live communicator, aborted once; nothing else uses it concurrently.
            let _ = unsafe { sys::ncclCommAbort(self.comm) };
        }
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world(&self) -> usize {
        self.world
    }
}

impl Drop for NcclComm {
    fn drop(&mut self) {
        if !self.aborted {
            // SAFETY: a live communicator, destroyed once; its operations have completed (the
            // owner waited for them, or aborted instead).
            let _ = unsafe { sys::ncclCommDestroy(self.comm) };
        }
    }
}

/// [`DeviceCollective`] through NCCL: device buffers, in-stream, with the watchdog and
/// timeout of the module docs.
pub struct NcclCollective {
    comm: NcclComm,
    /// `None` for a world of one (nothing to watch).
    watchdog: Option<Watchdog>,
    timeout: Duration,
    event: Option<cudarc::driver::CudaEvent>,
    traffic: Traffic,
    version: (u32, u32, u32),
}

impl NcclCollective {
    /// A world of one rank on `gpu` (tests compare it with the plain GPU trainer).
    pub fn single(gpu: &Gpu) -> Result<Self> {
        let version = version()?;
        let id = unique_id()?;
        let comm = NcclComm::init(gpu, &id, 0, 1)?;
        Ok(Self {
            comm,
            watchdog: None,
            timeout: Duration::from_secs(600),
            event: None,
            traffic: Traffic::default(),
            version,
        })
    }

    /// Rank `tcp.rank()` of `tcp.world()` on `gpu`: rank 0 makes the unique id and sends it
    /// over `tcp` (the rendezvous), every rank joins, and `tcp` becomes the watchdog that
    /// notices a lost rank. `timeout` bounds the join and every wait for a collective;
    /// `on_stuck` is called (from the watchdog's thread) when this process is stuck in a
    /// blocking NCCL call after a rank was lost, or for longer than `timeout` (the CLI prints
    /// the message and exits).
    pub fn join(
        gpu: &Gpu,
        mut tcp: super::tcp::TcpCollective,
        timeout: Duration,
        on_stuck: Option<super::tcp::OnStuck>,
    ) -> Result<Self> {
        use super::collective::Collective;
        let (rank, world) = (tcp.rank(), tcp.world());
        let prepared = (|| -> Result<(Vec<u8>, (u32, u32, u32))> {
            let version = version()?;
            let mut id = if rank == 0 { unique_id()? } else { Vec::new() };
            tcp.broadcast_bytes(&mut id)?;
            // Every rank must load the same NCCL major.minor (their wire protocols differ).
            let v = format!("{}.{}", version.0, version.1);
            super::collective::check_same(&mut tcp, "NCCL version", &v)?;
            Ok((id, version))
        })();
        let (id, version) = match prepared {
            Ok(x) => x,
            Err(e) => {
                tcp.abort(&e.to_string());
                return Err(e);
            }
        };
        let watchdog = tcp.into_watchdog(timeout, on_stuck);
        let comm = watchdog.blocking("ncclCommInitRank (joining the NCCL communicator)", || {
            NcclComm::init(gpu, &id, rank, world)
        });
        let mut watchdog = watchdog;
        let comm = match comm {
            Ok(c) => c,
            Err(e) => {
                watchdog.abort(&e.to_string());
                return Err(e);
            }
        };
        Ok(Self {
            comm,
            watchdog: Some(watchdog),
            timeout,
            event: None,
            traffic: Traffic::default(),
            version,
        })
    }

    /// Aborts NCCL and tells the other ranks; the error to return.
    fn fail(&mut self, msg: String) -> Error {
        self.comm.abort();
        if let Some(w) = &mut self.watchdog {
            w.abort(&msg);
        }
        Error::Runtime(msg)
    }

    /// Waits, without blocking in the driver, until the compute stream has passed the work
    /// enqueued so far; fails at once on a lost rank or an NCCL error, and after the timeout.
    fn wait(&mut self, gpu: &Gpu, what: &str) -> Result<()> {
        if self.event.is_none() {
            self.event = Some(gpu.event()?);
        }
        let Some(ev) = &self.event else {
            return Err(Error::gpu_internal("no event"));
        };
        ev.record(&gpu.stream)
            .map_err(|e| gpu_err("recording an event", e))?;
        let start = Instant::now();
        let mut polls = 0u32;
        loop {
            match ev.try_is_complete() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => {
                    let msg = format!("while waiting for {what}: {}", gpu_err("cuEventQuery", e));
                    return Err(self.fail(msg));
                }
            }
            if let Some(lost) = self.watchdog.as_ref().and_then(Watchdog::lost) {
                return Err(self.fail(lost));
            }
            if let Err(e) = self.comm.async_error() {
                let msg = format!("rank {}: {what}: {e}", self.comm.rank);
                return Err(self.fail(msg));
            }
            if start.elapsed() > self.timeout {
                let msg = format!(
                    "distributed training, rank {}: {what} did not complete within {} s \
                     (--dist-timeout); a rank is stuck",
                    self.comm.rank,
                    self.timeout.as_secs()
                );
                return Err(self.fail(msg));
            }
            // Spin briefly (a collective usually ends within microseconds of the last rank's
            // arrival), then poll every 100 µs.
            polls += 1;
            if polls < 200 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }
}

impl DeviceCollective for NcclCollective {
    fn rank(&self) -> usize {
        self.comm.rank
    }

    fn world(&self) -> usize {
        self.comm.world
    }

    fn all_gather_blocks(
        &mut self,
        gpu: &Gpu,
        buf: &DeviceBuffer<f32>,
        blocks: &[Range<usize>],
    ) -> Result<()> {
        super::device::check_blocks(blocks, buf.len(), self.comm.world)?;
        if self.comm.world == 1 {
            return Ok(());
        }
        // An all-gather of blocks of different lengths: one in-place broadcast per rank, in
        // one group (NCCL runs them together).
        // SAFETY: no arguments; every rank makes the same grouped calls.
        let started = check("ncclGroupStart", unsafe { sys::ncclGroupStart() });
        if let Err(e) = started {
            return Err(self.fail(e.to_string()));
        }
        let mut queued = Ok(());
        for (root, b) in blocks.iter().enumerate() {
            if !b.is_empty() {
                queued = self.comm.broadcast(gpu, buf, b.clone(), root);
                if queued.is_err() {
                    break;
                }
            }
        }
        let wd = self.watchdog.as_ref();
        let ended = match wd {
            Some(w) => w.blocking("ncclGroupEnd (the factor all-gather)", || {
                // SAFETY: closes the group opened above.
                check("ncclGroupEnd", unsafe { sys::ncclGroupEnd() })
            }),
            // SAFETY: as above.
            None => check("ncclGroupEnd", unsafe { sys::ncclGroupEnd() }),
        };
        if let Err(e) = queued.and(ended) {
            return Err(self.fail(e.to_string()));
        }
        let mine = blocks[self.comm.rank].len();
        let others = (buf.len() - mine) as u64 * 4;
        // Every rank receives the others' blocks; in NCCL's rings each forwards about as much.
        self.traffic.received += others;
        self.traffic.sent += others;
        self.wait(gpu, "the factor all-gather")
    }

    fn all_reduce_sum(&mut self, gpu: &Gpu, buf: &DeviceBuffer<f32>, len: usize) -> Result<()> {
        if self.comm.world == 1 {
            return Ok(());
        }
        if let Err(e) = self.comm.all_reduce(gpu, buf, len) {
            return Err(self.fail(e.to_string()));
        }
        // A ring all-reduce moves 2 (W − 1)/W of the buffer each way per rank.
        let w = self.comm.world as u64;
        let bytes = 2 * (w - 1) * len as u64 * 4 / w;
        self.traffic.received += bytes;
        self.traffic.sent += bytes;
        self.wait(gpu, "the Gram all-reduce")
    }

    fn abort(&mut self, message: &str) {
        let _ = self.fail(message.to_string());
    }

    fn traffic(&self) -> Traffic {
        self.traffic
    }

    fn describe(&self) -> String {
        let (a, b, c) = self.version;
        format!("nccl {a}.{b}.{c}")
    }
}

impl Drop for NcclCollective {
    fn drop(&mut self) {
        // A clean end: the others must not take this rank's exit for a loss.
        if let Some(w) = self.watchdog.take() {
            w.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"not really a library").unwrap();
    }

    #[test]
    fn the_library_is_found_in_search_order() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let site = root.join("venv/lib/python3.12/site-packages");
        let pip = site.join("nvidia/nccl/lib/libnccl.so.2");
        touch(&pip);
        let sys_lib = root.join("usr/lib/libnccl.so.2.19.3");
        touch(&sys_lib);
        touch(&root.join("usr/lib/libnccl.so.2.21.5"));
        let ld = root.join("ld");
        std::fs::create_dir_all(&ld).unwrap();
        let mut s = LibrarySearch {
            explicit: None,
            ld_library_path: vec![ld.clone()],
            site_packages: vec![site.clone()],
            system: vec![root.join("usr/lib")],
        };
        // LD_LIBRARY_PATH has none; pip's comes before the system's.
        assert_eq!(s.find().unwrap(), pip);
        s.site_packages.clear();
        // The highest versioned file of a directory without the plain names.
        assert_eq!(s.find().unwrap(), root.join("usr/lib/libnccl.so.2.21.5"));
        touch(&ld.join("libnccl.so"));
        assert_eq!(s.find().unwrap(), ld.join("libnccl.so"));
        // An explicit file or directory wins; a missing one is an error that names it.
        s.explicit = Some(sys_lib.clone());
        assert_eq!(s.find().unwrap(), sys_lib);
        s.explicit = Some(site.join("nvidia/nccl/lib"));
        assert_eq!(s.find().unwrap(), pip);
        s.explicit = Some(root.join("nope"));
        let e = s.find().unwrap_err().to_string();
        assert!(
            e.contains("ENCORE_NCCL_LIB=") && e.contains("does not exist"),
            "{e}"
        );
        s.explicit = Some(ld.clone());
        std::fs::remove_file(ld.join("libnccl.so")).unwrap();
        let e = s.find().unwrap_err().to_string();
        assert!(e.contains("without libnccl.so"), "{e}");
    }

    #[test]
    fn a_missing_library_names_every_place_searched() {
        let t = tempfile::tempdir().unwrap();
        let s = LibrarySearch {
            explicit: None,
            ld_library_path: vec![t.path().join("a")],
            site_packages: vec![t.path().join("site")],
            system: vec![t.path().join("sys")],
        };
        let e = s.find().unwrap_err().to_string();
        for part in [
            "LD_LIBRARY_PATH",
            "/a",
            "site/nvidia/nccl/lib",
            "/sys",
            "ENCORE_NCCL_LIB",
        ] {
            assert!(e.contains(part), "{part} missing from: {e}");
        }
        assert_eq!(s.directories().len(), 3);
    }

    #[test]
    fn without_the_library_every_call_is_an_error_not_a_panic() {
        if loadable() {
            eprintln!("NCCL loads on this host: nothing to check");
            return;
        }
        for e in [unique_id().unwrap_err(), version().unwrap_err()] {
            assert!(
                e.to_string().contains("libnccl.so could not be loaded"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_shim_links_libnccl_so_to_the_library_and_is_reused() {
        let t = tempfile::tempdir().unwrap();
        let lib = t.path().join("pip/libnccl.so.2");
        touch(&lib);
        let d = shim_dir(&lib, t.path()).unwrap();
        let link = d.join("libnccl.so");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            std::fs::canonicalize(&lib).unwrap()
        );
        assert_eq!(std::fs::read(&link).unwrap(), b"not really a library");
        assert_eq!(shim_dir(&lib, t.path()).unwrap(), d);
        // Another library gets another directory.
        let other = t.path().join("sys/libnccl.so.2");
        touch(&other);
        assert_ne!(shim_dir(&other, t.path()).unwrap(), d);
        assert!(shim_dir(&t.path().join("missing"), t.path()).is_err());
    }
}
