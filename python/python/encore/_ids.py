"""Original ids <-> dense indices: the one place that looks ids up.

A dataset numbers users and items densely (rows and columns of its matrices) in ascending
order of their original ids; ``IdMap`` turns one into the other. It works on whatever array of
ids it is given — ascending integers or strings are looked up by binary search, anything else
through a dictionary — so a change in how datasets store ids changes only the Rust side that
produces the array (python/src/ids.rs).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np


class IdMap:
    """Original ids of the rows (or columns) of a dataset's matrices.

    ``ids[i]`` is the original id of index ``i``; ``index(original)`` is the inverse, for one id
    or an array of them. Unknown ids, and ids of the other kind (a number where the dataset's
    ids are strings, or the reverse), raise ``KeyError`` naming them.
    """

    def __init__(self, ids: np.ndarray, what: str) -> None:
        self.ids = ids
        self.what = what
        self.kind = "str" if ids.dtype.kind == "U" else "int"
        # Ascending (numeric, or code-point order for strings, which is numpy's own): a binary
        # search finds an id; anything else is looked up through a dictionary.
        self._sorted = ids.dtype.kind in "iuU" and bool(np.all(ids[1:] > ids[:-1]))
        self._dict: Optional[Dict[Any, int]] = None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: Any) -> Any:
        return self.ids[index]

    def __contains__(self, original: Any) -> bool:
        try:
            self.index(original)
            return True
        except KeyError:
            return False

    def __repr__(self) -> str:
        return f"IdMap({len(self)} {self.what}s, {self.kind} ids)"

    def index(self, original: Any) -> Any:
        """Dense indices of original ids.

        Parameters
        ----------
        original : int, str or array of them
            One id (an int index back) or an array (an int64 array back). ``KeyError`` for ids
            the dataset does not have, or of the wrong kind.
        """
        scalar = np.ndim(original) == 0
        want = np.atleast_1d(np.asarray(original))
        if want.ndim > 1:
            raise ValueError(f"{self.what} ids must be one id or a 1-D array, got shape {want.shape}")
        if want.size == 0:
            return np.zeros(0, np.int64)
        wanted_kind = "U" if self.kind == "str" else "iu"
        if want.dtype.kind not in wanted_kind:
            shown = want[:5].tolist()
            raise KeyError(f"unknown {self.what} id(s): {shown} (this dataset's {self.what} ids "
                           f"are {'strings' if self.kind == 'str' else 'integers'})")
        if self._sorted:
            pos = np.searchsorted(self.ids, want)
            found = pos < len(self.ids)
            found[found] = self.ids[pos[found]] == want[found]
        else:
            if self._dict is None:
                self._dict = {v: i for i, v in enumerate(self.ids.tolist())}
            pos = np.array([self._dict.get(v, -1) for v in want.tolist()], dtype=np.int64)
            found = pos >= 0
        if not found.all():
            missing = want[~found][:5].tolist()
            raise KeyError(f"unknown {self.what} id(s): {missing}")
        pos = pos.astype(np.int64)
        return int(pos[0]) if scalar else pos

    def original(self, index: np.ndarray, missing: Any = None) -> np.ndarray:
        """Original ids of dense indices.

        Parameters
        ----------
        index : array of int
            Indices, any shape. An index past the map (a row added by ``partial_fit_*``, which
            has no original id) is a ``ValueError``.
        missing : int, str or None
            What negative indices (the padding of short recommendation lists) become; None:
            -1 for integer ids, ``""`` for strings, neither of which is ever an id.
        """
        index = np.asarray(index, dtype=np.int64)
        if missing is None:
            missing = "" if self.kind == "str" else -1
        pad = index < 0
        if index.size and index.max() >= len(self.ids):
            raise ValueError(f"{self.what} index {int(index.max())} has no original id (the "
                             f"dataset has {len(self.ids)} {self.what}s; rows past them were "
                             f"added by partial_fit)")
        out = self.ids.take(np.where(pad, 0, index)) if len(self.ids) else np.zeros(
            index.shape, self.ids.dtype)
        if pad.any():
            out[pad] = missing
        return out
