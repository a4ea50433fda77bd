"""QGIS styles: QML/SLD text, the layer_styles table, the zone raster's .qml and categories."""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS

from ecoplan.export import LAYER_STYLES_COLUMNS, write_geopackage, write_zone_raster
from ecoplan.grid import Grid
from ecoplan.rules import load_rules
from ecoplan.styles import (
    CONFLICT_COLOR,
    buffers_style,
    category_names,
    conflicts_style,
    plan_style,
    vector_styles,
    zone_raster_qml,
    zones_style,
)
from ecoplan.zones import ZONES

CRS_UTM = CRS.from_epsg(32647)


def categories(qml: str) -> dict[str, str]:
    root = ET.fromstring(qml.split("\n", 1)[1])  # drop the DOCTYPE line
    return {c.get("value"): c.get("label") for c in root.iter("category")}


def symbol_colors(qml: str) -> list[str]:
    root = ET.fromstring(qml.split("\n", 1)[1])
    out = []
    for sym in root.find("renderer-v2").find("symbols"):
        opt = sym.find("layer").find("Option")
        out.append({o.get("name"): o.get("value") for o in opt}["color"])
    return out


def test_zones_style_has_every_zone_with_design_colour_and_thai_label():
    style = zones_style([1, 2])
    cats = categories(style.qml)
    assert cats == {str(z.code): f"{z.name} · {z.name_th}" for z in ZONES}
    forest = ZONES[0]
    assert symbol_colors(style.qml)[0] == ",".join(str(c) for c in forest.rgb) + ",255"
    assert 'attr="zone"' in style.qml and 'type="categorizedSymbol"' in style.qml
    ET.fromstring(style.sld.split("\n", 1)[1])  # well-formed SLD
    assert "<ogc:Literal>1</ogc:Literal>" in style.sld


def test_zone_value_outside_the_table_still_gets_a_category():
    cats = categories(zones_style([1, 9]).qml)
    assert "9" in cats and "not a zone" in cats["9"]


def test_plan_style_lists_the_subcategories_present_with_zone_colours():
    rules = load_rules("default").plans
    style = plan_style(
        "natural_conservation",
        [("Forest", "พื้นที่ป่าไม้"), ("Forest-edge buffer", "แนวกันชนขอบป่า")],
        rules=rules,
    )
    cats = categories(style.qml)
    assert cats == {
        "Forest": "Forest · พื้นที่ป่าไม้",
        "Forest-edge buffer": "Forest-edge buffer · แนวกันชนขอบป่า",
    }
    colors = symbol_colors(style.qml)
    assert colors[0] == "27,120,55,255"  # forest's DESIGN.md colour
    assert colors[1].endswith(",170")  # buffers: translucent
    assert 'value="dash"' in style.qml


def test_empty_plan_layer_style_lists_what_its_rules_foresee():
    cats = categories(plan_style("heritage", [], rules=load_rules("default").plans).qml)
    assert set(cats) == {"Heritage site", "Heritage protection buffer"}


def test_buffer_style_categorises_rule_and_ring_with_distances():
    rules = load_rules("default").buffers
    style = buffers_style([("forest_edge", 1), ("forest_edge", 2)], rules=rules)
    cats = categories(style.qml)
    assert cats == {
        "forest_edge/1": "Forest-edge buffer · แนวกันชนขอบป่า 0–500 m",
        "forest_edge/2": "Forest-edge buffer · แนวกันชนขอบป่า 500–1000 m",
    }
    assert "concat(&quot;rule_id&quot;, '/', &quot;ring&quot;)" in style.qml
    c1, c2 = symbol_colors(style.qml)
    assert c1 != c2  # the outer ring is lighter


def test_conflicts_are_hatched_red():
    style = conflicts_style()
    assert 'type="singleSymbol"' in style.qml
    assert 'value="b_diagonal"' in style.qml
    r, g, b = (int(CONFLICT_COLOR[i : i + 2], 16) for i in (1, 3, 5))
    assert f'value="{r},{g},{b},255"' in style.qml


def _layers():
    square = shapely.MultiPolygon([shapely.box(500000, 2000000, 500100, 2000100)])
    zones = gpd.GeoDataFrame(
        {"zone": [1], "zone_en": ["forest"], "zone_th": ["พื้นที่ป่า"], "area_ha": [1.0]},
        geometry=[square],
        crs=CRS_UTM,
    )
    conflicts = gpd.GeoDataFrame({"rule_id": ["r"]}, geometry=[square], crs=CRS_UTM)
    table = pd.DataFrame({"key": ["a"], "value": ["b"]})
    return {"zones": zones, "conflicts": conflicts, "run_metadata": table}


def test_geopackage_gets_one_default_qgis_style_row_per_spatial_layer(tmp_path):
    layers = _layers()
    styles = vector_styles(layers)
    assert set(styles) == {"zones", "conflicts"}  # tables get none
    stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    path = write_geopackage(tmp_path / "t.gpkg", layers, styles=styles, update_time=stamp)
    con = sqlite3.connect(path)
    try:
        cols = [r[1] for r in con.execute("PRAGMA table_info(layer_styles)")]
        rows = con.execute(
            "SELECT f_table_catalog, f_table_schema, f_table_name, f_geometry_column, "
            "styleName, useAsDefault, update_time, typeof(f_table_schema) FROM layer_styles "
            "ORDER BY id"
        ).fetchall()
        qml = con.execute("SELECT styleQML FROM layer_styles WHERE f_table_name='zones'").fetchone()
        contents = con.execute(
            "SELECT data_type FROM gpkg_contents WHERE table_name='layer_styles'"
        ).fetchone()
    finally:
        con.close()
    assert cols == ["id", *LAYER_STYLES_COLUMNS]
    assert rows == [
        ("", "", "zones", "geom", "zones", 1, "2026-01-02T03:04:05.000Z", "text"),
        ("", "", "conflicts", "geom", "conflicts", 1, "2026-01-02T03:04:05.000Z", "text"),
    ]
    assert "พื้นที่ป่า" in qml[0]  # UTF-8 Thai survives
    assert contents == ("attributes",)


def test_style_for_a_layer_not_written_is_refused(tmp_path):
    layers = _layers()
    styles = {"nope": conflicts_style()}
    with pytest.raises(ValueError, match="styles for layers not written: nope"):
        write_geopackage(tmp_path / "t.gpkg", layers, styles=styles)
    assert not (tmp_path / "t.gpkg").exists()  # nothing half-written is left


def test_zone_raster_qml_has_a_clean_8_class_palette():
    root = ET.fromstring(zone_raster_qml().split("\n", 1)[1])
    entries = list(root.iter("paletteEntry"))
    assert [int(e.get("value")) for e in entries] == list(range(8))
    assert entries[0].get("alpha") == "0"  # outside the region: transparent
    assert entries[1].get("color") == ZONES[0].color
    assert entries[6].get("label") == "water · แหล่งน้ำ"
    assert root.find("pipe/rasterrenderer").get("type") == "paletted"


def test_zone_raster_is_a_cog_with_mode_overviews_qml_and_category_names(tmp_path, caplog):
    grid = Grid(CRS_UTM, Affine(100.0, 0, 500000.0, 0, -100.0, 2100000.0), 1100, 1100)
    zones = np.zeros(grid.shape, np.uint8)
    zones[:, :550] = 1
    zones[:550, 550:] = 6
    with caplog.at_level("WARNING"):
        path = write_zone_raster(
            tmp_path / "r_zones.tif", da.from_array(zones, chunks=512), grid, tags={"A": "b"}
        )
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # nothing on screen
    with rasterio.open(path) as src:
        assert src.overviews(1)  # overviews exist
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.colormap(1)[1][:3] == ZONES[0].rgb
        assert src.nodata == 0
        ov = src.read(1, out_shape=(275, 275))  # from an overview
    assert set(np.unique(ov)) <= {0, 1, 6}  # mode keeps categories
    assert (tmp_path / "r_zones.qml").read_text(encoding="utf-8") == zone_raster_qml()
    aux = (tmp_path / "r_zones.tif.aux.xml").read_text(encoding="utf-8")
    names = [c.text for c in ET.fromstring(aux).iter("Category")]
    assert names == category_names()
    assert names[1] == "forest | พื้นที่ป่า"


def test_zone_raster_and_its_copy_share_pixels_and_differ_only_by_the_copys_tags(tmp_path):
    grid = Grid(CRS_UTM, Affine(100.0, 0, 500000.0, 0, -100.0, 2100000.0), 700, 600)
    zones = np.zeros(grid.shape, np.uint8)
    zones[100:500, :300] = 1
    zones[:, 300:] = 4
    main = tmp_path / "r_zones.tif"
    copy = tmp_path / "r_proposed.tif"
    write_zone_raster(
        main,
        da.from_array(zones, chunks=256),
        grid,
        tags={"REGION_ID": "r"},
        copy=(copy, {"PHASE": "proposed"}),
    )
    with rasterio.open(main) as a, rasterio.open(copy) as b:
        np.testing.assert_array_equal(a.read(1), zones)
        np.testing.assert_array_equal(b.read(1), zones)
        assert a.tags()["REGION_ID"] == b.tags()["REGION_ID"] == "r"
        assert "PHASE" not in a.tags() and b.tags()["PHASE"] == "proposed"
        assert b.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" and b.overviews(1)
        assert a.tags(1) == b.tags(1) and b.colormap(1)[1][:3] == ZONES[0].rgb
    for p in (main, copy):
        assert p.with_suffix(".qml").is_file() and p.with_name(p.name + ".aux.xml").is_file()
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(
        ["r_zones.tif", "r_zones.qml", "r_zones.tif.aux.xml"]
        + ["r_proposed.tif", "r_proposed.qml", "r_proposed.tif.aux.xml"]
    )  # no work file left


@pytest.mark.parametrize("shape", [(513, 10), (1100, 1100), (2049, 700), (1024, 1025), (4097, 90)])
def test_zone_raster_overviews_are_the_levels_gdal_cog_auto_chooses(tmp_path, shape):
    from rasterio.shutil import copy as gdal_copy

    from ecoplan.export import _overview_factors

    grid = Grid(CRS_UTM, Affine(10.0, 0, 500000.0, 0, -10.0, 2100000.0), *shape)
    plain = tmp_path / "plain.tif"
    profile = {"driver": "GTiff", "dtype": "uint8", "count": 1, "height": shape[0]}
    profile |= {"width": shape[1], "crs": grid.crs, "transform": grid.transform}
    with rasterio.open(plain, "w", **profile) as dst:
        dst.write(np.ones(shape, np.uint8), 1)
    gdal_copy(plain, tmp_path / "auto.tif", driver="COG", OVERVIEWS="AUTO")
    ours = write_zone_raster(
        tmp_path / "z.tif", da.from_array(np.ones(shape, np.uint8)), grid, tags={}
    )
    with rasterio.open(tmp_path / "auto.tif") as auto, rasterio.open(ours) as src:
        assert src.overviews(1) == auto.overviews(1) == _overview_factors(shape, 512)
