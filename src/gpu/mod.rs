//! The GPU side of the CPU/GPU seams: device selection, the CUDA context and streams, device and
//! pinned memory, the embedded kernels and cuBLAS.
//!
//! CUDA comes through cudarc with `dynamic-loading`: `libcuda` and `libcublas` are opened at run
//! time, so the same binary runs on hosts without a GPU. Nothing here touches the driver before
//! [`driver_present`] has said the library exists (cudarc panics on a missing library otherwise),
//! and every driver and cuBLAS status becomes an [`Error::Gpu`] holding the typed status
//! ([`GpuError`]). cudarc's types appear only here and in the two GPU backends of the seams
//! (`als::gpu`, `infer::gpu`); everything else sees `Gpu`, device addresses and `Error`.

pub mod als;
pub mod blas;
pub mod error;
pub mod memory;
pub mod topk;

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use cudarc::driver::sys::{CUdevice_attribute, CUresult};
use cudarc::driver::{CudaContext, CudaEvent, CudaStream, DriverError};

pub use error::GpuError;

use crate::error::{Error, Result};

/// Where a stage runs, from `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The first GPU when a CUDA driver and device are present, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// GPU number N (`gpu` is `gpu:0`).
    Gpu(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "gpu" | "cuda" => Ok(Self::Gpu(0)),
            _ => s
                .strip_prefix("gpu:")
                .or_else(|| s.strip_prefix("cuda:"))
                .and_then(|n| n.parse().ok())
                .map(Self::Gpu)
                .ok_or_else(|| format!("unknown device {s:?}: use auto, cpu, gpu or gpu:N")),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Gpu(n) => write!(f, "gpu:{n}"),
        }
    }
}

/// Whether the CUDA driver library can be loaded on this host.
pub fn driver_present() -> bool {
    // SAFETY: only tries to open the shared library by its candidate names; no driver call.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// The number of CUDA devices this process sees (0 without a driver or device).
pub fn device_count() -> usize {
    if !driver_present() {
        return 0;
    }
    CudaContext::device_count().map_or(0, |n| n.max(0) as usize)
}

/// A driver or cuBLAS failure while doing `what`.
pub(crate) fn gpu_err(what: &str, e: impl Into<GpuError>) -> Error {
    Error::gpu(what, e)
}

/// An open GPU: context, a compute stream and a copy stream, cuBLAS, and the kernel modules.
pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    /// Kernels and cuBLAS run here.
    pub stream: Arc<CudaStream>,
    /// Host→device uploads of streamed chunks run here, overlapping the compute stream.
    pub copy: Arc<CudaStream>,
    /// The kernel modules, each loaded the first time it is needed (a server never loads the
    /// training kernels): see [`Gpu::als_kernels`] and [`Gpu::topk_kernels`].
    als: OnceLock<als::AlsKernels>,
    topk: OnceLock<topk::TopkKernels>,
    pub blas: blas::Blas,
    pub ordinal: usize,
    pub name: String,
    pub total_memory: usize,
    pub multiprocessors: usize,
    pub compute_capability: (i32, i32),
    /// Theoretical DRAM bandwidth (bytes/s): 2 transfers per memory clock × bus width.
    pub peak_bandwidth: f64,
    /// Theoretical FP32 rate (FLOP/s): 128 FP32 lanes per SM (Ampere and Hopper) × 2 × clock.
    pub peak_fp32: f64,
}

impl Gpu {
    /// Opens GPU `ordinal`: fails with a clear message when there is no driver, no such device,
    /// no cuBLAS, or a driver too old for the embedded PTX.
    pub fn open(ordinal: usize) -> Result<Self> {
        if !driver_present() {
            return Err(Error::no_gpu(
                "no CUDA driver found (libcuda.so could not be loaded): install the NVIDIA \
                 driver, or use --device cpu",
            ));
        }
        let count = match CudaContext::device_count() {
            Ok(n) => n,
            // cuInit's answer when the driver sees no device: none installed, or all hidden by
            // CUDA_VISIBLE_DEVICES. That is "0 devices", said as such below.
            Err(DriverError(CUresult::CUDA_ERROR_NO_DEVICE)) => 0,
            Err(e) => return Err(gpu_err("cuDeviceGetCount", e)),
        };
        if ordinal >= count.max(0) as usize {
            let hidden = std::env::var("CUDA_VISIBLE_DEVICES")
                .map(|v| format!(" (CUDA_VISIBLE_DEVICES={v:?})"))
                .unwrap_or_default();
            return Err(Error::no_gpu(format!(
                "gpu:{ordinal} requested but this host has {count} CUDA device(s){hidden}"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| gpu_err("creating a CUDA context", e))?;
        // Encore orders its streams with explicit events; cudarc's per-buffer tracking would
        // add hidden waits (and we hand raw pointers to kernels and cuBLAS anyway).
        // SAFETY: called before any buffer or stream of this context exists.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .map_err(|e| gpu_err("creating a stream", e))?;
        let copy = ctx
            .new_stream()
            .map_err(|e| gpu_err("creating a stream", e))?;
        let blas = blas::Blas::new(stream.clone())?;
        let name = ctx.name().map_err(|e| gpu_err("cuDeviceGetName", e))?;
        let total_memory = ctx
            .total_mem()
            .map_err(|e| gpu_err("cuDeviceTotalMem", e))?;
        let multiprocessors = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| gpu_err("cuDeviceGetAttribute", e))?
            .max(1) as usize;
        let compute_capability = ctx
            .compute_capability()
            .map_err(|e| gpu_err("cuDeviceGetAttribute", e))?;
        // Report-only figures: an attribute a driver no longer offers gives 0, not an error.
        let attr = |a| ctx.attribute(a).map(|v| f64::from(v.max(0))).unwrap_or(0.0);
        let peak_bandwidth = 2.0
            * attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)
            * 1e3
            * attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)
            / 8.0;
        let peak_fp32 = multiprocessors as f64
            * 128.0
            * 2.0
            * attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)
            * 1e3;
        Ok(Self {
            ctx,
            stream,
            copy,
            als: OnceLock::new(),
            topk: OnceLock::new(),
            blas,
            ordinal,
            name,
            total_memory,
            multiprocessors,
            compute_capability,
            peak_bandwidth,
            peak_fp32,
        })
    }

    /// "NVIDIA H200 (gpu:0, 139.8 GiB, compute 9.0, 132 SMs)".
    pub fn describe(&self) -> String {
        format!(
            "{} (gpu:{}, {:.1} GiB, compute {}.{}, {} SMs)",
            self.name,
            self.ordinal,
            self.total_memory as f64 / (1u64 << 30) as f64,
            self.compute_capability.0,
            self.compute_capability.1,
            self.multiprocessors
        )
    }

    /// The training kernels of `cuda/als.cu`, loaded on first use.
    pub fn als_kernels(&self) -> Result<&als::AlsKernels> {
        self.loaded(&self.als, als::AlsKernels::load)
    }

    /// The top-K kernels of `cuda/topk.cu`, loaded on first use.
    pub fn topk_kernels(&self) -> Result<&topk::TopkKernels> {
        self.loaded(&self.topk, topk::TopkKernels::load)
    }

    /// The module in `cell`, loaded by `load` the first time (two threads racing both load;
    /// one result is kept, which is harmless).
    fn loaded<'a, T>(
        &self,
        cell: &'a OnceLock<T>,
        load: impl FnOnce(&Arc<CudaContext>) -> Result<T>,
    ) -> Result<&'a T> {
        if let Some(k) = cell.get() {
            return Ok(k);
        }
        self.bind()?;
        let k = load(&self.ctx)?;
        Ok(cell.get_or_init(|| k))
    }

    /// Free and total device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize)> {
        self.bind()?;
        cudarc::driver::result::mem_get_info().map_err(|e| gpu_err("cuMemGetInfo", e))
    }

    /// Makes this GPU's context current on the calling thread.
    pub fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| gpu_err("binding the CUDA context", e))
    }

    /// Waits for all work on both streams.
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| gpu_err("synchronizing the compute stream", e))?;
        self.copy
            .synchronize()
            .map_err(|e| gpu_err("synchronizing the copy stream", e))
    }

    /// A new event (no timing).
    pub fn event(&self) -> Result<CudaEvent> {
        self.ctx
            .new_event(None)
            .map_err(|e| gpu_err("creating an event", e))
    }
}

/// Resolves `--device`: `Ok(None)` means the CPU. `auto` falls back to the CPU (and says why in
/// the returned note) when no driver or device is usable; `gpu` fails instead.
pub fn resolve(choice: DeviceChoice) -> Result<(Option<Gpu>, Option<String>)> {
    match choice {
        DeviceChoice::Cpu => Ok((None, None)),
        DeviceChoice::Gpu(n) => Gpu::open(n).map(|g| (Some(g), None)),
        DeviceChoice::Auto => {
            if !driver_present() {
                return Ok((None, Some("no CUDA driver found; using the CPU".into())));
            }
            match Gpu::open(0) {
                Ok(g) => Ok((Some(g), None)),
                Err(e) => Ok((None, Some(format!("GPU not usable ({e}); using the CPU")))),
            }
        }
    }
}
