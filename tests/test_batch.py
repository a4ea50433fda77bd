"""``ecoplan run`` with several regions or a batch file: failures isolated, one summary."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from ecoplan.cli import run as run_mod
from ecoplan.cli.main import cli
from ecoplan.cli.run import read_batch_file
from ecoplan.errors import InputError, RulesError
from ecoplan.pipeline import RunResult, sample_region_path

SAMPLE = sample_region_path("north")


def region_file(folder: Path, name: str, *, region_id: str, boundary: str | None = None) -> Path:
    data = SAMPLE.parent / "data"
    text = f"""
region: {{id: {region_id}, name_en: {name}, name_th: ทดสอบ}}
boundary:
  path: {boundary or data / "provinces.gpkg"}
  layer: provinces
  where: "region = 'north'"
  unit_field: ADM1_PCODE
landcover: {{path: {data / "modis_igbp_2019_thailand.tif"}, crosswalk: modis_igbp}}
pixel_size_m: 500
"""
    path = folder / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def invoke(*args):
    return CliRunner().invoke(cli, ["run", *map(str, args)], catch_exceptions=False)


def test_bad_region_is_reported_and_the_others_complete(tmp_path):
    good = region_file(tmp_path, "good", region_id="north")
    region_file(tmp_path, "bad", region_id="bad", boundary=str(tmp_path / "nope.gpkg"))
    region_file(tmp_path, "dup", region_id="north")
    batch = tmp_path / "batch.txt"
    batch.write_text("# my regions\ngood.yaml\nbad.yaml   # broken boundary\n\ndup.yaml\n")
    out = tmp_path / "out"
    result = invoke("--batch", batch, "--out", out, "--json")
    assert result.exit_code == 2
    payload = json.loads(result.stdout)
    assert (payload["ok"], payload["failed"]) == (1, 2)
    good_s, bad_s, dup_s = payload["regions"]
    assert good_s["status"] == "ok" and good_s["region_id"] == "north"
    assert set(good_s["plans_ha"]) == {
        "livable_city",
        "secure_rural",
        "sustainable_agriculture",
        "eco_industrial",
        "natural_conservation",
        "heritage",
    }
    assert bad_s["status"] == "failed" and "nope.gpkg: boundary file not found" in bad_s["error"]
    assert "also the id of" in dup_s["error"] and str(good) in dup_s["error"]
    assert "error: " in result.stderr and "nope.gpkg" in result.stderr
    assert {p.name for p in out.iterdir()} >= {"north.gpkg", "north_zones.tif", "north_report.html"}


def fake_result(region_id: str) -> RunResult:
    table = pd.DataFrame(
        {
            "level": ["region"],
            "zone_en": ["forest"],
            "share": [0.5],
            "area_ha": [10.0],
            "status": ["ok"],
        }
    )
    return RunResult(
        region_id=region_id,
        geopackage=Path(f"{region_id}.gpkg"),
        zone_raster=Path(f"{region_id}_zones.tif"),
        proportions=table,
        conflicts=pd.DataFrame({"area_ha": []}),
        warnings=["something to note"],
        seconds=1.0,
    )


def test_summary_table_lists_every_region_and_ends_the_output(tmp_path, monkeypatch):
    a = region_file(tmp_path, "a", region_id="aaa")
    b = region_file(tmp_path, "b", region_id="bbb")

    def fake_run(path, out_dir, **kw):
        if Path(path) == b:
            raise RulesError(f"{path}: targets[0].min_share: must be <= 1 (got 2)")
        return fake_result("aaa")

    monkeypatch.setattr(run_mod, "run_region", fake_run)
    result = invoke(a, b, "--out", tmp_path / "out")
    assert result.exit_code == 2
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["region", "status", "forest"]
    assert lines[2].split()[:3] == ["aaa", "ok", "50.0%"]
    assert lines[3].split()[:2] == ["bbb", "FAILED"] and "min_share" in lines[3]
    assert lines[-1] == "1 of 2 regions done; 1 failed"
    assert "warning: aaa: something to note" in result.stderr


def test_internal_error_in_one_region_exits_1_after_running_the_rest(tmp_path, monkeypatch):
    a = region_file(tmp_path, "a", region_id="aaa")
    b = region_file(tmp_path, "b", region_id="bbb")
    calls = []

    def fake_run(path, out_dir, **kw):
        calls.append(Path(path))
        if Path(path) == a:
            raise RuntimeError("boom")
        return fake_result("bbb")

    monkeypatch.setattr(run_mod, "run_region", fake_run)
    result = invoke(a, b, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 1
    assert calls == [a, b]
    payload = json.loads(result.stdout)
    assert payload["regions"][0]["internal_error"] is True
    assert "RuntimeError: boom" in payload["regions"][0]["error"]
    assert "Traceback" in result.stderr


def test_quiet_prints_only_errors(tmp_path):
    bad = region_file(tmp_path, "bad", region_id="bad", boundary=str(tmp_path / "nope.gpkg"))
    result = invoke(bad, "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nope.gpkg'}: boundary file not found"
    ]


def test_no_region_given_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["run", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "give at least one REGION_YAML or --batch FILE" in result.output


def test_batch_file_paths_resolve_against_its_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    txt = tmp_path / "sub" / "batch.txt"
    txt.write_text("a.yaml\n  # comment only\n/abs/b.yaml # trailing\n", encoding="utf-8")
    assert read_batch_file(txt) == [tmp_path / "sub" / "a.yaml", Path("/abs/b.yaml")]
    yml = tmp_path / "batch.yaml"
    yml.write_text("regions: [x/region.yaml, y.yaml]\n", encoding="utf-8")
    assert read_batch_file(yml) == [tmp_path / "x" / "region.yaml", tmp_path / "y.yaml"]
    yml.write_text("- one.yaml\n", encoding="utf-8")
    assert read_batch_file(yml) == [tmp_path / "one.yaml"]


@pytest.mark.parametrize(
    ("name", "text", "error", "match"),
    [
        ("empty.txt", "# nothing\n", InputError, "lists no region files"),
        ("bad.yaml", "regions: {a: 1}\n", RulesError, "must be a list of region files"),
    ],
)
def test_unusable_batch_file_is_an_error_naming_it(tmp_path, name, text, error, match):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(error, match=match):
        read_batch_file(path)
    result = invoke("--batch", path, "--out", tmp_path / "out")
    assert result.exit_code == 2 and f"error: {path}" in result.stderr
