"""The bundled sample region (Northern Thailand, MODIS 2019) end to end."""

from __future__ import annotations

import numpy as np
import pyogrio
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.features import rasterize
from rasterio.warp import Resampling, reproject

from ecoplan.cli.main import cli
from ecoplan.pipeline import sample_region_path
from ecoplan.plan_types import PLAN_TYPES  # noqa: F401  (the table the plan layers will use)
from ecoplan.region import load_region
from ecoplan.rules import load_crosswalk

FIELDS = {
    "zones": {"zone", "zone_en", "zone_th", "area_ha", "unit_id"},
    "buffer_zones": {"rule_id", "rule_name", "source", "distance_m", "restricts", "area_ha"},
    "conflicts": {"rule_id", "zone", "area_ha"},
    "proportions": {"unit_id", "zone", "area_ha", "share", "target_min", "target_max", "status"},
    "run_metadata": {"key", "value", "sha256"},
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    res = CliRunner().invoke(cli, ["demo", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    return out


def test_demo_writes_the_geopackage_layers_and_fields_of_the_design(demo):
    gpkg = demo / "north.gpkg"
    layers = dict(pyogrio.list_layers(gpkg))
    for layer, fields in FIELDS.items():
        assert layer in layers
        info = pyogrio.read_info(gpkg, layer=layer)
        assert fields <= set(info["fields"]), layer
        assert info["features"] > 0, layer
    assert layers["zones"] == "MultiPolygon"
    assert layers["proportions"] is None
    assert pyogrio.read_info(gpkg, layer="zones")["crs"] == "EPSG:32647"
    zones = pyogrio.read_dataframe(gpkg, layer="zones")
    assert set(zones.unit_id) == {f"TH{c}" for c in (50, 51, 52, 53, 54, 55, 56, 57, 58)}
    assert "พื้นที่ป่า" in set(zones.zone_th)


def test_demo_metadata_traces_inputs_with_checksums(demo):
    meta = pyogrio.read_dataframe(demo / "north.gpkg", layer="run_metadata").set_index("key")
    for key in ("input:landcover", "input:boundary", "rules", "crosswalk"):
        assert len(meta.loc[key, "sha256"]) == 64
    assert meta.loc["crs", "value"] == "EPSG:32647"
    assert meta.loc["pixel_size_m", "value"] == "500"
    assert meta.loc["ecoplan_version", "value"]


def test_demo_proportions_match_an_independent_count(demo):
    """Re-do the count with GDAL's warper and rasterio's rasterize, not ecoplan's code."""
    cfg = load_region(sample_region_path("north"))
    with rasterio.open(demo / "north_zones.tif") as out:
        grid_transform, shape, crs = out.transform, out.shape, out.crs
    prov = pyogrio.read_dataframe(cfg.boundary.path, layer="provinces", where="region = 'north'")
    prov = prov.to_crs(crs)
    inside = rasterize(
        ((g, 1) for g in prov.geometry), out_shape=shape, transform=grid_transform, fill=0
    )
    codes = np.full(shape, 255, np.uint8)
    with rasterio.open(cfg.landcover.path) as src:
        reproject(
            rasterio.band(src, 1),
            codes,
            dst_transform=grid_transform,
            dst_crs=crs,
            resampling=Resampling.nearest,
        )
    mapping = load_crosswalk("modis_igbp").mapping()
    table = pyogrio.read_dataframe(demo / "north.gpkg", layer="proportions")
    region = table[table.level == "region"].set_index("zone_en")
    land = ("forest", "agriculture", "rural", "urban", "industrial", "other")
    counts = {z: 0 for z in land}
    for code, zone in mapping.items():
        if zone in counts:
            counts[zone] += int(((codes == code) & (inside == 1)).sum())
    total = sum(counts.values())
    for zone in land:
        assert region.loc[zone, "share"] == pytest.approx(counts[zone] / total, abs=0.005), zone
    # every unit's shares add up to 100 %, and the region's area is the sum of its units'
    for _, rows in table.groupby("unit_id"):
        assert rows["share"].sum() == pytest.approx(1.0)
    units = table[table.level == "unit"]
    assert units.area_ha.sum() == pytest.approx(table[table.level == "region"].area_ha.sum())
    # 9 provinces, 96,055 km2 in EPSG:32647 (shared/data SOURCE.md), counted on 25 ha cells
    assert table[table.level == "region"].area_ha.sum() / 100 == pytest.approx(96_055, rel=0.005)


def test_demo_refuses_to_overwrite_without_the_flag(demo):
    res = CliRunner().invoke(cli, ["demo", "--out", str(demo), "--quiet"])
    assert res.exit_code == 2
    assert res.stderr.strip().startswith("error: ") and "--overwrite" in res.stderr
