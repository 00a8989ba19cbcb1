//! Data: input formats, the streaming ingest (`prep`), CSR matrices and the dataset format.
//!
//! The pipeline of `prep`, each step a module: [`formats`] resolves what the input is,
//! [`blocks`] reads newline-aligned blocks, [`lines`] parses all-integer records (the fast
//! path), [`records`] delimited records with string ids or fractional values, [`listens`]
//! ListenBrainz JSON listens, [`aggregate`] collapses them to per-user play counts,
//! [`index`] maps original ids to dense ones, [`filter`] drops low-signal users and tracks,
//! [`split`] holds out validation listens, and [`dataset`] writes it all atomically. Original
//! ids, integer or string, and their files are [`ids`].

pub mod aggregate;
pub mod blocks;
pub mod csr;
pub mod dataset;
pub mod filter;
pub mod formats;
pub mod ids;
pub mod index;
pub mod lines;
pub mod listens;
pub mod names;
pub mod npz;
pub mod prep;
pub mod records;
pub mod split;
