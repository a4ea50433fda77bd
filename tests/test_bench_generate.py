"""The benchmark's raster generator is deterministic, block-order independent and realistic."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "generate.py"
_spec = importlib.util.spec_from_file_location("bench_generate", _PATH)
gen = importlib.util.module_from_spec(_spec)
sys.modules["bench_generate"] = gen  # dataclasses look their module up
_spec.loader.exec_module(gen)

SIZE = 400


@pytest.fixture(scope="module")
def scene():
    return gen.make_scene(SIZE, seed=2)


@pytest.fixture(scope="module")
def whole(scene):
    return gen.render_block(scene, 0, SIZE, 0, SIZE)


def test_same_seed_gives_the_same_array(scene, whole):
    again = gen.render_block(gen.make_scene(SIZE, seed=2), 0, SIZE, 0, SIZE)
    np.testing.assert_array_equal(whole, again)


def test_another_seed_gives_another_array(whole):
    other = gen.render_block(gen.make_scene(SIZE, seed=3), 0, SIZE, 0, SIZE)
    assert (other != whole).mean() > 0.2


@pytest.mark.parametrize("block", [64, 128, 150])
def test_blocks_in_any_order_tile_the_whole(scene, whole, block):
    out = np.zeros_like(whole)
    windows = [w for row in gen._windows(SIZE, block) for w in row]
    rng = np.random.default_rng(0)
    for k in rng.permutation(len(windows)):
        r0, r1, c0, c1 = windows[k]
        out[r0:r1, c0:c1] = gen.render_block(scene, r0, r1, c0, c1)
    np.testing.assert_array_equal(out, whole)


def test_all_worldcover_codes_appear_and_nothing_else(whole):
    assert set(np.unique(whole).tolist()) == set(gen.CODES)


def test_forest_and_cropland_dominate_like_northern_thailand():
    size = 1200  # 12 km: large enough for the landscape's proportions to settle
    codes = gen.render_block(gen.make_scene(size, seed=1), 0, size, 0, size)
    share = {c: float((codes == c).mean()) for c in gen.CODES}
    assert share[10] + share[40] > 0.6
    assert 0.005 < share[50] < 0.15  # built-up
    assert 0.002 < share[80] < 0.1  # water


def test_written_files_are_identical_for_the_same_seed(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    a = gen.generate(tmp_path / "a", 300, label="t", seed=5, block=128, workers=2)
    b = gen.generate(tmp_path / "b", 300, label="t", seed=5, block=256, workers=1)
    with rasterio.open(tmp_path / "a" / "landcover.tif") as ra:
        arr_a, crs, res = ra.read(1), ra.crs, ra.res
    with rasterio.open(tmp_path / "b" / "landcover.tif") as rb:
        arr_b = rb.read(1)
    np.testing.assert_array_equal(arr_a, arr_b)
    assert crs.to_epsg() == 32647 and res == (10.0, 10.0)
    assert a["rivers"] == b["rivers"] and a["settlements"] == b["settlements"]
    assert (tmp_path / "a" / "region.yaml").is_file()
    assert (tmp_path / "a" / "boundary.gpkg").is_file()


def test_generated_region_loads_in_ecoplan(tmp_path):
    from ecoplan.region import load_region
    from ecoplan.rules import load_rules

    gen.generate(tmp_path, 200, label="tiny", seed=1, block=128)
    region = load_region(tmp_path / "region.yaml")
    assert region.id == "bench_tiny"
    assert region.pixel_size_m == 10
    rules = load_rules(region.rules)
    assert [(b.id, b.max_distance_m) for b in rules.buffers] == [
        ("forest_edge", 500),
        ("water_edge", 30),
    ]
