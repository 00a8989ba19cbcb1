//! Data: input formats, the streaming ingest (`prep`), CSR matrices and the dataset format.
//!
//! The pipeline of `prep`, each step a module: [`blocks`] reads newline-aligned blocks,
//! [`lines`] parses records, [`aggregate`] collapses them to per-user play counts,
//! [`index`] maps original ids to dense ones, [`filter`] drops low-signal users and tracks,
//! [`split`] holds out validation listens, and [`dataset`] writes it all atomically.

pub mod aggregate;
pub mod blocks;
pub mod csr;
pub mod dataset;
pub mod filter;
pub mod formats;
pub mod index;
pub mod lines;
pub mod names;
pub mod npz;
pub mod prep;
pub mod split;
