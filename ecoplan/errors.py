"""One exception hierarchy for ecoplan.

The library raises these; only the CLI turns them into exit codes (2 for the user's input or
rules, 1 for anything else). Each subclass also inherits the builtin it resembles, so callers
who do not know ecoplan can still catch ``ValueError`` or ``OSError``.
"""

from __future__ import annotations

__all__ = [
    "EcoplanError",
    "InputError",
    "RulesError",
    "CrosswalkError",
    "OutputError",
]


class EcoplanError(Exception):
    """Root of every error ecoplan raises on purpose."""


class InputError(EcoplanError, ValueError):
    """An input file is missing, unreadable or unusable (wrong CRS, no overlap, …).

    The message names the file and says what is wrong.
    """


class RulesError(EcoplanError, ValueError):
    """A rules, region or crosswalk YAML is invalid. The message names the file and the key."""


class CrosswalkError(InputError):
    """The land-cover data holds class codes the crosswalk does not know."""


class OutputError(EcoplanError, OSError):
    """An output cannot be written (folder not writable, disk full, …)."""
