"""A run killed at any moment (SIGKILL) leaves the previous outputs intact and no partial file
under a final name; so does the plan registry (test at the end).

The previous outputs come from the tiny region on a 20 m grid; the killed run recomputes it on a
40 m grid with ``--overwrite``, so every final-name file after the kill must be either
byte-identical to the previous one or a complete new one (40 m pixels, every layer readable,
SQLite integrity check ok). Temporary files are hidden (``.<name>.tmp-<pid>-…``).

To kill *during* writing reliably, one subprocess is slowed down inside the writers (a sleep
after each GeoPackage layer, after the COG copy) and killed as soon as its temporary file
appears; an unslowed one is killed the moment one of its temporary files appears.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from click.testing import CliRunner

from ecoplan.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
FINAL = (
    "tiny.gpkg",
    "tiny_zones.tif",
    "tiny_zones.tif.aux.xml",
    "tiny_zones.qml",
    "tiny_proposed.tif",
    "tiny_proposed.tif.aux.xml",
    "tiny_proposed.qml",
    "tiny_report.html",
)
LAYERS = {"zones", "buffer_zones", "conflicts", "proportions", "run_metadata"}

DRIVER = """
import sys, time
import pyogrio, rasterio.shutil
delay = float(sys.argv[1])
if delay:
    write_dataframe, copy = pyogrio.write_dataframe, rasterio.shutil.copy
    def slow_write(*a, **k):
        write_dataframe(*a, **k)
        time.sleep(delay)
    def slow_copy(*a, **k):
        copy(*a, **k)
        time.sleep(delay)
    pyogrio.write_dataframe, rasterio.shutil.copy = slow_write, slow_copy
from ecoplan.cli.main import cli
cli(sys.argv[2:])
"""


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A completed run of the tiny region, and the region file of a different (40 m) run."""
    from conftest import SynthRegion

    root = tmp_path_factory.mktemp("atomic")
    synth = SynthRegion(root / "region")
    region_yaml = synth.build()
    r = CliRunner().invoke(cli, ["run", str(region_yaml), "--out", str(root / "out"), "-q"])
    assert r.exit_code == 0, r.stderr
    synth.write_yaml({**synth.config(), "pixel_size_m": 40}, "region40.yaml")
    (root / "driver.py").write_text(DRIVER, "utf-8")
    return root


@pytest.fixture
def previous(template, tmp_path):
    """A fresh copy of the template: (out folder, hashes of its outputs, new region, driver)."""
    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    out = tmp_path / "out"
    hashes = {n: sha(out / n) for n in FINAL}
    return out, hashes, tmp_path / "region" / "region40.yaml", tmp_path / "driver.py"


def start(driver: Path, region_yaml: Path, out: Path, *, delay: float):
    args = [sys.executable, str(driver), str(delay), "run", str(region_yaml), "--out", str(out)]
    args += ["--overwrite", "-q"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(predicate, proc, timeout_s: float = 60.0, poll_s: float = 0.005) -> bool:
    """Poll until ``predicate()``; False if the process ended first."""
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(poll_s)
    raise AssertionError("timed out")


def kill(proc) -> int:
    """SIGKILL the process (if still running); its return code (-9 when killed)."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    code = proc.wait(timeout=30)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return code


def temp_files(out: Path, stem: str) -> list[Path]:
    return [p for p in out.iterdir() if p.name.startswith(f".{stem}.tmp-")]


def assert_outputs_sound(out: Path, hashes: dict[str, str]) -> dict[str, str]:
    """Every final-name file is the previous one or a complete new one; returns which."""
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert visible == sorted(FINAL), visible
    state = {}
    for name in FINAL:
        path = out / name
        if sha(path) == hashes[name]:
            state[name] = "previous"
            continue
        state[name] = "new"
        if name.endswith(".tif"):
            with rasterio.open(path) as src:
                assert src.res == (40.0, 40.0)
                zones = src.read(1)
                assert zones.max() <= 7 and np.count_nonzero(zones) > 0
        elif name.endswith((".xml", ".qml", ".html")):
            text = path.read_text(encoding="utf-8").rstrip()
            assert text.endswith((">",)), f"{name} is cut short"
        else:
            con = sqlite3.connect(path)
            try:
                assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            finally:
                con.close()
            assert {str(n) for n in pyogrio.list_layers(path)[:, 0]} >= LAYERS
            for layer in LAYERS:
                pyogrio.read_dataframe(path, layer=layer)
    return state


@pytest.mark.parametrize("stem", ["tiny", "tiny_zones"], ids=["in-geopackage", "in-geotiff"])
def test_kill_while_a_temp_file_is_being_written(previous, stem):
    out, hashes, new_yaml, driver = previous
    proc = start(driver, new_yaml, out, delay=0.4)
    try:
        seen = wait_for(lambda: temp_files(out, stem), proc)
        assert seen, "the run ended before its temporary file was seen"
    finally:
        code = kill(proc)
    assert code == -signal.SIGKILL
    state = assert_outputs_sound(out, hashes)
    # the GeoTIFF is written first: killed inside the GeoPackage, the GeoTIFF may be new
    assert state["tiny.gpkg"] == "previous"
    if stem == "tiny_zones":
        assert state["tiny_zones.tif"] == "previous"


def test_kill_an_unslowed_run_while_it_writes(previous):
    """No sleeps: killed as soon as a temporary output file appears (the window is short, so
    up to three runs are tried)."""
    out, hashes, new_yaml, driver = previous
    for _attempt in range(3):
        proc = start(driver, new_yaml, out, delay=0)
        try:
            writing = lambda: temp_files(out, "tiny_zones") or temp_files(out, "tiny")  # noqa: E731
            wait_for(writing, proc, poll_s=0.001)
        finally:
            code = kill(proc)
        assert_outputs_sound(out, hashes)
        if code == -signal.SIGKILL:
            print(f"killed while writing at attempt {_attempt + 1}")
            break
    else:
        pytest.fail("three runs finished before their temporary file was seen")


@pytest.mark.parametrize("where", ["plans_for_region", "write_report"])
def test_an_error_late_in_a_run_leaves_the_previous_outputs(previous, monkeypatch, where):
    # the zone GeoTIFFs are written in a background thread from the polygons step on: a
    # failure after that (in the layers, in the report) still removes them with the rest
    import ecoplan.pipeline

    out, hashes, new_yaml, _ = previous

    def fail(*args, **kwargs):
        raise RuntimeError("late failure")

    monkeypatch.setattr(ecoplan.pipeline, where, fail)
    with pytest.raises(RuntimeError, match="late failure"):
        ecoplan.pipeline.run_region(new_yaml, out, overwrite=True)
    assert {n: sha(out / n) for n in FINAL} == hashes
    assert sorted(p.name for p in out.iterdir()) == sorted(FINAL)  # no temporary file left


def test_next_run_removes_temp_files_of_a_killed_run(previous):
    out, hashes, new_yaml, driver = previous
    # what a run killed inside the GeoPackage leaves (see the tests above), from a dead process
    for name in (
        ".tiny.tmp-999999999-1.gpkg",
        ".tiny.tmp-999999999-1.gpkg-journal",
        ".spill-999999999-0123456789ab.tif",  # ecoplan.spill's file for a big raster
    ):
        (out / name).write_bytes(b"SQLite format 3\x00 partial")
    r = CliRunner().invoke(cli, ["run", str(new_yaml), "--out", str(out), "-q", "--overwrite"])
    assert r.exit_code == 0, r.stderr
    assert_outputs_sound(out, hashes)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


# -- the plan registry ---------------------------------------------------------------------------

REGISTRAR = """
import sys
from datetime import date
from ecoplan.plan_types import PLAN_TYPES
from ecoplan.registry import PlanSubmission, Registry

registry = Registry(sys.argv[1], create=True)
i = int(sys.argv[2])
while True:
    i += 1
    registry.register(
        PlanSubmission(
            region_id="north", plan_type=p.id, status="draft", status_date=date(2025, 1, 1),
            source_path=f"/plans/north-{i}.gpkg", sha256=f"{i:064x}", feature_count=i,
        )
        for p in PLAN_TYPES
    )
    print(i, flush=True)
"""


def _registry_state(path: Path) -> tuple[list, int]:
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        events = con.execute("SELECT sha256, plan_type FROM plan_history").fetchall()
        n_plans = con.execute("SELECT count(*) FROM plans").fetchone()[0]
    finally:
        con.close()
    return events, n_plans


def test_plan_registry_survives_a_killed_writer(tmp_path):
    """A writer registering the six plans per transaction, killed mid-stream: every
    transaction is there whole or not at all, and what was there before is intact."""
    from ecoplan.plan_types import PLAN_TYPES

    db = tmp_path / "registry.sqlite"
    script = tmp_path / "registrar.py"
    script.write_text(REGISTRAR, "utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, str(script), str(db)]
    # a first writer records at least 5 rounds, then is killed too
    first = subprocess.Popen([*args, "0"], env=env, stdout=subprocess.PIPE, text=True)
    for _ in range(5):
        first.stdout.readline()
    kill(first)
    before, _ = _registry_state(db)
    # a second writer, killed as soon as it has committed 3 rounds (so inside the 4th)
    second = subprocess.Popen([*args, "1000"], env=env, stdout=subprocess.PIPE, text=True)
    for _ in range(3):
        second.stdout.readline()
    assert kill(second) == -signal.SIGKILL
    events, n_plans = _registry_state(db)
    assert set(before) <= set(events)  # nothing recorded before was lost
    assert len(events) % len(PLAN_TYPES) == 0  # no half-recorded transaction
    assert n_plans == len(PLAN_TYPES)
