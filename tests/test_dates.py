"""B.E./C.E. date parsing (ecoplan.dates)."""

from __future__ import annotations

from datetime import date

import pytest

from ecoplan.dates import be_year, ce_year, format_be, format_both, parse_date
from ecoplan.errors import InputError


@pytest.mark.parametrize(
    "text",
    [
        "2569-05-01",  # B.E. because the year is >= 2400
        "2026-05-01",  # C.E.
        "2569/05/01",
        "01/05/2569",  # day first, the usual Thai order
        "1-5-2026",
        "BE 2569-05-01",
        "2569-05-01 B.E.",
        "พ.ศ. 2569-05-01",
        "พ.ศ. ๒๕๖๙-๐๕-๐๑",  # Thai digits
        "CE 2026-05-01",
        "2026-05-01 AD",
        "ค.ศ. 2026-05-01",
        "  2569-05-01  ",
    ],
)
def test_be_and_ce_spellings_give_the_same_ce_date(text):
    assert parse_date(text) == date(2026, 5, 1)


def test_be_year_is_ce_plus_543_both_ways():
    assert be_year(2023) == 2566
    assert ce_year(2580) == 2037
    assert format_be(date(2027, 12, 31)) == "2570-12-31"
    assert format_both(date(2028, 1, 1)) == "2571-01-01 (2028-01-01)"


def test_be_leap_day_is_the_ce_leap_day():
    # 2567 is not a leap year as a number, but B.E. 2567 is C.E. 2024, a leap year.
    assert parse_date("2567-02-29") == date(2024, 2, 29)
    with pytest.raises(InputError, match="not a valid date"):
        parse_date("2566-02-29")  # C.E. 2023 has no 29 February


def test_date_object_is_returned_unchanged():
    assert parse_date(date(2026, 5, 1)) == date(2026, 5, 1)


def test_explicit_era_overrides_the_year_threshold():
    with pytest.raises(InputError, match="C.E. year 1457"):
        parse_date("BE 2000-01-01", what="--date")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty date"),
        ("yesterday", "is not a date"),
        ("2569-13-01", "not a valid date"),
        ("2569-05", "is not a date"),
        ("1800-01-01", "outside 1900–2399"),
    ],
)
def test_bad_dates_raise_input_error_naming_the_input(text, message):
    with pytest.raises(InputError, match=message) as info:
        parse_date(text, what="--as-of")
    assert str(info.value).startswith("--as-of: ")
