"""Original ids <-> dense indices: the one place that looks ids up.

A dataset numbers users and items densely (rows and columns of its matrices) in ascending
order of their original ids; ``IdMap`` turns one into the other. It works on whatever array of
ids it is given — sorted integers are looked up by binary search, anything else (unsorted ids,
strings) through a dictionary — so a change in how datasets store ids changes only the Rust
side that produces the array (python/src/ids.rs).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np


class IdMap:
    """Original ids of the rows (or columns) of a dataset's matrices.

    ``ids[i]`` is the original id of index ``i``; ``index(original)`` is the inverse, for one id
    or an array of them. Unknown ids raise ``KeyError`` naming them.
    """

    def __init__(self, ids: np.ndarray, what: str) -> None:
        self.ids = ids
        self.what = what
        self._sorted = ids.dtype.kind in "iu" and bool(np.all(ids[1:] > ids[:-1]))
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
        return f"IdMap({len(self)} {self.what}s)"

    def index(self, original: Any) -> Any:
        """The dense index of an original id (an int), or of each id of an array (an int64
        array). ``KeyError`` for ids that are not in the dataset."""
        scalar = np.isscalar(original)
        want = np.atleast_1d(np.asarray(original))
        if self._sorted and want.dtype.kind in "iu":
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
