"""Encore from Python: implicit-feedback ALS on scipy matrices, on the CPU or an NVIDIA GPU.

A drop-in for implicit's ALS (``encore.ALS`` has the shape of
``implicit.als.AlternatingLeastSquares``), over Encore's Rust core: the same training,
exact top-K, fold-in, evaluation and model files as the ``encore`` command line.

Example (HetRec 2011 Last.fm: prep once, then load, fit, recommend with names, evaluate)::

    import encore
    encore.prep("../shared/data/hetrec2011-lastfm-2k", "hetrec")
    ds = encore.load_dataset("hetrec"); model = encore.ALS().fit(ds.train)
    ids, scores = model.recommend(ds.user_index(2), N=5)
    print(ds.item_names[ids]); print(encore.evaluate(model, ds.train, ds.valid, K=10))
"""

from ._encore import GpuError, __version__
from ._als import ALS, AlternatingLeastSquares, load
from ._cuda import gpu_available
from ._data import Dataset, load_dataset, prep
from ._eval import evaluate
from ._ids import IdMap

__all__ = [
    "ALS",
    "AlternatingLeastSquares",
    "Dataset",
    "GpuError",
    "IdMap",
    "__version__",
    "evaluate",
    "gpu_available",
    "load",
    "load_dataset",
    "prep",
]
