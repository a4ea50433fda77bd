"""Overviews of a GeoTIFF, built without holding Python's GIL: by GDAL, or (mode overviews of
a byte band, :func:`build_mode_overviews`) computed here and written through GDAL.

rasterio's ``build_overviews`` calls ``GDALBuildOverviews`` while it holds the GIL, so every
other Python thread stops until the overviews are built: the report, drawn beside the zone
rasters, stopped for the whole build (about 1.5 s at 10 000²). :func:`build_overviews`
calls the same GDAL function through :mod:`ctypes`, which releases the GIL around a foreign
call. The function is looked up through rasterio's own extension module, so it is the GDAL
library rasterio links: its registered drivers, its configuration (``rasterio.Env``, read in
the calling thread) and its error handler (which takes the GIL itself). Where that lookup is
not possible (a platform whose loader does not search a module's dependencies), rasterio's
``build_overviews`` is used: the same overviews, with the GIL held.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import numba
import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.env import ensure_env

__all__ = ["build_overviews", "build_mode_overviews", "mode_level", "windows"]

_OF_UPDATE, _OF_RASTER, _OF_VERBOSE_ERROR = 0x01, 0x02, 0x40  # GDALOpenEx flags (gdal.h)
_CE_FAILURE = 3  # CPLErr: CE_None 0, CE_Debug 1, CE_Warning 2, CE_Failure 3, CE_Fatal 4


@lru_cache(maxsize=1)
def _gdal() -> SimpleNamespace | None:
    """The GDAL functions needed, from the library rasterio links, or None."""
    try:
        import rasterio._io as linked

        lib = ctypes.CDLL(linked.__file__)  # already loaded: a handle, not a second copy
        api = SimpleNamespace(
            open=lib.GDALOpenEx,
            build=lib.GDALBuildOverviews,
            close=lib.GDALClose,
            error=lib.CPLGetLastErrorMsg,
            reset=lib.CPLErrorReset,
            error_type=lib.CPLGetLastErrorType,
            band=lib.GDALGetRasterBand,
            overview_count=lib.GDALGetOverviewCount,
            overview=lib.GDALGetOverview,
            x_size=lib.GDALGetRasterBandXSize,
            y_size=lib.GDALGetRasterBandYSize,
            raster_io=lib.GDALRasterIO,
        )
    except (OSError, AttributeError, ImportError):
        return None
    api.open.restype = ctypes.c_void_p
    api.open.argtypes = [ctypes.c_char_p, ctypes.c_uint] + [ctypes.c_void_p] * 3
    api.build.restype = ctypes.c_int
    api.build.argtypes = [
        ctypes.c_void_p,  # dataset
        ctypes.c_char_p,  # resampling
        ctypes.c_int,  # number of levels
        ctypes.POINTER(ctypes.c_int),  # levels
        ctypes.c_int,  # number of bands (0: all)
        ctypes.c_void_p,  # band list
        ctypes.c_void_p,  # progress function
        ctypes.c_void_p,  # progress data
    ]
    api.close.restype = None  # void before GDAL 3.7, CPLErr since: read the error state instead
    api.close.argtypes = [ctypes.c_void_p]
    api.error.restype = ctypes.c_char_p
    api.error.argtypes = []
    api.reset.restype = None
    api.reset.argtypes = []
    api.error_type.restype = ctypes.c_int
    api.error_type.argtypes = []
    api.band.restype = ctypes.c_void_p
    api.band.argtypes = [ctypes.c_void_p, ctypes.c_int]
    api.overview_count.restype = ctypes.c_int
    api.overview_count.argtypes = [ctypes.c_void_p]
    api.overview.restype = ctypes.c_void_p
    api.overview.argtypes = [ctypes.c_void_p, ctypes.c_int]
    for size in (api.x_size, api.y_size):
        size.restype = ctypes.c_int
        size.argtypes = [ctypes.c_void_p]
    api.raster_io.restype = ctypes.c_int
    api.raster_io.argtypes = [
        ctypes.c_void_p,  # band
        ctypes.c_int,  # GF_Read 0, GF_Write 1
        ctypes.c_int,  # x offset in the band
        ctypes.c_int,  # y offset
        ctypes.c_int,  # x size
        ctypes.c_int,  # y size
        ctypes.c_void_p,  # buffer
        ctypes.c_int,  # buffer x size
        ctypes.c_int,  # buffer y size
        ctypes.c_int,  # buffer data type (GDT_Byte 1)
        ctypes.c_int,  # pixel spacing (0: packed)
        ctypes.c_int,  # line spacing (0: packed)
    ]
    return api


def build_overviews(
    path: str | Path, factors: list[int], resampling: Resampling, *, release_gil: bool = True
) -> None:
    """Add overviews at ``factors`` (2, 4, …) to the GeoTIFF at ``path``, as
    ``rasterio.open(path, "r+").build_overviews(factors, resampling)`` does, but with the GIL
    released while GDAL works (``release_gil=False``: rasterio's own call).

    GDAL's configuration is the calling thread's: call it inside ``rasterio.Env(...)`` to set
    e.g. ``GDAL_NUM_THREADS``. Raises ``OSError`` naming the file when GDAL fails.
    """
    factors = [int(f) for f in factors]
    if not factors:
        return
    api = _gdal() if release_gil else None
    if api is None:
        with rasterio.open(path, "r+") as dst:
            dst.build_overviews(factors, resampling)
        return
    _build(api, path, factors, resampling)


@ensure_env  # drivers registered, as rasterio.open would; the caller's Env when there is one
def _build(api: SimpleNamespace, path, factors: list[int], resampling: Resampling) -> None:
    with _updating(api, path) as handle:
        _add_levels(api, handle, path, factors, resampling.name.upper().encode("ascii"))


@contextlib.contextmanager
def _updating(api: SimpleNamespace, path):
    """The dataset at ``path`` opened for update by GDAL; closed after, which flushes it (a
    failure there is read from GDAL's error state)."""
    api.reset()
    flags = _OF_UPDATE | _OF_RASTER | _OF_VERBOSE_ERROR
    handle = api.open(os.fsencode(path), flags, None, None, None)
    if not handle:
        raise OSError(f"{path}: cannot be opened for update: {_message(api)}")
    try:
        yield handle
    finally:
        api.reset()
        api.close(handle)
    if api.error_type() >= _CE_FAILURE:
        raise OSError(f"{path}: overviews could not be written: {_message(api)}")


def _add_levels(api: SimpleNamespace, handle, path, factors: list[int], method: bytes) -> None:
    levels = (ctypes.c_int * len(factors))(*factors)
    if api.build(handle, method, len(factors), levels, 0, None, None, None) >= _CE_FAILURE:
        raise OSError(f"{path}: overviews could not be built: {_message(api)}")


def _message(api: SimpleNamespace) -> str:
    text = api.error()
    return text.decode("utf-8", "replace") if text else "GDAL gave no reason"


# --- mode overviews of a byte band, computed here -------------------------------------------------

_GDT_BYTE, _GF_READ, _GF_WRITE = 1, 0, 1
_STRIP_ROWS = 256  # overview rows computed at a time


def windows(n_src: int, n_dst: int) -> tuple[np.ndarray, np.ndarray]:
    """First and past-the-end source cells under each of ``n_dst`` overview cells along one
    axis, as GDAL's overview resampling takes them: where ``n_src / n_dst`` is not whole (an
    odd size halved), windows are 3 cells wide at a stride of about 2."""
    ratio = n_src / n_dst
    k = np.arange(n_dst, dtype=np.float64)
    start = np.floor(k * ratio + 1e-8).astype(np.int64)
    end = np.ceil((k + 1) * ratio - 1e-8).astype(np.int64)
    end = np.where(end == start, end + 1, end)
    return start, np.minimum(end, n_src)


@numba.njit(cache=True, nogil=True)
def _mode_cell(src, y0, y1, x0, x1, nodata, count):
    # the most frequent value but nodata in src[y0:y1, x0:x1]; a tie goes to the value that
    # reached the top count first in raster order (GDAL's rule for byte bands); nodata if none
    best, top = -1, 0
    for y in range(y0, y1):
        for x in range(x0, x1):
            v = src[y, x]
            if v != nodata:
                count[v] += 1
                if count[v] > top:
                    top = count[v]
                    best = v
    for y in range(y0, y1):
        for x in range(x0, x1):
            count[src[y, x]] = 0
    return nodata if best < 0 else best


@numba.njit(cache=True, nogil=True)
def _mode(src, row0, ys, ye, xs, xe, nodata, out):
    # out[i, j] = _mode_cell over the window (rows counted from row0). Most windows of a zone
    # raster hold one value: windows up to 3 x 3 are first compared with their first cell
    # (9 loads, no branch), and only the others are counted
    count = np.zeros(256, np.int64)
    for i in range(out.shape[0]):
        y0, y1 = ys[i] - row0, ye[i] - row0
        r0 = src[y0]
        r1 = src[y0 + 1] if y1 - y0 > 1 else r0
        r2 = src[y0 + 2] if y1 - y0 > 2 else r1
        small = y1 - y0 <= 3
        o = out[i]
        for j in range(out.shape[1]):
            x0, x2 = xs[j], xe[j] - 1
            x1 = x0 + 1 if x2 > x0 else x0
            a = r0[x0]
            same = (
                (r0[x1] == a)
                & (r0[x2] == a)
                & (r1[x0] == a)
                & (r1[x1] == a)
                & (r1[x2] == a)
                & (r2[x0] == a)
                & (r2[x1] == a)
                & (r2[x2] == a)
            )
            if same and small and x2 - x0 <= 2:
                o[j] = a  # nodata if every cell is nodata, as the count gives
            else:
                o[j] = _mode_cell(src, y0, y1, x0, x2 + 1, nodata, count)


def mode_level(src: np.ndarray, shape: tuple[int, int], *, nodata: int) -> np.ndarray:
    """The overview of the uint8 array ``src`` at ``shape`` by mode resampling: each cell the
    most frequent value but ``nodata`` among the cells under it (:func:`windows`), a tie going
    to the value that reached the count first in raster order; ``nodata`` where all are."""
    src = np.ascontiguousarray(src, dtype=np.uint8)
    ys, ye = windows(src.shape[0], shape[0])
    xs, xe = windows(src.shape[1], shape[1])
    out = np.empty(shape, np.uint8)
    _mode(src, 0, ys, ye, xs, xe, np.uint8(nodata), out)
    return out


def build_mode_overviews(path: str | Path, factors: list[int], *, nodata: int) -> None:
    """Add overviews at ``factors`` (2, 4, …) to band 1 (uint8) of the GeoTIFF at ``path`` by
    mode resampling, each level from the one before it (as GDAL does), computed here a strip
    of rows at a time (:func:`mode_level`) into the levels GDAL allocates.

    GDAL's mode clears a 256-entry table for each overview cell: 1.9 CPU-s for the first
    level of a 10 000² raster, against 0.35 s here, without the GIL either way. The sizes, the
    cells under each overview cell and the rule for ties are GDAL's. GDAL also cuts the
    windows at the first row of each chunk it processes (every 512th overview row when a size
    is odd), so there, and only there, a cell can differ from GDAL's (346 of 23 M cells of that
    10 000² raster's first level). Memory: a strip of the level below.
    Raises ``OSError`` naming the file when GDAL fails. Where the ``ctypes`` route is not
    available (see the module), GDAL's own mode is used.
    """
    factors = [int(f) for f in factors]
    if not factors:
        return
    api = _gdal()
    if api is None:
        with rasterio.open(path, "r+") as dst:
            dst.build_overviews(factors, Resampling.mode)
        return
    _fill_mode(api, path, factors, int(nodata))


@ensure_env
def _fill_mode(api: SimpleNamespace, path, factors: list[int], nodata: int) -> None:
    with _updating(api, path) as handle:
        _add_levels(api, handle, path, factors, b"NONE")  # allocated, not computed
        band = api.band(handle, 1)
        below = band
        for k in range(api.overview_count(band)):
            level = api.overview(band, k)
            _fill_level(api, path, below, level, nodata)
            below = level


def _fill_level(api: SimpleNamespace, path, below, level, nodata: int) -> None:
    sw, sh = api.x_size(below), api.y_size(below)
    w, h = api.x_size(level), api.y_size(level)
    ys, ye = windows(sh, h)
    xs, xe = windows(sw, w)
    for i0 in range(0, h, _STRIP_ROWS):
        i1 = min(i0 + _STRIP_ROWS, h)
        r0, r1 = int(ys[i0]), int(ye[i1 - 1])
        src = np.empty((r1 - r0, sw), np.uint8)
        _raster_io(api, path, below, _GF_READ, r0, src)
        out = np.empty((i1 - i0, w), np.uint8)
        _mode(src, r0, ys[i0:i1], ye[i0:i1], xs, xe, np.uint8(nodata), out)
        _raster_io(api, path, level, _GF_WRITE, i0, out)


def _raster_io(api: SimpleNamespace, path, band, flag: int, row: int, buf: np.ndarray) -> None:
    """Read or write the rows ``row…`` of ``band`` (full width) from or into ``buf``."""
    h, w = buf.shape
    failed = api.raster_io(band, flag, 0, row, w, h, buf.ctypes.data, w, h, _GDT_BYTE, 0, 0)
    if failed >= _CE_FAILURE:
        what = "read" if flag == _GF_READ else "written"
        raise OSError(f"{path}: overviews could not be {what}: {_message(api)}")
