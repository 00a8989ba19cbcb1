//! Training across processes and hosts: one process ("rank") per GPU or per CPU host.
//!
//! Why this shape: implicit ALS has no cross-row coupling inside a half-step, so each rank can
//! solve its own block of rows against a full copy of the fixed side's factors. A half-step
//! then needs exactly two collectives: the Gram matrix YᵀY (each rank contributes the part of
//! its own rows of Y) and the all-gather of the freshly solved rows, after which every rank
//! again holds every factor. Each rank keeps only its block of the interaction matrix and of its
//! transpose, so data N× larger than one device fits on N devices; the factors are replicated.
//!
//! - [`collective`]: the seam (`Collective`: rank, world, all-gather, broadcast) and the
//!   reductions built on it, with a fixed summation order so every rank, and every world size,
//!   computes bit-identical Gram matrices.
//! - [`tcp`]: the CPU implementation: a star of TCP connections through rank 0, which is also
//!   the rendezvous every launch uses (and, for GPUs, how NCCL's unique id travels).
//! - [`partition`]: rows split into contiguous blocks balanced by nonzeros.
//! - [`launch`]: who this process is: `--rank/--world/--rendezvous`, or SLURM's variables.
//! - [`device`]: the GPU side of the seam (`DeviceCollective`: all-gather of device blocks, a
//!   device sum), host-staged through any `Collective`; [`nccl`]: the NCCL implementation, the
//!   library's search and loading. The GPU backend itself is `als::gpu::GpuBackend::sharded`.

pub mod backend;
pub mod collective;
pub mod device;
pub mod launch;
pub mod nccl;
pub mod partition;
pub mod tcp;

pub use backend::ShardedCpu;
pub use collective::{Collective, Single};
pub use device::{DeviceCollective, HostStaged};
pub use launch::WorldSpec;
pub use partition::balanced_blocks;
