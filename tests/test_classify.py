"""Crosswalks: shipped tables, lookup of raster codes, text codes of vector attributes."""

import csv
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import yaml

from ecoplan.classify import (
    BUILT_UP,
    UNMAPPED,
    apply_lookup,
    check_codes,
    classify,
    code_histogram,
    lookup_table,
    text_zone,
    text_zones,
)
from ecoplan.errors import CrosswalkError, RulesError
from ecoplan.rules import load_crosswalk, shipped_crosswalk_names
from ecoplan.zones import ZONE_BY_NAME

LDD_CSV = Path(__file__).resolve().parents[1] / "tests" / "data" / "ldd_landuse_legend.csv"


def write_crosswalk(tmp_path, **data) -> Path:
    p = tmp_path / "cw.yaml"
    p.write_text(yaml.safe_dump({"name": "t", "title": "T", **data}, allow_unicode=True))
    return p


def test_every_documented_crosswalk_is_shipped():
    assert {"worldcover", "modis_igbp", "esa_cci", "dynamic_world", "ldd"} <= set(
        shipped_crosswalk_names()
    )


@pytest.mark.parametrize(
    "name",
    ["worldcover", "modis_igbp", "esa_cci", "dynamic_world", "ldd", "dpt_plan", "dpt_bangkok_2556"],
)
def test_shipped_crosswalk_gives_a_reason_for_every_code(name):
    cw = load_crosswalk(name)
    for c in cw.classes:
        assert c.reason.strip(), f"{name}: code {c.code} has no reason"
        assert c.zone in ZONE_BY_NAME or c.zone == "built_up"


@pytest.mark.parametrize(
    ("name", "codes"),
    [
        ("worldcover", [10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100]),
        ("modis_igbp", list(range(17))),
        ("dynamic_world", list(range(9))),
        (
            "esa_cci",
            [10, 11, 12, 20, 30, 40, 50, 60, 61, 62, 70, 71, 72, 80, 81, 82, 90, 100, 110, 120]
            + [121, 122, 130, 140, 150, 151, 152, 153, 160, 170, 180, 190, 200, 201, 202, 210, 220],
        ),
    ],
)
def test_raster_crosswalk_covers_its_whole_legend(name, codes):
    assert sorted(c.code for c in load_crosswalk(name).classes) == codes


@pytest.mark.parametrize(
    ("name", "code"),
    [("worldcover", 50), ("modis_igbp", 13), ("esa_cci", 190), ("dynamic_world", 6)],
)
def test_built_up_classes_await_the_urban_rural_split(name, code):
    cw = load_crosswalk(name)
    assert cw.mapping()[code] == "built_up"
    assert lookup_table(cw, max_code=code)[code] == BUILT_UP


def test_lookup_maps_several_codes_to_one_zone_and_nodata_to_zero():
    cw = load_crosswalk("modis_igbp")
    lut = lookup_table(cw, max_code=255)
    codes = np.array([[0, 2, 4, 13], [12, 14, 255, -1]])
    assert apply_lookup(codes, lut).tolist() == [[6, 1, 1, BUILT_UP], [2, 2, 0, 0]]


def test_unmapped_code_under_error_names_code_pixel_count_and_file(tmp_path):
    cw = load_crosswalk(
        write_crosswalk(tmp_path, classes=[{"code": 1, "label": "a", "zone": "forest"}])
    )
    codes = da.from_array(np.array([[1, 7, 7], [9, 1, -1]]), chunks=2)
    hist = code_histogram(codes, da.ones_like(codes))
    assert hist == {1: 2, 7: 2, 9: 1}
    with pytest.raises(
        CrosswalkError, match=r"lc\.tif: class codes 7 \(2 pixels\), 9 \(1 pixels\)"
    ):
        check_codes(hist, cw, source="lc.tif")
    assert lookup_table(cw, max_code=9)[7] == UNMAPPED


def test_unmapped_code_under_other_becomes_other(tmp_path):
    cw = load_crosswalk(
        write_crosswalk(
            tmp_path, on_unmapped="other", classes=[{"code": 1, "label": "a", "zone": "forest"}]
        )
    )
    check_codes({1: 3, 7: 2}, cw, source="x")
    z = classify(da.from_array(np.array([[1, 7]]), chunks=1), lookup_table(cw, max_code=7))
    assert z.compute().tolist() == [[1, 7]]


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        (
            [
                {"code": 1, "label": "a", "zone": "forest"},
                {"code": "A", "label": "b", "zone": "forest"},
            ],
            "all numbers",
        ),
        ([{"code": 1, "label": "a", "zone": "city"}], "unknown zone 'city'"),
        (
            [
                {"code": 1, "label": "a", "zone": "forest"},
                {"code": 1, "label": "b", "zone": "water"},
            ],
            "listed more than once",
        ),
    ],
)
def test_bad_crosswalk_is_refused_with_its_key(tmp_path, classes, message):
    with pytest.raises(RulesError, match=message):
        load_crosswalk(write_crosswalk(tmp_path, classes=classes))


def test_prefix_matching_needs_text_codes(tmp_path):
    with pytest.raises(RulesError, match="need text codes"):
        load_crosswalk(
            write_crosswalk(
                tmp_path, match="prefix", classes=[{"code": 1, "label": "a", "zone": "forest"}]
            )
        )


def test_text_crosswalk_cannot_classify_a_raster():
    with pytest.raises(CrosswalkError, match="vector_zones"):
        lookup_table(load_crosswalk("ldd"), max_code=10)


@pytest.mark.parametrize(
    ("value", "zone"),
    [
        ("A101", "agriculture"),  # level 3, listed
        ("A208", "agriculture"),  # not listed: falls back to A2
        ("U202", "rural"),  # legacy highland village: falls back to U2
        ("U101", "urban"),
        ("U501", "industrial"),
        ("U503", "rural"),  # drying yard (judgement, see the reason)
        ("U405", "built_up"),  # road: urban or rural by settlement density
        ("F301", "forest"),
        ("W202", "water"),
        ("M201", "water"),
        ("M301", "other"),
        ("A303/A405", "agriculture"),  # mixed symbol: first code
        ("U502+A101", "industrial"),
        (" u501 ", "industrial"),  # blanks and case
        ("Z1", None),
        ("", None),
    ],
)
def test_ldd_codes_by_longest_prefix(value, zone):
    assert text_zone(value, load_crosswalk("ldd")) == zone


def test_ldd_crosswalk_follows_the_reference_legend():
    """Every row of the compiled legend is in the crosswalk with its suggested zone, except the
    built-up groups U3/U4/U6 (and U itself), which the crosswalk sends to the urban/rural split."""
    cw = load_crosswalk("ldd")
    mapping = cw.mapping()
    with open(LDD_CSV, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(cw.classes) == 146
    for r in rows:
        expected = (
            "built_up"
            if r["code"] == "U" or r["code"][:2] in ("U3", "U4", "U6")
            else (r["suggested_zone"])
        )
        assert mapping[r["code"]] == expected, r["code"]
    assert cw.field == "LU_CODE"


def test_text_zones_counts_unknown_values_per_feature():
    cw = load_crosswalk("ldd")
    out = text_zones(
        ["A101", "U201", None, "", "X9", "X9", "Q"],
        cw.model_copy(update={"on_unmapped": "other"}),
        source="lu.shp",
    )
    assert out.tolist() == [2, 3, 0, 0, 7, 7, 7]
    with pytest.raises(
        CrosswalkError, match=r"lu\.shp: values 'X9' \(2 features\), 'Q' \(1 feature\)"
    ):
        text_zones(["A101", "X9", "X9", "Q"], cw, source="lu.shp")


def test_numeric_attribute_values_match_integer_codes():
    cw = load_crosswalk("modis_igbp")
    assert text_zones(["12", 12.0, 13], cw, source="x").tolist() == [2, 2, BUILT_UP]
    assert text_zone(14.0, cw) == "agriculture"


@pytest.mark.parametrize(
    ("name", "value", "zone"),
    [
        ("dpt_plan", "ที่ดินประเภทอุตสาหกรรมและคลังสินค้า", "industrial"),
        ("dpt_plan", " ที่ดินประเภทชนบทและเกษตรกรรม ", "agriculture"),
        ("dpt_plan", "ที่ดินประเภทอนุรักษ์ป่าไม้", "forest"),
        ("dpt_plan", "ที่ดินประเภทที่อยู่อาศัย", None),  # not a category name: no prefix match
        ("dpt_bangkok_2556", "ย.10", "urban"),
        ("dpt_bangkok_2556", "อ.3", "industrial"),
        ("dpt_bangkok_2556", "ก.2", "agriculture"),
        ("dpt_bangkok_2556", "ล.", None),  # left out: no source pairs it with a category
    ],
)
def test_dpt_plan_categories_and_bangkok_codes(name, value, zone):
    assert text_zone(value, load_crosswalk(name)) == zone


@pytest.mark.parametrize("kind", ["nodata", "mask band", "none"])
def test_a_window_is_masked_as_gdal_masks_it(tmp_path, kind):
    # nodata is compared in numpy; a mask band (or none) is GDAL's own
    import rasterio
    from affine import Affine

    from ecoplan.io import _read_window

    rng = np.random.default_rng(3)
    values = rng.integers(0, 9, (40, 50)).astype(np.uint8)
    path = tmp_path / f"{kind.replace(' ', '_')}.tif"
    profile = dict(driver="GTiff", width=50, height=40, count=1, dtype="uint8", crs="EPSG:32647")
    profile["transform"] = Affine(10, 0, 500_000, 0, -10, 1_600_000)
    if kind == "nodata":
        profile["nodata"] = 7
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        dst.write(values, 1)
        if kind == "mask band":
            dst.write_mask((rng.random((40, 50)) < 0.7).astype(np.uint8) * 255)
    with rasterio.open(path) as src:
        expected = src.read(1, window=((5, 33), (2, 47)), masked=True)
    got = _read_window(str(path), 5, 33, 2, 47)
    np.testing.assert_array_equal(got.data, expected.data)
    np.testing.assert_array_equal(np.ma.getmaskarray(got), np.ma.getmaskarray(expected))
    assert np.ma.getmaskarray(got).any() == (kind != "none")


@pytest.mark.parametrize("chunks", [3, 7, 64])
def test_burnt_units_match_one_rasterize_of_the_grid_later_geometries_winning(chunks):
    # blocks inside one geometry are filled without GDAL; the others rasterised
    import shapely
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.features import rasterize

    from ecoplan.grid import Grid
    from ecoplan.io import rasterize_on_grid

    grid = Grid(CRS.from_epsg(32647), Affine(10, 0, 500_000, 0, -10, 1_600_000), 40, 50)
    geoms = [
        shapely.box(500_000, 1_599_600, 500_300, 1_600_000),  # west part
        shapely.box(500_250, 1_599_600, 500_500, 1_600_000),  # east part, over the west one
        shapely.Point(500_180, 1_599_790).buffer(75),  # a disc over both
    ]
    got = rasterize_on_grid(geoms, [1, 2, 3], grid, chunks=chunks, dtype=np.uint8).compute()
    expected = rasterize(
        zip(geoms, [1, 2, 3], strict=True),
        out_shape=grid.shape,
        transform=grid.transform,
        dtype="uint8",
    )
    np.testing.assert_array_equal(got, expected)
    assert set(np.unique(got)) == {1, 2, 3}
