"""The same outputs on every dask scheduler, a local cluster included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
from synthetic_region import PIXEL, X0, Y0, box_boundary, write_raster, write_region

from ecoplan.pipeline import run_region

RULES = {
    "buffers": [
        {
            "id": "forest_edge",
            "name_en": "Forest edge",
            "source": {"zones": ["forest"]},
            "rings_m": [200, 400],
            "restricts": ["urban"],
        }
    ]
}


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sched")
    rng = np.random.default_rng(3)
    codes = np.kron(rng.choice([10, 40, 50, 80], size=(12, 12)), np.ones((8, 8))).astype(np.uint8)
    write_raster(tmp / "lc.tif", codes)
    mid = X0 + 48 * PIXEL
    box_boundary(
        tmp / "b.gpkg",
        {"A": (X0, Y0 - 96 * PIXEL, mid, Y0), "B": (mid, Y0 - 96 * PIXEL, X0 + 96 * PIXEL, Y0)},
    )
    return write_region(tmp, landcover="lc.tif", boundary="b.gpkg", rules=RULES), tmp


def outputs(folder):
    with rasterio.open(folder / "test_zones.tif") as src:
        raster = src.read(1)
    layers = {
        name: pd.DataFrame(pyogrio.read_dataframe(folder / "test.gpkg", layer=name))
        for name in ("zones", "buffer_zones", "conflicts", "proportions")
    }
    return raster, layers


def assert_same(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    for name in a[1]:
        pd.testing.assert_frame_equal(a[1][name], b[1][name], check_exact=True)


def test_threads_synchronous_and_processes_give_identical_outputs(region):
    yml, tmp = region
    run_region(yml, tmp / "threads", scheduler="threads", chunk_size=32)
    run_region(yml, tmp / "sync", scheduler="synchronous", chunk_size=96)
    run_region(yml, tmp / "proc", scheduler="processes", chunk_size=40)
    ref = outputs(tmp / "threads")
    assert_same(ref, outputs(tmp / "sync"))
    assert_same(ref, outputs(tmp / "proc"))


def test_a_local_dask_cluster_gives_the_threaded_output(region):
    distributed = pytest.importorskip("distributed")
    yml, tmp = region
    run_region(yml, tmp / "ref", scheduler="threads", chunk_size=32)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        run_region(yml, tmp / "cluster", scheduler=cluster.scheduler_address, chunk_size=32)
    assert_same(outputs(tmp / "ref"), outputs(tmp / "cluster"))


def test_an_unknown_scheduler_lists_the_valid_ones(region):
    yml, tmp = region
    with pytest.raises(ValueError, match="threads, synchronous, processes or a dask.distributed"):
        run_region(yml, tmp / "x", scheduler="gpu")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("threads", "dask.threaded.get"),
        ("synchronous", "dask.local.get_sync"),
        ("processes", "dask.multiprocessing.get"),
    ],
)
def test_a_local_scheduler_name_runs_that_scheduler(name, expected):
    import importlib

    import dask.base

    from ecoplan.pipeline import scheduler_context

    module, _, attr = expected.rpartition(".")
    with scheduler_context(name):
        assert dask.base.get_scheduler() is getattr(importlib.import_module(module), attr)


def test_a_local_run_does_not_import_dask_distributed(region):
    # dask imports dask.distributed (0.4 s) to look for a client when given a scheduler name
    import subprocess
    import sys

    yml, tmp = region
    code = (
        "import sys\n"
        "from ecoplan.pipeline import run_region\n"
        f"run_region({str(yml)!r}, {str(tmp / 'local')!r}, scheduler='threads')\n"
        "print('distributed' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip().splitlines()[-1] == "False"
