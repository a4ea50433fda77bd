"""Reading and checking inputs; putting rasters on the working grid.

Only this module and :mod:`ecoplan.export` touch files. Every problem with an input raises
:class:`~ecoplan.errors.InputError` with the file name and what is wrong.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
import shapely
from affine import Affine
from pyproj import CRS as PyprojCRS
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.features import rasterize
from rasterio.windows import Window

from ecoplan.errors import InputError
from ecoplan.grid import Grid

__all__ = [
    "NO_CODE",
    "RasterInfo",
    "sha256_file",
    "open_raster",
    "read_vector",
    "codes_on_grid",
    "rasterize_on_grid",
]

log = logging.getLogger(__name__)

NO_CODE = -1
"""Value of :func:`codes_on_grid` where the source has no data."""

MAX_PIXELS = 50_000_000_000
"""A raster header claiming more pixels than this is refused before anything is allocated."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class RasterInfo:
    """What ecoplan needs to know of a single-band input raster."""

    path: Path
    crs: CRS
    transform: Affine
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        t = self.transform
        xs = (t.c, t.c + t.a * self.width)
        ys = (t.f, t.f + t.e * self.height)
        return (min(xs), min(ys), max(xs), max(ys))

    @property
    def res(self) -> tuple[float, float]:
        return (abs(self.transform.a), abs(self.transform.e))


def _check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(f"{path}: {what} file not found")
    if path.is_dir() and path.suffix.lower() not in (".gdb",):
        raise InputError(f"{path}: is a folder, not a {what} file")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path}: {what} file is empty (0 bytes)")


def open_raster(path: str | Path, *, what: str = "raster") -> RasterInfo:
    """Open a raster and check that ecoplan can use it (readable, georeferenced, sane size)."""
    path = Path(path)
    _check_exists(path, what)
    try:
        with rasterio.open(path) as src:
            info = RasterInfo(
                path=path,
                crs=src.crs,
                transform=src.transform,
                width=src.width,
                height=src.height,
                count=src.count,
                dtype=src.dtypes[0],
                nodata=src.nodata,
            )
    except RasterioIOError as err:
        raise InputError(f"{path}: not a readable raster ({_short(err)})") from err
    if info.crs is None:
        raise InputError(
            f"{path}: {what} has no CRS; assign one first, e.g. "
            f"gdal_edit.py -a_srs EPSG:32647 {path.name}"
        )
    if info.transform.b != 0 or info.transform.d != 0:
        raise InputError(f"{path}: rotated rasters are not supported; warp it north-up first")
    if info.width * info.height > MAX_PIXELS:
        raise InputError(
            f"{path}: header claims {info.width} x {info.height} pixels, more than ecoplan "
            f"accepts ({MAX_PIXELS:,}); the file is probably damaged"
        )
    return info


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text


def read_vector(
    path: str | Path,
    *,
    layer: str | None = None,
    where: str | None = None,
    crs: CRS | None = None,
    what: str = "vector",
    allow_empty: bool = False,
) -> gpd.GeoDataFrame:
    """Read a vector layer, check it, repair invalid geometries and reproject to ``crs``."""
    path = Path(path)
    _check_exists(path, what)
    try:
        layers = pyogrio.list_layers(path)
    except Exception as err:  # pyogrio raises DataSourceError and friends
        raise InputError(f"{path}: not a readable vector file ({_short(err)})") from err
    names = [str(n) for n in layers[:, 0]]
    if layer is not None and layer not in names:
        raise InputError(f"{path}: no layer {layer!r}; layers are: {', '.join(names)}")
    if layer is None and len(names) > 1:
        log.info("%s: %d layers, reading the first (%s)", path, len(names), names[0])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            gdf = pyogrio.read_dataframe(path, layer=layer, where=where)
    except Exception as err:
        msg = _short(err)
        if where:
            raise InputError(f"{path}: cannot read with where={where!r} ({msg})") from err
        raise InputError(f"{path}: cannot read ({msg})") from err
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf.geometry.name not in gdf:
        raise InputError(f"{path}: layer has no geometry column")
    if gdf.crs is None:
        raise InputError(
            f"{path}: {what} layer has no CRS; set one, e.g. "
            f"ogr2ogr -a_srs EPSG:4326 fixed.gpkg {path.name}"
        )
    gdf = gdf[~(gdf.geometry.isna() | gdf.geometry.is_empty)]
    if len(gdf) == 0 and not allow_empty:
        filt = f" matching where={where!r}" if where else ""
        raise InputError(f"{path}: {what} layer has no features{filt}")
    invalid = ~gdf.geometry.is_valid
    if invalid.any():
        n = int(invalid.sum())
        log.warning("%s: repaired %d invalid geometr%s", path, n, "y" if n == 1 else "ies")
        gdf = gdf.copy()
        gdf.loc[invalid, gdf.geometry.name] = shapely.make_valid(gdf.geometry[invalid].values)
    if crs is not None:
        gdf = gdf.to_crs(crs)
    return gdf.reset_index(drop=True)


_local = threading.local()


def _transformer(src_crs: CRS, dst_crs: CRS) -> Transformer:
    """A pyproj transformer per thread (they are not safe to share between threads)."""
    cache = _local.__dict__.setdefault("transformers", {})
    key = (src_crs.to_wkt(), dst_crs.to_wkt())
    if key not in cache:
        cache[key] = Transformer.from_crs(
            PyprojCRS.from_wkt(key[0]), PyprojCRS.from_wkt(key[1]), always_xy=True
        )
    return cache[key]


def source_pixels(
    grid: Grid, info: RasterInfo, r0: int, r1: int, c0: int, c1: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column in the source raster of each pixel centre of a block of ``grid``.

    Each centre is transformed exactly (no approximation), so the answer for a pixel does not
    depend on the block it is computed in. This is nearest-neighbour resampling.
    """
    cols = np.arange(c0, c1, dtype=np.float64) + 0.5
    rows = np.arange(r0, r1, dtype=np.float64) + 0.5
    t = grid.transform
    xs = t.c + t.a * cols
    ys = t.f + t.e * rows
    x, y = np.meshgrid(xs, ys)
    if info.crs != grid.crs:
        x, y = _transformer(grid.crs, info.crs).transform(x, y)
    inv = ~info.transform
    col = np.floor(inv.a * x + inv.b * y + inv.c).astype(np.int64)
    row = np.floor(inv.d * x + inv.e * y + inv.f).astype(np.int64)
    return row, col


def codes_on_grid(info: RasterInfo, grid: Grid, *, chunks: int | tuple[int, int]) -> da.Array:
    """The raster's band 1 resampled (nearest) onto ``grid`` as a lazy int32 dask array.

    Pixels where the source has no data (nodata, outside the source) are :data:`NO_CODE`.
    Each block reads only the source window it needs; the result does not depend on the chunk
    size (see :func:`source_pixels`).
    """
    if np.dtype(info.dtype).kind not in "iu":
        raise InputError(
            f"{info.path}: land cover must hold integer class codes, found {info.dtype}"
        )
    path = str(info.path)

    def read_block(block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        out = np.full((r1 - r0, c1 - c0), NO_CODE, dtype=np.int32)
        row, col = source_pixels(grid, info, r0, r1, c0, c1)
        ok = (row >= 0) & (row < info.height) & (col >= 0) & (col < info.width)
        if not ok.any():
            return out
        rmin, rmax = int(row[ok].min()), int(row[ok].max()) + 1
        cmin, cmax = int(col[ok].min()), int(col[ok].max()) + 1
        window = Window(cmin, rmin, cmax - cmin, rmax - rmin)
        try:
            with rasterio.open(path) as src:
                data = src.read(1, window=window, masked=True)
        except RasterioIOError as err:
            raise InputError(
                f"{path}: cannot read pixels ({_short(err)}); is the file complete?"
            ) from err
        values = np.asarray(data.data, dtype=np.int64)
        mask = np.ma.getmaskarray(data)
        rr, cc = row[ok] - rmin, col[ok] - cmin
        picked = values[rr, cc]
        picked[mask[rr, cc]] = NO_CODE
        out[ok] = picked.astype(np.int32)
        return out

    return da.map_blocks(
        read_block,
        chunks=da.core.normalize_chunks(chunks, grid.shape),
        dtype=np.int32,
        meta=np.empty((0, 0), np.int32),
        name=f"codes-{hashlib.sha1(f'{path}{grid}'.encode()).hexdigest()}",
    )


def rasterize_on_grid(
    geometries: list, values: list[int] | np.ndarray, grid: Grid, *, chunks, dtype=np.int32
) -> da.Array:
    """Burn geometries onto ``grid`` (pixel-centre rule; later geometries win) as a dask array.

    0 where no geometry covers a pixel centre. Each chunk burns only the geometries that touch it.
    """
    geoms = np.asarray(geometries, dtype=object)
    vals = np.asarray(values)
    tree = shapely.STRtree(geoms)
    token = hashlib.sha1(shapely.to_wkb(geoms).tobytes() if len(geoms) else b"").hexdigest()
    token = hashlib.sha1(f"{token}{vals.tobytes()!r}{grid}".encode()).hexdigest()

    def burn(block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        shape = (r1 - r0, c1 - c0)
        t = grid.window_transform(r0, c0)
        box = shapely.box(t.c, t.f + t.e * shape[0], t.c + t.a * shape[1], t.f)
        idx = np.sort(tree.query(box))
        if len(idx) == 0:
            return np.zeros(shape, dtype)
        return rasterize(
            zip(geoms[idx], vals[idx].tolist(), strict=True),
            out_shape=shape,
            transform=t,
            fill=0,
            dtype=dtype,
        )

    return da.map_blocks(
        burn,
        chunks=da.core.normalize_chunks(chunks, grid.shape),
        dtype=dtype,
        meta=np.empty((0, 0), dtype),
        name=f"burn-{token}",
    )
