"""How ``ising-qubo ... --help`` shows options: every option's default after its help text.

:class:`DefaultsFormatter` appends ``(default: X)`` to an option's help unless the help
already names its default or there is nothing to show (no default, a ``store_true`` flag,
an empty repeated option). :class:`RawDefaultsFormatter` does the same and keeps the
description's own line breaks (``bench``'s tables).
"""

from __future__ import annotations

import argparse


class DefaultsFormatter(argparse.HelpFormatter):
    """Help text with the default value of every option that has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        default = action.default
        if (
            "default" in help_text
            or default is None
            or default is False
            or default == []
            or default is argparse.SUPPRESS
            or isinstance(action, (argparse._HelpAction, argparse._VersionAction))
        ):
            return help_text
        return f"{help_text} (default: %(default)s)"


class RawDefaultsFormatter(DefaultsFormatter, argparse.RawDescriptionHelpFormatter):
    """:class:`DefaultsFormatter` that leaves the description and epilog as written."""


__all__ = ["DefaultsFormatter", "RawDefaultsFormatter"]
