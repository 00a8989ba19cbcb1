//! Model files: `user_factors.npy`, `item_factors.npy` (float32, C order, `numpy.load`-able) and
//! `model.json` (hyper-parameters, the dataset it was trained on, per-iteration times and
//! losses, solver, threads, machine, and a blake3 checksum of each factor file). Written
//! atomically; loading checks every shape and checksum.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use ndarray::ArrayView2;
use ndarray_npy::WriteNpyExt;
use serde::{Deserialize, Serialize};

use crate::als::{AlsConfig, Factors, IterationStats};
use crate::data::dataset::Dataset;
use crate::data::npz;
use crate::error::{Error, IoContext, Result};
use crate::sys::Machine;
use crate::util::{AtomicDir, OutputKind};

pub const USER_FACTORS: &str = "user_factors.npy";
pub const ITEM_FACTORS: &str = "item_factors.npy";
pub const MODEL_JSON: &str = OutputKind::Model.marker();

/// The dataset a model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRef {
    pub dir: PathBuf,
    pub content_hash: String,
    pub users: usize,
    pub items: usize,
    pub train_pairs: usize,
}

/// `model.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelMeta {
    pub encore_version: String,
    pub created_unix: u64,
    pub config: AlsConfig,
    pub solver: String,
    pub device: String,
    pub threads: usize,
    pub machine: Machine,
    pub dataset: DatasetRef,
    pub iterations: Vec<IterationStats>,
    pub train_seconds: f64,
    /// The factor files' checksums, filled in by [`Model::save`] and checked by [`Model::load`];
    /// `None` in a model not yet saved and in models written before checksums (issue 13),
    /// which still load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksums: Option<FactorChecksums>,
}

/// `"blake3:<hex>"` of each factor file's bytes, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactorChecksums {
    #[serde(rename = "user_factors.npy")]
    pub user_factors: String,
    #[serde(rename = "item_factors.npy")]
    pub item_factors: String,
}

/// How a checksum reads in `model.json`.
fn checksum_text(hash: blake3::Hash) -> String {
    format!("blake3:{}", hash.to_hex())
}

/// A reader or writer that hashes every byte passing through it, so a factor file is hashed in
/// the same pass that writes or reads it (a second pass over gigabytes of factors would cost as
/// much as the read itself).
struct Hashing<T> {
    inner: T,
    hasher: blake3::Hasher,
}

impl<T> Hashing<T> {
    fn new(inner: T) -> Self {
        Self {
            inner,
            hasher: blake3::Hasher::new(),
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A trained model.
#[derive(Debug, Clone)]
pub struct Model {
    pub meta: ModelMeta,
    pub users: Factors,
    pub items: Factors,
}

/// Writes `f` to `path` and returns the checksum of the bytes written.
fn write_factors(path: &Path, f: &Factors) -> Result<String> {
    let view = ArrayView2::from_shape((f.n, f.k), &f.data)
        .map_err(|e| Error::npy(path, format!("factor shape: {e}")))?;
    let file = File::create(path).at(path)?;
    // The hasher sits under the buffer, so it sees the file's bytes in large blocks.
    let mut w = BufWriter::with_capacity(1 << 20, Hashing::new(file));
    view.write_npy(&mut w).map_err(|e| Error::npy(path, e))?;
    w.flush().at(path)?;
    Ok(checksum_text(w.get_ref().hasher.finalize()))
}

/// Reads the factors in `path` and the checksum of the whole file.
fn read_factors(path: &Path) -> Result<(Factors, String)> {
    // The header's shape is checked against the file's size before anything is allocated: a
    // header claiming 10^11 rows must be an error, not an allocation failure (issue 13).
    let file = File::open(path).at(path)?;
    let len = file.metadata().at(path)?.len();
    let mut r = BufReader::with_capacity(1 << 20, Hashing::new(file));
    let (n, k, data) = npz::read_f32_matrix(&mut r, len).map_err(|m| Error::npy(path, m))?;
    // Whatever follows the array is part of the file too.
    io::copy(&mut r, &mut io::sink()).at(path)?;
    let checksum = checksum_text(r.get_ref().hasher.finalize());
    Ok((Factors { n, k, data }, checksum))
}

/// Fails, naming the file, unless `actual` is the checksum `model.json` recorded for it.
fn check_checksum(path: &Path, recorded: &str, actual: &str) -> Result<()> {
    if recorded == actual {
        return Ok(());
    }
    if !recorded.starts_with("blake3:") {
        return Err(Error::bad_input(
            path,
            format!("model.json records an unknown kind of checksum for it: {recorded:?}"),
        ));
    }
    Err(Error::bad_input(
        path,
        "checksum mismatch: the file changed after the model was written",
    ))
}

impl Model {
    /// Whether [`Model::save`] could write to `dir`: fails when `dir` exists without `force`,
    /// and even with `force` when `dir` is or holds the dataset `dataset` (the model's input), or
    /// is not a model directory (it has no `model.json`: a dataset, say, or anything else).
    /// Call it before training so a refusal comes before the work, not after.
    pub fn check_save(dir: &Path, force: bool, dataset: &Path) -> Result<()> {
        AtomicDir::check(dir, force, OutputKind::Model, &[dataset])
    }

    /// Writes the model directory atomically (`force` replaces an existing model; never the
    /// dataset it was trained on nor a directory that is not a model, see [`Model::check_save`]).
    pub fn save(&self, dir: &Path, force: bool) -> Result<()> {
        let out = AtomicDir::create(
            dir,
            force,
            OutputKind::Model,
            &[self.meta.dataset.dir.as_path()],
        )?;
        let checksums = FactorChecksums {
            user_factors: write_factors(&out.path().join(USER_FACTORS), &self.users)?,
            item_factors: write_factors(&out.path().join(ITEM_FACTORS), &self.items)?,
        };
        let meta = ModelMeta {
            checksums: Some(checksums),
            ..self.meta.clone()
        };
        let json = serde_json::to_string_pretty(&meta)
            .map_err(|e| Error::Runtime(format!("serialising model.json: {e}")))?;
        let p = out.path().join(MODEL_JSON);
        std::fs::write(&p, json + "\n").at(&p)?;
        out.commit()?;
        Ok(())
    }

    /// Loads a model directory and checks that its parts agree: shapes with `model.json`, and
    /// each factor file with the checksum `model.json` records (when it records one).
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::bad_input(
                dir,
                "not a model directory (run `encore train` to make one)",
            ));
        }
        let p = dir.join(MODEL_JSON);
        let text = std::fs::read_to_string(&p).at(&p)?;
        let meta: ModelMeta = serde_json::from_str(&text)
            .map_err(|e| Error::bad_input(&p, format!("invalid model.json: {e}")))?;
        let (users, user_sum) = read_factors(&dir.join(USER_FACTORS))?;
        let (items, item_sum) = read_factors(&dir.join(ITEM_FACTORS))?;
        let k = meta.config.factors;
        let check = |f: &Factors, n: usize, name: &str| {
            if f.k != k || f.n != n {
                Err(Error::bad_input(
                    dir.join(name),
                    format!("shape {}x{} does not match model.json ({n}x{k})", f.n, f.k),
                ))
            } else {
                Ok(())
            }
        };
        check(&users, meta.dataset.users, USER_FACTORS)?;
        check(&items, meta.dataset.items, ITEM_FACTORS)?;
        // After the shapes, whose message says more about a file swapped for another.
        if let Some(sums) = &meta.checksums {
            check_checksum(&dir.join(USER_FACTORS), &sums.user_factors, &user_sum)?;
            check_checksum(&dir.join(ITEM_FACTORS), &sums.item_factors, &item_sum)?;
        }
        if !users.all_finite() || !items.all_finite() {
            return Err(Error::bad_input(dir, "factors contain NaN or infinity"));
        }
        Ok(Self { meta, users, items })
    }

    /// Fails unless the model was trained on `ds` (same shape and content hash).
    pub fn check_dataset(&self, ds: &Dataset) -> Result<()> {
        let r = &self.meta.dataset;
        if (r.users, r.items) != (ds.train.n_rows, ds.train.n_cols) {
            return Err(Error::bad_input(
                &ds.dir,
                format!(
                    "dataset is {}x{} but the model was trained on {}x{} ({})",
                    ds.train.n_rows,
                    ds.train.n_cols,
                    r.users,
                    r.items,
                    r.dir.display()
                ),
            ));
        }
        if r.content_hash != ds.manifest.content_hash {
            return Err(Error::bad_input(
                &ds.dir,
                format!(
                    "dataset content hash {} differs from the model's training data {} ({})",
                    ds.manifest.content_hash,
                    r.content_hash,
                    r.dir.display()
                ),
            ));
        }
        Ok(())
    }
}
