"""``encore.ALS``: implicit-feedback ALS with the shape of implicit's ``AlternatingLeastSquares``."""

from __future__ import annotations

import json
import math
import os
import warnings
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, Union

import numpy as np

from . import _cuda, _encore
from ._data import Dataset, load_dataset
from ._sparse import as_csr, as_ids, is_scalar_id, replace_rows

PathLike = Union[str, "os.PathLike[str]"]

# The library's own defaults (src/als/mod.rs, `AlsConfig::default`), read once: the Python
# signature shows the same numbers `encore train` uses, and there is no second copy of them.
_DEFAULTS: Dict[str, Any] = json.loads(_encore.default_config())

# The library's settings that have a parameter of their own below (under implicit's name for
# the seed and the loss). Any other key of the library's configuration (one the core gains, say
# `encore train --reg-exponent`'s `reg_exponent`) is an `ALS(**options)` keyword and attribute
# of the same name, at the library's default, so Python reaches every setting of the core
# without a release of its own.
_NAMED = ("factors", "regularization", "alpha", "confidence", "epsilon", "iterations", "solver",
          "cg_steps", "seed", "compute_loss")
LIBRARY_OPTIONS: Tuple[str, ...] = tuple(k for k in _DEFAULTS if k not in _NAMED)


def _seed(random_state: Any) -> int:
    """An integer seed from ``random_state``: an int, None (a fresh random seed), or a numpy
    ``RandomState``/``Generator`` (one draw from it), as implicit accepts."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    if isinstance(random_state, (bool, np.bool_)):
        raise ValueError("random_state must be an int, None or a numpy random generator")
    if isinstance(random_state, (int, np.integer)):
        if random_state < 0:
            raise ValueError(f"random_state must be >= 0, got {random_state}")
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63 - 1))
    raise ValueError("random_state must be an int, None or a numpy random generator")


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return int(value)


def _finite(value: Any, name: str) -> float:
    # JSON (how settings reach the core) has no NaN or infinity, so they are refused here.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return float(value)


class ALS:
    """Implicit-feedback alternating least squares (Hu, Koren & Volinsky 2008), on the CPU or an
    NVIDIA GPU: a drop-in for ``implicit.als.AlternatingLeastSquares``.

    Play counts r become preference 1 with confidence c = 1 + alpha * f(r), where f(r) =
    log(1 + r / epsilon) (``confidence="log"``) or f(r) = r (``"linear"``); unobserved pairs
    have preference 0 and confidence 1. The objective is
    sum c (p - x_u . y_i)^2 + regularization * (|X|^2 + |Y|^2) over all user-item pairs.

    Unlike implicit, ``fit`` takes raw play counts and applies the confidence itself (implicit
    takes the confidence as the matrix value): to reproduce an implicit model, give Encore the
    counts and the same alpha. The defaults are Encore's (those of ``encore train``).

    Parameters
    ----------
    factors : int
        Latent factors k.
    regularization : float
        L2 penalty lambda on both factor matrices.
    alpha : float
        Confidence scale.
    confidence : str
        ``"log"`` (dampens heavy repeat listening) or ``"linear"`` (the original paper's).
    epsilon : float
        Scale of the log confidence.
    iterations : int
        ALS iterations, each solving all users, then all items.
    solver : str
        CPU: ``"cg"`` (conjugate gradient, warm-started; rows with few items solved exactly) or
        ``"cholesky"`` (exact, the reference). GPU: ``"cg"``, ``"cholesky-fused"`` (exact, in
        shared memory) or ``"lu"`` (cuBLAS batched LU).
    cg_steps : int
        Conjugate-gradient steps per row and half-step.
    device : str
        ``"auto"`` (the first GPU when a CUDA driver and device are usable and have the solver,
        else the CPU), ``"cpu"``, ``"gpu"`` or ``"gpu:N"``. Resolved when the model is made:
        ``model.device`` says which it chose (``model.device_note`` why, when ``auto`` took the
        CPU), and ``"gpu"`` without a usable GPU raises :class:`encore.GpuError` at once; it
        never falls back silently.
    threads : int or None
        CPU threads for training and scoring; None (or 0) uses every core.
    random_state : int, None or numpy generator
        Seed of the factor initialisation (uniform in [0, 0.01)); the same seed and data give
        the same model on any number of threads with ``solver="cholesky"``.
    calculate_training_loss : bool
        Compute the exact training loss after every iteration (passed to ``callback``).
    gpu_memory : int or None
        Bytes of device memory to plan for (default: what is free). Below what the matrices
        need resident, they stream through the GPU in chunks.
    num_threads, use_cg :
        implicit's names for ``threads`` (0 = all cores) and ``solver`` (True = "cg",
        False = "cholesky"), so implicit code runs unchanged.
    **options :
        The library's other settings, by their ``model.json`` names (listed in
        ``encore.ALS.LIBRARY_OPTIONS``; ``encore train --help`` explains them under their
        flag names, ``_`` for ``-``), each at the library's default unless given here and
        readable as an attribute of the same name. An unknown name is a ``TypeError``.

    Attributes
    ----------
    user_factors, item_factors : numpy.ndarray
        float32, C order, read-only views of the model's own memory (assign a new array to
        replace them). None before ``fit``.
    device : str
        Where the model trains and scores: ``"cpu"`` or ``"gpu:N"``.
    history : list of dict
        Per-iteration seconds, loss and validation metrics of the last ``fit``.
    """

    #: The library's settings beyond the named parameters: ``ALS(**options)`` keywords.
    LIBRARY_OPTIONS: Tuple[str, ...] = LIBRARY_OPTIONS

    def __init__(
        self,
        factors: int = _DEFAULTS["factors"],
        regularization: float = _DEFAULTS["regularization"],
        alpha: float = _DEFAULTS["alpha"],
        confidence: str = _DEFAULTS["confidence"],
        epsilon: float = _DEFAULTS["epsilon"],
        iterations: int = _DEFAULTS["iterations"],
        solver: str = _DEFAULTS["solver"],
        cg_steps: int = _DEFAULTS["cg_steps"],
        device: str = "auto",
        threads: Optional[int] = None,
        random_state: Any = _DEFAULTS["seed"],
        calculate_training_loss: bool = False,
        gpu_memory: Optional[int] = None,
        *,
        num_threads: Optional[int] = None,
        use_cg: Optional[bool] = None,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - set(LIBRARY_OPTIONS))
        if unknown:
            others = ", ".join(LIBRARY_OPTIONS) or "none"
            raise TypeError(f"ALS() got an unexpected keyword argument {unknown[0]!r} (the "
                            f"library's settings beyond the named ones: {others})")
        for name in LIBRARY_OPTIONS:
            setattr(self, name, options.get(name, _DEFAULTS[name]))
        if num_threads is not None:
            if threads is not None:
                raise ValueError("pass threads or num_threads (implicit's name), not both")
            threads = num_threads
        if use_cg is not None:
            solver = "cg" if use_cg else "cholesky"
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0
        ):
            raise ValueError(f"threads must be None or an int >= 0, got {threads!r}")
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.confidence = confidence
        self.epsilon = epsilon
        self.iterations = iterations
        self.solver = solver
        self.cg_steps = cg_steps
        self.threads = None if not threads else int(threads)
        self.random_state = random_state
        self.calculate_training_loss = calculate_training_loss
        self.gpu_memory = gpu_memory
        self.requested_device = device
        self._model: Any = None
        self._user_items: Any = None
        self.dataset: Optional[Dataset] = None
        if not isinstance(device, str):
            raise ValueError(f"device must be a str ('auto', 'cpu', 'gpu', 'gpu:N'), got {device!r}")
        if device != "cpu":
            _cuda.preload_cublas()
        self.device, self.device_note = _encore.resolve_device(device, self._config_json(seed=0))

    # -- configuration -----------------------------------------------------------------------

    def _config_json(self, seed: Optional[int] = None) -> str:
        for name in ("factors", "iterations", "cg_steps"):
            _positive_int(getattr(self, name), name)
        # Every key the library has, at its default, then this model's settings: a setting the
        # library gains (a `tune` of its defaults, a new option) reaches the core unchanged.
        cfg = dict(_DEFAULTS)
        cfg.update(
            factors=int(self.factors),
            iterations=int(self.iterations),
            regularization=_finite(self.regularization, "regularization"),
            alpha=_finite(self.alpha, "alpha"),
            confidence=self.confidence,
            epsilon=_finite(self.epsilon, "epsilon"),
            solver=self.solver,
            cg_steps=int(self.cg_steps),
            seed=_seed(self.random_state) if seed is None else seed,
            compute_loss=bool(self.calculate_training_loss),
        )
        for name in LIBRARY_OPTIONS:
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
            cfg[name] = value
        return json.dumps(cfg)

    def _fitted(self) -> Any:
        if self._model is None:
            raise ValueError("the model is not fitted yet: call fit(user_items) first")
        return self._model

    # -- training ----------------------------------------------------------------------------

    def fit(
        self,
        user_items: Any,
        show_progress: bool = True,
        callback: Optional[Callable[..., Any]] = None,
        *,
        validation: Any = None,
        eval_k: int = 10,
    ) -> "ALS":
        """Trains the model on ``user_items`` and returns it.

        Parameters
        ----------
        user_items : scipy.sparse matrix, users x items
            Play counts (or any non-negative weights; stored zeros count as plays of weight 0).
            A CSR matrix (``csr_matrix`` or ``csr_array``) is read in place, without a copy:
            ``indptr``/``indices`` int32 or int64, ``data`` float32, float64, int32 or int64,
            canonical (sorted, no duplicate entries: ``sum_duplicates()`` makes it so). COO,
            CSC and other formats are converted to CSR first (one copy). The model remembers
            this matrix, so ``recommend`` filters each user's items without being given it
            again.
        show_progress : bool
            A progress bar on a terminal (stderr).
        callback : callable, optional
            ``callback(iteration, seconds, loss)`` after each iteration (``iteration`` from 0,
            as implicit counts; ``loss`` None unless ``calculate_training_loss``). With
            ``validation`` it gets a fourth argument, ``{"k", "precision", "ndcg"}`` on the
            validation listens. An exception from it stops training and is raised by ``fit``.
        validation : scipy.sparse matrix, optional
            Held-out listens (same shape) to measure precision@K and nDCG@K on after every
            iteration, excluding each user's training items.
        eval_k : int
            K of those metrics.

        Training releases the GIL (other Python threads run meanwhile) and stops cleanly on
        Ctrl-C between two half-steps with ``KeyboardInterrupt``, leaving the model as it was
        before ``fit``.
        """
        m = as_csr(user_items, "user_items")
        valid = None if validation is None else as_csr(validation, "validation")
        k = _positive_int(eval_k, "eval_k") if valid is not None else None
        if callback is not None and not callable(callback):
            raise ValueError("callback must be callable")

        def on_iteration(iteration: int, seconds: float, loss: Optional[float],
                         metrics: Optional[Dict[str, Any]]) -> None:
            if callback is None:
                return
            if valid is None:
                callback(iteration, seconds, loss)
            else:
                callback(iteration, seconds, loss, metrics)

        ds = getattr(m, "_encore_dataset", None)
        tag = None if ds is None else (ds.dir, ds._content_hash, ds._train_hash)
        self._model = _encore.fit(
            m, self._config_json(), self.device, self.threads, self.gpu_memory,
            bool(show_progress), on_iteration, valid, k, tag,
        )
        self._user_items = m
        # The core recorded the dataset only if the matrix is still its training matrix.
        recorded = ds is not None and self.meta["dataset"]["dir"] != _encore.IN_MEMORY
        self.dataset = ds if recorded else None
        return self

    # -- factors -----------------------------------------------------------------------------

    @property
    def user_factors(self) -> Optional[np.ndarray]:
        """User factors, ``n_users x factors`` float32 (a read-only view, no copy)."""
        return None if self._model is None else self._model.factor_array("users")

    @user_factors.setter
    def user_factors(self, value: Any) -> None:
        self._model = self._fitted().with_factors("users", np.ascontiguousarray(value, np.float32))

    @property
    def item_factors(self) -> Optional[np.ndarray]:
        """Item factors, ``n_items x factors`` float32 (a read-only view, no copy)."""
        return None if self._model is None else self._model.factor_array("items")

    @item_factors.setter
    def item_factors(self, value: Any) -> None:
        self._model = self._fitted().with_factors("items", np.ascontiguousarray(value, np.float32))

    @property
    def user_items(self) -> Any:
        """The training matrix the model remembers (None after loading a model whose dataset is
        not there)."""
        return self._user_items

    @property
    def meta(self) -> Dict[str, Any]:
        """``model.json``: hyper-parameters, dataset, per-iteration times, solver, machine."""
        return json.loads(self._fitted().meta_json())

    @property
    def history(self) -> List[Dict[str, Any]]:
        """Per-iteration ``{"iteration", "seconds", "loss", "valid"}`` of the last ``fit``."""
        return self.meta["iterations"]

    # -- scoring -----------------------------------------------------------------------------

    def recommend(
        self,
        userid: Any,
        user_items: Any = None,
        N: int = 10,
        filter_already_liked_items: bool = True,
        filter_items: Any = None,
        recalculate_user: bool = False,
        items: Any = None,
        *,
        ids: str = "index",
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Top-N items for a user or a batch of users, exactly (ties to the lower item id).

        Parameters
        ----------
        userid : int or array of int (or original ids, with ``ids="original"``)
            One user (1-D results) or many (2-D results, one row per user; batches are
            scored together, which is much faster than a loop).
        user_items : scipy.sparse matrix, optional
            One row per ``userid`` (row j for ``userid[j]``): their items, to filter and, with
            ``recalculate_user``, to solve their factors from. Not needed otherwise: the model
            remembers its training matrix.
        N : int
            How many items.
        filter_already_liked_items : bool
            Leave out each user's items (from ``user_items``, else the training matrix): every
            stored entry of their row, whatever its value (as implicit does). The rows are
            read in place, not copied.
        filter_items : array of int, optional
            Items to leave out for everyone.
        recalculate_user : bool
            Solve each user's factor from ``user_items`` (fold-in, as the server does for a
            listener it has never seen) instead of using the stored one.
        items : array of int, optional
            Rank only these items (cannot be combined with ``filter_items``).
        ids : str
            ``"index"`` (implicit's convention): ``userid``, ``filter_items``, ``items`` and
            the answer are rows and columns of the training matrix. ``"original"``: they are
            the dataset's own user and item ids (int or str, as ``load_dataset`` gives them;
            what ``encore recommend --user`` takes and answers), for a model that knows its
            dataset (fitted on ``load_dataset(...).train``, or loaded by ``encore.load`` with
            it). Unknown original ids raise ``KeyError``.

        Returns
        -------
        (ids, scores) : numpy arrays
            int64 item ids (the dataset's ids with ``ids="original"``: int64 or str) and
            float32 scores, best first: shape ``(N,)`` for one user, ``(len(userid), N)`` for a
            batch, with N capped at the number of candidate items. A user with fewer items
            left than N gets id -1 (``""`` for string ids) and score -inf in the remaining
            places.
        """
        model = self._fitted()
        original = self._id_mode(ids)
        scalar = is_scalar_id(userid)
        rows = self._indices(userid, "users", "userid", original)
        N = _positive_int(N, "N")
        if filter_items is not None and items is not None:
            raise ValueError("cannot set both items and filter_items")
        given = None if user_items is None else as_csr(user_items, "user_items")
        vectors = None
        if recalculate_user:
            history = given if given is not None else self._remembered_rows(rows)
            vectors = model.fold_in("users", history)
        exclude, exclude_rows = None, None
        if filter_already_liked_items:
            if given is not None:
                exclude = given
            elif self._user_items is not None:
                exclude, exclude_rows = self._user_items, rows
            else:
                raise ValueError(
                    "this model has no training matrix to filter with (it was loaded without its "
                    "dataset): pass user_items, or filter_already_liked_items=False"
                )
        f_ids = None if filter_items is None else self._indices(
            filter_items, "items", "filter_items", original)
        i_ids = None if items is None else self._indices(items, "items", "items", original)
        out_ids, scores = model.recommend(rows, N, exclude, exclude_rows, f_ids, i_ids, vectors)
        if original:
            out_ids = self._id_dataset().items.original(out_ids)
        if scalar:
            return out_ids[0], scores[0]
        return out_ids, scores

    # -- original ids ------------------------------------------------------------------------

    @staticmethod
    def _id_mode(ids: Any) -> bool:
        if ids not in ("index", "original"):
            raise ValueError(f"ids must be 'index' or 'original', got {ids!r}")
        return ids == "original"

    def _id_dataset(self) -> Dataset:
        if self.dataset is None:
            raise ValueError(
                "ids='original' needs the model's dataset: fit it on encore.load_dataset(dir)"
                ".train (unchanged), load it with encore.load(path) beside its dataset, or set "
                "model.dataset = encore.load_dataset(dir)")
        return self.dataset

    def _indices(self, values: Any, side: str, name: str, original: bool) -> np.ndarray:
        """Rows (``side="users"``) or columns of ``values``: checked int64 indices, or, with
        ``original``, the dataset's ids looked up."""
        if not original:
            a = np.asarray(values)
            if a.dtype.kind in "USO" and a.size:
                raise ValueError(f"{name} must be integers (rows and columns); for the dataset's "
                                 f"own ids (strings here), pass ids='original'")
            return as_ids(values, name)
        ds = self._id_dataset()
        idmap = ds.users if side == "users" else ds.items
        a = np.asarray(values)
        if a.ndim > 1:
            raise ValueError(f"{name} must be one id or a 1-D array of ids, got shape {a.shape}")
        return np.ascontiguousarray(np.atleast_1d(idmap.index(np.atleast_1d(a))), np.int64)

    def _remembered_rows(self, ids: np.ndarray) -> Any:
        if self._user_items is None:
            raise ValueError("recalculate_user needs user_items: this model has no training matrix")
        if ids.size and (ids.min() < 0 or ids.max() >= self._user_items.shape[0]):
            raise ValueError("userid out of range of the training matrix")
        return self._user_items[ids]

    def similar_items(self, itemid: Any, N: int = 10, *, ids: str = "index"
                      ) -> Tuple[np.ndarray, np.ndarray]:
        """The N items most similar to ``itemid`` by cosine of their factors, the item itself
        first (as implicit does), then the others by decreasing cosine (ties: lower id).

        Parameters
        ----------
        itemid : int or array of int (or original ids, with ``ids="original"``)
            One item (1-D results) or many (2-D, one row each).
        N : int
            How many items, the query included.
        ids : str
            ``"index"`` (columns of the training matrix) or ``"original"`` (the dataset's item
            ids, in and out; see ``recommend``).

        Returns
        -------
        (ids, scores) : numpy arrays
            Item ids and float32 cosines, shape ``(N,)`` or ``(len(itemid), N)``.
        """
        return self._similar("items", itemid, N, "itemid", ids)

    def similar_users(self, userid: Any, N: int = 10, *, ids: str = "index"
                      ) -> Tuple[np.ndarray, np.ndarray]:
        """The N users most similar to ``userid`` by cosine of their factors, the user first.

        Parameters
        ----------
        userid : int or array of int (or original ids, with ``ids="original"``)
            One user (1-D results) or many (2-D, one row each).
        N : int
            How many users, the query included.
        ids : str
            ``"index"`` (rows of the training matrix) or ``"original"`` (the dataset's user
            ids, in and out; see ``recommend``).

        Returns
        -------
        (ids, scores) : numpy arrays
            User ids and float32 cosines, shape ``(N,)`` or ``(len(userid), N)``.
        """
        return self._similar("users", userid, N, "userid", ids)

    def _similar(self, side: str, which: Any, N: int, name: str, ids: str
                 ) -> Tuple[np.ndarray, np.ndarray]:
        model = self._fitted()
        original = self._id_mode(ids)
        scalar = is_scalar_id(which)
        rows = self._indices(which, side, name, original)
        out, scores = model.similar(side, rows, _positive_int(N, "N"))
        if original:
            ds = self._id_dataset()
            out = (ds.users if side == "users" else ds.items).original(out)
        return (out[0], scores[0]) if scalar else (out, scores)

    # -- fold-in -----------------------------------------------------------------------------

    def recalculate_user(self, userid: Any, user_items: Any) -> np.ndarray:
        """The factor(s) of users solved from their histories against the fixed item factors:
        the ALS user update for that history alone, exactly what the HTTP server's
        ``/v1/recommend/history`` computes. Not stored (see ``partial_fit_users``).

        Parameters
        ----------
        userid : int or array of int
            One user (a 1-D result) or many (2-D); only the shape of the answer depends on
            it, so it may name a user the model has never seen.
        user_items : scipy.sparse matrix
            Their play counts, one row per ``userid`` (columns are the model's items).

        Returns
        -------
        numpy.ndarray
            float32 factors, ``(factors,)`` for one user, ``(len(userid), factors)`` for many.
        """
        scalar = is_scalar_id(userid)
        ids = as_ids(userid, "userid")
        m = as_csr(user_items, "user_items")
        if m.shape[0] != len(ids):
            raise ValueError(f"user_items must have 1 row for every userid ({m.shape[0]} rows "
                             f"for {len(ids)} userids)")
        f = self._fitted().fold_in("users", m)
        return f[0] if scalar else f

    def recalculate_item(self, itemid: Any, item_users: Any) -> np.ndarray:
        """The factor(s) of items solved from their listeners against the fixed user factors.

        Parameters
        ----------
        itemid : int or array of int
            One item (a 1-D result) or many (2-D).
        item_users : scipy.sparse matrix
            Their play counts, one row per ``itemid``, columns are the model's users.

        Returns
        -------
        numpy.ndarray
            float32 factors, ``(factors,)`` or ``(len(itemid), factors)``.
        """
        scalar = is_scalar_id(itemid)
        ids = as_ids(itemid, "itemid")
        m = as_csr(item_users, "item_users")
        if m.shape[0] != len(ids):
            raise ValueError(f"item_users must have 1 row for every itemid ({m.shape[0]} rows "
                             f"for {len(ids)} itemids)")
        f = self._fitted().fold_in("items", m)
        return f[0] if scalar else f

    def partial_fit_users(self, userids: Any, user_items: Any) -> None:
        """Re-solves the factors of some users from their (new) histories and stores them. The
        remembered training matrix gets these rows too, so ``recommend`` filters the new
        interactions.

        Parameters
        ----------
        userids : array of int
            Rows to set, without duplicates; ids past the last user add new users (rows in
            between are zero until set).
        user_items : scipy.sparse matrix
            Their play counts, one row per id (columns are the model's items).
        """
        ids, m = self._partial_args(userids, user_items, "userids", "user_items")
        vectors = self._fitted().fold_in("users", m)
        self._model = self._model.with_rows("users", ids, vectors)
        if self._user_items is not None:
            self._user_items = replace_rows(self._user_items, ids, m)

    def partial_fit_items(self, itemids: Any, item_users: Any) -> None:
        """Re-solves the factors of some items from their listeners and stores them.

        Parameters
        ----------
        itemids : array of int
            Items to set, without duplicates; ids past the last item add new items.
        item_users : scipy.sparse matrix
            Their play counts, one row per id, columns are the model's users.
        """
        ids, m = self._partial_args(itemids, item_users, "itemids", "item_users")
        vectors = self._fitted().fold_in("items", m)
        self._model = self._model.with_rows("items", ids, vectors)
        if self._user_items is not None:
            self._user_items = replace_rows(self._user_items.T.tocsr(), ids, m).T.tocsr()

    def _partial_args(self, ids: Any, m: Any, id_name: str, m_name: str) -> Tuple[np.ndarray, Any]:
        ids = as_ids(ids, id_name)
        m = as_csr(m, m_name)
        if m.shape[0] != len(ids):
            raise ValueError(f"{m_name} must have 1 row for every id in {id_name} "
                             f"({m.shape[0]} rows for {len(ids)} ids)")
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"{id_name} has duplicate ids")
        return ids, m

    # -- devices, files ----------------------------------------------------------------------

    def to_cpu(self) -> "ALS":
        """This model scoring on the CPU (a new object; the factors are shared)."""
        return self._on("cpu")

    def to_gpu(self, device: str = "gpu") -> "ALS":
        """This model scoring on a GPU (a new object; ``GpuError`` without a usable GPU).

        Parameters
        ----------
        device : str
            ``"gpu"`` (the first) or ``"gpu:N"``.
        """
        _cuda.preload_cublas()
        return self._on(device)

    def _on(self, device: str) -> "ALS":
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        if self._model is not None:
            new._model = self._model.on_device(device)
            new.device = new._model.device
        else:
            new.device, new.device_note = _encore.resolve_device(device, self._config_json(seed=0))
        return new

    def save(self, path: PathLike, force: bool = False) -> None:
        """Writes the model directory ``encore train`` writes (``user_factors.npy``,
        ``item_factors.npy``, ``model.json``), atomically; the CLI and ``encore.load`` read it.

        Parameters
        ----------
        path : path
            The model directory. A model fitted on a ``load_dataset`` training matrix records
            that dataset, so ``encore eval DATASET MODEL`` and ``encore recommend MODEL``
            accept it; one fitted on another matrix records it as in-memory (the CLI then needs
            ``--dataset``, and ``encore.load`` gives a model without a training matrix).
        force : bool
            Replace an existing model directory (never a dataset or another kind of
            directory).
        """
        self._fitted().save(os.fspath(path), bool(force))

    def __repr__(self) -> str:
        state = "unfitted" if self._model is None else (
            f"{self._model.n_users} users x {self._model.n_items} items")
        extra = "".join(f", {name}={getattr(self, name)!r}" for name in LIBRARY_OPTIONS)
        return (f"encore.ALS(factors={self.factors}, regularization={self.regularization}, "
                f"alpha={self.alpha}, iterations={self.iterations}, solver={self.solver!r}"
                f"{extra}, device={self.device!r}; {state})")


#: implicit's name, so ``from encore import AlternatingLeastSquares`` replaces
#: ``from implicit.als import AlternatingLeastSquares``.
AlternatingLeastSquares = ALS


def load(path: PathLike, device: str = "auto", threads: Optional[int] = None,
         dataset: Union[PathLike, Literal[False], None] = None) -> ALS:
    """Reads a model directory written by ``encore train`` or ``ALS.save``.

    Parameters
    ----------
    path : path
        The model directory.
    device : str
        Where to score: ``"auto"``, ``"cpu"``, ``"gpu"``, ``"gpu:N"``.
    threads : int or None
        CPU threads (None: every core).
    dataset : path, False or None
        The dataset the model was trained on, for its training matrix (filtering) and names:
        by default the one ``model.json`` names, if it is there (a warning says when it is
        not); False loads none. A dataset whose content differs from the model's training data
        is a ``ValueError``.

    Returns
    -------
    ALS
        A fitted model; ``model.dataset`` is the loaded :class:`Dataset` (or None).
    """
    if device != "cpu":
        _cuda.preload_cublas()
    core, note = _encore.Model.load(os.fspath(path), device, threads)
    meta = json.loads(core.meta_json())
    cfg = meta["config"]
    model = object.__new__(ALS)
    model.factors = cfg["factors"]
    model.regularization = cfg["regularization"]
    model.alpha = cfg["alpha"]
    model.confidence = cfg["confidence"]
    model.epsilon = cfg["epsilon"]
    model.iterations = cfg["iterations"]
    model.solver = cfg["solver"]
    model.cg_steps = cfg["cg_steps"]
    model.random_state = cfg["seed"]
    model.calculate_training_loss = cfg["compute_loss"]
    for name in LIBRARY_OPTIONS:
        setattr(model, name, cfg.get(name, _DEFAULTS[name]))
    model.threads = threads or None
    model.gpu_memory = None
    model.requested_device = device
    model.device = core.device
    model.device_note = note
    model._model = core
    model._user_items = None
    model.dataset = None
    recorded = meta["dataset"]
    if dataset is False:
        return model
    where = recorded["dir"] if dataset is None else os.fspath(dataset)
    if dataset is None and (where == _encore.IN_MEMORY or not os.path.isdir(where)):
        if where != _encore.IN_MEMORY:
            warnings.warn(f"the model's dataset {where} is not there: recommend needs user_items "
                          f"(or filter_already_liked_items=False); pass dataset= to load it",
                          stacklevel=2)
        return model
    ds = load_dataset(where)
    if ds.manifest["content_hash"] != recorded["content_hash"] or ds.train.shape != (
            recorded["users"], recorded["items"]):
        raise ValueError(f"{where}: dataset content hash {ds.manifest['content_hash']} differs "
                         f"from the model's training data {recorded['content_hash']}")
    model.dataset = ds
    model._user_items = ds.train
    return model
