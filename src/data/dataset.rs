//! The dataset directory `prep` writes and every later stage reads.
//!
//! ```text
//! DATASET/
//!   train.npz, valid.npz   scipy CSR (users × tracks, float32 play counts)
//!   user_ids.npy           original user id of each row: int64, or |S{w} strings
//!   item_ids.npy           original track id of each column (the same two kinds)
//!   items.tsv              names (when the input had them)
//!   manifest.json          inputs, counts per stage, options, timings, content hash
//! ```
//! The directory appears only once complete (see [`crate::util::AtomicDir`]). The id files and
//! the [`Ids`] API are described in [`crate::data::ids`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::csr::Csr;
use crate::data::filter::{FilterMode, Tally};
use crate::data::formats::{ColumnNames, Format, NameSource};
use crate::data::ids::{self, IdKind, Ids};
use crate::data::names::{self, ItemNames, Skipped};
use crate::data::npz;
use crate::data::records::ValueMode;
use crate::data::split::Split;
use crate::error::{Error, IoContext, Result};
use crate::util::OutputKind;

/// File names inside a dataset directory.
pub const TRAIN: &str = "train.npz";
pub const VALID: &str = "valid.npz";
pub const USER_IDS: &str = "user_ids.npy";
pub const ITEM_IDS: &str = "item_ids.npy";
pub const ITEMS_TSV: &str = "items.tsv";
pub const MANIFEST: &str = OutputKind::Dataset.marker();

/// What was read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputInfo {
    pub format: Format,
    pub path: PathBuf,
    pub data_file: PathBuf,
    pub bytes: u64,
    pub header: Option<String>,
    pub names: Option<NameSource>,
    /// Data files read (more than one for a directory of listens; 0 in manifests written
    /// before this field, meaning one).
    #[serde(default)]
    pub files: u64,
    /// The columns read from a delimited table, by name (absent for fixed layouts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<ColumnNames>,
}

/// How lines were accounted for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LineReport {
    /// Every line of the data file, header included.
    pub total: u64,
    /// Lines parsed into a record.
    pub records: u64,
    pub header: u64,
    pub blank: u64,
    /// Records with a play count of 0 (no signal; not kept).
    pub zero_count: u64,
    /// Records whose value was below `--min-value`, dropped.
    #[serde(default)]
    pub below_min_value: u64,
    /// ListenBrainz listens without a user, whose user came from their file's path.
    #[serde(default)]
    pub user_from_path: u64,
    /// Malformed lines skipped under `--skip-bad-lines`.
    pub bad_skipped: u64,
    /// The first few skipped lines: `file:line: reason`.
    pub bad_examples: Vec<String>,
    /// Whether the input was not grouped by user in ascending order and had to be regrouped.
    pub regrouped: bool,
}

/// Options that shaped the dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrepOptions {
    pub min_user_tracks: u32,
    pub min_track_users: u32,
    pub filter_mode: FilterMode,
    pub split: Split,
    pub skip_bad_lines: bool,
    /// Integer or string ids.
    #[serde(default)]
    pub ids: IdKind,
    /// What the matrix values are (`count`, `rating`, `binary`).
    #[serde(default)]
    pub value: ValueMode,
    /// Records below this value were dropped.
    #[serde(default)]
    pub min_value: Option<f64>,
}

/// Counts at each stage.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StageCounts {
    /// After aggregation, before filtering.
    pub raw: Tally,
    /// Survivors after each filter round (the last is what was kept).
    pub filter_rounds: Vec<Tally>,
    pub kept: Tally,
    pub train: Tally,
    pub valid: Tally,
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub encore_version: String,
    pub created_unix: u64,
    pub input: InputInfo,
    pub options: PrepOptions,
    pub lines: LineReport,
    pub counts: StageCounts,
    /// numpy dtype of the CSR offsets (`int32` or `int64`).
    pub indptr_dtype: String,
    /// Items without a name in the catalog files (when names were available).
    pub items_without_name: Option<u64>,
    /// Catalog (names) lines skipped under `--skip-bad-lines`, like [`LineReport::bad_skipped`]
    /// for the data file.
    #[serde(default)]
    pub names_skipped: Skipped,
    pub timings_s: BTreeMap<String, f64>,
    pub peak_rss_bytes: Option<u64>,
    /// `blake3:` hash of the matrices and id arrays (see [`content_hash`]).
    pub content_hash: String,
    pub files: Vec<String>,
}

/// A loaded dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub train: Csr,
    pub valid: Csr,
    /// Original id of each row (see [`crate::data::ids`]).
    pub user_ids: Ids,
    /// Original id of each column.
    pub item_ids: Ids,
    pub names: Option<ItemNames>,
}

/// Hash of everything numeric in a dataset, independent of the container format.
pub fn content_hash(train: &Csr, valid: &Csr, user_ids: &Ids, item_ids: &Ids) -> String {
    let mut h = blake3::Hasher::new();
    for m in [train, valid] {
        h.update(&(m.n_rows as u64).to_le_bytes());
        h.update(&(m.n_cols as u64).to_le_bytes());
        h.update_rayon(bytemuck::cast_slice(&m.indptr));
        h.update_rayon(bytemuck::cast_slice(&m.indices));
        h.update_rayon(bytemuck::cast_slice(&m.data));
    }
    user_ids.hash_into(&mut h);
    item_ids.hash_into(&mut h);
    format!("blake3:{}", h.finalize().to_hex())
}

/// Writes the arrays and names of a dataset into `dir` (an empty, temporary directory).
pub fn write_files(
    dir: &Path,
    train: &Csr,
    valid: &Csr,
    user_ids: &Ids,
    item_ids: &Ids,
    names: Option<&ItemNames>,
) -> Result<Vec<String>> {
    let mut files = Vec::new();
    let (a, b) = rayon::join(
        || npz::write_csr(&dir.join(TRAIN), train),
        || -> Result<()> {
            npz::write_csr(&dir.join(VALID), valid)?;
            ids::write(&dir.join(USER_IDS), user_ids)?;
            ids::write(&dir.join(ITEM_IDS), item_ids)?;
            if let Some(n) = names {
                names::write_items_tsv(&dir.join(ITEMS_TSV), item_ids, n)?;
            }
            Ok(())
        },
    );
    a?;
    b?;
    files.extend([TRAIN, VALID, USER_IDS, ITEM_IDS].map(String::from));
    if names.is_some() {
        files.push(ITEMS_TSV.into());
    }
    files.push(MANIFEST.into());
    Ok(files)
}

/// Writes `manifest.json` into `dir`.
pub fn write_manifest(dir: &Path, m: &Manifest) -> Result<()> {
    let path = dir.join(MANIFEST);
    let text =
        serde_json::to_string_pretty(m).map_err(|e| Error::bad_input(&path, e.to_string()))?;
    std::fs::write(&path, text + "\n").at(&path)
}

impl Dataset {
    /// Loads a dataset directory, checking that its parts agree with each other.
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::bad_input(
                dir,
                "not a dataset directory (run `encore prep` to make one)",
            ));
        }
        let mpath = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&mpath).at(&mpath)?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| Error::bad_input(&mpath, format!("invalid manifest: {e}")))?;
        let train = npz::read_csr(&dir.join(TRAIN))?;
        let valid = npz::read_csr(&dir.join(VALID))?;
        let user_ids = ids::read(&dir.join(USER_IDS))?;
        let item_ids = ids::read(&dir.join(ITEM_IDS))?;
        let names_path = dir.join(ITEMS_TSV);
        let names = if names_path.exists() {
            Some(names::read_items_tsv(&names_path)?)
        } else {
            None
        };
        let shape_err = |what: &str| Error::bad_input(dir, format!("inconsistent dataset: {what}"));
        if (train.n_rows, train.n_cols) != (valid.n_rows, valid.n_cols) {
            return Err(shape_err("train and valid shapes differ"));
        }
        if user_ids.len() != train.n_rows || item_ids.len() != train.n_cols {
            return Err(shape_err("id arrays do not match the matrix shape"));
        }
        if names
            .as_ref()
            .is_some_and(|n| n.names.len() != item_ids.len())
        {
            return Err(shape_err("items.tsv does not have one row per item"));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            train,
            valid,
            user_ids,
            item_ids,
            names,
        })
    }

    /// Checks the ids (strictly ascending, so no duplicates), recomputes the content hash and
    /// compares it with the manifest's.
    pub fn verify(&self) -> Result<()> {
        ids::check_ascending(&self.dir.join(USER_IDS), &self.user_ids)?;
        ids::check_ascending(&self.dir.join(ITEM_IDS), &self.item_ids)?;
        let h = content_hash(&self.train, &self.valid, &self.user_ids, &self.item_ids);
        if h != self.manifest.content_hash {
            return Err(Error::bad_input(
                &self.dir,
                format!(
                    "content hash {h} does not match the manifest's {}",
                    self.manifest.content_hash
                ),
            ));
        }
        Ok(())
    }
}
