"""Rasters held for a run: in memory within the budget, else in one temporary file."""

from __future__ import annotations

import contextlib

import dask.array as da
import numpy as np
from affine import Affine
from rasterio.crs import CRS

from ecoplan.grid import Grid
from ecoplan.holding import Holder, held_together

GRID = Grid(CRS.from_epsg(32647), Affine(10.0, 0, 500_000.0, 0, -10.0, 1_500_000.0), 50, 70)


def arrays():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 255, GRID.shape).astype(np.uint8)
    b = rng.integers(0, 3, GRID.shape).astype(np.uint8)
    return a, b


def test_rasters_held_in_files_read_back_the_same_and_the_files_go_away(tmp_path):
    a, b = arrays()
    lazy = [da.from_array(a, chunks=(16, 23)), da.from_array(b, chunks=(16, 23))]
    with held_together(lazy, folder=tmp_path, in_memory=False) as (ha, hb):
        assert len(list(tmp_path.glob(".ecoplan-spill-*.blocks"))) == 2
        np.testing.assert_array_equal(ha.compute(), a)
        np.testing.assert_array_equal(hb.compute(), b)
        assert ha.chunks == lazy[0].chunks
    assert not list(tmp_path.glob(".ecoplan-spill-*"))


def test_the_budget_is_shared_by_everything_held(tmp_path):
    a, b = arrays()
    size = a.nbytes
    with contextlib.ExitStack() as stack:
        keep = Holder(stack, folder=tmp_path, budget_bytes=int(1.5 * size))
        first = keep(da.from_array(a, chunks=25))  # fits: in memory
        assert not list(tmp_path.glob(".ecoplan-spill-*"))
        second = keep(da.from_array(b, chunks=25))  # the budget has 0.5 of it left: a file
        assert len(list(tmp_path.glob(".ecoplan-spill-*.blocks"))) == 1
        np.testing.assert_array_equal(first.compute(), a)
        np.testing.assert_array_equal(second.compute(), b)
    assert not list(tmp_path.glob(".ecoplan-spill-*"))
