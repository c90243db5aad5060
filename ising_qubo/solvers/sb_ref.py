"""``sb-ref``: the PyPI package simulated-bifurcation, unmodified, as an external peer.

The BQM goes to ``simulated_bifurcation.minimize`` in spin form: the package minimises
``x^T Q x + l.x + c`` over x in {-1, 1}^n, with the quadratic form summed over all (i, j),
so ``Q`` holds each coupling ``J_ij`` once, in its upper triangle (the package
symmetrises Q itself). Every agent's vector comes back (``best_only=False``) and the
energies are recomputed from the BQM. No local search follows: these are the package's
own answers.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import time
from typing import Any

import dimod
import numpy as np
import torch

from ising_qubo.solvers._common import (
    ArrayModel,
    Stop,
    check_bqm,
    check_seed,
    check_states_memory,
    optional_time_limit,
    positive_int,
    sampleset_from_states,
    wall_timer,
)
from ising_qubo.solvers._dwave import descent_fallback
from ising_qubo.solvers._torch_common import resolve_device, resolve_dtype
from ising_qubo.solvers.capabilities import Capability as C
from ising_qubo.solvers.torch_sb import MODES, check_bool, check_mode

# what works for a wheel user and in a checkout alike (no ``-e .``, which needs the source)
INSTALL_HINT = "pip install simulated-bifurcation (or the extra: pip install 'ising-qubo[bench]')"
# Peak memory per agent and variable, measured (15 bytes in float32), and per entry of
# the dense n x n matrix: the float64 upper triangle given to the package, then about
# three copies of it in ``dtype`` (measured 17 bytes in float32, 33 in float64).
_STATE_BYTES = 32
_MATRIX_BYTES = 8
_MATRIX_COPIES = 3
# Under a time limit, the package's set-up (its ``to_ising`` on the dense matrix, which
# its ``timeout`` does not count) and ours are estimated from a corner of this size from
# ``_LARGE`` variables on, scaled by n^2 with 50% added, and never below the per-entry
# floor (1.2e-7 s was measured for 4,096 variables beside a busy process). Set-up that
# would take over half the time left is not started: a steepest descent is returned.
_LARGE = 1000
_CALIBRATION_SIZE = 1000
_SECONDS_PER_ENTRY = 1.2e-7
_SETUP_SHARE = 0.5
# The package's loop gets this share of the time left after set-up: its final spins
# and energies, and ours, come after it.
_LOOP_SHARE = 0.9
_MISSING = f"sb-ref needs the optional package simulated-bifurcation: {INSTALL_HINT}"


def package_status() -> str:
    """Whether simulated-bifurcation is importable here, in words; never raises."""
    try:
        if importlib.util.find_spec("simulated_bifurcation") is None:
            return f"no: {INSTALL_HINT}"
        return f"yes (simulated-bifurcation {importlib.metadata.version('simulated-bifurcation')})"
    except Exception:  # a broken install, a module hidden as None, missing metadata
        return f"no: {INSTALL_HINT}"


class SBReferenceSampler(dimod.Sampler):
    """``simulated_bifurcation.minimize`` behind the dimod Sampler API.

    Parameters: ``num_reads`` (agents, default 128), ``num_steps`` (``max_steps``,
    default 10000), ``mode`` ('ballistic' or 'discrete'), ``heated``, ``early_stopping``
    (the package's stop window, sampling period 50, threshold 50), ``time_limit``
    (seconds from the call; the package's ``timeout`` counts only its loop, so it gets
    what is left after the estimated set-up, and when that set-up would take over half
    the limit, a steepest descent from a random state is returned instead, with
    ``info["fallback"]`` saying why: the package built a dense 20,001 x 20,001 matrix
    for 135 s under a 5 s limit), ``seed`` (``torch.manual_seed`` before the call: this seeds
    torch's global generator), ``device`` ('auto', 'cpu', 'cuda'), ``dtype`` ('float32' or
    'float64'). Defaults are the package's.
    """

    capabilities = frozenset({C.TIME_LIMIT})
    parameters = {
        "num_reads": [],
        "num_steps": [],
        "mode": ["mode_options"],
        "heated": [],
        "early_stopping": [],
        "time_limit": [],
        "seed": [],
        "device": [],
        "dtype": [],
    }
    properties = {"mode_options": MODES}

    def sample(
        self,
        bqm: dimod.BinaryQuadraticModel,
        num_reads: int = 128,
        num_steps: int = 10_000,
        mode: str = "ballistic",
        heated: bool = False,
        early_stopping: bool = True,
        time_limit: float | None = None,
        seed: int | None = None,
        device: str = "auto",
        dtype: str = "float32",
        **parameters: Any,
    ) -> dimod.SampleSet:
        stop = Stop(optional_time_limit(time_limit, "sb-ref"))
        check_bqm(bqm, "sb-ref")
        self.remove_unknown_kwargs(**parameters)
        agents = positive_int(num_reads, "num_reads", "sb-ref")
        steps = positive_int(num_steps, "num_steps", "sb-ref")
        mode = check_mode(mode, "sb-ref")
        heated = check_bool(heated, "heated", "sb-ref")
        early_stopping = check_bool(early_stopping, "early_stopping", "sb-ref")
        check_seed(seed, "sb-ref")
        torch_device = resolve_device(device, "sb-ref")
        torch_dtype = resolve_dtype(dtype, "sb-ref")
        n = bqm.num_variables
        itemsize = torch.finfo(torch_dtype).bits // 8
        check_states_memory(
            agents,
            n,
            _STATE_BYTES,
            "sb-ref",
            fixed_bytes=n * n * (_MATRIX_BYTES + _MATRIX_COPIES * itemsize),
            fixed_for=f"the dense {n}x{n} matrix",
        )
        try:
            import simulated_bifurcation as sb
        except ImportError as exc:
            raise ImportError(_MISSING) from exc

        setup = 0.0
        if stop.deadline.end is not None:
            setup = _setup_seconds(sb, n, torch_dtype)
            left = stop.deadline.remaining() or 0.0
            if setup > _SETUP_SHARE * left:
                return descent_fallback(
                    bqm,
                    None,
                    seed,
                    f"sb-ref needs about {setup:.1f} s of set-up for {n} variables (a dense "
                    f"matrix), more than half of the {max(left, 0.0):.1f} s left of "
                    "time_limit: returned a steepest descent from a random state instead",
                    stop.deadline.remaining(),
                )
        model = ArrayModel.from_bqm(bqm, dimod.SPIN)
        n = model.num_variables
        info: dict[str, Any] = {
            "mode": mode,
            "device": str(torch_device),
            "package": package_status(),
        }
        with wall_timer(info):
            if n == 0:
                states = np.empty((agents, 0), dtype=np.int8)
            else:
                low, high = np.minimum(model.rows, model.cols), np.maximum(model.rows, model.cols)
                upper = np.bincount(low * n + high, model.data, n * n).reshape(n, n)
                if seed is not None:
                    torch.manual_seed(int(seed))
                timeout = None
                if stop.deadline.end is not None:
                    left = stop.deadline.remaining() or 0.0
                    timeout = max(1e-3, _LOOP_SHARE * (left - setup))
                result, _ = sb.minimize(
                    torch.as_tensor(upper),
                    torch.as_tensor(model.linear),
                    model.offset,
                    domain="spin",
                    dtype=torch_dtype,
                    device=torch_device,
                    agents=agents,
                    max_steps=steps,
                    best_only=False,
                    mode=mode,
                    heated=heated,
                    verbose=False,
                    early_stopping=early_stopping,
                    timeout=timeout,
                )
                del upper
                states = result.reshape(-1, n).cpu().numpy()
                states = np.where(states >= 0, 1, -1).astype(np.int8)
        return sampleset_from_states(states, dimod.SPIN, bqm, info, model)


def _setup_seconds(sb: Any, n: int, dtype: torch.dtype) -> float:
    """Estimated seconds of set-up before the package's loop (see ``_LARGE``)."""
    floor = _SECONDS_PER_ENTRY * n * n
    if n < _LARGE:
        return floor
    size = _CALIBRATION_SIZE
    began = time.perf_counter()
    corner = sb.core.QuadraticPolynomial(
        torch.zeros((size, size), dtype=torch.float64),
        torch.zeros(size, dtype=torch.float64),
        0.0,
        dtype=dtype,
    )
    corner.to_ising("spin")
    return max(floor, 1.5 * (time.perf_counter() - began) * (n / size) ** 2)
