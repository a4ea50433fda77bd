"""Bad input gives one line ``error: …`` naming the file, exit code 2 and no output files."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from synthetic_region import PIXEL, X0, Y0, box_boundary, write_raster, write_region

from ecoplan.cli.main import cli


@pytest.fixture
def region(tmp_path):
    codes = np.full((20, 20), 10, np.uint8)
    codes[:, 10:] = 40
    write_raster(tmp_path / "lc.tif", codes)
    box_boundary(tmp_path / "b.gpkg", {"R": (X0, Y0 - 20 * PIXEL, X0 + 20 * PIXEL, Y0)})
    return tmp_path


def run(region_yaml, out):
    return CliRunner().invoke(cli, ["run", str(region_yaml), "--out", str(out), "--quiet"])


def assert_refused(res, *, names, says, out):
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith("error: "), res.stderr
    assert names in lines[0], lines[0]
    assert says in res.stderr, res.stderr
    assert "Traceback" not in res.output
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def test_missing_land_cover_file(region):
    yml = write_region(region, landcover="nope.tif", boundary="b.gpkg")
    assert_refused(
        run(yml, region / "out"), names="nope.tif", says="file not found", out=region / "out"
    )


def test_raster_without_crs(region):
    write_raster(region / "nocrs.tif", np.full((20, 20), 10, np.uint8), crs=None)
    yml = write_region(region, landcover="nocrs.tif", boundary="b.gpkg")
    assert_refused(
        run(yml, region / "out"), names="nocrs.tif", says="has no CRS", out=region / "out"
    )


def test_boundary_that_does_not_overlap_the_raster(region):
    box_boundary(region / "far.gpkg", {"F": (X0 + 1e5, Y0 - 1e5, X0 + 2e5, Y0)})
    yml = write_region(region, landcover="lc.tif", boundary="far.gpkg")
    res = run(yml, region / "out")
    assert_refused(res, names="far.gpkg", says="does not overlap", out=region / "out")


def test_class_codes_the_crosswalk_does_not_know(region):
    codes = np.full((20, 20), 10, np.uint8)
    codes[0, :5] = 77
    write_raster(region / "odd.tif", codes)
    yml = write_region(region, landcover="odd.tif", boundary="b.gpkg")
    res = run(yml, region / "out")
    assert_refused(res, names="odd.tif", says="77 (5 pixels) not in crosswalk", out=region / "out")


def test_invalid_yaml_in_the_region_file(region):
    yml = region / "region.yaml"
    yml.write_text("region: {id: x\nboundary: [\n", encoding="utf-8")
    assert_refused(
        run(yml, region / "out"), names="region.yaml", says="invalid YAML", out=region / "out"
    )


def test_unknown_key_in_the_region_file(region):
    yml = write_region(region, landcover="lc.tif", boundary="b.gpkg")
    yml.write_text(yml.read_text(encoding="utf-8") + "pixel_sise_m: 30\n", encoding="utf-8")
    res = run(yml, region / "out")
    assert_refused(res, names="region.yaml", says="pixel_sise_m: unknown key", out=region / "out")


def test_unit_field_that_does_not_exist(region):
    yml = write_region(region, landcover="lc.tif", boundary="b.gpkg", unit_field="PROV_CODE")
    res = run(yml, region / "out")
    assert_refused(res, names="b.gpkg", says="no field 'PROV_CODE'", out=region / "out")


def test_a_failed_run_keeps_the_previous_outputs(region):
    good = write_region(region, landcover="lc.tif", boundary="b.gpkg")
    out = region / "out"
    assert run(good, out).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    codes = np.full((20, 20), 77, np.uint8)
    write_raster(region / "lc.tif", codes)
    res = CliRunner().invoke(cli, ["run", str(good), "--out", str(out), "--overwrite", "-q"])
    assert res.exit_code == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
