"""Same inputs and rules give the same outputs: for a repeated run, any chunk size and any
dask scheduler (threads, processes, synchronous).

The region is the synthetic one at 338 x 338 pixels, so that its working grid (320 x 320)
spans several blocks at chunk sizes 64 (5 x 5) and 256 (2 x 2) and one at 1024. (Its last
block at 256 is 64 wide, wider than the 51-pixel halo of the 1000 m forest-edge buffer; for a
narrower last block see the test at the end.) Rasters must be
byte-identical files; GeoPackage layers must have identical attributes and geometries (WKB),
in the same order; ``run_metadata`` is compared without its ``started_at``/``finished_at``.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
from conftest import SynthRegion

from ecoplan.pipeline import run_region

LAYERS = ("zones", "buffer_zones", "conflicts", "proportions", "run_metadata")
TIMESTAMPS = ("started_at", "finished_at")


@pytest.fixture(scope="module")
def region338(tmp_path_factory) -> Path:
    return SynthRegion(tmp_path_factory.mktemp("determinism") / "region", size=338).build()


@pytest.fixture(scope="module")
def baseline(region338, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("baseline")
    run_region(region338, out, chunk_size=1024, scheduler="threads")
    return out


def layers_of(gpkg: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for name in LAYERS:
        df = pyogrio.read_dataframe(gpkg, layer=name)
        if "geometry" in df:
            df = pd.DataFrame(df).assign(geometry=df.geometry.to_wkb())
        if name == "run_metadata":
            df = df[~df.key.isin(TIMESTAMPS)].reset_index(drop=True)
        out[name] = df
    return out


def assert_same_outputs(a: Path, b: Path) -> None:
    ta, tb = a / "tiny_zones.tif", b / "tiny_zones.tif"
    with rasterio.open(ta) as x, rasterio.open(tb) as y:
        np.testing.assert_array_equal(x.read(1), y.read(1))
        assert x.transform == y.transform and x.crs == y.crs
    assert hashlib.sha256(ta.read_bytes()).digest() == hashlib.sha256(tb.read_bytes()).digest()
    la, lb = layers_of(a / "tiny.gpkg"), layers_of(b / "tiny.gpkg")
    for name in LAYERS:
        pd.testing.assert_frame_equal(la[name], lb[name], check_exact=True, obj=name)


def test_baseline_spans_several_blocks(baseline):
    with rasterio.open(baseline / "tiny_zones.tif") as src:
        assert src.height > 256 and src.width > 256
        assert set(np.unique(src.read(1))) >= {0, 1, 2, 4, 6, 7}


@pytest.mark.parametrize(
    ("chunk_size", "scheduler"),
    [
        (1024, "threads"),  # the same run twice
        (256, "threads"),
        (64, "threads"),
        (64, "synchronous"),
    ],
)
def test_outputs_do_not_depend_on_chunks_or_scheduler(
    region338, baseline, tmp_path, chunk_size, scheduler
):
    run_region(region338, tmp_path, chunk_size=chunk_size, scheduler=scheduler)
    assert_same_outputs(baseline, tmp_path)


@pytest.fixture(scope="module")
def process_pool():
    """One pool of worker processes for a whole run.

    Left to itself, dask's process scheduler starts a new pool (each worker importing ecoplan,
    geopandas, rasterio …) at every ``compute`` — a dozen per run, about 100 s here. Giving it
    one pool through ``dask.config`` is what ``run_region``'s scheduler context should do
    itself (see the report of the reliability branch).
    """
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        yield pool


@pytest.mark.parametrize("chunk_size", [64, 256])
def test_process_scheduler_gives_the_same_outputs(
    region338, baseline, tmp_path, process_pool, chunk_size
):
    with dask.config.set(pool=process_pool):
        run_region(region338, tmp_path, chunk_size=chunk_size, scheduler="processes")
    assert_same_outputs(baseline, tmp_path)


def test_last_block_narrower_than_the_buffer_halo(tmp_path):
    region = SynthRegion(tmp_path / "region", size=300).build()
    run_region(region, tmp_path / "a", chunk_size=1024)
    run_region(region, tmp_path / "b", chunk_size=256)
    assert_same_outputs(tmp_path / "a", tmp_path / "b")
