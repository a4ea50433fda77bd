"""Vectorising the zone raster: exact pixel edges, and the same polygons for any chunking."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from ecoplan.grid import Grid
from ecoplan.polygons import vectorize

GRID = Grid(CRS.from_epsg(32647), Affine(10, 0, 500_000, 0, -10, 1_500_000), 30, 40)


def patches(seed=0):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 5, size=(6, 8)).astype(np.uint8)
    values = np.kron(coarse, np.ones((5, 5), np.uint8))
    values[rng.random(values.shape) < 0.05] = 3  # single-cell specks
    return values


def test_polygon_areas_equal_cell_counts():
    values = patches()
    gdf = vectorize(values, GRID)
    for v, geom in zip(gdf["value"], gdf.geometry, strict=True):
        assert geom.area == pytest.approx((values == v).sum() * 100.0)
    assert 0 not in set(gdf["value"])


@pytest.mark.parametrize("chunks", [(7, 9), (16, 16), (30, 40), (1, 40)])
def test_chunked_vectorising_gives_the_same_polygons_as_one_block(chunks):
    values = patches(1)
    whole = vectorize(values, GRID)
    chunked = vectorize(da.from_array(values, chunks=chunks), GRID, block_size=1)
    assert whole["value"].tolist() == chunked["value"].tolist()
    for a, b in zip(whole.geometry, chunked.geometry, strict=True):
        assert shapely.equals_exact(a, b, tolerance=0), (a.wkt[:80], b.wkt[:80])


def test_a_square_across_four_blocks_has_only_its_four_corners():
    values = np.zeros((10, 10), np.uint8)
    values[3:7, 3:7] = 2
    gdf = vectorize(da.from_array(values, chunks=5), GRID, block_size=5)
    (geom,) = gdf.geometry
    assert len(geom.geoms) == 1
    assert shapely.get_num_coordinates(geom) == 5  # closed ring: 4 corners + repeat
