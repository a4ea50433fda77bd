"""``ecoplan doctor``: every input checked, the run described, nothing computed or written."""

from __future__ import annotations

import json

import numpy as np
import pyogrio
import pytest
from click.testing import CliRunner
from conftest import SIZE, landcover_codes

from ecoplan.cli.main import cli
from ecoplan.doctor import diagnose, stale_temp_files
from ecoplan.errors import InputError
from ecoplan.io import check_layers
from ecoplan.region import load_region


def doctor(*args: str):
    return CliRunner().invoke(cli, ["doctor", *map(str, args)])


def test_doctor_describes_the_region_without_writing(region_yaml, tmp_path):
    out = tmp_path / "out"
    r = doctor(region_yaml, "--out", out)
    assert r.exit_code == 0, r.stderr
    text = r.stdout
    assert "working CRS   EPSG:32647 (UTM zone of the boundary's centroid)" in text
    # the boundary is 2,800 m (140 px) square; its lon/lat round trip puts each edge a hair
    # outside the 20 m lines, so the aligned grid takes one more pixel on each side
    assert "grid          142 x 142 pixels of 20 m" in text
    assert "EPSG:32647, 160 x 160 px, uint8, nodata 0.0, 1 band(s), pixel 20 m" in text
    assert "rivers" in text and "1 feature(s), LineString, EPSG:4326" in text
    assert "ok: ready to run" in text
    assert not out.exists()  # doctor creates nothing


def test_doctor_counts_class_codes_inside_the_boundary(region_yaml):
    d = diagnose(region_yaml)
    codes = {c["code"]: c for c in d.class_codes}
    # hand count: the boundary covers raster rows/cols 10..149 (140 x 140 cells)
    inside = landcover_codes()[10:150, 10:150]
    values, counts = np.unique(inside, return_counts=True)
    assert {c: codes[c]["pixels"] for c in codes} == dict(
        zip(values.tolist(), counts.tolist(), strict=True)
    )
    assert codes[10]["zone"] == "forest" and codes[10]["label"] == "Tree cover"
    assert codes[80]["zone"] == "water"
    assert codes[10]["area_ha"] == pytest.approx(codes[10]["pixels"] * 0.04)
    assert d.units["count"] == 2 and set(d.units["area_ha"]) == {"west", "east"}
    assert d.units["area_ha"]["west"] == pytest.approx(140 * 70 * 0.04, rel=1e-3)
    assert d.problems == []


def test_doctor_lists_every_problem_and_exits_2(synth, tmp_path):
    synth.build()
    codes = landcover_codes()
    codes[50:60, 50:60] = 33
    synth.write_raster("landcover.tif", codes=codes)
    cfg = synth.config()
    cfg["layers"]["roads"] = {"path": "data/roads.gpkg"}
    cfg["layers"]["dem"] = {"path": "data/dem.tif"}
    (synth.data / "dem.tif").write_bytes(b"not a raster")
    r = doctor(synth.write_yaml(cfg))
    assert r.exit_code == 2
    assert "(unmapped)" in r.stdout and "33" in r.stdout
    assert r.stdout.count("PROBLEM:") == 5  # code 33, roads (line + summary), dem (line + summary)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "33 (100 pixels)" in errors[0] and "(and 2 more problems listed above)" in errors[0]
    assert "Traceback" not in r.stderr


def test_doctor_refuses_what_stops_the_checks_with_one_error_line(synth, tmp_path):
    region_yaml = synth.build()
    synth.write_yaml({**synth.config(), "crs": "EPSG:4326"})
    r = doctor(region_yaml)
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ") and "crs" in r.stderr and r.stderr.count("\n") == 1


def test_doctor_flags_a_raster_of_only_nodata_codes(synth):
    synth.build()
    synth.write_raster("landcover.tif", codes=np.zeros((SIZE, SIZE), np.uint8), nodata=None)
    d = diagnose(synth.write_yaml(synth.config()))
    assert any("no land-cover data inside the boundary" in p for p in d.problems)


def test_doctor_reports_repairs_and_skipped_rules(synth):
    synth.build()
    cfg = synth.config()
    del cfg["layers"]
    d = diagnose(synth.write_yaml(cfg))
    notes = {b["id"]: b["note"] for b in d.rules["buffers"]}
    assert notes["riparian"] == "skipped: the region gives no 'rivers' layer"
    assert notes["forest_edge"] == ""
    assert d.ok


def test_doctor_json_round_trips(region_yaml):
    r = doctor(region_yaml, "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["working_crs"] == "EPSG:32647"
    assert data["grid"]["pixel_size_m"] == 20
    assert data["layers"]["rivers"]["feature_count"] == 1
    assert data["region"]["name_th"] == "ภูมิภาคทดสอบ"


def test_doctor_checks_the_output_folder(region_yaml, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "tiny.gpkg").write_bytes(b"old")
    (out / ".tiny.tmp-999999999-1.gpkg").write_bytes(b"partial")  # no such process
    d = diagnose(region_yaml, out_dir=out)
    assert d.outputs["status"] == "writable"
    assert any("--overwrite" in w for w in d.warnings)
    assert any("killed run" in w and ".tiny.tmp-999999999-1.gpkg" in w for w in d.warnings)
    d = diagnose(region_yaml, out_dir=region_yaml / "out")
    assert d.problems and "cannot create the output folder" in d.problems[0]


def test_stale_temp_files_skip_those_of_live_processes(tmp_path):
    import os

    live = tmp_path / f".tiny_zones.tmp-{os.getpid()}-1.tif"
    dead = tmp_path / ".tiny_zones.tmp-999999999-1.tif"
    other = tmp_path / ".someone.tmp-999999999-1.tif"
    spill = tmp_path / ".spill-999999999-0123456789ab.tif"
    live_spill = tmp_path / f".spill-{os.getpid()}-0123456789ab.tif"
    for p in (live, dead, other, spill, live_spill):
        p.write_bytes(b"x")
    assert stale_temp_files(tmp_path, ["tiny.gpkg", "tiny_zones.tif"]) == [spill, dead]


def test_check_layers_opens_every_layer(synth):
    cfg = load_region(synth.build())
    found = check_layers(cfg.vector_layers(), cfg.raster_layers())
    assert found["rivers"].feature_count == 1
    cfg_missing = cfg.model_copy(
        update={
            "layers": {
                **cfg.layers,
                "roads": cfg.layers["rivers"].model_copy(
                    update={"path": synth.data / "roads.gpkg"}
                ),
            }
        }
    )
    with pytest.raises(InputError, match="roads.gpkg: roads file not found"):
        check_layers(cfg_missing.vector_layers())
    assert pyogrio.list_layers(synth.data / "rivers.gpkg")[0, 0] == "rivers"


def test_doctor_refuses_a_grid_too_large_to_compute(synth):
    # 2.8 km at 1 cm: 280,002 x 280,002 pixels (the grid is lazy; one huge block keeps the
    # dask graph small so that the check itself is quick)
    region_yaml = synth.build(pixel_size_m=0.01)
    with pytest.raises(InputError, match=r"pixel_size_m: a grid of 280,002 x 280,002 pixels"):
        diagnose(region_yaml, chunk_size=10**6)


def test_doctor_flags_boundary_features_without_a_unit(synth):
    synth.build()
    gdf = synth.boundary_frame()
    gdf.loc[1, "unit"] = None
    (synth.data / "boundary.gpkg").unlink()
    synth.write_vector(gdf, "boundary.gpkg", layer="units")
    d = diagnose(synth.write_yaml(synth.config()))
    assert d.problems == [
        f"{synth.data / 'boundary.gpkg'}: 1 boundary feature(s) have no value in 'unit' "
        "(unit_field); `ecoplan run` would leave them out of every unit; fill the field in"
    ]


def test_doctor_warns_when_part_of_the_region_has_no_land_cover(synth):
    synth.build()
    codes = landcover_codes()
    codes[:, 100:] = 0  # nodata east of column 100
    synth.write_raster("landcover.tif", codes=codes)
    d = diagnose(synth.write_yaml(synth.config()))
    # inside the boundary (rows and columns 10..149): columns 100..149 are nodata
    gap_ha = 140 * 50 * 0.04
    expected = f"{gap_ha / (140 * 140 * 0.04):.1%} of the region ({gap_ha:,.1f} ha)"
    assert any(expected in w for w in d.warnings), d.warnings
    assert d.ok
