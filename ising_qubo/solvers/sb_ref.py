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
from typing import Any

import dimod
import numpy as np
import torch

from ising_qubo.solvers._common import (
    ArrayModel,
    check_bqm,
    check_seed,
    check_states_memory,
    optional_time_limit,
    positive_int,
    sampleset_from_states,
    wall_timer,
)
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
    (``timeout``, seconds), ``seed`` (``torch.manual_seed`` before the call: this seeds
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
        check_bqm(bqm, "sb-ref")
        self.remove_unknown_kwargs(**parameters)
        agents = positive_int(num_reads, "num_reads", "sb-ref")
        steps = positive_int(num_steps, "num_steps", "sb-ref")
        mode = check_mode(mode, "sb-ref")
        heated = check_bool(heated, "heated", "sb-ref")
        early_stopping = check_bool(early_stopping, "early_stopping", "sb-ref")
        timeout = optional_time_limit(time_limit, "sb-ref")
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
                upper = np.zeros((n, n))
                low, high = np.minimum(model.rows, model.cols), np.maximum(model.rows, model.cols)
                np.add.at(upper, (low, high), model.data)
                if seed is not None:
                    torch.manual_seed(int(seed))
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
                states = result.reshape(-1, n).cpu().numpy()
                states = np.where(states >= 0, 1, -1).astype(np.int8)
        return sampleset_from_states(states, dimod.SPIN, bqm, info)
