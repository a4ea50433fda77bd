"""Constraints: exclusion layers, slope from a DEM in metres, forbidden-zone bit masks."""

from __future__ import annotations

import math

import dask.array as da
import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from pyproj import Geod
from rasterio.crs import CRS

from ecoplan.buffers import BufferResult
from ecoplan.constraints import (
    ConstraintResult,
    apply_constraints,
    constraint_mask,
    forbidden_bits,
    slope_block,
    slope_deg,
    values_on_grid,
    zone_bit,
)
from ecoplan.errors import RulesError
from ecoplan.grid import Grid
from ecoplan.io import open_raster
from ecoplan.rules import BufferRule, ConstraintRule, Rules

UTM47 = CRS.from_epsg(32647)
X0, Y0 = 600_000.0, 1_600_000.0


def grid_of(shape, pixel=30.0) -> Grid:
    return Grid(UTM47, Affine(pixel, 0, X0, 0, -pixel, Y0), shape[0], shape[1])


def crule(**kw) -> ConstraintRule:
    return ConstraintRule.model_validate({"id": "c", "name_en": "C", "forbids": ["urban"], **kw})


def write_tif(path, values, *, transform, crs, nodata=None):
    profile = {
        "driver": "GTiff",
        "width": values.shape[1],
        "height": values.shape[0],
        "count": 1,
        "dtype": values.dtype.name,
        "transform": transform,
        "crs": crs,
    }
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values, 1)
    return path


def test_slope_of_a_plane_is_its_angle():
    p = 30.0
    rr, cc = np.indices((9, 9)).astype(float)
    # z rises 3 m per metre east and 4 m per metre south: gradient 5, slope atan(5)
    z = 3 * cc * p - 4 * rr * p  # row index grows southwards: dz/dy (north) = +4
    s = slope_block(z, pixel_size_m=p)
    assert s[1:-1, 1:-1] == pytest.approx(math.degrees(math.atan(5.0)))
    flat = slope_block(np.full((4, 4), 250.0), pixel_size_m=p)
    assert (flat == 0).all()


def test_slope_edges_use_the_centre_for_missing_neighbours():
    z = np.tile(np.arange(5.0) * 10, (5, 1))  # 10 m per 10 m pixel east: 45°
    s = slope_block(z, pixel_size_m=10.0)
    assert s[2, 2] == pytest.approx(45.0)
    # on the west edge the missing column takes the centre value: half the gradient
    assert s[2, 0] == pytest.approx(math.degrees(math.atan(0.5)))
    assert np.isnan(slope_block(np.array([[np.nan, 1.0]]), pixel_size_m=1.0)[0, 0])


@pytest.mark.parametrize("chunk", [3, 7, 50])
def test_slope_does_not_depend_on_the_chunk_size(chunk):
    rng = np.random.default_rng(3)
    dem = rng.normal(500, 40, (23, 31))
    whole = slope_block(dem, pixel_size_m=30.0)
    got = slope_deg(da.from_array(dem, chunks=chunk), grid=grid_of(dem.shape)).compute()
    np.testing.assert_allclose(got, whole)


def test_values_on_grid_is_identity_on_the_same_grid_and_bilinear_on_a_coarser_one(tmp_path):
    g = grid_of((10, 12))
    rr, cc = np.indices(g.shape).astype(np.float32)
    same = write_tif(tmp_path / "same.tif", rr * 7 + cc, transform=g.transform, crs=UTM47)
    got = values_on_grid(open_raster(same), g, chunks=4).compute()
    np.testing.assert_allclose(got, rr * 7 + cc)
    # a raster of 60 m pixels holding a linear function of the position is interpolated exactly
    coarse_t = Affine(60.0, 0, X0, 0, -60.0, Y0)
    r2, c2 = np.indices((5, 6)).astype(np.float32)
    xs, ys = X0 + (c2 + 0.5) * 60, Y0 - (r2 + 0.5) * 60
    coarse = write_tif(
        tmp_path / "coarse.tif",
        ((xs - X0) * 0.5 + (Y0 - ys) * 0.25).astype(np.float32),
        transform=coarse_t,
        crs=UTM47,
    )
    got = values_on_grid(open_raster(coarse), g, chunks=5).compute()
    x, y = X0 + (cc + 0.5) * 30, Y0 - (rr + 0.5) * 30
    want = (x - X0) * 0.5 + (Y0 - y) * 0.25
    inner = (slice(1, 9), slice(1, 11))  # centres between coarse centres
    np.testing.assert_allclose(got[inner], want[inner], rtol=1e-6)


def test_slope_of_a_lon_lat_dem_is_measured_in_metres_on_the_working_grid(tmp_path):
    # a DEM in degrees whose height rises northwards by tan(10°) per metre on the ground
    geod = Geod(ellps="WGS84")
    res = 0.0005
    lat_top, lon0 = 14.5, 100.0
    n = 240
    lats = lat_top - (np.arange(n) + 0.5) * res
    _, _, north_m = geod.inv(np.full(n, lon0), np.full(n, 14.4), np.full(n, lon0), lats)
    north_m = np.where(lats < 14.4, -north_m, north_m)
    z = np.tile((north_m * math.tan(math.radians(10)))[:, None], (1, n)).astype(np.float64)
    path = write_tif(
        tmp_path / "dem.tif",
        z,
        transform=Affine(res, 0, lon0, 0, -res, lat_top),
        crs=CRS.from_epsg(4326),
    )
    from pyproj import Transformer

    x, y = Transformer.from_crs(4326, 32647, always_xy=True).transform(lon0 + 0.06, 14.44)
    g = Grid(UTM47, Affine(30.0, 0, x - 600, 0, -30.0, y + 600), 40, 40)
    dem = values_on_grid(open_raster(path), g, chunks=16)
    s = slope_deg(dem, grid=g).compute()
    # UTM's scale factor (≈ 0.9996 here) and bilinear resampling keep it within 0.05°
    assert np.nanmax(np.abs(s[2:-2, 2:-2] - 10.0)) < 0.05


def test_constraint_rule_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one source"):
        crule()
    with pytest.raises(ValueError, match="exactly one source"):
        crule(layer="protected_areas", slope_above_deg=30)
    with pytest.raises(ValueError, match="'above' or 'values'"):
        crule(raster="flood_depth")
    with pytest.raises(ValueError, match="only to a 'raster'"):
        crule(layer="flood_prone", above=1)
    assert crule(raster="flood_depth", above=0.5).describe() == "raster:flood_depth>0.5"


def test_rules_file_lists_every_bad_constraint(tmp_path):
    from ecoplan.rules import load_rules

    f = tmp_path / "r.yaml"
    f.write_text(
        "constraints:\n"
        "  - {id: a, name_en: A, layer: protected_areas, forbids: [town]}\n"
        "  - {id: b, name_en: B, slope_above_deg: 95, forbids: [urban]}\n",
        encoding="utf-8",
    )
    with pytest.raises(RulesError) as err:
        load_rules(f)
    text = str(err.value)
    assert "constraints[0].forbids" in text and "unknown zone 'town'" in text
    assert "constraints[1].slope_above_deg" in text


def test_constraint_masks_from_a_layer_a_raster_and_the_slope():
    g = grid_of((6, 6), pixel=100.0)
    chunks = 4
    t = g.transform
    park = shapely.box(t.c, t.f - 300, t.c + 200, t.f)  # rows 0-2, columns 0-1
    flood = da.from_array(np.tile(np.arange(6.0), (6, 1)), chunks=chunks)  # depth = column
    dem = da.from_array(np.tile(np.arange(6.0) * 100 * math.tan(math.radians(40)), (6, 1)), 3)
    vectors = {"protected_areas": gpd.GeoSeries([park], crs=UTM47)}
    rasters = {"flood_depth": flood, "dem": dem}
    m = constraint_mask(
        crule(layer="protected_areas"), grid=g, chunks=chunks, vectors=vectors, rasters=rasters
    ).compute()
    want = np.zeros((6, 6), np.uint8)
    want[0:3, 0:2] = 1
    np.testing.assert_array_equal(m, want)
    m = constraint_mask(
        crule(raster="flood_depth", above=3.5), grid=g, chunks=chunks, vectors={}, rasters=rasters
    ).compute()
    assert m[:, 4:].all() and not m[:, :4].any()
    by_value = crule(raster="flood_depth", values=[0, 5])
    m = constraint_mask(by_value, grid=g, chunks=chunks, vectors={}, rasters=rasters).compute()
    assert m[:, [0, 5]].all() and m[:, 1:5].sum() == 0
    m = constraint_mask(
        crule(slope_above_deg=30), grid=g, chunks=chunks, vectors={}, rasters=rasters
    ).compute()
    # 40° everywhere inside, half the gradient (22.8°) on the east and west edges
    assert m[:, 1:5].all() and not m[:, [0, 5]].any()


def test_missing_inputs_are_skipped_with_a_note():
    g = grid_of((4, 4))
    inside = da.ones((4, 4), chunks=2, dtype=np.int32)
    rules = [crule(id="pa", layer="protected_areas"), crule(id="steep", slope_above_deg=30)]
    got, notes = apply_constraints(rules, grid=g, chunks=2, vectors={}, rasters={}, inside=inside)
    assert got == []
    assert notes == [
        "constraint pa: skipped, the region gives no 'layer:protected_areas' input",
        "constraint steep: skipped, the region gives no 'dem' input",
    ]


def test_forbidden_bits_combine_buffers_and_constraints():
    rings = da.from_array(np.array([[0, 1], [2, 0]], np.uint8), chunks=1)
    mask = da.from_array(np.array([[1, 0], [1, 0]], np.uint8), chunks=2)
    b = BufferRule.model_validate(
        {
            "id": "b",
            "name_en": "B",
            "source": {"zones": ["water"]},
            "rings_m": [10, 20],
            "restricts": ["urban", "industrial"],
        }
    )
    c = crule(layer="protected_areas", forbids=["agriculture", "urban"])
    bits = forbidden_bits(
        [BufferResult(b, rings)], [ConstraintResult(c, mask)], like=da.zeros((2, 2), chunks=2)
    ).compute()
    u, i, a = zone_bit(4), zone_bit(5), zone_bit(2)
    assert bits.tolist() == [[a | u, u | i], [a | u | i, 0]]


def test_shipped_rules_declare_the_three_exclusion_layers():
    from ecoplan.rules import load_rules

    rules: Rules = load_rules("default")
    got = {c.id: c.describe() for c in rules.constraints}
    assert got == {
        "protected_areas": "layer:protected_areas",
        "flood_prone": "layer:flood_prone",
        "steep_slope": "slope>30deg",
    }
    assert all(c.basis for c in rules.constraints)
