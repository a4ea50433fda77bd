"""The benchmark's peers do the same work: the numpy script's zones, conflicts and polygons are
the GDAL command-line pipeline's (both sieve with GDAL's filter), on a small generated raster."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
IN_CI = os.environ.get("CI", "").lower() == "true"
TOOLS = ("gdal_calc.py", "gdal_sieve.py", "gdal_proximity.py", "gdal_polygonize.py")


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        if IN_CI:
            pytest.fail(f"CI=true but {', '.join(missing)} not found (install gdal-bin)")
        pytest.skip(f"GDAL's command-line tools are not installed ({', '.join(missing)})")
    pytest.importorskip("psutil")
    sys.path.insert(0, str(BENCH))
    try:
        from gdal_pipeline import run_gdal_pipeline
        from generate import generate
        from numpy_pipeline import run_numpy_pipeline
    finally:
        sys.path.remove(str(BENCH))
    root = tmp_path_factory.mktemp("peers")
    generate(root / "data", 500, label="peers", seed=3, block=256, workers=1)
    gdal = run_gdal_pipeline(root / "data", root / "gdal")
    numpy = run_numpy_pipeline(root / "data", root / "numpy")
    return gdal, numpy


def test_the_numpy_script_finds_gdals_zones_and_conflicts(peers):
    gdal, numpy = peers
    assert sum(gdal["zone_pixels"].values()) > 200_000  # the units cover most of 500²
    assert len(gdal["zone_pixels"]) >= 4  # forest, agriculture, water and more
    assert numpy["zone_pixels"] == gdal["zone_pixels"]
    assert gdal["conflict_pixels"] > 0
    assert numpy["conflict_pixels"] == gdal["conflict_pixels"]


def test_the_numpy_script_writes_gdals_polygons(peers):
    gdal, numpy = peers
    assert set(gdal["polygons"]) == {"zones", "buffer_zones", "conflicts"}
    assert numpy["polygons"] == gdal["polygons"]


def test_each_peer_reports_every_stage(peers):
    names = ["units", "reclass", "density", "urban_rural", "mmu", "buffers", "areas"]
    names += ["vectorise", "cog"]
    for result in peers:
        assert [s["name"] for s in result["stages"]] == names
        assert result["seconds"] > 0 and result["max_rss_mb"] > 0 and result["cpu_seconds"] > 0
        assert result["output_bytes"] > 0
