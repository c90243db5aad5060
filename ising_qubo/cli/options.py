"""Options several commands share, defined once so every command reads them alike:
``KEY=VALUE`` values (``solve --param``, ``prune --solver-param``, and through
:func:`ising_qubo.cli.bench.parse_params` ``bench --param SOLVER:KEY=VALUE``) and the
progress flags ``--no-progress`` and ``--quiet`` (:func:`add_progress_flags`)."""

from __future__ import annotations

import argparse
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


QUIET_HELP = (
    "print no progress bars and no status lines (stderr then holds only warnings and "
    "errors); the result is still printed"
)


def add_progress_flags(parser: argparse.ArgumentParser, quiet_help: str = QUIET_HELP) -> None:
    """``--no-progress`` and ``-q/--quiet`` (:func:`ising_qubo.cli.app.main` turns them
    into the command's :func:`ising_qubo._progress.output_level`)."""
    group = parser.add_argument_group("progress (on stderr)")
    group.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars; status lines, where the command prints them, stay (without "
        "this flag a bar is drawn only when stderr is a terminal)",
    )
    group.add_argument("-q", "--quiet", action="store_true", help=quiet_help)


__all__ = ["QUIET_HELP", "add_progress_flags", "parse_key_value", "parse_key_values"]
