"""Reading and checking inputs; putting rasters on the working grid.

Only this module and :mod:`ecoplan.export` touch files. Every problem with an input raises
:class:`~ecoplan.errors.InputError` with the file name and what is wrong.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioIOError
from rasterio.features import rasterize
from rasterio.windows import Window

from ecoplan.errors import InputError
from ecoplan.grid import Grid

__all__ = [
    "NO_CODE",
    "RasterInfo",
    "VectorSummary",
    "sha256_file",
    "open_raster",
    "read_vector",
    "describe_vector",
    "check_layers",
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
    """Open a raster and check that ecoplan can use it.

    Refused with :class:`InputError` naming the file: missing, empty or a folder; not a raster;
    a size header beyond :data:`MAX_PIXELS` (checked before anything is read or allocated); a
    GeoTIFF cut short (a tile or strip ends past the end of the file: a half-finished download);
    no CRS; a rotated grid; a geographic CRS whose bounds are not degrees. Only band 1 is used;
    more bands, or no nodata value, are logged.
    """
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
            if info.width * info.height > MAX_PIXELS:
                raise InputError(
                    f"{path}: header claims {info.width:,} x {info.height:,} pixels, more than "
                    f"ecoplan accepts ({MAX_PIXELS:,}); the file is probably damaged"
                )
            if src.driver == "GTiff":
                _check_tiff_complete(src, path, what)
    except RasterioIOError as err:
        raise InputError(
            f"{path}: not a readable raster ({_short(err)}); the {what} must be a GeoTIFF or "
            "another raster format GDAL reads"
        ) from err
    if info.crs is None:
        raise InputError(
            f"{path}: {what} has no CRS; assign one first, e.g. "
            f"gdal_edit.py -a_srs EPSG:32647 {path.name}"
        )
    if info.transform.b != 0 or info.transform.d != 0:
        raise InputError(f"{path}: rotated rasters are not supported; warp it north-up first")
    if info.transform == Affine.identity():
        raise InputError(
            f"{path}: {what} has no georeferencing (no geotransform); georeference it first"
        )
    if info.crs.is_geographic:
        _check_degrees(info.bounds, path, what)
    if info.count > 1:
        log.warning("%s: %s has %d bands; using band 1", path, what, info.count)
    if info.nodata is None:
        log.info("%s: %s has no nodata value; every value is read as a class code", path, what)
    return info


def _check_degrees(bounds, path: Path, what: str) -> None:
    left, bottom, right, top = bounds
    if not (-180.5 <= left <= right <= 360.5 and -90.5 <= bottom <= top <= 90.5):
        raise InputError(
            f"{path}: {what} says its CRS is geographic (degrees) but its bounds "
            f"({left:.6g}, {bottom:.6g}, {right:.6g}, {top:.6g}) are not degrees; the CRS is "
            "probably wrong (metres labelled as EPSG:4326?); assign the right one"
        )


MAX_BLOCKS_CHECKED = 2_000_000


def _check_tiff_complete(src, path: Path, what: str) -> None:
    """Refuse a GeoTIFF whose band-1 tiles or strips end past the end of the file.

    GDAL exposes each block's offset and size (``BLOCK_OFFSET_x_y`` in the ``TIFF`` metadata
    domain) without reading pixels. A half-downloaded file opens fine and fails only when the
    missing blocks are read, possibly hours later; this finds it at once. Sparse blocks (no
    offset) are legitimate and skipped. For rasters of more than :data:`MAX_BLOCKS_CHECKED`
    blocks only the last block row is checked.
    """
    size = path.stat().st_size
    bh, bw = src.block_shapes[0]
    nx, ny = -(-src.width // bw), -(-src.height // bh)
    rows = range(ny) if nx * ny <= MAX_BLOCKS_CHECKED else range(ny - 1, ny)
    end = 0
    for j in rows:
        for i in range(nx):
            off = src.get_tag_item(f"BLOCK_OFFSET_{i}_{j}", "TIFF", bidx=1)
            if off is None:
                continue
            n = src.get_tag_item(f"BLOCK_SIZE_{i}_{j}", "TIFF", bidx=1)
            end = max(end, int(off) + int(n or 0))
    if end > size:
        raise InputError(
            f"{path}: {what} is incomplete: its data run to byte {end:,} but the file has "
            f"{size:,} bytes (an interrupted download or copy?); fetch the file again"
        )


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text


POLYGONAL = ("Polygon", "MultiPolygon")


def read_vector(
    path: str | Path,
    *,
    layer: str | None = None,
    where: str | None = None,
    crs: CRS | None = None,
    what: str = "vector",
    allow_empty: bool = False,
    polygons_only: bool | None = None,
) -> gpd.GeoDataFrame:
    """Read a vector layer, check it, repair invalid geometries and reproject to ``crs``.

    Refused with :class:`InputError` naming the file and layer: missing, empty, unreadable;
    unknown layer; bad ``where``; no geometry column; no CRS; a geographic CRS whose coordinates
    are not degrees; no features (unless ``allow_empty``); coordinates that cannot be
    reprojected. Handled with a logged warning that counts them: invalid geometries (repaired
    with ``make_valid``); empty geometries (dropped); and, when ``polygons_only`` (default: for
    ``what="boundary"``), features or parts that are not polygons (dropped).
    """
    path = Path(path)
    if polygons_only is None:
        polygons_only = what == "boundary"
    _check_exists(path, what)
    try:
        layers = pyogrio.list_layers(path)
    except Exception as err:  # pyogrio raises DataSourceError and friends
        raise InputError(
            f"{path}: not a readable vector file ({_short(err)}); the {what} must be a "
            "GeoPackage, a shapefile or another vector format GDAL/OGR reads"
        ) from err
    names = [str(n) for n in layers[:, 0]]
    if not names:
        raise InputError(f"{path}: {what} file holds no layer")
    if layer is not None and layer not in names:
        raise InputError(f"{path}: no layer {layer!r}; layers are: {', '.join(names)}")
    if layer is None and len(names) > 1:
        log.warning(
            "%s: %d layers, reading the first (%s); name one with 'layer:'",
            path,
            len(names),
            names[0],
        )
    label = f"{path} (layer {layer or names[0]!r})"
    encoding = _shapefile_encoding(path, layer, label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", UserWarning)
            gdf = pyogrio.read_dataframe(path, layer=layer, where=where, encoding=encoding)
    except Exception as err:
        msg = _short(err)
        if where:
            raise InputError(f"{label}: cannot read with where={where!r} ({msg})") from err
        raise InputError(f"{label}: cannot read ({msg})") from err
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf.geometry.name not in gdf:
        raise InputError(f"{label}: {what} layer has no geometry column (a plain table?)")
    if gdf.crs is None:
        raise InputError(
            f"{label}: {what} layer has no CRS (a shapefile without its .prj?); set one, e.g. "
            f"ogr2ogr -a_srs EPSG:4326 fixed.gpkg {path.name}"
        )
    n_read = len(gdf)
    gdf = gdf[~(gdf.geometry.isna() | gdf.geometry.is_empty)]
    if len(gdf) < n_read:
        n = n_read - len(gdf)
        log.warning("%s: dropped %d feature%s without geometry", label, n, "" if n == 1 else "s")
    if len(gdf) and gdf.crs.is_geographic:
        _check_degrees(tuple(gdf.total_bounds), path, f"{what} layer")
    invalid = ~gdf.geometry.is_valid
    if invalid.any():
        n = int(invalid.sum())
        reason = shapely.is_valid_reason(gdf.geometry[invalid].values[0])
        log.warning(
            "%s: repaired %d invalid geometr%s (first: %s)",
            label,
            n,
            "y" if n == 1 else "ies",
            reason,
        )
        gdf = gdf.copy()
        gdf.loc[invalid, gdf.geometry.name] = shapely.make_valid(gdf.geometry[invalid].values)
    if polygons_only and len(gdf):
        gdf = _keep_polygons(gdf, label, what)
    if len(gdf) == 0 and not allow_empty:
        filt = f" matching where={where!r}" if where else ""
        raise InputError(f"{label}: {what} layer has no features{filt}")
    if crs is not None:
        gdf = gdf.to_crs(crs)
        bad = ~np.isfinite(gdf.geometry.bounds.to_numpy()).all(axis=1)
        if bad.any():
            raise InputError(
                f"{label}: {int(bad.sum())} feature(s) cannot be reprojected to "
                f"{crs.to_string()} (coordinates outside the CRS's area?); check the layer's CRS"
            )
    return gdf.reset_index(drop=True)


def _looks_like_misread_thai(texts: list[str]) -> bool:
    """True when text reads as Thai TIS-620 (cp874) bytes wrongly decoded as Latin-1.

    Every non-ASCII string must turn into Thai letters when its Latin-1 bytes are read as
    cp874, and most characters must be non-ASCII (Thai words are; French or German are not).
    """
    texts = [t for t in texts if not t.isascii()]
    if not texts:
        return False
    letters = non_ascii = 0
    for t in texts:
        try:
            thai = t.encode("latin-1").decode("cp874")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return False
        odd = [c for c in thai if not c.isascii()]
        if not all("\u0e00" <= c <= "\u0e7f" for c in odd):
            return False
        letters += sum(1 for c in t if not c.isspace())
        non_ascii += len(odd)
    return non_ascii >= 0.5 * letters


def _shapefile_encoding(path: Path, layer: str | None, label: str) -> str | None:
    """``"cp874"`` for a shapefile without ``.cpg`` whose text is Thai in TIS-620, else None.

    GDAL reads a ``.dbf`` without a ``.cpg`` (and without a code page in its header) as
    Latin-1, which turns Thai names into ``µÐÇÑ¹µ¡``; field names and ``where`` filters in
    Thai then match nothing. Many Thai agencies' shapefiles are like this.
    """
    if path.suffix.lower() not in (".shp", ".dbf") or path.with_suffix(".cpg").exists():
        return None
    try:
        sample = pyogrio.read_dataframe(path, layer=layer, read_geometry=False, max_features=200)
    except Exception:
        return None  # the real read reports the problem
    texts = [str(c) for c in sample.columns]
    for col in sample.columns:
        if sample[col].dtype == object:
            texts += [v for v in sample[col] if isinstance(v, str)]
    if not _looks_like_misread_thai(texts):
        return None
    log.warning(
        "%s: no .cpg file and its text reads as Thai in TIS-620 (cp874): read as cp874; "
        "add %s containing 874 to say so",
        label,
        path.with_suffix(".cpg").name,
    )
    return "cp874"


def _keep_polygons(gdf: gpd.GeoDataFrame, label: str, what: str) -> gpd.GeoDataFrame:
    """Keep only polygonal features (and the polygonal parts of collections)."""
    geoms = gdf.geometry.values
    kinds = shapely.get_type_id(geoms)
    is_poly = np.isin(kinds, (3, 6))  # Polygon, MultiPolygon
    is_coll = kinds == 7  # GeometryCollection (e.g. from make_valid): keep its polygon parts
    if is_coll.any():
        gdf = gdf.copy()
        for i in np.flatnonzero(is_coll):
            parts = [g for g in shapely.get_parts(geoms[i]) if g.geom_type in POLYGONAL]
            if parts:
                gdf.iloc[i, gdf.columns.get_loc(gdf.geometry.name)] = shapely.union_all(parts)
                is_poly[i] = True
    dropped = int((~is_poly).sum())
    if dropped:
        kinds_found = sorted({g.geom_type for g in gdf.geometry.values[~is_poly]})
        log.warning(
            "%s: ignored %d %s feature%s of the %s (only polygons count)",
            label,
            dropped,
            "/".join(kinds_found),
            "" if dropped == 1 else "s",
            what,
        )
        gdf = gdf[is_poly]
    if len(gdf) == 0:
        raise InputError(f"{label}: {what} layer has no polygons (only {', '.join(kinds_found)})")
    return gdf


@dataclass(frozen=True)
class VectorSummary:
    """What a vector layer holds, after :func:`read_vector`'s checks and repairs."""

    path: Path
    layer: str
    crs: str
    feature_count: int
    geometry_types: tuple[str, ...]
    bounds: tuple[float, float, float, float]  # in the layer's own CRS

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "layer": self.layer,
            "crs": self.crs,
            "feature_count": self.feature_count,
            "geometry_types": list(self.geometry_types),
            "bounds": [round(v, 6) for v in self.bounds],
        }


def describe_vector(
    path: str | Path,
    *,
    layer: str | None = None,
    where: str | None = None,
    what: str = "vector",
    allow_empty: bool = True,
) -> VectorSummary:
    """Read a vector layer with every check of :func:`read_vector` and summarise it."""
    path = Path(path)
    gdf = read_vector(path, layer=layer, where=where, what=what, allow_empty=allow_empty)
    name = layer if layer is not None else str(pyogrio.list_layers(path)[0, 0])
    crs = gdf.crs
    epsg = crs.to_epsg() if crs is not None else None
    return VectorSummary(
        path=path,
        layer=name,
        crs=f"EPSG:{epsg}" if epsg else (crs.to_string() if crs is not None else ""),
        feature_count=len(gdf),
        geometry_types=tuple(sorted(set(gdf.geom_type))) if len(gdf) else (),
        bounds=tuple(float(v) for v in gdf.total_bounds) if len(gdf) else (0.0, 0.0, 0.0, 0.0),
    )


def check_layers(
    vectors: Mapping[str, Any], rasters: Mapping[str, Any] | None = None
) -> dict[str, VectorSummary | RasterInfo]:
    """Open every layer a region names (by role), with all checks; the first problem raises.

    ``vectors`` and ``rasters`` map a role to an object with ``path`` (and for vectors
    ``layer`` and ``where``), such as :class:`ecoplan.region.VectorInput`. An empty vector layer
    is allowed (a rule that reads it is skipped with a note); a missing or broken one is not.
    """
    out: dict[str, VectorSummary | RasterInfo] = {}
    for role, v in vectors.items():
        out[role] = describe_vector(v.path, layer=v.layer, where=v.where, what=role)
    for role, r in (rasters or {}).items():
        out[role] = open_raster(r.path, what=f"{role} raster")
    return out


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


def _axis_pixels(grid: Grid, info: RasterInfo, r0, r1, c0, c1) -> tuple[np.ndarray, np.ndarray]:
    """Source row of each grid row and source column of each grid column (same CRS only).

    With one CRS and north-up transforms the source column of a pixel depends on its column
    alone (and the row on its row), so this gives exactly :func:`source_pixels` on the meshgrid.
    """
    cols = np.arange(c0, c1, dtype=np.float64) + 0.5
    rows = np.arange(r0, r1, dtype=np.float64) + 0.5
    t = grid.transform
    xs = t.c + t.a * cols
    ys = t.f + t.e * rows
    inv = ~info.transform
    col = np.floor(inv.a * xs + inv.b * 0.0 + inv.c).astype(np.int64)
    row = np.floor(inv.d * 0.0 + inv.e * ys + inv.f).astype(np.int64)
    return row, col


def _separable(grid: Grid, info: RasterInfo) -> bool:
    """True when source rows and columns depend on grid rows and columns alone."""
    g, s = grid.transform, info.transform
    return info.crs == grid.crs and g.b == g.d == 0 and s.b == s.d == 0


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


def _read_window(path: str, rmin: int, rmax: int, cmin: int, cmax: int):
    window = Window(cmin, rmin, cmax - cmin, rmax - rmin)
    try:
        with rasterio.open(path) as src:
            flags = src.mask_flag_enums[0]
            if flags == [MaskFlags.all_valid]:
                data = np.ma.MaskedArray(src.read(1, window=window))
            elif flags == [MaskFlags.nodata]:
                # the mask GDAL would give, without its mask band's second pass over the window
                values = src.read(1, window=window)
                data = np.ma.MaskedArray(values, mask=values == src.nodata)
            else:  # an internal or external mask band, alpha
                data = src.read(1, window=window, masked=True)
    except RasterioIOError as err:
        raise InputError(
            f"{path}: cannot read pixels ({_short(err)}); is the file complete?"
        ) from err
    return data


def _to_codes(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Class codes as int32 (through int64, as the general path), :data:`NO_CODE` under mask."""
    if (
        values.dtype.kind == "u"
        and values.dtype.itemsize <= 2
        or (values.dtype.kind == "i" and values.dtype.itemsize <= 4)
    ):
        out = values.astype(np.int32)
    else:
        out = values.astype(np.int64).astype(np.int32)
    out[mask] = NO_CODE
    return out


def codes_on_grid(info: RasterInfo, grid: Grid, *, chunks: int | tuple[int, int]) -> da.Array:
    """The raster's band 1 resampled (nearest) onto ``grid`` as a lazy int32 dask array.

    Pixels where the source has no data (nodata, outside the source) are :data:`NO_CODE`.
    Each block reads only the source window it needs; the result does not depend on the chunk
    size (see :func:`source_pixels`). When the grid and the source share the CRS the source
    row and column of each pixel are computed per row and per column (the same values); when
    they are also aligned (same pixel size, whole-pixel offset: the common case) the window is
    read and used as it is, without per-pixel indexing.
    """
    if np.dtype(info.dtype).kind not in "iu":
        raise InputError(
            f"{info.path}: land cover must hold integer class codes, found {info.dtype}"
        )
    path = str(info.path)
    separable = _separable(grid, info)

    def read_block(block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        if separable:
            return _read_separable(r0, r1, c0, c1)
        out = np.full((r1 - r0, c1 - c0), NO_CODE, dtype=np.int32)
        row, col = source_pixels(grid, info, r0, r1, c0, c1)
        ok = (row >= 0) & (row < info.height) & (col >= 0) & (col < info.width)
        if not ok.any():
            return out
        rmin, rmax = int(row[ok].min()), int(row[ok].max()) + 1
        cmin, cmax = int(col[ok].min()), int(col[ok].max()) + 1
        data = _read_window(path, rmin, rmax, cmin, cmax)
        values = np.asarray(data.data, dtype=np.int64)
        mask = np.ma.getmaskarray(data)
        rr, cc = row[ok] - rmin, col[ok] - cmin
        picked = values[rr, cc]
        picked[mask[rr, cc]] = NO_CODE
        out[ok] = picked.astype(np.int32)
        return out

    def _read_separable(r0, r1, c0, c1):
        out = np.full((r1 - r0, c1 - c0), NO_CODE, dtype=np.int32)
        row, col = _axis_pixels(grid, info, r0, r1, c0, c1)
        okr = (row >= 0) & (row < info.height)
        okc = (col >= 0) & (col < info.width)
        if not okr.any() or not okc.any():
            return out
        rows, cols = row[okr], col[okc]
        rmin, rmax = int(rows.min()), int(rows.max()) + 1
        cmin, cmax = int(cols.min()), int(cols.max()) + 1
        data = _read_window(path, rmin, rmax, cmin, cmax)
        values, mask = data.data, np.ma.getmaskarray(data)
        rr, cc = rows - rmin, cols - cmin
        if not (np.array_equal(rr, np.arange(len(rr))) and np.array_equal(cc, np.arange(len(cc)))):
            values, mask = values[rr][:, cc], mask[rr][:, cc]  # resampled (another pixel size)
        ri, ci = np.flatnonzero(okr), np.flatnonzero(okc)
        # ok rows and columns are contiguous ranges (source index is monotonic in grid index)
        out[ri[0] : ri[-1] + 1, ci[0] : ci[-1] + 1] = _to_codes(values, mask)
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
        # a block inside the last geometry near it (most blocks of a region): every pixel
        # centre is inside it, and no later geometry comes near, so it is that value
        if shapely.covers(geoms[idx[-1]], box):
            return np.full(shape, vals[idx[-1]], dtype)
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
