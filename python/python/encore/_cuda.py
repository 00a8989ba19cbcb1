"""cuBLAS for the GPU paths, also when it comes from pip rather than a CUDA toolkit.

Encore's CUDA driver and cuBLAS are loaded at run time (cudarc's dynamic loading: the same
wheel runs on hosts with and without a GPU). The driver comes with the NVIDIA driver install;
cuBLAS usually comes with a CUDA toolkit, but on a machine with only the driver it can come from
pip (``nvidia-cublas`` for CUDA 13, ``nvidia-cublas-cu12``), which puts it in
``site-packages/nvidia/<...>/lib/`` where the dynamic loader does not look. So before the first
GPU use, if the loader cannot find ``libcublas`` by name, it is loaded from there by path with
``RTLD_GLOBAL``; the loader then answers the later load by name (cudarc's) with that library,
since it matches by soname.
"""

from __future__ import annotations

import ctypes
import glob
import os
import site
import sys
from typing import List, Optional

from . import _encore

# The sonames cudarc tries (CUDA 13 first: Encore is built against 13.0), in this order.
_SONAMES = ("libcublas.so.13", "libcublas.so.12", "libcublas.so")

_loaded: Optional[str] = None


def _site_dirs() -> List[str]:
    dirs: List[str] = []
    try:
        dirs.extend(site.getsitepackages())
    except AttributeError:  # some virtualenvs
        pass
    try:
        dirs.append(site.getusersitepackages())
    except AttributeError:
        pass
    dirs.extend(p for p in sys.path if p)
    seen, out = set(), []
    for d in dirs:
        if d not in seen and os.path.isdir(d):
            seen.add(d)
            out.append(d)
    return out


def pip_cublas_candidates(dirs: Optional[List[str]] = None) -> List[str]:
    """``libcublas.so.*`` files installed by pip under ``<dir>/nvidia/*/lib/``, newest CUDA major
    first."""
    found: List[str] = []
    for d in dirs if dirs is not None else _site_dirs():
        found.extend(glob.glob(os.path.join(d, "nvidia", "*", "lib", "libcublas.so.*")))
    found = [f for f in found if os.path.basename(f).split(".so.")[-1].split(".")[0].isdigit()]

    def major(path: str) -> int:
        return int(os.path.basename(path).split(".so.")[-1].split(".")[0])

    return sorted(set(found), key=lambda p: (-major(p), p))


def preload_cublas() -> Optional[str]:
    """Makes cuBLAS loadable for the GPU code; returns where it comes from (a soname found by
    the loader, or a pip path), or None when there is no CUDA driver or no cuBLAS (the GPU code
    then says so in its ``GpuError``)."""
    global _loaded
    if _loaded is not None:
        return _loaded
    if not _encore.driver_present():
        return None
    for name in _SONAMES:
        try:
            ctypes.CDLL(name)
            _loaded = name
            return name
        except OSError:
            pass
    for path in pip_cublas_candidates():
        lt = os.path.join(os.path.dirname(path), os.path.basename(path).replace("libcublas", "libcublasLt"))
        try:
            if os.path.exists(lt):
                ctypes.CDLL(lt, mode=ctypes.RTLD_GLOBAL)
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        _loaded = path
        return path
    return None


def gpu_available(n: int = 0) -> bool:
    """Whether a GPU is usable (driver, device, cuBLAS, kernels); never raises.

    Parameters
    ----------
    n : int
        The device ordinal (``gpu:n``).
    """
    preload_cublas()
    try:
        _encore.describe_gpu(n)
        return True
    except _encore.GpuError:
        return False
