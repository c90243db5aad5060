"""Solvers by name: a registry of ``dimod.Sampler`` factories.

Built-in solvers are registered as ``"module:attribute"`` strings so that importing
``ising_qubo`` does not import torch or OR-Tools, and each names the optional modules it
``needs`` (with the extra that installs them): without one, :func:`get_solver` raises a
one-line :class:`~ising_qubo._extras.MissingExtraError` and the listing says why the
solver is unavailable, without importing anything. Third-party packages add solvers through
the ``ising_qubo.solvers`` entry-point group; each entry point loads to a factory (a
zero-argument callable, usually a Sampler class) returning a ``dimod.Sampler``.
"""

from __future__ import annotations

import functools
import importlib
import math
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import dimod

from ising_qubo._extras import MissingExtraError, as_missing_extra, is_installed
from ising_qubo.solvers.capabilities import Capability, supports

ENTRY_POINT_GROUP = "ising_qubo.solvers"

Factory = Callable[[], dimod.Sampler]


@dataclass(frozen=True)
class SolverEntry:
    name: str
    factory: Factory | str
    description: str = ""
    availability: Callable[[], str] | str | None = None
    needs: tuple[tuple[str, str], ...] = ()  # (optional module, the extra installing it)

    def missing(self) -> MissingExtraError | None:
        """The first module in ``needs`` that is not installed, as the error to raise."""
        for module, extra in self.needs:
            if not is_installed(module):
                return MissingExtraError(module, extra, self.name)
        return None

    def load_factory(self) -> Factory:
        missing = self.missing()
        if missing is not None:
            raise missing
        if not isinstance(self.factory, str):
            return self.factory
        try:
            return _import_path(self.factory)
        except ModuleNotFoundError as exc:  # an optional module that ``needs`` does not list
            translated = as_missing_extra(exc, self.name)
            if translated is None:
                raise
            raise translated from exc

    def available(self) -> str:
        """What is usable here, in words (e.g. whether CUDA is visible, or which extra
        to install)."""
        missing = self.missing()
        if missing is not None:
            return f"no ({missing})"
        if self.availability is None:
            return "yes"
        try:  # a broken optional dependency must not break the listing
            check = self.availability
            if isinstance(check, str):
                check = _import_path(check)
            return check()
        except Exception as exc:
            translated = as_missing_extra(exc, self.name)
            reason = str(translated) if translated else f"{type(exc).__name__}: {exc}"
            return " ".join(f"no ({reason})".split())  # one line


def _import_path(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


_REGISTRY: dict[str, SolverEntry] = {}
_LOCK = threading.Lock()
_PLUGINS_LOADED = False


def register_solver(
    name: str,
    factory: Factory | dimod.Sampler | str,
    *,
    description: str = "",
    availability: Callable[[], str] | str | None = None,
    needs: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> None:
    """Make a solver available by ``name`` to :func:`get_solver` and :func:`solve`.

    ``factory`` is a zero-argument callable returning a ``dimod.Sampler`` (a Sampler class
    works), a ready ``dimod.Sampler`` instance (e.g. ``DWaveSampler()``), or a
    ``"module:attribute"`` path to such a callable, imported on first use. ``needs`` maps
    optional modules the solver cannot run without to the ``ising-qubo`` extra that
    installs each (``{"numba": "anneal"}``).
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a solver name must be a non-empty string, got {name!r}")
    if isinstance(factory, dimod.Sampler):
        instance = factory

        def factory() -> dimod.Sampler:
            return instance

        if not description:
            description = type(instance).__name__
    elif not (callable(factory) or isinstance(factory, str)):
        raise TypeError(
            f"factory for solver {name!r} must be a dimod.Sampler, a callable returning "
            f"one, or a 'module:attribute' string; got {type(factory).__name__}"
        )
    with _LOCK:
        if name in _REGISTRY and not overwrite:
            raise ValueError(
                f"a solver named {name!r} is already registered; pass overwrite=True to replace it"
            )
        _REGISTRY[name] = SolverEntry(
            name, factory, description, availability, tuple((needs or {}).items())
        )


def unregister_solver(name: str) -> None:
    with _LOCK:
        _REGISTRY.pop(name, None)


def _load_plugins() -> None:
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in _REGISTRY:
            continue  # explicit registrations win over plug-ins of the same name
        factory = _EntryPointFactory(entry_point)
        register_solver(
            entry_point.name,
            factory,
            description=f"plug-in from {entry_point.value}",
            availability=factory.availability,
        )


class _EntryPointFactory:
    """Defers ``entry_point.load()`` until the solver is asked for (or its availability).

    A plug-in that fails to load (its module missing or raising on import, its attribute
    absent) is an ImportError naming the plug-in, with the original error as its cause.
    """

    def __init__(self, entry_point: Any) -> None:
        self.entry_point = entry_point

    def load(self) -> Any:
        try:
            return self.entry_point.load()
        except Exception as exc:
            raise ImportError(
                f"solver plug-in {self.entry_point.name!r} ({self.entry_point.value}) "
                f"failed to load: {type(exc).__name__}: {exc}"
            ) from exc

    def availability(self) -> str:
        """``"yes"`` when the entry point loads; else :meth:`SolverEntry.available` turns
        the error into ``"no (ImportError: ...)"``."""
        self.load()
        return "yes"

    def __call__(self) -> dimod.Sampler:
        loaded = self.load()
        return loaded if isinstance(loaded, dimod.Sampler) else loaded()


def list_solvers() -> list[str]:
    """Names accepted by :func:`get_solver`, sorted."""
    _load_plugins()
    return sorted(_REGISTRY)


def solver_info() -> list[SolverEntry]:
    """The registry entries (name, description, availability), sorted by name."""
    _load_plugins()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_solver(name: str, **defaults: Any) -> dimod.Sampler:
    """The ``dimod.Sampler`` registered as ``name``.

    Keyword arguments become default sampling parameters (``get_solver("neal",
    num_reads=100)``); they must be parameters the sampler declares.
    """
    _load_plugins()
    try:
        entry = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown solver {name!r}; available solvers: {', '.join(list_solvers())}"
        ) from None
    sampler = entry.load_factory()()
    if not isinstance(sampler, dimod.Sampler):
        raise TypeError(
            f"solver {name!r} factory returned {type(sampler).__name__}, not a dimod.Sampler"
        )
    if defaults:
        sampler = ParameterDefaults(sampler, **defaults)
    return sampler


class ParameterDefaults(dimod.Sampler, dimod.Composite):
    """Wraps a sampler so that ``defaults`` apply unless a call overrides them.

    Besides ``sample``, the child's ``sample_batch`` and ``sample_structured`` are
    forwarded with the same defaults, and exist on the wrapper exactly when the child
    declares the matching capability (:data:`~ising_qubo.solvers.capabilities.
    Capability.BATCH`, ``STRUCTURED``).
    """

    def __init__(self, child: dimod.Sampler, **defaults: Any) -> None:
        unknown = sorted(set(defaults) - set(child.parameters))
        if unknown:
            raise ValueError(
                f"{type(child).__name__} has no parameter(s) {', '.join(unknown)}; "
                f"it accepts: {', '.join(sorted(child.parameters)) or 'none'}"
            )
        self._children = [child]
        self.defaults = defaults

    @property
    def children(self) -> list[dimod.Sampler]:
        return self._children

    @property
    def capability_source(self) -> dimod.Sampler:
        """Binding defaults changes no capability: the child answers (see capabilities)."""
        return self.child

    @property
    def parameters(self) -> dict[str, list]:
        return dict(self.child.parameters)

    @property
    def properties(self) -> dict[str, Any]:
        return {"child_properties": dict(self.child.properties), "defaults": dict(self.defaults)}

    def sample(self, bqm: dimod.BinaryQuadraticModel, **parameters: Any) -> dimod.SampleSet:
        return self.child.sample(bqm, **{**self.defaults, **parameters})

    def __getattr__(self, name: str) -> Any:
        """``sample_batch`` / ``sample_structured`` of the child, with the defaults."""
        capability = _FORWARDED.get(name)
        child = vars(self).get("_children", [None])[0]  # None before __init__ has run
        if capability is None or child is None or not supports(child, capability):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        method = getattr(child, name)

        @functools.wraps(method)
        def with_defaults(*args: Any, **parameters: Any) -> Any:
            return method(*args, **{**self.defaults, **parameters})

        return with_defaults


# Entry points besides ``sample`` that ParameterDefaults forwards, by the capability that
# promises them.
_FORWARDED = {"sample_batch": Capability.BATCH, "sample_structured": Capability.STRUCTURED}


def resolve_sampler(solver: str | dimod.Sampler) -> dimod.Sampler:
    if isinstance(solver, str):
        return get_solver(solver)
    if isinstance(solver, dimod.Sampler) or callable(getattr(solver, "sample", None)):
        return solver
    raise TypeError(
        f"solver must be a registered name or a dimod.Sampler, got {type(solver).__name__}"
    )


def solve(
    bqm: dimod.BinaryQuadraticModel, solver: str | dimod.Sampler = "neal", **params: Any
) -> dimod.SampleSet:
    """Solve ``bqm`` with a solver given by name or as any ``dimod.Sampler``.

    Returns the sampler's ``dimod.SampleSet`` (lowest energy first via ``.first``).
    Parameters the sampler does not declare are dropped with dimod's
    ``SamplerUnknownArgWarning`` by dimod samplers.

    A ``time_limit`` counts from this call: loading a solver by name (importing torch
    or numba, 1-3 s on a busy machine) is taken off the time the sampler is given, and
    ``info["load_s"]`` says how much that was.
    """
    if not isinstance(bqm, dimod.BinaryQuadraticModel):
        raise TypeError(f"bqm must be a dimod.BinaryQuadraticModel, got {type(bqm).__name__}")
    started = time.perf_counter()
    sampler = resolve_sampler(solver)
    loading = time.perf_counter() - started
    params, adjusted = limit_after_loading(params, loading)
    with warnings.catch_warnings():
        warnings.simplefilter("default", dimod.exceptions.SamplerUnknownArgWarning)
        sampleset = sampler.sample(bqm, **params)
    if adjusted:
        sampleset.info["load_s"] = loading
    return sampleset


def limit_after_loading(params: dict[str, Any], loading: float) -> tuple[dict[str, Any], bool]:
    """``params`` with ``loading`` seconds taken off a valid ``time_limit`` (a limit counts
    from the user's call, and loading a solver by name imports torch or numba: 1-3 s on a
    busy machine), and whether it was. A bad limit is left for the sampler's own error."""
    limit = params.get("time_limit")
    if not isinstance(limit, (int, float)) or isinstance(limit, bool):
        return params, False
    if not (math.isfinite(limit) and limit > 0 and loading >= _LOAD_NOTICED_S):
        return params, False
    return {**params, "time_limit": max(limit - loading, _MIN_LIMIT_S)}, True


# solve(): loading shorter than this is not taken off a time limit; a limit that loading
# used up still leaves the sampler this long, to return its starting or fastest state.
_LOAD_NOTICED_S = 0.01
_MIN_LIMIT_S = 0.01
