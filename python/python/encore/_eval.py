"""``encore.evaluate``: ranking quality on held-out listens, with ``encore eval``'s definitions."""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from . import _encore
from ._als import ALS
from ._sparse import as_csr


def _numpy(a: Any, name: str) -> np.ndarray:
    if hasattr(a, "to_numpy"):  # implicit's GPU matrices
        a = a.to_numpy()
    if a is None:
        raise ValueError(f"the model has no {name} (is it fitted?)")
    return np.ascontiguousarray(a, dtype=np.float32)


def evaluate(model: Any, train: Any, valid: Any, K: int = 10,
             threads: Optional[int] = None) -> Dict[str, float]:
    """Ranking quality at K on held-out listens, as ``encore eval`` measures it.

    For every user with a row in ``valid``, all items except the user's ``train`` items are
    ranked, and the top K are compared with the held-out ones (binary relevance):

    - ``precision`` = hits / K; ``recall`` = hits / |held-out|;
    - ``ndcg`` = DCG / IDCG, DCG = sum over hits at rank r of 1 / log2(r + 1), IDCG the DCG of a
      perfect list of min(K, |held-out|) hits;
    - ``map`` = mean of AP@K = (sum over hits at rank r of hits-so-far / r) / min(K, |held-out|);
    - ``coverage`` = distinct items recommended to anyone / all items;
    - ``precision_implicit``: implicit's ``ranking_metrics_at_k`` precision, sum of hits / sum
      of min(K, |held-out|) over the users, to compare with papers that use implicit.

    The first four are means over the ``users`` evaluated.

    Parameters
    ----------
    model : ALS or any object with ``user_factors`` and ``item_factors``
        An :class:`ALS` is scored on its device; anything else (an implicit model, say; GPU
        matrices are fetched with ``to_numpy()``) on the CPU by the same code, so two
        libraries are compared on the same split by the same definitions.
    train : scipy.sparse matrix
        The training listens, users x items: each user's are left out of their ranking.
    valid : scipy.sparse matrix
        The held-out listens, the same shape: users with at least one are evaluated.
    K : int
        Length of the ranked lists.
    threads : int or None
        CPU threads for a model that is not an :class:`ALS` (None: every core; an ``ALS``
        uses its own).

    Returns
    -------
    dict
        ``k``, ``users``, ``precision``, ``recall``, ``ndcg``, ``map``, ``coverage``,
        ``precision_implicit``.
    """
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
        raise ValueError(f"K must be an int >= 1, got {K!r}")
    train, valid = as_csr(train, "train"), as_csr(valid, "valid")
    if isinstance(model, ALS):
        return dict(model._fitted().evaluate(train, valid, int(K)))
    uf = _numpy(getattr(model, "user_factors", None), "user_factors")
    itf = _numpy(getattr(model, "item_factors", None), "item_factors")
    return dict(_encore.evaluate_factors(uf, itf, train, valid, int(K), threads))
