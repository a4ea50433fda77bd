"""End to end: the refine step inside ``run_region``, on the real MODIS sample and on a small
hand-built region."""

import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
import shapely
import yaml
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.vrt import WarpedVRT
from scipy import ndimage

from ecoplan.errors import InputError
from ecoplan.pipeline import run_region, sample_region_path

IGBP_TO_ZONE = {0: 6, 11: 6, 12: 2, 14: 2, 7: 7, 10: 7, 15: 7, 16: 7, 13: 254}
IGBP_TO_ZONE.update({c: 1 for c in (1, 2, 3, 4, 5, 6, 8, 9)})


def independent_north_zones(pixel_m: float = 500.0):
    """The MODIS sample on a 500 m UTM 47N grid with rasterio and numpy only (no ecoplan)."""
    here = sample_region_path("north").parent
    provinces = gpd.read_file(here / "data" / "provinces.gpkg", layer="provinces")
    provinces = provinces[provinces["region"] == "north"].to_crs(32647)
    provinces = provinces.dissolve("ADM1_PCODE", as_index=False).sort_values("ADM1_PCODE")
    minx, miny, maxx, maxy = provinces.total_bounds
    x0, y1 = math.floor(minx / pixel_m) * pixel_m, math.ceil(maxy / pixel_m) * pixel_m
    w, h = math.ceil((maxx - x0) / pixel_m), math.ceil((y1 - miny) / pixel_m)
    transform = Affine(pixel_m, 0, x0, 0, -pixel_m, y1)
    units = rasterize(
        zip(provinces.geometry, range(1, len(provinces) + 1), strict=True),
        out_shape=(h, w),
        transform=transform,
        dtype="int32",
    )
    # GDAL's warper, nearest neighbour, with an exact transformer (its default approximates
    # the projection to 0.125 px, which moves about 2 % of the cell borders)
    with (
        rasterio.open(here / "data" / "modis_igbp_2019_thailand.tif") as src,
        WarpedVRT(
            src,
            crs=CRS.from_epsg(32647),
            transform=transform,
            width=w,
            height=h,
            resampling=Resampling.nearest,
            tolerance=1e-6,
            nodata=255,
        ) as vrt,
    ):
        codes = vrt.read(1)
    zones = np.zeros((h, w), np.uint8)
    for code, zone in IGBP_TO_ZONE.items():
        zones[codes == code] = zone
    zones[units == 0] = 0
    return zones, units, list(provinces["ADM1_PCODE"])


def reference_split(zones, *, pixel_m, radius_m=500, share=0.5, area_ha=100):
    """Default urban_rural rules written with scipy on the whole array."""
    r = int(radius_m // pixel_m)
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    k = ((dy * dy + dx * dx) * pixel_m**2 <= radius_m**2).astype(float)
    valid = zones != 0
    built = np.isin(zones, (254, 3, 4, 5))
    nb = ndimage.correlate(built.astype(float), k, mode="constant")
    nv = ndimage.correlate(valid.astype(float), k, mode="constant")
    dense = valid & (nb >= share * nv)
    lab, _ = ndimage.label(dense, structure=np.ones((3, 3)))
    big = np.bincount(lab.ravel()) * pixel_m**2 / 1e4 >= area_ha
    urban = (lab > 0) & big[lab]
    out = zones.copy()
    out[(zones == 254) & urban] = 4
    out[(zones == 254) & ~urban] = 3
    return out


@pytest.fixture(scope="module")
def north_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("north")
    return run_region(sample_region_path("north"), out, chunk_size=300)


def test_modis_sample_zone_areas_per_province_match_an_independent_count(north_run):
    zones, units, unit_ids = independent_north_zones()
    expected = reference_split(zones, pixel_m=500)
    assert (zones == 254).sum() > 500  # the sample holds built-up land to split
    table = north_run.proportions
    got = table[table.level == "unit"].pivot(index="unit_id", columns="zone", values="area_ha")
    for k, unit_id in enumerate(unit_ids, start=1):
        for zone in range(1, 8):
            n = int(((units == k) & (expected == zone)).sum())
            # 25 ha cells on the UTM map; ground areas differ by the scale factor (< 0.15 %)
            assert got.loc[unit_id, zone] == pytest.approx(n * 25.0, rel=1.5e-3), (unit_id, zone)
    # shares at region level, over the default denominator (land without water)
    region = table[table.level == "region"].set_index("zone")
    land = np.isin(expected, (1, 2, 3, 4, 5, 7)) & (units > 0)
    for zone in (1, 2, 4, 7):
        share = ((expected == zone) & (units > 0)).sum() / land.sum()
        # cells weigh their ground area, which varies by < 0.1 % across the region
        assert region.loc[zone, "share"] == pytest.approx(share, rel=1e-3)


def test_modis_zone_raster_equals_the_independent_classification(north_run):
    zones, _, _ = independent_north_zones()
    with rasterio.open(north_run.zone_raster) as src:
        got = src.read(1)
    assert got.shape == zones.shape
    assert (got == reference_split(zones, pixel_m=500)).all()


def test_modis_run_metadata_reports_the_split(north_run):
    meta = pyogrio.read_dataframe(north_run.geopackage, layer="run_metadata")
    notes = meta.loc[meta.key == "warning", "value"].tolist()
    assert any(n.startswith("urban/rural: ") for n in notes)


# --- a small hand-built region: WorldCover-like codes, an industrial estate, a protected area ---

PX = 10.0


def small_region(tmp_path: Path, *, rules: dict) -> Path:
    """A 60 x 60 px (600 m) region at 10 m: cropland with a town, a village, a lake."""
    codes = np.full((60, 60), 40, np.uint8)  # cropland
    codes[5:25, 5:25] = 50  # a 4 ha town of built-up
    codes[40:43, 40:43] = 50  # a 0.09 ha hamlet
    codes[45:55, 5:15] = 80  # a 1 ha lake
    codes[30, 30] = 10  # one tree pixel (0.01 ha) in the fields
    transform = Affine(PX, 0, 660_000, 0, -PX, 1_520_000)
    with rasterio.open(
        tmp_path / "lc.tif",
        "w",
        driver="GTiff",
        width=60,
        height=60,
        count=1,
        dtype="uint8",
        crs="EPSG:32647",
        transform=transform,
        nodata=0,
    ) as dst:
        dst.write(codes, 1)
    box = shapely.box(660_000, 1_519_400, 660_600, 1_520_000)
    gpd.GeoDataFrame({"name": ["x"]}, geometry=[box], crs=32647).to_file(tmp_path / "boundary.gpkg")
    # an estate (stored in EPSG:4326, named in Thai) over columns 38-45, rows 16-59
    estate = shapely.box(660_380, 1_519_400, 660_460, 1_519_840)
    gpd.GeoDataFrame({"ชื่อ": ["นิคมอุตสาหกรรมทดสอบ"]}, geometry=[estate], crs=32647).to_crs(
        4326
    ).to_file(tmp_path / "estates.gpkg")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules, allow_unicode=True))
    region = {
        "region": {"id": "small"},
        "boundary": {"path": "boundary.gpkg"},
        "landcover": {"path": "lc.tif", "crosswalk": "worldcover"},
        "crs": "EPSG:32647",
        "layers": {"industrial_estates": {"path": "estates.gpkg"}},
        "rules": "rules.yaml",
    }
    (tmp_path / "region.yaml").write_text(yaml.safe_dump(region))
    return tmp_path / "region.yaml"


SMALL_RULES = {
    "buffers": [],
    "urban_rural": {"radius_m": 10, "min_built_share": 0.5, "min_cluster_area_ha": 1.0},
    "min_mapping_unit": {"area_ha": 0.05},
}


@pytest.mark.parametrize("chunk_size", [64, 17])
def test_small_region_refined_the_same_for_any_chunk_size(tmp_path, chunk_size):
    region_yaml = small_region(tmp_path, rules=SMALL_RULES)
    result = run_region(region_yaml, tmp_path / "out", chunk_size=chunk_size)
    with rasterio.open(result.zone_raster) as src:
        z = src.read(1)
    assert (z[5:25, 5:25] == 4).all()  # 4 ha of dense built-up: urban
    assert (z[16:60, 38:46] == 5).all() and (z == 5).sum() == 44 * 8  # the estate: industrial
    assert (z[45:55, 5:15] == 6).all()  # the lake
    assert z[30, 30] == 2  # the lone tree pixel is below the 0.05 ha unit: cropland
    table = result.proportions
    region = table[table.level == "region"].set_index("zone_en")
    assert region.loc["urban", "area_ha"] == pytest.approx(4.0, rel=1e-3)  # ground area
    assert region.loc["industrial", "area_ha"] == pytest.approx(44 * 8 * 0.01, rel=1e-3)


def test_hamlet_outside_the_estate_is_rural(tmp_path):
    rules = {**SMALL_RULES, "vector_zones": []}
    result = run_region(small_region(tmp_path, rules=rules), tmp_path / "out")
    with rasterio.open(result.zone_raster) as src:
        z = src.read(1)
    assert (z[40:43, 40:43] == 3).all()  # 9 px hamlet, dense but 0.09 ha < 1 ha: rural
    assert pd.Series(z.ravel()).isin([5]).sum() == 0


@pytest.mark.parametrize(("people", "zone"), [(6000, 4), (1000, 3)])
def test_population_method_uses_a_population_raster_on_1km_cells(tmp_path, people, zone):
    # the 600 m region lies in one 1 km cell (x 660-661 km, y 1519-1520 km): its built-up
    # land is urban when the cell holds >= 5,000 inhabitants (and >= 300/km²)
    rules = {**SMALL_RULES, "vector_zones": [], "urban_rural": {"method": "population"}}
    region_yaml = small_region(tmp_path, rules=rules)
    pop = np.full((3, 3), people / 9.0, np.float32)  # 200 m cells over the region
    with rasterio.open(
        tmp_path / "pop.tif",
        "w",
        driver="GTiff",
        width=3,
        height=3,
        count=1,
        dtype="float32",
        crs="EPSG:32647",
        transform=Affine(200, 0, 660_000, 0, -200, 1_520_000),
        nodata=-1,
    ) as dst:
        dst.write(pop, 1)
    cfg = yaml.safe_load(region_yaml.read_text())
    cfg["layers"]["population"] = {"path": "pop.tif"}
    region_yaml.write_text(yaml.safe_dump(cfg))
    result = run_region(region_yaml, tmp_path / "out")
    with rasterio.open(result.zone_raster) as src:
        z = src.read(1)
    assert (z[5:25, 5:25] == zone).all() and (z[40:43, 40:43] == zone).all()


def test_population_method_without_a_population_raster_is_explained(tmp_path):
    rules = {**SMALL_RULES, "urban_rural": {"method": "population"}}
    with pytest.raises(InputError, match="needs a population raster"):
        run_region(small_region(tmp_path, rules=rules), tmp_path / "out")


@pytest.mark.parametrize("budget_bytes", [2**40, 0])  # in memory, and spilled to a file
def test_a_byte_raster_is_classified_and_counted_in_one_pass_as_in_two(tmp_path, budget_bytes):
    # the one-pass path (histogram and zones together, a table of all 256 codes) gives the
    # histogram of code_histogram and the zones of the table sized to the codes found
    import dask.array as da

    from ecoplan.classify import classify, code_histogram, lookup_table
    from ecoplan.pipeline import _classified, prepare_region

    region = prepare_region(sample_region_path("north"), chunk_size=64)
    assert np.dtype(region.landcover.dtype) == np.uint8
    hist, zones = _classified(region, budget_bytes=budget_bytes, folder=tmp_path)
    expected_hist = code_histogram(region.codes, region.units)
    assert hist == expected_hist
    lut = lookup_table(region.crosswalk, max_code=max(expected_hist))
    expected = da.where(region.units > 0, classify(region.codes, lut), 0).astype(np.uint8)
    np.testing.assert_array_equal(zones.compute(), expected.compute())
    assert zones.dtype == np.uint8
