"""Energies by name: what ``PruningProblem(energy="...")`` and ``--energy`` look up.

The built-in energies are registered by :mod:`ising_qubo.pruning.energies`; a user's
energy joins them with :func:`register_energy` (or is passed to the problem as an
instance, unregistered).
"""

from __future__ import annotations

from typing import Any

from ising_qubo.pruning.energies.base import Energy

_REGISTRY: dict[str, Energy] = {}


def register_energy(name: str, energy: Energy, *, overwrite: bool = False) -> None:
    """Make ``energy`` (an :class:`Energy` instance whose ``name`` is ``name``) available
    by that name to :func:`get_energy`, the pruning problem and the CLI."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"an energy name must be a non-empty string, got {name!r}")
    if isinstance(energy, type):
        raise ValueError(
            f"register an instance of {energy.__name__} "
            f"({energy.__name__}()), not the class, as energy {name!r}"
        )
    if not isinstance(energy, Energy):
        raise ValueError(
            f"energy {name!r} must be an instance of a subclass of "
            f"ising_qubo.pruning.energies.Energy, got {type(energy).__name__}"
        )
    if energy.name != name:
        raise ValueError(
            f"energy {name!r}: the instance is named {energy.name!r}; set "
            f"{type(energy).__name__}.name = {name!r} (the problem records it)"
        )
    if name in _REGISTRY and not overwrite:
        raise ValueError(
            f"an energy named {name!r} is already registered; pass overwrite=True to replace it"
        )
    _REGISTRY[name] = energy


def unregister_energy(name: str) -> None:
    _REGISTRY.pop(name, None)


def energy_names() -> tuple[str, ...]:
    """The registered names, in the order they were registered."""
    return tuple(_REGISTRY)


def get_energy(energy: str | Energy | Any) -> Energy:
    """The energy registered as ``energy``, or ``energy`` itself when it is an instance."""
    if isinstance(energy, Energy):
        if not isinstance(energy.name, str) or not energy.name.strip():
            raise ValueError(
                f"energy {type(energy).__name__} has no name: set its class "
                f"attribute name to a non-empty string"
            )
        return energy
    try:
        return _REGISTRY[energy]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown energy {energy!r}; choose one of {', '.join(energy_names())}"
        ) from None
