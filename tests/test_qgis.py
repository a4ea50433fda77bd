"""The demo output opened by real QGIS (PyQGIS, headless) and checked by GDAL's validator.

Runs Debian's ``/usr/bin/python3`` (the interpreter PyQGIS and python3-gdal are built for) in a
subprocess with ``QT_QPA_PLATFORM=offscreen``. Skips when QGIS or the validator is absent,
unless ``CI=true``, where their absence fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pyogrio
import pytest

from ecoplan.pipeline import run_region, sample_region_path
from ecoplan.plan_types import PLAN_TYPES
from ecoplan.zones import ZONES

SYSTEM_PYTHON = "/usr/bin/python3"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _system_env(tmp: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    }
    env.update(QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=str(tmp), HOME=str(tmp))
    return env


def _require(module: str, tmp: Path) -> None:
    """Skip (or fail in CI) when Debian's python3 cannot import ``module``."""
    why = None
    if not Path(SYSTEM_PYTHON).exists():
        why = f"{SYSTEM_PYTHON} not found"
    else:
        probe = subprocess.run(
            [SYSTEM_PYTHON, "-c", f"import {module}"],
            capture_output=True,
            text=True,
            env=_system_env(tmp),
            timeout=120,
        )
        if probe.returncode != 0:
            why = f"{SYSTEM_PYTHON} cannot import {module}: {probe.stderr.strip()[-300:]}"
    if why:
        if IN_CI:
            pytest.fail(f"CI=true but {why} (install qgis python3-qgis python3-gdal)")
        pytest.skip(why)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    run_region(sample_region_path("north"), out)
    return out


QGIS_SCRIPT = textwrap.dedent(
    r"""
    import json, sys
    from qgis.core import (
        QgsApplication, QgsProject, QgsVectorLayer, QgsRasterLayer, QgsLayout,
        QgsLayoutItemMap, QgsLayoutItemLegend, QgsLayoutItemLabel, QgsLayoutExporter,
        QgsLayoutPoint, QgsLayoutSize, QgsUnitTypes, QgsRectangle,
    )
    from qgis.PyQt.QtGui import QFont

    gpkg, tif, png, layers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
    app = QgsApplication([], False)
    app.initQgis()
    out = {"qgis": QgsApplication.instance().applicationVersion() if False else None}
    from qgis.core import Qgis
    out["qgis"] = Qgis.QGIS_VERSION
    project = QgsProject.instance()
    info = {}
    loaded = {}
    for name in layers:
        vl = QgsVectorLayer(f"{gpkg}|layername={name}", name, "ogr")
        r = vl.renderer()
        entry = {
            "valid": vl.isValid(),
            "features": vl.featureCount(),
            "crs": vl.crs().authid(),
            "renderer": r.type() if r else None,
        }
        if r is not None and r.type() == "categorizedSymbol":
            entry["attr"] = r.classAttribute()
            entry["categories"] = [[str(c.value()), c.label()] for c in r.categories()]
            # every feature value must have a category, or QGIS silently skips it
            from qgis.core import QgsExpression, QgsExpressionContext, QgsExpressionContextUtils
            ctx = QgsExpressionContext(QgsExpressionContextUtils.globalProjectLayerScopes(vl))
            expr = QgsExpression(r.classAttribute())
            idx = vl.fields().lookupField(r.classAttribute())
            values = set()
            for f in vl.getFeatures():
                if idx >= 0:
                    values.add(str(f[idx]))
                else:
                    ctx.setFeature(f)
                    values.add(str(expr.evaluate(ctx)))
            entry["values"] = sorted(values)
        if r is not None and r.type() == "singleSymbol":
            sl = r.symbol().symbolLayer(r.symbol().symbolLayerCount() - 1)
            entry["symbol_layers"] = r.symbol().symbolLayerCount()
            entry["brush"] = sl.properties().get("style")
        entry["geometry_valid"] = all(
            f.geometry().isGeosValid() for f in vl.getFeatures()
        )
        info[name] = entry
        loaded[name] = vl
    rl = QgsRasterLayer(tif, "zones raster")
    rr = rl.renderer()
    info["raster"] = {
        "valid": rl.isValid(),
        "crs": rl.crs().authid(),
        "renderer": rr.type(),
        "classes": [[c.value, c.label] for c in rr.classes()] if rr.type() == "paletted" else [],
        "legend_items": len(rr.legendSymbologyItems()),
        "overviews": rl.dataProvider().hasPyramids(),
    }
    out["layers"] = info

    # a map of the styled plan with a legend, rendered through a print layout
    order = ["conflicts", "buffer_zones", "plan_natural_conservation", "zones"]
    map_layers = [loaded[n] for n in order if n in loaded]
    for lyr in map_layers:
        project.addMapLayer(lyr)
    project.setCrs(loaded["zones"].crs())
    layout = QgsLayout(project)
    layout.initializeDefaults()
    page = layout.pageCollection().page(0)
    page.setPageSize(QgsLayoutSize(297, 210, QgsUnitTypes.LayoutMillimeters))
    title = QgsLayoutItemLabel(layout)
    title.setText("ผังภูมินิเวศ ภาคเหนือ · Eco-landscape plan, Northern region")
    title.setFont(QFont("Loma", 14))
    layout.addLayoutItem(title)
    title.attemptMove(QgsLayoutPoint(8, 5, QgsUnitTypes.LayoutMillimeters))
    title.attemptResize(QgsLayoutSize(280, 10, QgsUnitTypes.LayoutMillimeters))
    m = QgsLayoutItemMap(layout)
    m.setLayers(map_layers)
    m.setCrs(loaded["zones"].crs())
    extent = QgsRectangle(loaded["zones"].extent())
    extent.scale(1.05)
    layout.addLayoutItem(m)
    m.attemptMove(QgsLayoutPoint(5, 17, QgsUnitTypes.LayoutMillimeters))
    m.attemptResize(QgsLayoutSize(150, 188, QgsUnitTypes.LayoutMillimeters))
    m.setExtent(extent)
    legend = QgsLayoutItemLegend(layout)
    legend.setLinkedMap(m)
    legend.setTitle("Legend · คำอธิบายสัญลักษณ์")
    legend.setAutoUpdateModel(True)
    layout.addLayoutItem(legend)
    legend.attemptMove(QgsLayoutPoint(160, 17, QgsUnitTypes.LayoutMillimeters))
    exporter = QgsLayoutExporter(layout)
    settings = QgsLayoutExporter.ImageExportSettings()
    settings.dpi = 110
    out["export"] = int(exporter.exportToImage(png, settings))
    print("JSON:" + json.dumps(out, ensure_ascii=False), flush=True)
    del exporter, legend, m, title, layout
    project.clear()
    loaded.clear()
    map_layers.clear()
    del vl, rl, rr, r
    app.exitQgis()
    """
)


def test_demo_geopackage_opens_styled_in_real_qgis(demo, tmp_path):
    _require("qgis.core", tmp_path)
    gpkg, tif = demo / "north.gpkg", demo / "north_zones.tif"
    spatial = [name for name, geom in pyogrio.list_layers(gpkg) if geom is not None]
    script = tmp_path / "check_qgis.py"
    script.write_text(QGIS_SCRIPT, encoding="utf-8")
    png = tmp_path / "north_map.png"
    proc = subprocess.run(
        [SYSTEM_PYTHON, str(script), str(gpkg), str(tif), str(png), ",".join(spatial)],
        capture_output=True,
        text=True,
        env=_system_env(tmp_path),
        timeout=300,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("JSON:")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][5:])
    layers = result["layers"]

    expected = {"zones", "buffer_zones", "conflicts", *(p.layer for p in PLAN_TYPES)}
    assert expected <= set(spatial)
    for name in spatial:
        lyr = layers[name]
        assert lyr["valid"], name
        assert lyr["crs"] == "EPSG:32647", name
        assert lyr["geometry_valid"], name
    # features where the demo has land: zones, forest-edge buffers, conflicts, 3 plans
    for name in (
        "zones",
        "buffer_zones",
        "conflicts",
        "plan_livable_city",
        "plan_sustainable_agriculture",
        "plan_natural_conservation",
    ):
        assert layers[name]["features"] > 0, name
    # the demo has no heritage sites and no industrial land: empty layers, still valid
    assert layers["plan_heritage"]["features"] == 0

    # stored styles were loaded: categorized with a category for every value present
    zones = layers["zones"]
    assert zones["renderer"] == "categorizedSymbol" and zones["attr"] == "zone"
    labels = dict(zones["categories"])
    assert labels["1"] == "forest · พื้นที่ป่า"
    assert {str(z.code) for z in ZONES} <= set(labels)
    for name in [*(p.layer for p in PLAN_TYPES), "buffer_zones"]:
        lyr = layers[name]
        assert lyr["renderer"] == "categorizedSymbol", name
        assert set(lyr["values"]) <= {v for v, _ in lyr["categories"]}, name
    assert layers["plan_natural_conservation"]["attr"] == "subcategory"
    cons = dict(layers["plan_natural_conservation"]["categories"])
    assert cons["Forest"] == "Forest · พื้นที่ป่าไม้"
    assert set(layers["zones"]["values"]) <= set(labels)
    conflicts = layers["conflicts"]
    assert conflicts["renderer"] == "singleSymbol"
    assert conflicts["brush"] == "b_diagonal"

    raster = layers["raster"]
    assert raster["valid"] and raster["crs"] == "EPSG:32647"
    assert raster["renderer"] == "paletted"
    assert [c[0] for c in raster["classes"]] == list(range(8))
    assert raster["classes"][1][1] == "forest · พื้นที่ป่า"
    assert raster["legend_items"] == 8
    assert raster["overviews"]

    assert result["export"] == 0  # QgsLayoutExporter.Success
    assert png.stat().st_size > 20_000
    keep = os.environ.get("ECOPLAN_KEEP_PNG")
    if keep:
        shutil.copy(png, keep)


def test_demo_geopackage_passes_gdal_validator(demo, tmp_path):
    _require("osgeo_utils.samples.validate_gpkg", tmp_path)
    proc = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-m",
            "osgeo_utils.samples.validate_gpkg",
            "--extra",
            "--warning-as-error",
            str(demo / "north.gpkg"),
        ],
        capture_output=True,
        text=True,
        env=_system_env(tmp_path),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_demo_geopackage_is_version_1_2_with_real_crs_ids(demo):
    import sqlite3

    con = sqlite3.connect(demo / "north.gpkg")
    try:
        assert con.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47  # "GPKG"
        assert con.execute("PRAGMA user_version").fetchone()[0] == 10200
        srs = con.execute(
            "SELECT g.table_name, g.srs_id, s.organization, s.organization_coordsys_id "
            "FROM gpkg_geometry_columns g JOIN gpkg_spatial_ref_sys s USING (srs_id)"
        ).fetchall()
        styles = con.execute(
            "SELECT f_table_name, f_geometry_column, f_table_schema, useAsDefault FROM layer_styles"
        ).fetchall()
    finally:
        con.close()
    assert srs and all(row[1:] == (32647, "EPSG", 32647) for row in srs)
    styled = {row[0] for row in styles}
    assert styled == {row[0] for row in srs}  # one default style per spatial layer
    assert all(row[1] == "geom" and row[2] == "" and row[3] == 1 for row in styles)


if __name__ == "__main__":  # pragma: no cover - manual run
    sys.exit(pytest.main([__file__, "-v"]))
