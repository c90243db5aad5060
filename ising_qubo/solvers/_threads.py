"""Start numba's thread pool without changing torch's thread count.

numba's OpenMP threading layer sets the process-wide OpenMP thread count to its own
(all cores) when its pool starts, and torch reads the same setting: after the first
compiled solve, torch silently ran on all cores although the user (or OMP_NUM_THREADS=1)
had asked for one, and a run resumed past its solves then trained with a different
thread count, so with different float rounding, than the uninterrupted run. Later
parallel calls do not touch the setting again, so restoring it once, right after the
pool starts, is enough; numba keeps its own thread count (``numba.get_num_threads()``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_started = False


@njit(cache=True, parallel=True)
def _touch(values: np.ndarray) -> None:
    for i in prange(values.shape[0]):
        values[i] += 1.0


def start_numba_pool() -> None:
    """Start the pool once (idempotent), leaving torch's thread count as it was."""
    global _started
    if _started:
        return
    import torch

    threads = torch.get_num_threads()
    _touch(np.zeros(64))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    _started = True
