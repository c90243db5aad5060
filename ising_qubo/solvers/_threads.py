"""Start numba's thread pool without changing the OpenMP thread count that torch uses.

numba's OpenMP threading layer sets the process-wide OpenMP thread count to its own
(all cores) when its pool starts, and torch reads the same setting: after the first
compiled solve, torch silently ran on all cores although the user (or OMP_NUM_THREADS=1)
had asked for one, and a run resumed past its solves then trained with a different
thread count, so with different float rounding, than the uninterrupted run. Later
parallel calls do not touch the setting again, so restoring it once, right after the
pool starts, is enough; numba keeps its own thread count (``numba.get_num_threads()``).

The CPU solvers do not import torch (its memory), so torch may come later, and it does
not re-read OMP_NUM_THREADS when imported: it takes the OpenMP runtime's setting as it
finds it (measured: OMP_NUM_THREADS=1, a compiled solve, then ``import torch`` gave 2
threads on 2 cores). So when torch is not imported yet, the setting is read and restored
on the OpenMP runtime itself (GNU libgomp, which numba's OpenMP layer and torch's Linux
wheels share); torch imported afterwards then finds what it would have found without the
solve. Where that runtime cannot be loaded (not Linux, or another OpenMP), nothing is
restored; call ``torch.set_num_threads`` after the first solve there if it matters.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

import numpy as np
from numba import njit, prange

_started = False

#: The OpenMP runtime numba's OpenMP layer links (GNU libgomp on Linux).
OPENMP_LIBRARY = "libgomp.so.1"


@njit(cache=True, parallel=True)
def _touch(values: np.ndarray) -> None:
    for i in prange(values.shape[0]):
        values[i] += 1.0


def start_numba_pool() -> None:
    """Start the pool once (idempotent), leaving the OpenMP thread count as it was:
    through torch when torch is imported, else on the OpenMP runtime (see the module)."""
    global _started
    if _started:
        return
    if "torch" in sys.modules:
        import torch

        threads = torch.get_num_threads()
        _touch(np.zeros(64))
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    else:
        openmp = _openmp_runtime()
        before = None if openmp is None else int(openmp.omp_get_max_threads())
        _touch(np.zeros(64))
        if openmp is not None and before is not None and openmp.omp_get_max_threads() != before:
            openmp.omp_set_num_threads(before)
    _started = True


def _openmp_runtime() -> Any:
    """The process's GNU OpenMP runtime (loaded now if numba has not loaded it yet: it is
    the same library numba's OpenMP layer then uses), or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(OPENMP_LIBRARY)
    except OSError:
        return None
