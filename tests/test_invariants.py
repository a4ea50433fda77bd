"""Property-based tests (hypothesis) of the invariants the pipeline's steps promise.

- shares sum to 1 per unit and per region; every step preserves the total area;
- a buffer rule's rings are disjoint and together cover the band out to the outer distance;
- classifying a raster equals classifying its tiles and gluing them; results do not depend on
  the chunking.

Examples are derandomised (a fixed seed), so CI runs the same examples every time.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import shapely
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from rasterio.crs import CRS

from ecoplan.buffers import distance_block, ring_block, vector_rings, zone_rings
from ecoplan.classify import apply_lookup, classify, code_histogram, lookup_table
from ecoplan.grid import Grid
from ecoplan.polygons import vectorize
from ecoplan.proportions import N_CODES, pair_counts, proportions_table, zone_counts
from ecoplan.rules import BufferRule, Rules, load_crosswalk

SETTINGS = settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
UTM = CRS.from_epsg(32647)


def grid_for(shape: tuple[int, int], pixel_m: float = 10.0) -> Grid:
    return Grid(UTM, Affine(pixel_m, 0, 500_000, 0, -pixel_m, 2_000_000), *shape)


shapes = st.tuples(st.integers(1, 40), st.integers(1, 40))
chunk_sizes = st.tuples(st.integers(4, 17), st.integers(4, 17))
DASK_SETTINGS = settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


# -- proportions -------------------------------------------------------------------------------


@st.composite
def count_tables(draw):
    n_units = draw(st.integers(1, 5))
    counts = draw(arrays(np.int64, (n_units + 1, N_CODES), elements=st.integers(0, 10**9)))
    rules = Rules(
        proportions={
            "include_water": draw(st.booleans()),
            "include_other": draw(st.booleans()),
        }
    )
    return counts, rules


@SETTINGS
@given(count_tables(), st.floats(0.01, 1e6))
def test_shares_sum_to_one_and_areas_add_up(table, pixel_area_m2):
    counts, rules = table
    unit_ids = [f"u{i}" for i in range(1, len(counts))]
    p = proportions_table(
        counts, unit_ids=unit_ids, region_id="r", pixel_area_m2=pixel_area_m2, rules=rules
    )
    for (level, uid), rows in p.groupby(["level", "unit_id"]):
        counted = rows[rows.status != "not counted"]
        denom = counted.area_ha.sum()
        if denom > 0:
            assert counted.share.sum() == pytest.approx(1.0, rel=1e-9)
        else:
            assert counted.share.isna().all()
        # every zone's area is its pixel count times the pixel area
        c = counts[1:].sum(axis=0) if level == "region" else counts[unit_ids.index(uid) + 1]
        assert rows.area_ha.sum() == pytest.approx(c[1:].sum() * pixel_area_m2 / 1e4, rel=1e-9)
    units = p[p.level == "unit"].area_ha.sum()
    assert p[p.level == "region"].area_ha.sum() == pytest.approx(units, rel=1e-9)


@DASK_SETTINGS
@given(st.data(), shapes, chunk_sizes)
def test_zone_counts_keep_every_pixel_whatever_the_chunks(data, shape, chunks):
    zones = data.draw(arrays(np.uint8, shape, elements=st.integers(0, N_CODES - 1)))
    units = data.draw(arrays(np.int32, shape, elements=st.integers(0, 3)))
    counts = zone_counts(
        da.from_array(zones, chunks=chunks), da.from_array(units, chunks=chunks), n_units=3
    )
    assert counts.sum() == zones.size
    for u in range(4):
        np.testing.assert_array_equal(counts[u], np.bincount(zones[units == u], minlength=N_CODES))
    whole = pair_counts(da.from_array(units), da.from_array(zones), n_a=4, n_b=N_CODES)
    np.testing.assert_array_equal(counts, whole)


# -- classification ----------------------------------------------------------------------------

WORLDCOVER = load_crosswalk("worldcover")
WC_CODES = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100, -1]


def pairs(edges: list[int]) -> list[tuple[int, int]]:
    return list(zip([0, *edges[:-1]], edges, strict=True))


@DASK_SETTINGS
@given(st.data(), shapes, chunk_sizes)
def test_classifying_tiles_and_gluing_equals_classifying_the_raster(data, shape, chunks):
    codes = data.draw(arrays(np.int32, shape, elements=st.sampled_from(WC_CODES)))
    lut = lookup_table(WORLDCOVER, max_code=100)
    whole = apply_lookup(codes, lut)
    # tiles cut at random rows and columns, classified one by one, glued back
    rows = sorted(set(data.draw(st.lists(st.integers(1, shape[0]), max_size=4)) + [shape[0]]))
    cols = sorted(set(data.draw(st.lists(st.integers(1, shape[1]), max_size=4)) + [shape[1]]))
    glued = np.block(
        [
            [apply_lookup(codes[r0:r1, c0:c1], lut) for c0, c1 in pairs(cols)]
            for r0, r1 in pairs(rows)
        ]
    )
    np.testing.assert_array_equal(glued, whole)
    np.testing.assert_array_equal(classify(da.from_array(codes, chunks=chunks), lut), whole)
    # area: a pixel has a zone exactly when it has a code the crosswalk does not call nodata
    assert np.count_nonzero(whole) == np.count_nonzero(codes > 0)
    hist = code_histogram(da.from_array(codes, chunks=chunks), da.ones(shape, chunks=chunks))
    assert sum(hist.values()) == np.count_nonzero(codes >= 0)


# -- polygons ----------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    arrays(np.int32, st.tuples(st.integers(1, 12), st.integers(1, 12)), elements=st.integers(0, 3))
)
def test_polygons_keep_the_area_of_their_pixels(values):
    grid = grid_for(values.shape, pixel_m=30.0)
    polys = vectorize(values, grid)
    for value, geom in zip(polys["value"], polys.geometry, strict=True):
        assert geom.is_valid
        assert geom.area == pytest.approx(np.count_nonzero(values == value) * 900.0)
    assert set(polys["value"]) == set(np.unique(values[values != 0]).tolist())


# -- buffers -----------------------------------------------------------------------------------

ring_lists = st.lists(st.floats(1, 200), min_size=1, max_size=4, unique=True).map(sorted)


@SETTINGS
@given(arrays(np.float64, st.integers(1, 200), elements=st.floats(0, 300)), ring_lists)
def test_rings_are_disjoint_and_cover_the_band(distances, rings_m):
    edges = [0.0, *rings_m]
    rings = tuple(zip(edges, edges[1:], strict=False))
    k = ring_block(distances, rings)
    outer = rings_m[-1]
    for d, ring in zip(distances, k, strict=True):
        if ring:
            inner, out = rings[ring - 1]
            assert inner * (1 + 1e-9) < d <= out * (1 + 1e-9)
        # every distance in (0, outer] falls in exactly one ring (ring_block gives one number)
        assert bool(ring) == (0 < d <= outer * (1 + 1e-9))


@st.composite
def zone_rasters(draw):
    shape = draw(st.tuples(st.integers(8, 30), st.integers(8, 30)))
    zones = draw(arrays(np.uint8, shape, elements=st.sampled_from([0, 1, 2, 4, 6])))
    return zones


# at 10 m pixels, rings out to 60 m need a halo of 7 pixels: arrays of 8 or more
# (for an array smaller than the halo, see the test below)
short_rings = st.lists(st.floats(1, 60), min_size=1, max_size=3, unique=True).map(sorted)


@DASK_SETTINGS
@given(zone_rasters(), st.sampled_from(["outside", "inside", "both"]), chunk_sizes, short_rings)
def test_zone_rings_do_not_depend_on_chunks(zones, side, chunks, rings_m):
    rule = BufferRule(id="r", name_en="r", source={"zones": ["water"]}, rings_m=rings_m, side=side)
    grid = grid_for(zones.shape)
    whole = zone_rings(da.from_array(zones), rule, grid=grid).compute()
    chunked = zone_rings(da.from_array(zones, chunks=chunks), rule, grid=grid).compute()
    np.testing.assert_array_equal(chunked, whole)
    # brute force: the outside band of each cell is its distance to the nearest water cell
    if side == "outside" and (zones == 6).any():
        d = distance_block(zones == 6, pixel_size_m=10.0)
        expect = ring_block(d, rule.rings)
        expect[(zones == 6) | (zones == 0)] = 0
        np.testing.assert_array_equal(whole, expect)


@st.composite
def vector_sources(draw):
    n = draw(st.integers(1, 4))
    geoms = []
    for _ in range(n):
        x, y = draw(st.floats(0, 500)), draw(st.floats(0, 500))
        kind = draw(st.sampled_from(["point", "line", "polygon"]))
        if kind == "point":
            geoms.append(shapely.Point(x, y))
        elif kind == "line":
            geoms.append(shapely.LineString([(x, y), (x + draw(st.floats(5, 200)), y + 50)]))
        else:
            geoms.append(shapely.box(x, y, x + draw(st.floats(5, 100)), y + 40))
    return geoms


@settings(max_examples=25, deadline=None, derandomize=True)
@given(vector_sources(), ring_lists, st.sampled_from(["outside", "both"]))
def test_vector_rings_are_disjoint_and_cover_the_outer_buffer(geoms, rings_m, side):
    import geopandas as gpd

    rule = BufferRule(id="r", name_en="r", source={"layer": "rivers"}, rings_m=rings_m, side=side)
    src = gpd.GeoSeries(geoms, crs=UTM)
    rings = vector_rings(src, rule)
    polys = list(rings.geometry)
    for i in range(len(polys)):
        for j in range(i + 1, len(polys)):
            assert shapely.intersection(polys[i], polys[j]).area < 1e-6 * polys[i].area + 1e-6
    union = shapely.union_all(polys) if polys else shapely.Polygon()
    source = shapely.union_all(geoms)
    polygonal = shapely.union_all(
        [g for g in shapely.get_parts(source) if g.geom_type in ("Polygon", "MultiPolygon")]
    )
    disk = shapely.buffer(source, rings_m[-1])
    expect = disk if side == "both" else shapely.difference(disk, polygonal)
    if side == "both":
        # inside bands stop at the outer distance inwards; what is deeper is not covered
        expect = shapely.difference(expect, shapely.buffer(polygonal, -rings_m[-1]))
    assert shapely.symmetric_difference(union, expect).area <= 1e-6 * expect.area + 1e-3


def test_zone_rings_on_a_grid_smaller_than_the_halo():
    zones = np.full((5, 5), 2, np.uint8)  # agriculture (0 would be outside the region)
    zones[2, 2] = 6
    rule = BufferRule(id="r", name_en="r", source={"zones": ["water"]}, distance_m=41)
    rings = zone_rings(da.from_array(zones), rule, grid=grid_for(zones.shape)).compute()
    d = distance_block(zones == 6, pixel_size_m=10.0)
    expect = np.where((d > 0) & (d <= 41), 1, 0)
    np.testing.assert_array_equal(rings, expect)
