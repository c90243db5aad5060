"""``KEY=VALUE`` options of the command line (``solve --param``, ``prune --solver-param``,
and through :func:`ising_qubo.cli.bench.parse_params` ``bench --param SOLVER:KEY=VALUE``):
one parser, so every command reads values the same way."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


def parse_key_value(text: str, flag: str) -> tuple[str, Any]:
    """``"num_sweeps=5000"`` -> ``("num_sweeps", 5000)``.

    VALUE is read as JSON when it is JSON (numbers, true/false/null, lists, quoted
    strings), else taken as the text given (``device=cuda`` -> ``"cuda"``); the key is
    stripped of surrounding blanks. Without ``=`` or without a key: a ValueError naming
    ``flag`` (the command-line option the text came from).
    """
    key, equals, value = text.partition("=")
    key = key.strip()
    if not equals or not key:
        raise ValueError(f"{flag} {text!r}: expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def parse_key_values(items: Iterable[str], flag: str) -> dict[str, Any]:
    """Every ``KEY=VALUE`` of a repeated option as a dict (a later KEY wins)."""
    return dict(parse_key_value(item, flag) for item in items)


__all__ = ["parse_key_value", "parse_key_values"]
