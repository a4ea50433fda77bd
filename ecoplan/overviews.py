"""Overviews of a GeoTIFF, built by GDAL without holding Python's GIL.

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

import ctypes
import os
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import rasterio
from rasterio.enums import Resampling
from rasterio.env import ensure_env

__all__ = ["build_overviews"]

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
    api.reset()
    flags = _OF_UPDATE | _OF_RASTER | _OF_VERBOSE_ERROR
    handle = api.open(os.fsencode(path), flags, None, None, None)
    if not handle:
        raise OSError(f"{path}: cannot be opened for update: {_message(api)}")
    try:
        levels = (ctypes.c_int * len(factors))(*factors)
        method = resampling.name.upper().encode("ascii")
        failed = api.build(handle, method, len(factors), levels, 0, None, None, None)
        if failed >= _CE_FAILURE:
            raise OSError(f"{path}: overviews could not be built: {_message(api)}")
    finally:
        api.reset()
        api.close(handle)  # flushes the file: a failure there is read below
    if api.error_type() >= _CE_FAILURE:
        raise OSError(f"{path}: overviews could not be written: {_message(api)}")


def _message(api: SimpleNamespace) -> str:
    text = api.error()
    return text.decode("utf-8", "replace") if text else "GDAL gave no reason"
