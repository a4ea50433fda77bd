"""Writing outputs: the GeoPackage, the zone GeoTIFF. Every file is written atomically.

A file is first written under a hidden temporary name in the same folder, then renamed over the
final name, so a failed or killed run never leaves a half-written file under a final name and
keeps the previous output intact.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio
import rasterio.shutil
from rasterio.enums import ColorInterp

from ecoplan.errors import OutputError
from ecoplan.grid import Grid
from ecoplan.zones import NODATA, ZONES, colormap

__all__ = ["atomic_path", "write_geopackage", "write_zone_raster", "check_output_dir"]


def check_output_dir(path: str | Path) -> Path:
    """Create the output folder if needed and check that it is writable."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{path}: cannot create the output folder ({err.strerror})") from err
    if not path.is_dir():
        raise OutputError(f"{path}: exists and is not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: output folder is not writable")
    return path


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` when the block succeeds."""
    final = Path(final)
    tmp = final.with_name(f".{final.stem}.tmp-{os.getpid()}-{threading.get_ident()}{final.suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    except OSError as err:
        _remove(tmp)
        if err.errno == errno.ENOSPC:
            raise OutputError(f"{final}: disk full while writing") from err
        if isinstance(err, OutputError):
            raise
        raise OutputError(f"{final}: cannot write ({err.strerror or err})") from err
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    for p in (
        path,
        Path(f"{path}-journal"),
        Path(f"{path}-wal"),
        Path(f"{path}-shm"),
        Path(f"{path}.aux.xml"),
    ):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def write_geopackage(path: str | Path, layers: dict[str, pd.DataFrame]) -> Path:
    """Write tables and layers into one new GeoPackage (atomically). Order of ``layers`` is kept.

    GeoDataFrames become spatial layers (polygons promoted to MultiPolygon); plain DataFrames
    become attribute tables.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        for name, df in layers.items():
            kwargs: dict = {"layer": name, "driver": "GPKG", "append": tmp.exists()}
            if not tmp.exists():
                kwargs["dataset_options"] = {"VERSION": "1.2"}
            if isinstance(df, gpd.GeoDataFrame):
                kwargs["promote_to_multi"] = True
                kwargs["geometry_type"] = "MultiPolygon"
            kwargs["layer_options"] = {"IDENTIFIER": name}
            try:
                pyogrio.write_dataframe(df, tmp, **kwargs)
            except pyogrio.errors.DataSourceError as err:
                raise OSError(errno.EIO, f"layer {name}: {err}") from err
    return path


def write_zone_raster(
    path: str | Path, zones: da.Array, grid: Grid, *, tags: dict[str, str]
) -> Path:
    """Write the zone raster as a cloud-optimised GeoTIFF: uint8, nodata 0, colour table.

    Blocks are written one at a time into a tiled GeoTIFF, then GDAL's COG driver lays it out
    with overviews built by mode resampling (categories stay categories).
    """
    path = Path(path)
    profile = {
        "driver": "GTiff",
        "dtype": "uint8",
        "count": 1,
        "width": grid.width,
        "height": grid.height,
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": NODATA,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    with atomic_path(path) as tmp:
        work = tmp.with_name(tmp.name + ".work.tif")
        try:
            with rasterio.open(work, "w", **profile) as dst:
                _store(zones, dst)
                dst.write_colormap(1, colormap())
                dst.colorinterp = [ColorInterp.palette]
                dst.set_band_description(1, "zone")
                dst.update_tags(**tags)
                dst.update_tags(1, **{f"ZONE_{z.code}": f"{z.name} | {z.name_th}" for z in ZONES})
            rasterio.shutil.copy(
                work,
                tmp,
                driver="COG",
                COMPRESS="DEFLATE",
                OVERVIEWS="AUTO",
                OVERVIEW_RESAMPLING="MODE",
                BIGTIFF="IF_SAFER",
            )
        finally:
            _remove(work)
    return path


def _store(zones: da.Array, dst) -> None:
    """Write a dask array into a rasterio dataset one row of blocks at a time.

    The blocks are computed by whatever scheduler is active (threads, processes, a cluster);
    the writing happens here, in this process, so at most one row of blocks is held at once.
    """
    import dask

    blocks = zones.to_delayed()
    row_starts = np.cumsum((0, *zones.chunks[0][:-1]))
    col_starts = np.cumsum((0, *zones.chunks[1][:-1]))
    for i, r0 in enumerate(row_starts):
        row = dask.compute(*blocks[i])
        for block, c0 in zip(row, col_starts, strict=True):
            h, w = block.shape
            window = ((int(r0), int(r0) + h), (int(c0), int(c0) + w))
            dst.write(np.asarray(block, dtype=np.uint8), 1, window=window)
