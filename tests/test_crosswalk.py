"""Crosswalk classification of class codes into zone codes, on hand-made rasters."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from ecoplan.classify import (
    BUILT_UP,
    apply_lookup,
    check_codes,
    classify,
    code_histogram,
    lookup_table,
)
from ecoplan.errors import CrosswalkError
from ecoplan.rules import Crosswalk, load_crosswalk


def test_worldcover_codes_map_to_the_zones_of_the_design():
    codes = np.array([[10, 20, 30, 40], [50, 60, 80, 90], [95, 100, 0, -1]], dtype=np.int32)
    lut = lookup_table(load_crosswalk("worldcover"), max_code=100)
    zones = apply_lookup(codes, lut)
    # forest 1, agriculture 2, water 6, other 7; built-up waits for the urban/rural split
    # (BUILT_UP); nodata code 0 and no data (-1) give 0
    b = BUILT_UP
    expected = np.array([[1, 1, 7, 2], [b, 7, 6, 6], [1, 7, 0, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(zones, expected)


def test_modis_igbp_maps_every_code_and_its_fill_value():
    cw = load_crosswalk("modis_igbp")
    lut = lookup_table(cw, max_code=255)
    codes = np.arange(0, 17, dtype=np.int32)
    zones = apply_lookup(codes, lut)
    assert zones.tolist() == [6, 1, 1, 1, 1, 1, 1, 7, 1, 1, 7, 6, 2, BUILT_UP, 2, 7, 7]
    assert apply_lookup(np.array([255], np.int32), lut).tolist() == [0]


def test_unknown_codes_are_refused_with_code_pixel_count_and_file():
    cw = load_crosswalk("worldcover")
    hist = {10: 5, 41: 3, 200: 1}
    with pytest.raises(CrosswalkError) as err:
        check_codes(hist, cw, source="lc.tif")
    msg = str(err.value)
    assert msg.startswith("lc.tif: class codes 41 (3 pixels), 200 (1 pixels) not in crosswalk")
    assert "on_unmapped: other" in msg


def test_on_unmapped_other_sends_unknown_codes_to_other():
    cw = Crosswalk(
        name="tiny",
        title="tiny",
        on_unmapped="other",
        classes=[{"code": 1, "label": "trees", "zone": "forest"}],
    )
    check_codes({1: 1, 2: 5}, cw, source="x.tif")  # no error
    lut = lookup_table(cw, max_code=3)
    assert apply_lookup(np.array([1, 2, 3], np.int32), lut).tolist() == [1, 7, 7]


def test_histogram_counts_codes_inside_the_region_only_and_any_chunking_agrees():
    rng = np.random.default_rng(0)
    codes = rng.choice([10, 40, 50, -1], size=(50, 70)).astype(np.int32)
    inside = np.zeros((50, 70), np.int32)
    inside[5:45, 10:60] = 1
    values, counts = np.unique(codes[(inside > 0) & (codes >= 0)], return_counts=True)
    expected = {int(k): int(v) for k, v in zip(values, counts, strict=True)}
    for chunk in (7, 16, 100):
        got = code_histogram(
            da.from_array(codes, chunks=chunk), da.from_array(inside, chunks=chunk)
        )
        assert got == expected
    lut = lookup_table(load_crosswalk("worldcover"), max_code=100)
    a = classify(da.from_array(codes, chunks=7), lut).compute()
    b = apply_lookup(codes, lut)
    np.testing.assert_array_equal(a, b)
