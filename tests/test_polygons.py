"""Vectorising the zone raster: exact pixel edges, and the same polygons for any chunking."""

from __future__ import annotations

from collections import defaultdict

import dask.array as da
import numpy as np
import pytest
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from rasterio.crs import CRS
from rasterio.features import shapes

from ecoplan.grid import Grid
from ecoplan.polygons import _normalize_parts, vectorize

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


# -- the new tracer against the former implementation (rasterio's polygonizer + GEOS union) ---


def _reference_vectorize(values: np.ndarray, grid: Grid, mask=None) -> list:
    """``vectorize`` before the numba tracer, unchunked: ``[(value, MultiPolygon), ...]``."""
    values = np.asarray(values)
    mask = values != 0 if mask is None else np.asarray(mask)
    if values.dtype not in (np.uint8, np.uint16, np.int16, np.int32):
        values = values.astype(np.int32)
    raw = defaultdict(list)
    for geom, value in shapes(values, mask=mask.astype(bool), connectivity=4):
        rings = [shapely.linearrings(np.asarray(r, dtype=np.float64)) for r in geom["coordinates"]]
        raw[int(value)].append(shapely.polygons(rings[0], rings[1:] or None))
    t = grid.transform
    matrix = np.array([[t.a, t.b], [t.d, t.e]])
    offset = np.array([t.c, t.f])
    out = []
    for value in sorted(raw):
        polys = shapely.normalize(np.asarray(raw[value], dtype=object))
        polys = polys[np.lexsort(shapely.bounds(polys).T[[2, 3, 0, 1]])]
        on_grid = shapely.transform(polys, lambda xy: xy @ matrix.T + offset)
        out.append((value, shapely.MultiPolygon(list(shapely.normalize(on_grid)))))
    return out


def assert_same(gdf, expected):
    assert gdf["value"].tolist() == [v for v, _ in expected]
    got = shapely.to_wkb(gdf.geometry.values)
    want = shapely.to_wkb(np.array([g for _, g in expected], dtype=object))
    for a, b, (v, g) in zip(got, want, expected, strict=True):
        assert a == b, (v, g.wkt[:200], shapely.from_wkb(a).wkt[:200])


def grid_of(values, transform=GRID.transform):
    return Grid(GRID.crs, transform, *values.shape)


CASES = {
    # a hole touching the shell at a corner: shell + hole, not one self-touching ring
    "pinch_hole": [[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]],
    # two holes touching at a corner are two holes
    "two_holes": [[1, 1, 1, 1], [1, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 1]],
    "diagonal_only": [[1, 0, 1], [0, 1, 0], [1, 0, 1]],
    "checkerboard": [[(r + c) % 2 + 1 for c in range(6)] for r in range(5)],
    "island_in_hole": [
        [1, 1, 1, 1, 1, 1, 1],
        [1, 0, 0, 0, 0, 0, 1],
        [1, 0, 1, 1, 1, 0, 1],
        [1, 0, 1, 2, 1, 0, 1],
        [1, 0, 1, 1, 1, 0, 1],
        [1, 0, 0, 0, 0, 0, 1],
        [1, 1, 1, 1, 1, 1, 1],
    ],
    # a ring of 1s closed only through diagonal contacts: four polygons, no holes
    "diamond": [[0, 1, 0], [1, 0, 1], [0, 1, 0]],
    "spiral": [
        [1, 1, 1, 1, 1, 1],
        [0, 0, 0, 0, 0, 1],
        [1, 1, 1, 1, 0, 1],
        [1, 0, 0, 1, 0, 1],
        [1, 0, 0, 0, 0, 1],
        [1, 1, 1, 1, 1, 1],
    ],
    "pinches_everywhere": [
        [1, 1, 1, 1, 1],
        [1, 0, 1, 0, 1],
        [1, 1, 0, 1, 1],
        [1, 0, 1, 0, 1],
        [1, 1, 1, 1, 1],
    ],
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("block_size", [1, 2, 3, 4096])
def test_special_cases_match_the_reference(name, block_size):
    values = np.array(CASES[name], np.uint8)
    expected = _reference_vectorize(values, grid_of(values))
    assert_same(vectorize(values, grid_of(values), block_size=block_size), expected)
    for chunks in [(1, 1), (2, 3), (3, 2)]:
        chunked = da.from_array(values, chunks=chunks)
        assert_same(vectorize(chunked, grid_of(values), block_size=block_size), expected)


def clustered(rng, shape, n_values):
    """Patches of a few values with specks: holes, islands, corner contacts, seam crossings."""
    h, w = shape
    k = int(rng.integers(1, 5))
    coarse = rng.integers(0, n_values + 1, size=(-(-h // k), -(-w // k)))
    values = np.kron(coarse, np.ones((k, k), np.int64))[:h, :w]
    specks = rng.random(shape) < rng.uniform(0, 0.4)
    values[specks] = rng.integers(0, n_values + 1, size=int(specks.sum()))
    return values


@pytest.mark.parametrize("seed", range(12))
def test_random_rasters_match_the_reference_for_any_chunking(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 60)), int(rng.integers(1, 60)))
    values = clustered(rng, shape, int(rng.integers(1, 5))).astype(np.int32)
    grid = grid_of(values)
    expected = _reference_vectorize(values, grid)
    for block_size in (1, 3, 7, 16, 4096):
        assert_same(vectorize(values, grid, block_size=block_size), expected)
    for chunks, block_size in [((5, 7), 1), ((13, 4), 10), ((1, 30), 7), ((16, 16), 4096)]:
        arr = da.from_array(values, chunks=chunks)
        assert_same(vectorize(arr, grid, block_size=block_size), expected)


@pytest.mark.parametrize("group_vertices", [1, 9, 60])
def test_values_made_in_groups_give_the_same_polygons(monkeypatch, group_vertices):
    # values are turned into polygons a group at a time (bounded memory): any grouping, from
    # one value per group up, gives the polygons of one pass over all values
    rng = np.random.default_rng(5)
    values = clustered(rng, (48, 52), 6).astype(np.int32)
    grid = grid_of(values)
    expected = _reference_vectorize(values, grid)
    monkeypatch.setattr("ecoplan.polygons._GROUP_VERTICES", group_vertices)
    assert_same(vectorize(values, grid, block_size=16), expected)
    assert_same(vectorize(da.from_array(values, chunks=(13, 11)), grid, block_size=1), expected)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    values=st.integers(1, 14).flatmap(
        lambda h: st.integers(1, 14).flatmap(
            lambda w: arrays(np.uint8, (h, w), elements=st.integers(0, 3))
        )
    ),
    block_size=st.integers(1, 8),
    use_mask=st.booleans(),
)
def test_hypothesis_rasters_match_the_reference(values, block_size, use_mask):
    mask = (values % 2 == 0) | (values == 3) if use_mask else None
    grid = grid_of(values)
    expected = _reference_vectorize(values, grid, mask)
    assert_same(vectorize(values, grid, mask=mask, block_size=block_size), expected)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    values=st.integers(1, 16).flatmap(
        lambda h: st.integers(1, 16).flatmap(
            lambda w: arrays(np.uint8, (h, w), elements=st.integers(0, 3))
        )
    ),
    chunks=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    block_size=st.integers(1, 9),
    use_mask=st.booleans(),
)
def test_hypothesis_dask_rasters_match_the_reference(values, chunks, block_size, use_mask):
    # blocks of whole chunks, their halo cut from the neighbouring chunks (mask chunked apart)
    mask = (values % 2 == 0) | (values == 3) if use_mask else None
    grid = grid_of(values)
    expected = _reference_vectorize(values, grid, mask)
    arr = da.from_array(values, chunks=chunks)
    dmask = None if mask is None else da.from_array(mask, chunks=chunks[::-1])
    assert_same(vectorize(arr, grid, mask=dmask, block_size=block_size), expected)


@pytest.mark.parametrize(
    "transform",
    [
        Affine(10, 0, 500_000, 0, 10, 1_500_000),  # south-up
        Affine(0.000089831528, 0, 98.5, 0, -0.000089831528, 18.8),  # degrees
        Affine(30, 0, -1000.5, 0, -30, 0),
    ],
)
def test_other_transforms_and_dtypes_match_the_reference(transform):
    rng = np.random.default_rng(5)
    base = clustered(rng, (25, 31), 4)
    for values in (base.astype(np.float64) + 0.25, base.astype(np.int64), base.astype(np.uint16)):
        grid = grid_of(values, transform)
        expected = _reference_vectorize(values, grid)
        assert_same(vectorize(values, grid, block_size=6), expected)
        assert_same(vectorize(da.from_array(values, chunks=(8, 9)), grid, block_size=1), expected)


def test_nothing_to_vectorize_gives_an_empty_frame():
    values = np.zeros((4, 5), np.uint8)
    gdf = vectorize(values, grid_of(values))
    assert len(gdf) == 0 and list(gdf.columns) == ["value", "geometry"]
    gdf = vectorize(da.from_array(values, chunks=2), grid_of(values), block_size=1)
    assert len(gdf) == 0


def test_rings_are_written_as_geos_normalizes_them():
    rng = np.random.default_rng(11)
    values = clustered(rng, (40, 50), 3)
    for transform in (GRID.transform, Affine(10, 0, 0, 0, 10, 0), Affine(3, 1, 0, 1, -3, 0)):
        gdf = vectorize(values, grid_of(values, transform), block_size=9)
        normalized = _normalize_parts(gdf.geometry.values)
        assert list(shapely.to_wkb(normalized)) == list(shapely.to_wkb(gdf.geometry.values))


@pytest.mark.parametrize("chunked", [False, True])
def test_a_window_with_its_origin_gives_the_polygons_of_the_whole_grid(chunked):
    rng = np.random.default_rng(8)
    values = clustered(rng, (40, 50), 4).astype(np.int32)
    r0, r1, c0, c1 = 7, 33, 12, 41
    outside = np.zeros_like(values)
    outside[r0:r1, c0:c1] = values[r0:r1, c0:c1]
    grid = Grid(CRS.from_epsg(32647), Affine(0.3, 0, 654_321.7, 0, -0.3, 1_234_567.1), 40, 50)
    whole = vectorize(outside, grid)
    window = values[r0:r1, c0:c1]
    if chunked:
        window = da.from_array(window, chunks=(9, 8))
    part = vectorize(window, grid, origin=(r0, c0), block_size=1 if chunked else 2048)
    assert part["value"].tolist() == whole["value"].tolist()
    for a, b in zip(part.geometry, whole.geometry, strict=True):
        assert shapely.equals_exact(a, b, tolerance=0)
