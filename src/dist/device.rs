//! The device-side collective seam of multi-GPU training, and its host-staged implementation.
//!
//! Multi-GPU ALS needs two collectives on device memory: the all-gather of the factor rows
//! each rank solved (blocks of different lengths, in rank order, in place), and, when the Gram
//! matrix is reduced rather than recomputed, a sum. [`DeviceCollective`] is that seam:
//! - [`NcclCollective`](super::nccl::NcclCollective): NCCL on device buffers, in-stream, one
//!   process per GPU;
//! - [`HostStaged`]: device → host copy, any CPU [`Collective`] (the TCP star), host → device.
//!   It is slow (every byte crosses PCIe twice and the star), but it needs no NCCL and lets
//!   several ranks share one GPU, which NCCL refuses: that is how the multi-rank GPU algorithm
//!   is tested on a one-GPU host. Sums add the ranks' values in rank order, the same bits on
//!   every rank.

use std::ops::Range;

use super::collective::{Collective, Traffic, all_gather_f32_each};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::gpu::memory::DeviceBuffer;

/// A communicator over device memory among `world()` ranks; every rank makes the same calls.
pub trait DeviceCollective: Send {
    fn rank(&self) -> usize;
    fn world(&self) -> usize;
    /// In place: `blocks[r]` (element ranges of `buf`, in rank order, covering it) holds rank
    /// r's values on rank r before the call and on every rank after it. Runs after the work
    /// already enqueued on `gpu.stream`; when it returns, later work on that stream sees the
    /// gathered values.
    fn all_gather_blocks(
        &mut self,
        gpu: &Gpu,
        buf: &DeviceBuffer<f32>,
        blocks: &[Range<usize>],
    ) -> Result<()>;
    /// In place: the element-wise sum over ranks of the first `len` values of `buf`.
    fn all_reduce_sum(&mut self, gpu: &Gpu, buf: &DeviceBuffer<f32>, len: usize) -> Result<()>;
    /// Tells the other ranks this one is failing with `message` (best effort, quick).
    fn abort(&mut self, message: &str);
    /// Bytes this rank sent and received so far.
    fn traffic(&self) -> Traffic;
    /// "nccl 2.27.3", "host-staged over tcp".
    fn describe(&self) -> String;
}

/// Checks that `blocks` are `world` consecutive ranges covering `0..len`.
pub fn check_blocks(blocks: &[Range<usize>], len: usize, world: usize) -> Result<()> {
    let mut at = 0;
    for b in blocks {
        if b.start != at || b.end < b.start {
            return Err(Error::gpu_internal(format!(
                "all-gather blocks {blocks:?} are not consecutive"
            )));
        }
        at = b.end;
    }
    if blocks.len() != world || at != len {
        return Err(Error::gpu_internal(format!(
            "{} all-gather blocks covering {at} values, for {world} ranks and {len} values",
            blocks.len()
        )));
    }
    Ok(())
}

/// [`DeviceCollective`] through host memory and a CPU [`Collective`] (see the module docs).
pub struct HostStaged {
    comm: Box<dyn Collective>,
}

impl HostStaged {
    pub fn new(comm: Box<dyn Collective>) -> Self {
        Self { comm }
    }
}

impl DeviceCollective for HostStaged {
    fn rank(&self) -> usize {
        self.comm.rank()
    }

    fn world(&self) -> usize {
        self.comm.world()
    }

    fn all_gather_blocks(
        &mut self,
        gpu: &Gpu,
        buf: &DeviceBuffer<f32>,
        blocks: &[Range<usize>],
    ) -> Result<()> {
        let (rank, world) = (self.comm.rank(), self.comm.world());
        check_blocks(blocks, buf.len(), world)?;
        if world == 1 {
            return Ok(());
        }
        let own = &blocks[rank];
        let mut mine = vec![0f32; own.len()];
        buf.download_range(own.start, &mut mine, &gpu.stream)?;
        let all = all_gather_f32_each(self.comm.as_mut(), &mine)?;
        for (r, (b, vals)) in blocks.iter().zip(&all).enumerate() {
            if vals.len() != b.len() {
                return Err(Error::Runtime(format!(
                    "rank {r} sent {} values for its block of {}",
                    vals.len(),
                    b.len()
                )));
            }
            if r != rank {
                buf.upload_range(b.start, vals, &gpu.stream)?;
            }
        }
        Ok(())
    }

    fn all_reduce_sum(&mut self, gpu: &Gpu, buf: &DeviceBuffer<f32>, len: usize) -> Result<()> {
        if self.comm.world() == 1 {
            return Ok(());
        }
        let mut mine = vec![0f32; len];
        buf.download_range(0, &mut mine, &gpu.stream)?;
        let all = all_gather_f32_each(self.comm.as_mut(), &mine)?;
        let mut sum = vec![0f32; len];
        for (r, vals) in all.iter().enumerate() {
            if vals.len() != len {
                return Err(Error::Runtime(format!(
                    "rank {r} sent {} values for a sum of {len}",
                    vals.len()
                )));
            }
            // Rank order on every rank: the same bits everywhere.
            for (s, v) in sum.iter_mut().zip(vals) {
                *s += v;
            }
        }
        buf.upload_range(0, &sum, &gpu.stream)
    }

    fn abort(&mut self, message: &str) {
        self.comm.abort(message);
    }

    fn traffic(&self) -> Traffic {
        self.comm.traffic()
    }

    fn describe(&self) -> String {
        "host-staged over tcp".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_must_cover_the_buffer_in_rank_order() {
        assert!(check_blocks(&[0..3, 3..3, 3..10], 10, 3).is_ok());
        assert!(check_blocks(&[0..3, 4..10], 10, 2).is_err());
        assert!(check_blocks(&[0..3, 3..9], 10, 2).is_err());
        let one = vec![Range { start: 0, end: 10 }];
        assert!(check_blocks(&one, 10, 2).is_err());
    }
}
