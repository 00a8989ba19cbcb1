"""Datasets: ``prep`` (raw listening logs -> a dataset directory, as ``encore prep``) and
``load_dataset`` (that directory -> scipy matrices, id maps and names)."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Union

import numpy as np
import scipy.sparse as sp

from . import _encore
from ._ids import IdMap

PathLike = Union[str, "os.PathLike[str]"]

# The library's own defaults (never a second copy of its constants).
_PREP_DEFAULTS: Dict[str, Any] = json.loads(_encore.default_prep_options())


def prep(
    input: PathLike,
    out: PathLike,
    *,
    format: str = _PREP_DEFAULTS["format"],
    delimiter: str = _PREP_DEFAULTS["delimiter"],
    header: str = _PREP_DEFAULTS["header"],
    ids: str = _PREP_DEFAULTS["ids"],
    user_column: Union[str, int, None] = _PREP_DEFAULTS["user_column"],
    item_column: Union[str, int, None] = _PREP_DEFAULTS["item_column"],
    value_column: Union[str, int, None] = _PREP_DEFAULTS["value_column"],
    time_column: Union[str, int, None] = _PREP_DEFAULTS["time_column"],
    value: Optional[str] = _PREP_DEFAULTS["value"],
    min_value: Optional[float] = _PREP_DEFAULTS["min_value"],
    min_user_tracks: int = _PREP_DEFAULTS["min_user_tracks"],
    min_track_users: int = _PREP_DEFAULTS["min_track_users"],
    filter: str = _PREP_DEFAULTS["filter"],
    split: str = _PREP_DEFAULTS["split"],
    valid_fraction: float = _PREP_DEFAULTS["valid_fraction"],
    last_n: int = _PREP_DEFAULTS["last_n"],
    seed: int = _PREP_DEFAULTS["seed"],
    skip_bad_lines: bool = _PREP_DEFAULTS["skip_bad_lines"],
    force: bool = False,
    show_progress: bool = True,
) -> Dict[str, Any]:
    """Turns raw listening logs into a dataset directory, exactly as ``encore prep`` does.

    Parameters
    ----------
    input : path
        An LFM-1b directory (or ``LFM-1b_LEs.txt``), an LFM-2b listening-counts file, a HetRec
        2011 Last.fm directory (or ``user_artists.dat``), a MovieLens directory (or
        ``ratings.csv``, ``ratings.dat``, ``u.data``), the MSD Taste Profile
        ``train_triplets.txt``, a ListenBrainz listens dump or export directory (or one
        ``.listens``/``.jsonl`` file), or any delimited user, item[, value] file; ``.gz`` is
        fine.
    out : path
        The dataset directory to write (``train.npz``, ``valid.npz``, ``user_ids.npy``,
        ``item_ids.npy``, ``items.tsv``, ``manifest.json``). Written atomically: a failed run
        leaves nothing (or the old dataset, with ``force``).
    format : str
        ``"auto"`` (from file and directory names), ``"lfm1b"``, ``"lfm2b"``, ``"hetrec"``,
        ``"movielens"``, ``"msd"``, ``"listenbrainz"``, ``"triples"``.
    delimiter : str
        For triples files: ``"auto"``, ``"tab"``, ``"comma"``, ``"semicolon"``, ``"space"``,
        ``"double-colon"`` (``::``, MovieLens 1M/10M).
    header : str
        ``"auto"``, ``"yes"``, ``"no"``: whether the first line is a header (``auto``: a first
        line that does not parse as data and contains letters; a string-id file without value
        or time column needs ``"yes"``).
    ids : str
        ``"auto"`` (the format's kind; for triples, strings when the first data line's ids are
        not integers), ``"int"`` or ``"string"``: whether user and item ids are integers or
        strings. ``load_dataset`` gives string ids as numpy ``str`` arrays.
    user_column, item_column, value_column, time_column : str, int or None
        Columns of a delimited file, by header name (``"userId"``) or 1-based position; None
        keeps the format's layout (triples: user 1, item 2, value 3, no time).
        ``value_column="none"``: every line is one play. ``time_column`` (Unix seconds) enables
        ``split="time"``.
    value : str or None
        What values become in the matrix: ``"count"`` (integers, summed per pair),
        ``"rating"`` (decimals, the highest kept) or ``"binary"`` (1 per pair); None: rating
        for MovieLens, count otherwise.
    min_value : float or None
        Drop lines whose value is below this (``min_value=3.5`` keeps MovieLens ratings of 3.5
        and up as positive feedback).
    min_user_tracks, min_track_users : int
        Drop users with fewer distinct tracks, and tracks with fewer distinct listeners.
    filter : str
        ``"fixed-point"`` (repeat the two rules until every kept user and track meets them) or
        ``"once"``.
    split : str
        ``"random"`` (hold out ``valid_fraction`` of each user's tracks, seeded by ``seed``) or
        ``"time"`` (the tracks first played within each user's last ``last_n`` listens; needs
        timestamps, i.e. LFM-1b).
    valid_fraction : float
        Random split: the fraction of each user's tracks held out, in [0, 1).
    last_n : int
        Time split: hold out the tracks first played within each user's last N listens.
    seed : int
        Seed of the random split (the same seed gives the same split on any thread count).
    skip_bad_lines : bool
        Skip malformed lines (counted, with examples, in the manifest) instead of stopping at the
        first with an error naming its file and line.
    force : bool
        Replace ``out`` if it is an existing dataset.
    show_progress : bool
        A progress bar on a terminal.

    Returns
    -------
    dict
        The dataset's ``manifest.json``: input, options, counts at every stage, timings.

    Raises
    ------
    ValueError
        Malformed input (the message names the file and line), bad options, or filters that
        remove everything.
    FileNotFoundError, FileExistsError, OSError
        ``input`` missing, ``out`` existing without ``force``, or another I/O failure.
    """
    if min_value is not None and not (isinstance(min_value, (int, float, np.integer, np.floating))
                                      and not isinstance(min_value, bool)
                                      and np.isfinite(min_value)):
        raise ValueError(f"min_value must be a finite number or None, got {min_value!r}")

    def column(c: Union[str, int, None], name: str) -> Optional[str]:
        # Positions travel as their digits, as on the command line (`--user-column 2`).
        if c is None or isinstance(c, str):
            return c
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1:
            raise ValueError(f"{name} must be a column name, a position >= 1 or None, got {c!r}")
        return str(int(c))

    options = dict(
        format=format, delimiter=delimiter, header=header, ids=ids,
        user_column=column(user_column, "user_column"),
        item_column=column(item_column, "item_column"),
        value_column=column(value_column, "value_column"),
        time_column=column(time_column, "time_column"),
        value=value, min_value=min_value, min_user_tracks=min_user_tracks,
        min_track_users=min_track_users, filter=filter, split=split,
        valid_fraction=valid_fraction, last_n=last_n, seed=seed, skip_bad_lines=skip_bad_lines,
    )
    text = _encore.prep(os.fspath(input), os.fspath(out), json.dumps(options), bool(force),
                        bool(show_progress))
    return json.loads(text)


def _csr(parts: Any) -> sp.csr_matrix:
    data, indices, indptr, shape = parts
    return sp.csr_matrix((data, indices, indptr), shape=shape, copy=False)


class Dataset(tuple):
    """A dataset directory in memory: ``(train, valid)`` scipy CSR matrices (users x items,
    float32 play counts), so ``train, valid = encore.load_dataset(d)`` works, plus:

    Attributes
    ----------
    train, valid : scipy.sparse.csr_matrix
        The training and held-out play counts (the same shape; no pair in both).
    users, items : IdMap
        Original user and item ids: ``users[row]`` is the id of a row, ``users.index(id)`` the
        row of an id (``user_index``/``item_index`` are shortcuts).
    user_ids, item_ids : numpy.ndarray
        The same ids as arrays, ascending: int64 for integer ids (HetRec, LFM-1b, MovieLens),
        ``str`` (``<U``) for string ids (the Million Song Dataset, ListenBrainz, string
        triples). ``item_ids[ids]`` turns a recommendation's columns into original ids (or
        ask ``ALS.recommend(..., ids="original")``).
    item_names, artist_names : numpy.ndarray of str, or None
        Names from ``items.tsv`` (None when the input had no catalog): ``item_names[ids]`` names
        the items of a recommendation.
    artist_ids : list of int or None
    manifest : dict
        ``manifest.json``: input, options, counts per stage, content hash.
    dir : str
        The dataset directory (absolute).
    """

    dir: str
    manifest: Dict[str, Any]
    user_ids: np.ndarray
    item_ids: np.ndarray
    users: IdMap
    items: IdMap
    item_names: Optional[np.ndarray]
    artist_names: Optional[np.ndarray]
    artist_ids: Optional[List[Optional[int]]]
    _content_hash: str
    _train_hash: str

    def __new__(cls, parts: Dict[str, Any]) -> "Dataset":
        train, valid = _csr(parts["train"]), _csr(parts["valid"])
        self = super().__new__(cls, (train, valid))
        self.dir = parts["dir"]
        self.manifest = json.loads(parts["manifest"])
        self.user_ids = parts["user_ids"]
        self.item_ids = parts["item_ids"]
        self.users = IdMap(self.user_ids, "user")
        self.items = IdMap(self.item_ids, "item")
        names = parts["item_names"]
        self.item_names = None if names is None else np.array(names, dtype=object)
        artists = parts["artist_names"]
        self.artist_names = None if artists is None else np.array(artists, dtype=object)
        self.artist_ids = parts["artist_ids"]
        # How ALS.fit recognises this training matrix (unchanged: the Rust side compares its
        # hash with `_train_hash`) and records the dataset in the model, so `encore eval DATASET
        # MODEL` and `encore recommend MODEL` accept it, and the model answers in its ids.
        self._content_hash = parts["content_hash"]
        self._train_hash = parts["train_hash"]
        train._encore_dataset = self
        return self

    @property
    def train(self) -> sp.csr_matrix:
        return self[0]

    @property
    def valid(self) -> sp.csr_matrix:
        return self[1]

    def user_index(self, original: Any) -> Any:
        """Row of an original user id (or rows of an array of them); ``KeyError`` if unknown."""
        return self.users.index(original)

    def item_index(self, original: Any) -> Any:
        """Column of an original item id (or columns of an array of them)."""
        return self.items.index(original)

    def __reduce__(self) -> Any:
        raise TypeError("a Dataset is not picklable; pickle its matrices, or reload the directory")

    def __repr__(self) -> str:
        u, i = self.train.shape
        return (f"Dataset({self.dir!r}: {u} users x {i} items, {self.train.nnz} train and "
                f"{self.valid.nnz} valid pairs)")


def load_dataset(dir: PathLike) -> Dataset:
    """Reads a dataset directory written by ``encore prep`` (or ``encore.prep``).

    Parameters
    ----------
    dir : path
        The dataset directory (``train.npz``, ``valid.npz``, ``user_ids.npy``,
        ``item_ids.npy``, ``manifest.json``, ``items.tsv``).

    Returns a :class:`Dataset`: ``train, valid = load_dataset(d)`` gives the two scipy CSR
    matrices (users x items, float32 play counts; their arrays are Encore's, handed to numpy
    without a copy), and its attributes give the id maps (``users``, ``items``,
    ``user_index()``, ``item_index()``) and names (``item_names``, ``artist_names``).

    A model fitted on ``train`` (unchanged) records this dataset, so once saved,
    ``encore eval DIR MODEL`` and ``encore recommend MODEL`` work on it as on a model trained by
    ``encore train``.

    Raises ``ValueError`` for an inconsistent or corrupt dataset (the message names the file),
    ``FileNotFoundError`` for a missing one.
    """
    return Dataset(_encore.load_dataset(os.fspath(dir)))
