"""Holding an intermediate raster: in memory when it fits the budget, else in a temporary file.

Several steps read the zone raster again (buffers, counts, polygons, the GeoTIFF). Computing it
once and keeping it avoids reading and classifying the inputs again; a raster larger than the
memory budget goes to a tiled GeoTIFF beside the outputs, which is read back block by block.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import rasterio

from ecoplan.grid import Grid

__all__ = ["held"]


@contextlib.contextmanager
def held(array: da.Array, grid: Grid, *, folder: Path, budget_bytes: int) -> Iterator[da.Array]:
    """Yield ``array`` computed once: persisted in memory, or spilled to a temporary GeoTIFF.

    The temporary file is removed when the block exits.
    """
    if array.nbytes <= budget_bytes:
        yield array.persist()
        return
    path = folder / f".spill-{os.getpid()}-{dask.base.tokenize(array)[:12]}.tif"
    profile = {
        "driver": "GTiff",
        "dtype": array.dtype.name,
        "count": 1,
        "width": grid.width,
        "height": grid.height,
        "crs": grid.crs,
        "transform": grid.transform,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "zlevel": 1,
        "BIGTIFF": "IF_SAFER",
    }
    try:
        with rasterio.open(path, "w", **profile) as dst:
            from ecoplan.export import _store

            _store(array, dst)
        yield _read_back(path, array.chunks, array.dtype)
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _read_back(path: Path, chunks, dtype) -> da.Array:
    spath = str(path)

    def read(block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        with rasterio.open(spath) as src:
            return src.read(1, window=((r0, r1), (c0, c1)))

    return da.map_blocks(
        read,
        chunks=chunks,
        dtype=dtype,
        meta=np.empty((0, 0), dtype),
        name=f"spilled-{dask.base.tokenize(spath)}",
    )
