"""End-to-end runs on small regions built in code, with hand-computed expectations."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine
from pyproj import Geod
from synthetic_region import PIXEL, X0, Y0, box_boundary, write_raster, write_region

from ecoplan.pipeline import run_region

ONE_RULE = {
    "buffers": [
        {
            "id": "water_ring",
            "name_en": "Water rings",
            "name_th": "วงรอบแหล่งน้ำ",
            "source": {"zones": ["water"]},
            "rings_m": [150, 300],
            "restricts": ["urban"],
        }
    ],
    "targets": [{"zone": "forest", "min_share": 0.5}],
    # built-up cells all count as urban here (the urban/rural split has tests of its own)
    "urban_rural": {"method": "all_urban"},
}


def read(path, layer):
    return pyogrio.read_dataframe(path, layer=layer)


@pytest.fixture
def two_units(tmp_path):
    """40 x 40 cells of 1 ha: forest on the left half, cropland on the right, a 4 x 4 built-up
    block at rows 10-13 / cols 30-33 and one water cell at row 20, col 30. Units A (left half)
    and B (right half)."""
    codes = np.full((40, 40), 10, np.uint8)
    codes[:, 20:] = 40
    codes[10:14, 30:34] = 50
    codes[20, 30] = 80
    write_raster(tmp_path / "lc.tif", codes)
    mid = X0 + 20 * PIXEL
    box_boundary(
        tmp_path / "units.gpkg",
        {"A": (X0, Y0 - 40 * PIXEL, mid, Y0), "B": (mid, Y0 - 40 * PIXEL, X0 + 40 * PIXEL, Y0)},
        crs="EPSG:4326",  # the boundary comes in lon/lat, the raster in UTM
    )
    return write_region(tmp_path, landcover="lc.tif", boundary="units.gpkg", rules=ONE_RULE)


def test_run_writes_every_layer_with_areas_counted_by_hand(two_units, tmp_path):
    result = run_region(two_units, tmp_path / "out")
    gpkg = tmp_path / "out" / "test.gpkg"
    layers = [name for name, _ in pyogrio.list_layers(gpkg)]
    for name in ("zones", "buffer_zones", "conflicts", "proportions", "run_metadata"):
        assert name in layers
    zones = read(gpkg, "zones").set_index(["unit_id", "zone_en"])
    # each cell is 1 ha on the UTM map; on the ground 1/k² ha, k ≈ 0.99973 here (scale factor)
    assert zones.loc[("A", "forest"), "area_ha"] == pytest.approx(800, rel=1e-3)
    assert zones.loc[("B", "agriculture"), "area_ha"] == pytest.approx(800 - 16 - 1, rel=1e-3)
    assert zones.loc[("B", "urban"), "area_ha"] == pytest.approx(16, rel=1e-3)
    assert zones.loc[("B", "water"), "area_ha"] == pytest.approx(1, rel=1e-3)
    assert zones.loc[("B", "urban")].zone_th == "พื้นที่เมือง"
    # unit A is all forest: its area is the ellipsoidal area of the unit's polygon
    unit_a = shapely.box(X0, Y0 - 40 * PIXEL, X0 + 20 * PIXEL, Y0).segmentize(10)
    lonlat = gpd.GeoSeries([unit_a], crs=32647).to_crs(4326).item()
    true_ha = abs(Geod(ellps="WGS84").geometry_area_perimeter(lonlat)[0]) / 1e4
    assert zones.loc[("A", "forest"), "area_ha"] == pytest.approx(true_ha, rel=1e-5)
    # polygon areas on the map agree with the counted cells
    layer = read(gpkg, "zones")
    cells = layer.to_crs(32647).area / 1e4
    np.testing.assert_allclose(cells, layer.area_ha, rtol=1e-3)
    assert result.region_id == "test"


def test_buffer_rings_hold_the_cells_at_the_right_ground_distance(two_units, tmp_path):
    run_region(two_units, tmp_path / "out")
    rings = read(tmp_path / "out" / "test.gpkg", "buffer_zones").set_index("ring")
    # cell centres at distance <= 150 m from the water cell: 4 at 100 m and 4 at 141 m;
    # (150, 300]: 4 at 200, 8 at 224, 4 at 283 and 4 at 300 m
    assert rings.loc[1, "area_ha"] == pytest.approx(8, rel=1e-3)
    assert rings.loc[2, "area_ha"] == pytest.approx(20, rel=1e-3)
    assert rings.loc[2, "inner_m"] == 150 and rings.loc[2, "distance_m"] == 300
    assert rings.loc[1, "restricts"] == "urban"
    assert rings.geometry.to_crs(32647).area.round().tolist() == [80_000, 200_000]


def test_conflicts_are_restricted_zones_inside_a_band(tmp_path):
    codes = np.full((20, 20), 40, np.uint8)
    codes[10, 10] = 80  # water
    codes[10, 12] = 50  # built-up 200 m east: ring 2
    codes[11, 11] = 50  # built-up 141 m south-east: ring 1
    write_raster(tmp_path / "lc.tif", codes)
    box_boundary(tmp_path / "b.gpkg", {"R": (X0, Y0 - 20 * PIXEL, X0 + 20 * PIXEL, Y0)})
    region = write_region(tmp_path, landcover="lc.tif", boundary="b.gpkg", rules=ONE_RULE)
    result = run_region(region, tmp_path / "out")
    conflicts = read(tmp_path / "out" / "test.gpkg", "conflicts")
    # one cell each: 1 ha on the map, 1/k² on the ground (k ≈ 0.99973 here)
    found = sorted(zip(conflicts.ring, conflicts.zone_en, conflicts.area_ha.round(2), strict=True))
    assert found == [(1, "urban", 1.0), (2, "urban", 1.0)]
    assert result.summary()["conflict_area_ha"] == pytest.approx(2.0, rel=1e-3)


def test_proportions_sum_to_one_per_unit_and_compare_with_targets(two_units, tmp_path):
    result = run_region(two_units, tmp_path / "out")
    table = read(tmp_path / "out" / "test.gpkg", "proportions")
    assert set(table.columns) >= {
        "unit_id",
        "zone",
        "area_ha",
        "share",
        "target_min",
        "target_max",
        "status",
    }
    for _, rows in table.groupby("unit_id"):
        assert rows["share"].sum() == pytest.approx(1.0)
    region = table[table.level == "region"].set_index("zone_en")
    # water does not count in the denominator: 1600 ha - 1 ha of water
    assert region.loc["forest", "share"] == pytest.approx(800 / 1599, rel=1e-4)
    assert region.loc["forest", "status"] == "ok"
    assert np.isnan(region.loc["water", "share"])
    assert region.loc["water", "status"] == "not counted"
    assert result.proportions.equals(result.proportions)


def test_targets_not_met_are_reported_below(tmp_path, two_units):
    rules = dict(ONE_RULE, targets=[{"zone": "forest", "min_share": 0.9}])
    region = write_region(tmp_path, landcover="lc.tif", boundary="units.gpkg", rules=rules)
    result = run_region(region, tmp_path / "out")
    assert result.summary()["targets_not_met"] == ["forest: 50.0% (below)"]


def test_outputs_do_not_depend_on_the_chunk_size(two_units, tmp_path):
    run_region(two_units, tmp_path / "one", chunk_size=1024)
    run_region(two_units, tmp_path / "many", chunk_size=7)
    with (
        rasterio.open(tmp_path / "one" / "test_zones.tif") as a,
        rasterio.open(tmp_path / "many" / "test_zones.tif") as b,
    ):
        np.testing.assert_array_equal(a.read(1), b.read(1))
    for layer in ("zones", "buffer_zones", "conflicts", "proportions"):
        a = read(tmp_path / "one" / "test.gpkg", layer)
        b = read(tmp_path / "many" / "test.gpkg", layer)
        pd.testing.assert_frame_equal(pd.DataFrame(a), pd.DataFrame(b))


def test_zone_raster_is_a_cog_with_colour_table_and_nodata_zero(two_units, tmp_path):
    run_region(two_units, tmp_path / "out")
    with rasterio.open(tmp_path / "out" / "test_zones.tif") as src:
        assert src.dtypes[0] == "uint8"
        assert src.nodata == 0
        assert src.crs.to_epsg() == 32647
        assert src.colormap(1)[1] == (0x1B, 0x78, 0x37, 255)
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.compression.name == "deflate"  # read by every GeoTIFF reader
        assert "forest" in src.tags(1)["ZONE_1"]


def test_lon_lat_raster_is_measured_in_metres_on_the_ground(tmp_path):
    # a 0.01 degree raster of forest with a lake, entirely in lon/lat
    codes = np.full((60, 60), 10, np.uint8)
    codes[20:40, 20:40] = 80
    transform = Affine(0.01, 0, 100.0, 0, -0.01, 15.0)
    write_raster(tmp_path / "lc.tif", codes, crs="EPSG:4326", transform=transform)
    frame = shapely.box(100.0, 14.4, 100.6, 15.0)
    gpd.GeoDataFrame({"unit": ["X"]}, geometry=[frame], crs=4326).to_file(
        tmp_path / "b.gpkg", layer="units"
    )
    region = write_region(
        tmp_path, landcover="lc.tif", boundary="b.gpkg", pixel_size_m=100, rules=ONE_RULE
    )
    result = run_region(region, tmp_path / "out")
    total_ha = result.proportions.query("level == 'region'").area_ha.sum()
    geod = Geod(ellps="WGS84")
    true_ha = abs(geod.geometry_area_perimeter(frame)[0]) / 1e4
    assert total_ha == pytest.approx(true_ha, rel=0.01)
    lake_ha = result.proportions.query("level == 'region' and zone_en == 'water'").area_ha.item()
    true_lake = abs(geod.geometry_area_perimeter(shapely.box(100.2, 14.6, 100.4, 14.8))[0]) / 1e4
    assert lake_ha == pytest.approx(true_lake, rel=0.01)


def test_vector_buffer_around_a_lon_lat_river_is_in_metres(tmp_path):
    codes = np.full((60, 60), 40, np.uint8)
    write_raster(tmp_path / "lc.tif", codes)
    box_boundary(tmp_path / "b.gpkg", {"R": (X0, Y0 - 60 * PIXEL, X0 + 60 * PIXEL, Y0)})
    # a straight 2 km river in lon/lat, well inside the region
    river_utm = shapely.LineString([(X0 + 2000, Y0 - 3000), (X0 + 4000, Y0 - 3000)])
    river = gpd.GeoSeries([river_utm], crs=32647).to_crs(4326)
    gpd.GeoDataFrame(geometry=river).to_file(tmp_path / "rivers.gpkg", layer="rivers")
    rules = {
        "buffers": [
            {
                "id": "riparian",
                "name_en": "Riparian",
                "source": {"layer": "rivers"},
                "distance_m": 300,
                "restricts": ["industrial"],
            }
        ]
    }
    region = write_region(
        tmp_path,
        landcover="lc.tif",
        boundary="b.gpkg",
        rules=rules,
        layers={"rivers": {"path": "rivers.gpkg"}},
    )
    run_region(region, tmp_path / "out")
    band = read(tmp_path / "out" / "test.gpkg", "buffer_zones").to_crs(32647)
    # a 2 km line buffered by 300 m: 2 * 300 * 2000 + pi * 300^2 (round caps)
    expected = 2 * 300 * 2000 + np.pi * 300**2
    assert band.area.item() == pytest.approx(expected, rel=0.005)
    # the raster count for the band is within one cell of the exact polygon along its edge
    assert band.area_ha.item() == pytest.approx(expected / 1e4, abs=2 * (2000 + 600) * 100 / 1e4)


def test_a_zone_raster_over_the_memory_budget_is_spilled_to_disk_with_the_same_result(
    two_units, tmp_path
):
    run_region(two_units, tmp_path / "mem", chunk_size=16)
    run_region(two_units, tmp_path / "disk", chunk_size=16, memory_budget_mb=0.0001)
    with (
        rasterio.open(tmp_path / "mem" / "test_zones.tif") as a,
        rasterio.open(tmp_path / "disk" / "test_zones.tif") as b,
    ):
        np.testing.assert_array_equal(a.read(1), b.read(1))
    for layer in ("zones", "buffer_zones", "proportions"):
        pd.testing.assert_frame_equal(
            pd.DataFrame(read(tmp_path / "mem" / "test.gpkg", layer)),
            pd.DataFrame(read(tmp_path / "disk" / "test.gpkg", layer)),
        )
    # the temporary file is gone and the same outputs are there
    disk = sorted(p.name for p in (tmp_path / "disk").iterdir())
    assert disk == sorted(p.name for p in (tmp_path / "mem").iterdir())
    assert not [name for name in disk if name.startswith(".")]


def test_zones_layer_made_unit_by_unit_equals_one_vectorising_of_the_whole_grid(tmp_path):
    # units whose bounding boxes overlap (an L-shaped unit around a square one): each unit
    # is vectorised in its own window, with the very vertices of a whole-grid run
    from ecoplan.pipeline import prepare_region
    from ecoplan.polygons import vectorize
    from ecoplan.proportions import N_CODES

    rng = np.random.default_rng(4)
    codes = rng.choice(np.array([10, 40, 50, 80], np.uint8), size=(40, 40), p=[0.4, 0.4, 0.1, 0.1])
    codes = np.kron(codes[::4, ::4], np.ones((4, 4), np.uint8))
    write_raster(tmp_path / "lc.tif", codes)
    x, y = X0, Y0 - 40 * PIXEL
    square = shapely.box(x + 5 * PIXEL, y + 5 * PIXEL, x + 25 * PIXEL, y + 25 * PIXEL)
    outer = shapely.box(x, y, x + 40 * PIXEL, y + 40 * PIXEL).difference(square)
    gpd.GeoDataFrame({"unit": ["L", "S"]}, geometry=[outer, square], crs="EPSG:32647").to_file(
        tmp_path / "units.gpkg", layer="units"
    )
    region_yaml = write_region(tmp_path, landcover="lc.tif", boundary="units.gpkg", rules=ONE_RULE)
    out = tmp_path / "out"
    run_region(region_yaml, out, chunk_size=16)
    layer = read(out / "test.gpkg", "zones")

    region = prepare_region(region_yaml, chunk_size=16)
    with rasterio.open(out / "test_zones.tif") as src:
        zones = src.read(1)
    units = np.asarray(region.units)
    whole = vectorize(units * N_CODES + zones, region.grid, mask=zones > 0)
    assert set(layer["unit_id"]) == {"L", "S"}
    assert len(layer) == len(whole)
    unit_index = {"L": 1, "S": 2}
    got = sorted(
        (unit_index[u] * N_CODES + z, g.wkb)
        for u, z, g in zip(layer["unit_id"], layer["zone"], layer.geometry, strict=True)
    )
    expected = sorted((int(v), g.wkb) for v, g in zip(whole["value"], whole.geometry, strict=True))
    assert [v for v, _ in got] == [v for v, _ in expected]
    for (_, a), (_, b) in zip(got, expected, strict=True):
        assert shapely.equals_exact(shapely.from_wkb(a), shapely.from_wkb(b), tolerance=0)


def test_buffer_layer_written_a_rule_at_a_time_is_styled_for_every_rule(tmp_path):
    import copy
    import sqlite3

    codes = np.full((40, 40), 10, np.uint8)
    codes[:, 20:] = 40
    codes[20, 30] = 80
    write_raster(tmp_path / "lc.tif", codes)
    box_boundary(tmp_path / "units.gpkg", {"A": (X0, Y0 - 40 * PIXEL, X0 + 40 * PIXEL, Y0)})
    rules = copy.deepcopy(ONE_RULE)
    rules["buffers"].append(
        {
            "id": "forest_ring",
            "name_en": "Forest ring",
            "name_th": "แนวกันชนป่า",
            "source": {"zones": ["forest"]},
            "rings_m": [200],
            "restricts": ["industrial"],
        }
    )
    region = write_region(tmp_path, landcover="lc.tif", boundary="units.gpkg", rules=rules)
    run_region(region, tmp_path / "out", chunk_size=16)
    gpkg = tmp_path / "out" / "test.gpkg"
    layer = read(gpkg, "buffer_zones")
    assert list(zip(layer["rule_id"], layer["ring"], strict=True)) == [
        ("water_ring", 1),
        ("water_ring", 2),
        ("forest_ring", 1),
    ]
    with sqlite3.connect(gpkg) as con:
        (qml,) = con.execute(
            "SELECT styleQML FROM layer_styles WHERE f_table_name = 'buffer_zones'"
        ).fetchone()
    assert "water_ring" in qml and "forest_ring" in qml
