"""Buffer zones: exact distances, disjoint rings, chunk invariance, raster = vector (1 pixel)."""

from __future__ import annotations

import math

import dask.array as da
import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from pyproj import Geod, Transformer
from rasterio.crs import CRS

from ecoplan.buffers import distance_block, halo_pixels, ring_block, vector_rings, zone_rings
from ecoplan.grid import Grid
from ecoplan.io import rasterize_on_grid
from ecoplan.rules import BufferRule

P = 10.0  # pixel size in metres
UTM47 = CRS.from_epsg(32647)


def grid_of(shape, *, pixel=P, x0=600_000.0, y0=1_600_000.0) -> Grid:
    return Grid(UTM47, Affine(pixel, 0, x0, 0, -pixel, y0), shape[0], shape[1])


def rule(**kw) -> BufferRule:
    base = {"id": "r", "name_en": "R", "source": {"zones": ["forest"]}, "restricts": ["urban"]}
    return BufferRule.model_validate({**base, **kw})


def brute_distance(source: np.ndarray, pixel: float) -> np.ndarray:
    """Centre-to-centre distance to the nearest source cell, by brute force."""
    rs, cs = np.nonzero(source)
    rr, cc = np.indices(source.shape)
    d = np.full(source.shape, np.inf)
    for r, c in zip(rs, cs, strict=True):
        d = np.minimum(d, np.hypot(rr - r, cc - c) * pixel)
    return d


def test_distance_block_is_euclidean_in_metres_with_the_pixel_size():
    src = np.zeros((7, 7), bool)
    src[3, 3] = True
    d = distance_block(src, pixel_size_m=30.0)
    assert d[3, 3] == 0
    assert d[3, 6] == pytest.approx(90.0)  # 3 pixels east
    assert d[0, 0] == pytest.approx(30.0 * math.sqrt(18))  # (3, 3) offset: 127.279 m
    assert d[6, 5] == pytest.approx(30.0 * math.sqrt(13))  # (3, 2) offset


def test_distance_block_without_source_is_infinite():
    assert np.isinf(distance_block(np.zeros((3, 4), bool), pixel_size_m=10)).all()


def test_halo_covers_the_largest_distance():
    assert halo_pixels(1000, 30) == 35  # ceil(33.3) + 1
    assert halo_pixels(90, 30) == 4


def test_rings_are_half_open_bands_inner_exclusive_outer_inclusive():
    d = np.array([0.0, 50.0, 100.0, 100.0001, 250.0, 250.0001, np.inf])
    got = ring_block(d, ((0.0, 100.0), (100.0, 250.0)))
    assert got.tolist() == [0, 1, 1, 2, 2, 0, 0]


def test_rings_m_gives_consecutive_rings_from_zero():
    r = rule(rings_m=[100, 500, 1000])
    assert r.rings == ((0.0, 100.0), (100.0, 500.0), (500.0, 1000.0))
    assert r.max_distance_m == 1000.0


def test_rings_must_increase():
    with pytest.raises(ValueError, match="increase"):
        rule(rings_m=[100, 50])


def test_allows_restricts_every_other_zone():
    r = rule(distance_m=10, restricts=[], allows=["forest", "water"])
    assert r.restricted_zones == ("agriculture", "rural", "urban", "industrial", "other")


def _forest_map(shape=(40, 40)):
    zones = np.full(shape, 2, dtype=np.uint8)  # agriculture
    zones[10:16, 12:20] = 1  # forest block
    zones[30, 5] = 1  # a lone forest cell
    zones[:, :2] = 0  # outside the region
    return zones


@pytest.mark.parametrize("chunk", [5, 13, 40])
def test_zone_rings_match_brute_force_and_do_not_depend_on_the_chunk_size(chunk):
    zones = _forest_map()
    g = grid_of(zones.shape)
    r = rule(rings_m=[30, 70])
    got = zone_rings(da.from_array(zones, chunks=chunk), r, grid=g).compute()
    d = brute_distance(zones == 1, P)
    want = np.zeros(zones.shape, np.uint8)
    outside = (zones != 1) & (zones != 0)
    want[outside & (d > 0) & (d <= 30)] = 1
    want[outside & (d > 30) & (d <= 70)] = 2
    np.testing.assert_array_equal(got, want)


def test_rings_are_disjoint_and_cover_the_outer_disk():
    zones = np.full((31, 31), 2, dtype=np.uint8)
    zones[15, 15] = 1
    r = rule(rings_m=[20, 50, 100])
    got = zone_rings(da.from_array(zones, chunks=8), r, grid=grid_of(zones.shape)).compute()
    rr, cc = np.indices(zones.shape)
    d = np.hypot(rr - 15, cc - 15) * P
    # every cell with 0 < d <= 100 m is in exactly one ring (a label), and no other cell is
    np.testing.assert_array_equal(got > 0, (d > 0) & (d <= 100))
    for k, (lo, hi) in enumerate(r.rings, start=1):
        np.testing.assert_array_equal(got == k, (d > lo) & (d <= hi))
    # the disk of radius 100 m holds 316 cell centres besides the source (hand count: Gauss circle)
    assert int((got > 0).sum()) == 316


def test_inside_side_measures_from_the_source_edge_inwards():
    zones = np.full((20, 20), 2, dtype=np.uint8)
    zones[5:15, 5:15] = 1
    got = zone_rings(
        da.from_array(zones, chunks=7), rule(distance_m=20, side="inside"), grid=grid_of((20, 20))
    ).compute()
    d = brute_distance(zones != 1, P)  # distance from a forest cell to the nearest non-forest
    want = ((zones == 1) & (d <= 20)).astype(np.uint8)
    np.testing.assert_array_equal(got, want)
    # the band is the two outer layers of the 10 × 10 square, minus nothing: 100 − 36 = 64 cells
    assert int(got.sum()) == 64


def test_both_sides_label_inside_and_outside():
    zones = np.full((20, 20), 2, dtype=np.uint8)
    zones[5:15, 5:15] = 1
    got = zone_rings(
        da.from_array(zones, chunks=20), rule(distance_m=10, side="both"), grid=grid_of((20, 20))
    ).compute()
    # outside: the 4-neighbour ring at 10 m (40 cells); inside: the outer layer (36 cells)
    assert int((got[zones == 1] > 0).sum()) == 36
    assert int((got[zones != 1] > 0).sum()) == 40


def test_raster_and_vector_sources_give_the_same_band_within_one_pixel():
    shape = (60, 60)
    g = grid_of(shape)
    zones = np.full(shape, 2, dtype=np.uint8)
    zones[20:35, 25:40] = 1
    r = rule(rings_m=[50, 120])
    raster = zone_rings(da.from_array(zones, chunks=16), r, grid=g).compute()
    t = g.transform
    square = shapely.box(t.c + 25 * P, t.f - 35 * P, t.c + 40 * P, t.f - 20 * P)
    polys = vector_rings(gpd.GeoSeries([square], crs=g.crs), r)
    burnt = rasterize_on_grid(
        list(polys.geometry), polys["ring"].to_numpy(), g, chunks=16, dtype=np.uint8
    ).compute()
    d = brute_distance(zones == 1, P)
    differ = raster != burnt
    # the vector band is measured from the polygon edge, half a pixel outside the source
    # centres: cells that differ lie within one pixel of a ring edge
    edges = np.array([0.0, 50.0, 120.0])
    near_edge = np.min(np.abs(d[..., None] - edges), axis=-1) <= P
    assert differ.sum() > 0
    assert near_edge[differ].all()


def test_vector_rings_of_a_lon_lat_point_are_measured_in_metres_on_the_ground():
    point = gpd.GeoSeries([shapely.Point(100.5, 14.0)], crs=4326).to_crs(32647)
    r = rule(source={"layer": "heritage_sites"}, rings_m=[500, 1000])
    polys = vector_rings(point, r)
    assert polys["ring"].tolist() == [1, 2]
    outer = polys.geometry.iloc[1]
    # vertices of the outer boundary are 1000 m (map) away; on the ellipsoid the distance
    # differs only by UTM's scale factor (0.9996 … 1.001 in Thailand)
    to_ll = Transformer.from_crs(32647, 4326, always_xy=True)
    ring = np.asarray(max(outer.geoms, key=lambda p: p.area).exterior.coords)
    lon, lat = to_ll.transform(ring[:, 0], ring[:, 1])
    centre = (np.full(len(lon), 100.5), np.full(len(lon), 14.0))
    _, _, dist = Geod(ellps="WGS84").inv(*centre, lon, lat)
    assert np.allclose(dist, 1000.0, rtol=2e-3)
    # rings do not overlap: ring 2 is the annulus (500, 1000]
    inner = polys.geometry.iloc[0]
    assert inner.intersection(outer).area == pytest.approx(0.0, abs=1e-6)
    assert (inner.area + outer.area) == pytest.approx(math.pi * 1000**2, rel=1e-2)


def test_vector_rings_outside_a_polygon_exclude_the_polygon():
    sq = gpd.GeoSeries([shapely.box(0, 0, 100, 100)], crs=UTM47)
    polys = vector_rings(sq, rule(source={"layer": "protected_areas"}, distance_m=10))
    band = polys.geometry.iloc[0]
    assert band.intersection(sq.iloc[0]).area == pytest.approx(0.0, abs=1e-9)
    # a 10 m band around a 100 m square: 4 × 100 × 10 + rounded corners π × 10²
    assert band.area == pytest.approx(4000 + math.pi * 100, rel=2e-3)


def test_a_grid_thinner_than_the_halo_still_gets_exact_rings():
    zones = np.full((3, 40), 2, dtype=np.uint8)
    zones[1, 0] = 1
    got = zone_rings(da.from_array(zones, chunks=2), rule(distance_m=100), grid=grid_of((3, 40)))
    d = brute_distance(zones == 1, P)
    np.testing.assert_array_equal(got.compute(), ((d > 0) & (d <= 100)).astype(np.uint8))
