"""``python -m ecoplan`` as a program: the same outputs and exit codes as the command group,
through :func:`ecoplan.cli.main.main` (which freezes the garbage collector before the
interpreter exits)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pyogrio
import rasterio

ROOT = Path(__file__).resolve().parents[1]


def ecoplan(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "ecoplan", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


def test_a_run_as_a_program_writes_whole_outputs_and_exits_0(region_yaml, tmp_path):
    res = ecoplan("run", str(region_yaml), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    out = tmp_path / "out"
    gpkg = next(out.glob("*.gpkg"))
    layers = {name for name, _ in pyogrio.list_layers(gpkg)}
    assert {"zones", "buffer_zones", "conflicts", "proportions"} <= layers
    assert len(pyogrio.read_dataframe(gpkg, layer="zones")) > 0
    with rasterio.open(next(out.glob("*_zones.tif"))) as src:
        assert src.read(1).any()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_bad_input_as_a_program_is_one_error_line_and_exit_2(tmp_path):
    bad = tmp_path / "region.yaml"
    bad.write_text("id: x\nregion: [\n", encoding="utf-8")
    res = ecoplan("run", str(bad), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "region.yaml" in lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_console_script_is_the_program_entry():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["scripts"]["ecoplan"] == "ecoplan.cli.main:main"
