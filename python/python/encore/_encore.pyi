"""Type hints for ``encore._encore``, the compiled half of the package (python/src/*.rs).

The public API is the Python half (``encore.ALS``, ``encore.load``, ``encore.prep``,
``encore.load_dataset``, ``encore.evaluate``); these are the calls it makes.
"""

from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import numpy.typing as npt

__version__: str
IN_MEMORY: str

class GpuError(RuntimeError):
    """A GPU was asked for and cannot be used (no driver, device or cuBLAS; a driver too old
    for the embedded kernels), or a CUDA call failed while running (out of memory, say)."""

class FactorOwner:
    """Keeps a model's factors alive for the numpy views of them (their ``base``)."""

class LibraryRecommender:
    """The CLI's batch recommend (a model directory and its dataset, loaded as ``encore
    recommend`` does) in this process: scripts/recommend_overhead.py times it beside
    ``ALS.recommend``."""

    def __init__(
        self,
        model: str,
        dataset: str,
        device: str = "cpu",
        threads: Optional[int] = None,
        threads_of: Optional[Model] = None,
    ) -> None: ...
    @property
    def scorer(self) -> str: ...
    def time_ms(self, users: np.ndarray, k: int = 10, filter: bool = True) -> float: ...

class Model:
    """A trained model with its scorers; immutable (updates return a new one)."""

    @property
    def device(self) -> str: ...
    @property
    def trained_on(self) -> str: ...
    @property
    def n_users(self) -> int: ...
    @property
    def n_items(self) -> int: ...
    @property
    def factors(self) -> int: ...
    @property
    def threads(self) -> int: ...
    def meta_json(self) -> str: ...
    def factor_array(self, side: str) -> npt.NDArray[np.float32]: ...
    def recommend(
        self,
        userids: npt.NDArray[np.int64],
        n: int,
        exclude: Any = None,
        exclude_rows: Optional[npt.NDArray[np.int64]] = None,
        filter_items: Optional[npt.NDArray[np.int64]] = None,
        items: Optional[npt.NDArray[np.int64]] = None,
        user_vectors: Optional[npt.NDArray[np.float32]] = None,
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
    def similar(
        self, side: str, ids: npt.NDArray[np.int64], n: int
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
    def fold_in(self, side: str, rows: Any) -> npt.NDArray[np.float32]: ...
    def with_rows(
        self, side: str, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]
    ) -> "Model": ...
    def with_factors(self, side: str, factors: npt.NDArray[np.float32]) -> "Model": ...
    def on_device(self, device: str) -> "Model": ...
    def save(self, path: str, force: bool) -> None: ...
    @staticmethod
    def load(
        path: str, device: str = "auto", threads: Optional[int] = None
    ) -> Tuple["Model", Optional[str]]: ...
    def evaluate(self, train: Any, valid: Any, k: int) -> Dict[str, float]: ...

def fit(
    user_items: Any,
    config: str,
    device: str = "auto",
    threads: Optional[int] = None,
    gpu_memory: Optional[int] = None,
    show_progress: bool = True,
    on_iteration: Optional[Callable[[int, float, Optional[float], Optional[Dict[str, Any]]], Any]] = None,
    validation: Any = None,
    eval_k: Optional[int] = None,
    dataset: Optional[Tuple[str, str, str]] = None,
) -> Model: ...
def default_config() -> str: ...
def resolve_device(device: str, config: str) -> Tuple[str, Optional[str]]: ...
def driver_present() -> bool: ...
def describe_gpu(n: int = 0) -> str: ...
def _panic_for_tests(in_pool: bool = False) -> None: ...
def prep(input: str, out: str, options: str, force: bool, show_progress: bool) -> str: ...
def default_prep_options() -> str: ...
def load_dataset(dir: str) -> Dict[str, Any]: ...
def evaluate_factors(
    user_factors: npt.NDArray[np.float32],
    item_factors: npt.NDArray[np.float32],
    train: Any,
    valid: Any,
    k: int,
    threads: Optional[int] = None,
) -> Dict[str, float]: ...
