"""Front of ``torch-sa``'s ahead-of-time compiled CPU kernel (``_sa_kernel.c``).

Why a second kernel next to the numba one (:mod:`ising_qubo.solvers._sa_cpu`): importing
numba loads LLVM, and its JIT alone peaks at about 150 MiB, more than twice a whole neal
run on a Gset graph; this kernel is compiled when the package is installed, so a solve
holds only the interpreter, numpy and the problem. It covers the common calls, one
problem without low-rank terms in the CSR or the dense layout, with exactly the numba
kernel's moves and random draws; batches of problems and low-rank terms stay on numba.

Threads: ctypes releases the GIL for the length of a call, so a call of several
replicas runs as contiguous blocks of replicas on Python threads, each block a whole
call's sweeps with no barrier in between (numba's parallel loop has the same shape); one
thread runs the call where it is made. Each replica has its own random stream: the
thread count never changes a result.

The extension is optional (``setup.py``): :func:`library` is None where it was not built,
and torch-sa then runs the numba kernel.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import importlib.util
import os
from collections.abc import Callable
from typing import Any

import numpy as np

#: The extension module built from ``_sa_kernel.c``.
EXTENSION = "ising_qubo.solvers._sa_kernel"

_I64, _PTR, _I32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int32
_SIGNATURES = {
    "iq_fields_csr": [_I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR],
    "iq_sweeps_csr": [_I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _I64, _PTR, _I64, _PTR, _I32, _PTR],
    "iq_fields_dense": [_I64, _I64, _PTR, _PTR, _PTR, _PTR],
    "iq_sweeps_dense": [_I64, _I64, _PTR, _PTR, _PTR, _I64, _PTR, _I64, _PTR, _I32, _PTR],
}

_loaded: list[Any] = []  # [the library, or None]: looked up once per process
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_pid = 0  # the process that made _pool


def library() -> Any:
    """The compiled kernel (a ``ctypes.CDLL``), or None where the extension was not built."""
    if not _loaded:
        _loaded.append(_load())
    return _loaded[0]


def available() -> bool:
    """Whether the compiled kernel is installed."""
    return library() is not None


def _load() -> Any:
    try:
        spec = importlib.util.find_spec(EXTENSION)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or spec.origin.endswith(".py"):
        return None
    try:
        lib = ctypes.CDLL(spec.origin)
    except OSError:
        return None
    for name, argtypes in _SIGNATURES.items():
        function = getattr(lib, name, None)
        if function is None:  # a build of another version of the file
            return None
        function.argtypes = argtypes
        function.restype = None
    return lib


def _kernel() -> Any:
    lib = library()
    if lib is None:
        raise RuntimeError(f"torch-sa: the compiled kernel {EXTENSION} is not installed")
    return lib


def _address(array: np.ndarray, dtype: type, name: str) -> int:
    """The data pointer of ``array``, which the kernel reads as C-contiguous ``dtype``."""
    if array.dtype != dtype or not array.flags.c_contiguous:
        raise TypeError(f"compiled kernel: {name} must be C-contiguous {np.dtype(dtype).name}")
    return int(array.ctypes.data)


def _blocks(reps: int, threads: int, call: Callable[[int, int], None]) -> None:
    """``call(a, b)`` on contiguous blocks of replicas [0, reps), one per thread; returns
    when every block is done, even on Ctrl-C (the blocks write into the caller's arrays,
    which must not change after this returns)."""
    threads = max(1, min(int(threads), reps))
    if threads == 1:
        call(0, reps)
        return
    global _pool, _pool_pid
    # a new pool when the cap grew, and in a forked child, which has the parent's pool
    # object but none of its threads (work submitted there would never run)
    if _pool is None or _pool._max_workers < threads - 1 or _pool_pid != os.getpid():
        _pool = concurrent.futures.ThreadPoolExecutor(threads - 1, "ising-qubo-kernel")
        _pool_pid = os.getpid()
    bounds = [reps * k // threads for k in range(threads + 1)]
    futures = [_pool.submit(call, a, b) for a, b in zip(bounds[1:-1], bounds[2:])]
    try:
        call(bounds[0], bounds[1])
    finally:
        _wait(futures)
    for future in futures:
        future.result()  # a worker's error, raised here


def _wait(futures: list[concurrent.futures.Future]) -> None:
    """Wait for every future; a Ctrl-C while waiting is raised once they are done."""
    interrupted = None
    while True:
        try:
            concurrent.futures.wait(futures)
            break
        except KeyboardInterrupt as error:
            interrupted = error
    if interrupted is not None:
        raise interrupted


def fields_csr(
    spins: np.ndarray,
    h: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    threads: int = 1,
) -> np.ndarray:
    """Local fields F = h + J s of every replica (rows of ``spins``), J in CSR (indptr
    int64, indices int32, values float64)."""
    couplings = (
        _address(indptr, np.int64, "indptr"),
        _address(indices, np.int32, "indices"),
        _address(data, np.float64, "data"),
    )
    return _fields("iq_fields_csr", couplings, spins, h, threads)


def sweeps_csr(
    spins: np.ndarray,
    fields: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    beta_table: np.ndarray,
    rng_state: np.ndarray,
    greedy: bool,
    threads: int = 1,
) -> np.ndarray:
    """:func:`ising_qubo.solvers._sa_cpu.sweeps_plain`, compiled: sweep t at inverse
    temperature ``beta_table[t, 0]``, replica r drawing from ``rng_state[r]`` (updated in
    place, as are ``spins`` and ``fields``). Returns the flips of each replica's last
    sweep."""
    couplings = (
        _address(indptr, np.int64, "indptr"),
        _address(indices, np.int32, "indices"),
        _address(data, np.float64, "data"),
    )
    return _sweeps(
        "iq_sweeps_csr", couplings, spins, fields, beta_table, rng_state, greedy, threads
    )


def fields_dense(
    spins: np.ndarray, h: np.ndarray, couplings: np.ndarray, threads: int = 1
) -> np.ndarray:
    """Local fields of every replica, the couplings dense (n * n, row-major, flat), summed
    in the order of :func:`ising_qubo.solvers._sa_cpu.fields_blocks`."""
    dense = (_address(couplings, np.float64, "couplings"),)
    return _fields("iq_fields_dense", dense, spins, h, threads)


def _fields(
    name: str, couplings: tuple[int, ...], spins: np.ndarray, h: np.ndarray, threads: int
) -> np.ndarray:
    """Call the kernel's ``name`` (a fields function) on blocks of replicas; ``couplings``:
    the pointers of its coupling arrays, in its argument order."""
    function = getattr(_kernel(), name)
    reps, n = spins.shape
    fields = np.empty((reps, n))
    s, hp = _address(spins, np.float64, "spins"), _address(h, np.float64, "h")
    fp = _address(fields, np.float64, "fields")

    def call(a: int, b: int) -> None:
        function(b - a, n, s + 8 * a * n, hp, *couplings, fp + 8 * a * n)

    _blocks(reps, threads, call)
    return fields


def sweeps_dense(
    spins: np.ndarray,
    fields: np.ndarray,
    couplings: np.ndarray,
    beta_table: np.ndarray,
    rng_state: np.ndarray,
    greedy: bool,
    threads: int = 1,
) -> np.ndarray:
    """:func:`sweeps_csr` with dense couplings: the moves of
    :func:`ising_qubo.solvers._sa_cpu.sweeps_blocks` for one problem."""
    dense = (_address(couplings, np.float64, "couplings"),)
    return _sweeps("iq_sweeps_dense", dense, spins, fields, beta_table, rng_state, greedy, threads)


def _sweeps(
    name: str,
    couplings: tuple[int, ...],
    spins: np.ndarray,
    fields: np.ndarray,
    beta_table: np.ndarray,
    rng_state: np.ndarray,
    greedy: bool,
    threads: int,
) -> np.ndarray:
    """Call the kernel's ``name`` (a sweeps function) on blocks of replicas; ``couplings``:
    the pointers of its coupling arrays, in its argument order."""
    function = getattr(_kernel(), name)
    reps, n = spins.shape
    last = np.zeros(reps, dtype=np.int64)
    table = np.ascontiguousarray(beta_table, dtype=np.float64)
    s, f = _address(spins, np.float64, "spins"), _address(fields, np.float64, "fields")
    bp, rp = _address(table, np.float64, "beta_table"), _address(rng_state, np.uint64, "rng_state")
    lp = _address(last, np.int64, "flips")
    sweeps, stride, flag = table.shape[0], table.shape[1], int(bool(greedy))

    def call(a: int, b: int) -> None:
        function(
            b - a, n, s + 8 * a * n, f + 8 * a * n, *couplings,
            sweeps, bp, stride, rp + 8 * a, flag, lp + 8 * a,
        )  # fmt: skip

    _blocks(reps, threads, call)
    return last


__all__ = [
    "EXTENSION",
    "available",
    "fields_csr",
    "fields_dense",
    "library",
    "sweeps_csr",
    "sweeps_dense",
]
