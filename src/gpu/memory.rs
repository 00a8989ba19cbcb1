//! Device buffers and pinned host buffers with raw pointers, freed on drop.
//!
//! Kernels and cuBLAS take raw device pointers (and chunk offsets into them), and streams are
//! ordered by explicit events, so a thin RAII type over `cuMemAlloc` fits better than cudarc's
//! tracked slices. Copies are asynchronous on a given stream; the caller orders them.

use std::marker::PhantomData;
use std::sync::Arc;

use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::{CudaContext, CudaStream, result};

use crate::error::{Error, Result};
use crate::gpu::gpu_err;

/// `len` values of `T` in device memory.
pub struct DeviceBuffer<T> {
    ptr: CUdeviceptr,
    len: usize,
    ctx: Arc<CudaContext>,
    _t: PhantomData<T>,
}

impl<T: Copy> DeviceBuffer<T> {
    /// Uninitialised device memory for `len` values (at least one byte is allocated).
    pub fn new(ctx: &Arc<CudaContext>, len: usize, what: &str) -> Result<Self> {
        ctx.bind_to_thread()
            .map_err(|e| gpu_err("binding the CUDA context", e))?;
        let bytes = len
            .checked_mul(size_of::<T>())
            .ok_or_else(|| {
                Error::gpu_internal(format!("{what}: {len} values overflow the address space"))
            })?
            .max(1);
        // SAFETY: the context is current; the pointer is owned by the returned value and freed
        // exactly once in Drop.
        let ptr = unsafe { result::malloc_sync(bytes) }.map_err(|e| {
            gpu_err(
                &format!(
                    "allocating {what} ({})",
                    crate::util::human_bytes(bytes as u64)
                ),
                e,
            )
        })?;
        Ok(Self {
            ptr,
            len,
            ctx: ctx.clone(),
            _t: PhantomData,
        })
    }

    /// Device memory holding a copy of `src` (synchronous).
    pub fn from_host(ctx: &Arc<CudaContext>, src: &[T], what: &str) -> Result<Self> {
        let buf = Self::new(ctx, src.len(), what)?;
        if !src.is_empty() {
            // SAFETY: `buf` holds src.len() values; the copy is synchronous (pageable source).
            unsafe {
                cudarc::driver::sys::cuMemcpyHtoD_v2(buf.ptr, src.as_ptr().cast(), size_of_val(src))
            }
            .result()
            .map_err(|e| gpu_err(&format!("uploading {what}"), e))?;
        }
        Ok(buf)
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Device address of value `i` (may be one past the end).
    pub fn ptr_at(&self, i: usize) -> u64 {
        debug_assert!(i <= self.len);
        self.ptr + (i * size_of::<T>()) as u64
    }

    /// Device address of the first value.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// Copies `src` to values `offset..` asynchronously on `stream` (pinned memory makes it truly
    /// asynchronous).
    ///
    /// # Safety
    /// `src` must stay alive and unchanged until the stream has passed this point (wait for an
    /// event recorded after it before writing or freeing the source).
    pub unsafe fn upload_async(&self, offset: usize, src: &[T], stream: &CudaStream) -> Result<()> {
        if offset + src.len() > self.len {
            return Err(Error::gpu_internal(format!(
                "upload of {} values at {offset} overruns a buffer of {}",
                src.len(),
                self.len
            )));
        }
        if src.is_empty() {
            return Ok(());
        }
        // SAFETY: bounds checked above; the caller keeps `src` alive until the copy completes.
        unsafe { result::memcpy_htod_async(self.ptr_at(offset), src, stream.cu_stream()) }
            .map_err(|e| gpu_err("host-to-device copy", e))
    }

    /// Copies the whole buffer to `dst` and waits for it (after all earlier work on `stream`).
    pub fn download(&self, dst: &mut [T], stream: &CudaStream) -> Result<()> {
        if dst.len() != self.len {
            return Err(Error::gpu_internal(format!(
                "download into {} values from a buffer of {}",
                dst.len(),
                self.len
            )));
        }
        if dst.is_empty() {
            return Ok(());
        }
        // SAFETY: lengths match; the stream is synchronised before `dst` is used.
        unsafe { result::memcpy_dtoh_async(dst, self.ptr, stream.cu_stream()) }
            .map_err(|e| gpu_err("device-to-host copy", e))?;
        stream
            .synchronize()
            .map_err(|e| gpu_err("waiting for a device-to-host copy", e))
    }

    /// Copies values `offset..offset + dst.len()` to `dst` and waits for it (after all earlier
    /// work on `stream`).
    pub fn download_range(&self, offset: usize, dst: &mut [T], stream: &CudaStream) -> Result<()> {
        if offset + dst.len() > self.len {
            return Err(Error::gpu_internal(format!(
                "download of {} values at {offset} overruns a buffer of {}",
                dst.len(),
                self.len
            )));
        }
        if dst.is_empty() {
            return Ok(());
        }
        // SAFETY: bounds checked above; the stream is synchronised before `dst` is used.
        unsafe { result::memcpy_dtoh_async(dst, self.ptr_at(offset), stream.cu_stream()) }
            .map_err(|e| gpu_err("device-to-host copy", e))?;
        stream
            .synchronize()
            .map_err(|e| gpu_err("waiting for a device-to-host copy", e))
    }

    /// Copies `src` to values `offset..` (after all earlier work on `stream`) and waits for it.
    pub fn upload_range(&self, offset: usize, src: &[T], stream: &CudaStream) -> Result<()> {
        // SAFETY: `src` outlives the copy: the stream is synchronised before returning.
        unsafe { self.upload_async(offset, src, stream)? };
        stream
            .synchronize()
            .map_err(|e| gpu_err("waiting for a host-to-device copy", e))
    }

    /// Sets every byte to zero, asynchronously on `stream`.
    pub fn zero_async(&self, stream: &CudaStream) -> Result<()> {
        // SAFETY: writes exactly the buffer's bytes.
        unsafe {
            result::memset_d8_async(self.ptr, 0, self.len * size_of::<T>(), stream.cu_stream())
        }
        .map_err(|e| gpu_err("cuMemsetD8Async", e))
    }
}

impl<T> Drop for DeviceBuffer<T> {
    fn drop(&mut self) {
        // A failure here cannot be reported; the context is torn down with the process anyway.
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: `ptr` came from cuMemAlloc and is freed once; cuMemFree waits for work
            // that uses it.
            let _ = unsafe { result::free_sync(self.ptr) };
        }
    }
}

/// `len` values of `T` in page-locked host memory (asynchronous DMA source).
pub struct PinnedBuffer<T> {
    ptr: *mut T,
    len: usize,
    ctx: Arc<CudaContext>,
}

impl<T: Copy + bytemuck::Zeroable> PinnedBuffer<T> {
    /// Zeroed pinned memory for `len` values.
    pub fn new(ctx: &Arc<CudaContext>, len: usize) -> Result<Self> {
        ctx.bind_to_thread()
            .map_err(|e| gpu_err("binding the CUDA context", e))?;
        let bytes = (len * size_of::<T>()).max(1);
        // SAFETY: the context is current; the allocation is owned by the returned value.
        let ptr = unsafe { result::malloc_host(bytes, 0) }.map_err(|e| {
            gpu_err(
                &format!(
                    "allocating {} of pinned host memory",
                    crate::util::human_bytes(bytes as u64)
                ),
                e,
            )
        })? as *mut T;
        // SAFETY: `ptr` points to `bytes` writable bytes; T is Zeroable.
        unsafe { std::ptr::write_bytes(ptr, 0, len) };
        Ok(Self {
            ptr,
            len,
            ctx: ctx.clone(),
        })
    }

    /// The values.
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: `ptr` holds `len` initialised values for the lifetime of self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The values, writable. The caller must not write while a copy from them is in flight.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as above, and `&mut self` makes this the only live reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl<T> Drop for PinnedBuffer<T> {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: allocated by cuMemHostAlloc and freed once.
            let _ = unsafe { result::free_host(self.ptr.cast()) };
        }
    }
}
