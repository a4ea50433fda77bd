"""Dates in the Buddhist Era (B.E., พ.ศ.) and the Common Era (C.E., ค.ศ.).

Thai plans and the master plan give dates in the Buddhist Era: B.E. year = C.E. year + 543
(the calendar year has begun on 1 January since B.E. 2484 / C.E. 1941, so the rule holds for
every date this package deals with). Months and days are the same in both eras.

How the era of a date is told apart:

- An explicit era marker wins: ``BE``, ``B.E.``, ``พ.ศ.`` (Buddhist Era) or ``CE``, ``C.E.``,
  ``AD``, ``ค.ศ.`` (Common Era), before or after the date: ``2569-05-01 BE``,
  ``พ.ศ. 2569-05-01``, ``CE 2026-05-01``.
- Without a marker, a year of 2400 or more is B.E. and a smaller year is C.E.
  (B.E. 2400 is C.E. 1857; no plan is dated that early, and no C.E. year this software meets
  reaches 2400, so the two ranges never overlap).

Dates are stored and exchanged as ISO C.E. dates (``datetime.date`` / ``YYYY-MM-DD``);
:func:`format_be` turns one back into a B.E. string for people.

Accepted layouts: ``YYYY-MM-DD`` and ``YYYY/MM/DD`` (year first), or ``DD/MM/YYYY`` and
``DD-MM-YYYY`` (day first, the usual Thai order), with Arabic or Thai digits (๐–๙).
"""

from __future__ import annotations

import re
from datetime import date

from ecoplan.errors import InputError

__all__ = [
    "BE_OFFSET",
    "BE_THRESHOLD",
    "parse_date",
    "be_year",
    "ce_year",
    "format_be",
    "format_both",
]

BE_OFFSET = 543
"""B.E. year = C.E. year + 543."""

BE_THRESHOLD = 2400
"""Without an era marker, years >= this are Buddhist Era, smaller years Common Era."""

_MIN_CE_YEAR = 1900
_MAX_CE_YEAR = 2399

_THAI_DIGITS = str.maketrans("๐๑๒๓๔๕๖๗๘๙", "0123456789")
_BE_MARKERS = ("b.e.", "be", "พ.ศ.", "พ.ศ")
_CE_MARKERS = ("c.e.", "ce", "a.d.", "ad", "ค.ศ.", "ค.ศ")
_YEAR_FIRST = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})$")
_DAY_FIRST = re.compile(r"^(\d{1,2})[-/](\d{1,2})[-/](\d{4})$")


def be_year(ce: int) -> int:
    """The Buddhist-Era year of a Common-Era year (``ce + 543``)."""
    return ce + BE_OFFSET


def ce_year(be: int) -> int:
    """The Common-Era year of a Buddhist-Era year (``be - 543``)."""
    return be - BE_OFFSET


def _strip_era(text: str) -> tuple[str, str | None]:
    lowered = text.strip().lower()
    for era, markers in (("BE", _BE_MARKERS), ("CE", _CE_MARKERS)):
        for marker in markers:
            if lowered.startswith(marker) and not lowered[len(marker) : len(marker) + 1].isalpha():
                return lowered[len(marker) :].strip(), era
            if lowered.endswith(marker) and not lowered[-len(marker) - 1 : -len(marker)].isalpha():
                return lowered[: -len(marker)].strip(), era
    return lowered, None


def parse_date(value: str | date, *, what: str = "date") -> date:
    """Parse a B.E. or C.E. date and return it as a C.E. :class:`datetime.date`.

    ``what`` names the input in error messages (e.g. ``"--date"`` or ``"obs.csv: row 3: date"``).
    A :class:`datetime.date` is returned unchanged (it is already C.E.).

    >>> parse_date("2569-05-01")  # B.E., since the year is >= 2400
    datetime.date(2026, 5, 1)
    >>> parse_date("2026-05-01")
    datetime.date(2026, 5, 1)
    >>> parse_date("29/02/2567")  # B.E. 2567 is the leap year C.E. 2024
    datetime.date(2024, 2, 29)

    Raises :class:`~ecoplan.errors.InputError` naming ``what`` when the text is not a date.
    """
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{what}: empty date; give YYYY-MM-DD in B.E. (2569-05-01) or C.E.")
    text, era = _strip_era(value.translate(_THAI_DIGITS))
    if m := _YEAR_FIRST.match(text):
        year, month, day = (int(g) for g in m.groups())
    elif m := _DAY_FIRST.match(text):
        day, month, year = (int(g) for g in m.groups())
    else:
        raise InputError(
            f"{what}: {value!r} is not a date; give YYYY-MM-DD (or DD/MM/YYYY) in B.E. "
            f"(e.g. 2569-05-01) or C.E. (e.g. 2026-05-01)"
        )
    if era is None:
        era = "BE" if year >= BE_THRESHOLD else "CE"
    year_ce = ce_year(year) if era == "BE" else year
    if not _MIN_CE_YEAR <= year_ce <= _MAX_CE_YEAR:
        raise InputError(
            f"{what}: {value!r} is read as C.E. year {year_ce}, outside "
            f"{_MIN_CE_YEAR}–{_MAX_CE_YEAR} (B.E. {be_year(_MIN_CE_YEAR)}–"
            f"{be_year(_MAX_CE_YEAR)}); check the year and its era"
        )
    try:
        return date(year_ce, month, day)
    except ValueError as err:
        raise InputError(f"{what}: {value!r} is not a valid date ({err})") from err


def format_be(d: date) -> str:
    """``YYYY-MM-DD`` with the Buddhist-Era year, e.g. ``2569-05-01`` for 2026-05-01."""
    return f"{be_year(d.year):04d}-{d.month:02d}-{d.day:02d}"


def format_both(d: date) -> str:
    """B.E. first, C.E. in brackets: ``2569-05-01 (2026-05-01)``."""
    return f"{format_be(d)} ({d.isoformat()})"
