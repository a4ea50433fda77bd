"""Exact ground areas (UTM scale factor, lon/lat inputs) and the proportions table."""

from __future__ import annotations

import dask.array as da
import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from pyproj import Geod
from rasterio.crs import CRS

from ecoplan.areas import (
    _areal_scale,
    cell_area_block,
    cell_area_m2,
    column_area_m2,
    is_transverse_mercator,
    pair_areas_m2,
)
from ecoplan.grid import Grid
from ecoplan.io import rasterize_on_grid
from ecoplan.proportions import N_CODES, proportions_table, zone_counts
from ecoplan.rules import Rules

UTM47 = CRS.from_epsg(32647)


def test_a_utm_cell_on_the_central_meridian_is_larger_than_its_map_area_by_1_over_k0_squared():
    g = Grid(UTM47, Affine(100.0, 0, 499_950.0, 0, -100.0, 1_600_000.0), 1, 1)
    assert is_transverse_mercator(g)
    # k0 = 0.9996 on the central meridian (x = 500 000 m): ground = 10 000 / 0.9996²
    assert column_area_m2(g)[0] == pytest.approx(10_000 / 0.9996**2, rel=1e-9)


def test_per_column_factor_is_within_5e_6_of_the_exact_factor_over_thailand():
    # latitudes 4.6–20.8° N, 400 km either side of the central meridian
    g = Grid(UTM47, Affine(5000.0, 0, 100_000.0, 0, -5000.0, 2_300_000.0), 360, 160)
    t = g.transform
    x, y = np.meshgrid(
        t.c + t.a * (np.arange(g.width) + 0.5), t.f + t.e * (np.arange(g.height) + 0.5)
    )
    exact = g.pixel_area_m2 / _areal_scale(g, x, y)
    per_column = cell_area_block(g, 0, g.height, 0, g.width)
    assert np.abs(per_column / exact - 1).max() < 5e-6
    # the correction itself is far larger: −0.3 % … +0.08 % against pixel_size²
    assert exact.min() / g.pixel_area_m2 < 0.997 and exact.max() / g.pixel_area_m2 > 1.0007


def _lonlat_box_on_grid(lon0, lat0, *, pixel, crs, chunks=256):
    box = shapely.segmentize(shapely.box(lon0, lat0, lon0 + 1, lat0 + 1), 0.005)
    geo = gpd.GeoSeries([box], crs=4326)
    proj = geo.to_crs(crs)
    xmin, ymin, xmax, ymax = proj.total_bounds
    x0, y1 = np.floor(xmin / pixel) * pixel, np.ceil(ymax / pixel) * pixel
    g = Grid(
        CRS.from_user_input(crs),
        Affine(pixel, 0, x0, 0, -pixel, y1),
        int(np.ceil((y1 - ymin) / pixel)),
        int(np.ceil((xmax - x0) / pixel)),
    )
    inside = rasterize_on_grid(list(proj), [1], g, chunks=chunks, dtype=np.uint8)
    geod_area = abs(Geod(ellps="WGS84").geometry_area_perimeter(box)[0])
    return g, inside, geod_area


def test_a_one_degree_lon_lat_box_has_its_ellipsoidal_area_on_a_utm_grid():
    # 101–102° E is 2–3° east of zone 47's central meridian: the scale factor matters
    g, inside, want = _lonlat_box_on_grid(101.0, 16.0, pixel=250.0, crs="EPSG:32647")
    zones = inside.astype(np.uint8)  # zone code 1 inside the box
    area = pair_areas_m2(inside, zones, n_a=2, n_b=N_CODES, grid=g)[1, 1]
    assert area == pytest.approx(want, rel=2e-4)
    # pixel_size² alone is off by about 0.1 %
    naive = float(inside.sum().compute()) * g.pixel_area_m2
    assert abs(naive / want - 1) > 8e-4


LCC = "+proj=lcc +lat_1=8 +lat_2=12 +lat_0=10 +lon_0=100 +datum=WGS84 +units=m +no_defs"


def test_areas_are_exact_on_a_projection_that_is_not_equal_area():
    # a conformal conic with standard parallels at 8° and 12° N shrinks/inflates areas by
    # about 1 % at 17–18° N; the per-pixel factor takes it out
    g, inside, want = _lonlat_box_on_grid(100.0, 17.0, pixel=250.0, crs=LCC)
    assert not is_transverse_mercator(g)
    area = pair_areas_m2(inside, inside, n_a=2, n_b=2, grid=g)[1, 1]
    naive = float(inside.sum().compute()) * g.pixel_area_m2
    assert abs(naive / want - 1) > 5e-3
    assert area == pytest.approx(want, rel=5e-4)


@pytest.mark.parametrize("chunk", [7, 64])
def test_area_sums_do_not_depend_on_the_chunk_size(chunk):
    g = Grid(UTM47, Affine(30.0, 0, 300_000.0, 0, -30.0, 1_800_000.0), 50, 70)
    rng = np.random.default_rng(1)
    zones = rng.integers(0, 8, g.shape).astype(np.uint8)
    units = rng.integers(0, 3, g.shape).astype(np.int32)
    whole = pair_areas_m2(
        da.from_array(units, chunks=70), da.from_array(zones, chunks=70), n_a=3, n_b=8, grid=g
    )
    got = pair_areas_m2(
        da.from_array(units, chunks=chunk), da.from_array(zones, chunks=chunk), n_a=3, n_b=8, grid=g
    )
    # exactly equal: cell areas are summed as integers (ecoplan.areas.AREA_STEPS)
    np.testing.assert_array_equal(got, whole)
    total = cell_area_m2(g, chunks=chunk).sum().compute()
    assert got.sum() == pytest.approx(total, rel=1e-6)


def _rules(**kw) -> Rules:
    return Rules.model_validate(kw)


def _counts():
    # unit 1: forest 6, agriculture 2, water 2 pixels; unit 2: urban 3, other 1
    c = np.zeros((3, N_CODES), dtype=np.int64)
    c[1, 1], c[1, 2], c[1, 6] = 6, 2, 2
    c[2, 4], c[2, 7] = 3, 1
    return c


def test_shares_status_and_targets_per_unit_and_region():
    rules = _rules(
        targets=[
            {"zone": "forest", "min_share": 0.40},
            {"zone": "urban", "max_share": 0.20},
            {"zone": "forest", "min_share": 0.80, "unit": "A"},
        ]
    )
    t = proportions_table(
        _counts(), unit_ids=["A", "B"], region_id="r", pixel_area_m2=10_000.0, rules=rules
    )
    row = t.set_index(["unit_id", "zone_en"])
    # unit A: land = forest 6 + agriculture 2 (water not counted) = 8 ha; forest 6/8 = 75 % < 80 %
    assert row.loc[("A", "forest"), "area_ha"] == 6.0
    assert row.loc[("A", "forest"), "share"] == pytest.approx(0.75)
    assert row.loc[("A", "forest"), "status"] == "below"
    assert row.loc[("A", "water"), "status"] == "not counted"
    # region: land = 6 + 2 + 3 + 1 = 12 ha; forest 50 % ok; urban 25 % above 20 %
    assert row.loc[("r", "forest"), "share"] == pytest.approx(0.5)
    assert row.loc[("r", "forest"), "status"] == "ok"
    assert row.loc[("r", "urban"), "share"] == pytest.approx(0.25)
    assert row.loc[("r", "urban"), "status"] == "above"
    assert row.loc[("r", "agriculture"), "status"] == "no target"
    assert set(t["denominator"]) == {
        "area of forest + agriculture + rural + urban + industrial + other"
    }


def test_water_and_other_in_the_denominator_are_rules():
    rules = _rules(proportions={"include_water": True, "include_other": False})
    t = proportions_table(
        _counts(), unit_ids=["A", "B"], region_id="r", pixel_area_m2=10_000.0, rules=rules
    )
    row = t.set_index(["unit_id", "zone_en"])
    # region denominator: 6 + 2 + 3 + 2 (water) = 13 ha; other is not counted
    assert row.loc[("r", "forest"), "share"] == pytest.approx(6 / 13)
    assert row.loc[("r", "other"), "status"] == "not counted"
    assert np.isnan(row.loc[("r", "other"), "share"])


def test_exact_areas_and_after_columns_are_used_when_given():
    rules = _rules(targets=[{"zone": "forest", "min_share": 0.55}])
    areas = _counts() * 10_000.0 * 1.001  # e.g. a scale-factor correction
    after = areas.copy()
    after[1, 2] -= 1 * 10_010.0  # one hectare of agriculture becomes forest in unit A
    after[1, 1] += 1 * 10_010.0
    t = proportions_table(
        _counts(),
        unit_ids=["A", "B"],
        region_id="r",
        pixel_area_m2=10_000.0,
        rules=rules,
        area_m2=areas,
        area_m2_after=after,
    )
    cols = list(t.columns)
    assert cols[:11] == [
        "level",
        "unit_id",
        "zone",
        "zone_en",
        "zone_th",
        "area_ha",
        "share",
        "target_min",
        "target_max",
        "status",
        "denominator",
    ]
    assert cols[11:] == ["area_ha_after", "share_after", "status_after"]
    r = t[(t.level == "region") & (t.zone_en == "forest")].iloc[0]
    assert r.area_ha == pytest.approx(6.006)
    assert r.share == pytest.approx(0.5) and r.status == "below"
    assert r.area_ha_after == pytest.approx(7.007)
    assert r.share_after == pytest.approx(7 / 12) and r.status_after == "ok"


def test_zone_counts_count_pixels_per_unit_and_zone():
    zones = da.from_array(np.array([[1, 1, 2], [6, 0, 4]], np.uint8), chunks=1)
    units = da.from_array(np.array([[1, 1, 1], [2, 0, 2]], np.int32), chunks=2)
    c = zone_counts(zones, units, n_units=2)
    assert c[1, 1] == 2 and c[1, 2] == 1 and c[2, 6] == 1 and c[2, 4] == 1 and c[0, 0] == 1


def test_column_sums_on_utm_give_the_same_integers_as_per_cell_sums():
    from ecoplan import areas

    grid = Grid(CRS.from_epsg(32647), Affine(10.0, 0, 750_000.0, 0, -10.0, 1_700_000.0), 60, 94)
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 5, grid.shape), rng.integers(0, 8, grid.shape)
    unit = grid.pixel_area_m2 / areas.AREA_STEPS
    cells = areas.cell_area_m2(grid, chunks=grid.shape).compute()
    per_cell = areas._pair_area_block(a, b, cells, n_a=5, n_b=8, unit_m2=unit) * unit
    for chunks in ((60, 94), (13, 20), (7, 31)):
        got = areas.pair_areas_m2(
            da.from_array(a, chunks=chunks),
            da.from_array(b, chunks=chunks),
            n_a=5,
            n_b=8,
            grid=grid,
        )
        np.testing.assert_array_equal(got, per_cell)
