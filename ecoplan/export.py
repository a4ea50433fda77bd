"""Writing outputs: the GeoPackage (with QGIS styles), the zone GeoTIFF (with its ``.qml``),
text files such as the report. Every file is written atomically.

A file is first written under a hidden temporary name in the same folder, then renamed over the
final name, so a failed or killed run never leaves a half-written file under a final name and
keeps the previous output intact.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import logging
import os
import re
import shutil
import sqlite3
import sys
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape

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
from ecoplan.overviews import build_mode_overviews
from ecoplan.styles import LayerStyle, category_names, zone_raster_qml
from ecoplan.zones import NODATA, ZONES, colormap

__all__ = [
    "atomic_path",
    "staged_outputs",
    "stale_temp_files",
    "write_geopackage",
    "GeoPackageWriter",
    "write_zone_raster",
    "write_text",
    "check_output_dir",
    "LAYER_STYLES_COLUMNS",
]

LAYER_STYLES_COLUMNS = [
    "f_table_catalog",
    "f_table_schema",
    "f_table_name",
    "f_geometry_column",
    "styleName",
    "styleQML",
    "styleSLD",
    "useAsDefault",
    "description",
    "owner",
    "ui",
    "update_time",
]
"""Columns of the ``layer_styles`` table, as QGIS creates it (its ``id`` is the primary key)."""


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


_staged: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar(
    "ecoplan_staged_outputs", default=None
)


@contextlib.contextmanager
def staged_outputs() -> Iterator[None]:
    """Commit every file written inside the block together, at its end.

    Inside the block :func:`atomic_path` keeps each finished file under its temporary name; when
    the block succeeds they are all renamed to their final names, one after the other; when it
    fails they are all removed, so a run that fails half-way leaves every previous output as it
    was (not a new GeoTIFF beside an old GeoPackage).
    """
    pending: list[tuple[Path, Path]] = []
    token = _staged.set(pending)
    try:
        yield
    except BaseException:
        for tmp, _ in pending:
            _remove(tmp)
        raise
    finally:
        _staged.reset(token)
    for tmp, final in pending:
        os.replace(tmp, final)


def temp_name(final: Path) -> Path:
    """The hidden temporary name of an output while it is written (see :func:`stale_temp_files`)."""
    return final.with_name(f".{final.stem}.tmp-{os.getpid()}-{threading.get_ident()}{final.suffix}")


def stale_temp_files(folder: str | Path, final_names: list[str]) -> list[Path]:
    """Temporary files of killed runs in the output ``folder``.

    :func:`atomic_path` names them ``.<stem>.tmp-<pid>-<thread><suffix>`` (plus GDAL/SQLite side
    files) beside ``final_names``; :mod:`ecoplan.holding` and :func:`ecoplan.spill.hold` keep
    big intermediate rasters in ``.ecoplan-spill-<pid>-<random>.blocks`` files.
    One whose process no longer exists was left by a killed run (a held file can be as large as
    the region's raster).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stems = {Path(n).stem for n in final_names}
    found = []
    for p in sorted(folder.iterdir()):
        m = re.match(r"^\.(.+)\.tmp-(\d+)-\d+", p.name)
        if m and m.group(1) in stems and not _alive(int(m.group(2))):
            found.append(p)
            continue
        m = re.match(r"^\.(?:spill|hold|ecoplan-spill)-(\d+)-", p.name)
        if m and not _alive(int(m.group(1))):
            found.append(p)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` when the block succeeds.

    Inside :func:`staged_outputs` the rename waits for the end of that block.
    """
    final = Path(final)
    tmp = temp_name(final)
    try:
        yield tmp
        pending = _staged.get()
        if pending is None:
            os.replace(tmp, final)
        else:
            pending.append((tmp, final))
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


_PYOGRIO_ERRORS = (
    pyogrio.errors.DataSourceError,
    pyogrio.errors.DataLayerError,
    pyogrio.errors.FeatureError,
    pyogrio.errors.FieldError,
    pyogrio.errors.GeometryError,
    pyogrio.errors.CRSError,
)


def _write_error(path: Path, what: str, err: Exception) -> OSError:
    """An OSError for a failed GDAL write of ``what`` (e.g. ``layer zones``); ENOSPC when the
    disk is (nearly) full."""
    text = str(err)
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    full = (
        "No space left" in text or "disk is full" in text or (free is not None and free < 1 << 20)
    )
    return OSError(errno.ENOSPC if full else errno.EIO, f"{what}: {text}")


class GeoPackageWriter:
    """A new GeoPackage 1.2 written layer by layer, so that each layer can leave memory once
    written; committed atomically (as :func:`atomic_path`) when the ``with`` block succeeds.

    ``add(name, df, style=…)`` writes one layer now: a GeoDataFrame becomes a spatial layer
    (polygons promoted to MultiPolygon), a plain DataFrame an attribute table. The styles
    become the ``layer_styles`` table at the end, one default row per layer, which QGIS reads
    when it opens the layer; ``update_time`` (default: now, UTC) is stamped on the rows.
    """

    batch_vertices = 4_000_000
    """Largest number of vertices encoded at once (a single larger feature is one batch)."""

    def __init__(self, path: str | Path, *, update_time: datetime | None = None):
        self.path = Path(path)
        self.update_time = update_time
        self.styles: dict[str, LayerStyle] = {}
        self.layers: list[str] = []
        self._stack = contextlib.ExitStack()
        self._tmp: Path | None = None

    def __enter__(self) -> GeoPackageWriter:
        self._tmp = self._stack.enter_context(atomic_path(self.path))
        # the file is new and temporary (discarded on any failure), so SQLite need not sync
        # it at each of the layers' transactions (15 ms each); it is synced once, at the end
        self._stack.enter_context(_gdal_config(OGR_SQLITE_SYNCHRONOUS="OFF"))
        return self

    def add(
        self,
        name: str,
        df: pd.DataFrame,
        *,
        style: LayerStyle | None = None,
        also: Mapping[str, LayerStyle | None] | None = None,
    ) -> None:
        """Write ``df`` as layer ``name`` now, in batches of rows of at most
        :attr:`batch_vertices` vertices (so only one batch is encoded at a time).

        Adding to a layer already written appends the rows (same columns): a layer can be
        written in parts, as they are made. ``also`` (layer name: style) writes the very same
        rows to more layers, encoding their geometries once for all (GEOS's WKB writer holds
        the GIL: 0.3–0.55 s for a 10 000² zones layer).
        """
        tmp = self._tmp
        assert tmp is not None, "use GeoPackageWriter in a with block"
        targets = {name: style, **(also or {})}
        for k, part in enumerate(_batches(df, self.batch_vertices)):
            encoded = _encoded(part) if len(targets) > 1 else None
            for layer, layer_style in targets.items():
                new_layer = layer not in self.layers
                if not new_layer and len(df) == 0:
                    continue
                kwargs: dict = {"layer": layer, "driver": "GPKG", "append": tmp.exists()}
                if not tmp.exists():
                    kwargs["dataset_options"] = {"VERSION": "1.2"}
                if isinstance(part, gpd.GeoDataFrame):
                    kwargs["promote_to_multi"] = True
                    kwargs["geometry_type"] = "MultiPolygon"
                if k == 0 and new_layer:
                    kwargs["layer_options"] = {"IDENTIFIER": layer}
                try:
                    if encoded is None:
                        pyogrio.write_dataframe(part, tmp, **kwargs)
                    else:
                        pyogrio.raw.write(tmp, **encoded, **kwargs)
                except _PYOGRIO_ERRORS as err:
                    raise _write_error(tmp, f"layer {layer}", err) from err
                if k == 0 and new_layer:
                    self.layers.append(layer)
                if layer_style is not None:
                    self.styles[layer] = layer_style

    def _write_styles(self) -> None:
        tmp = self._tmp
        table = _layer_styles_table(tmp, self.styles, self.update_time or datetime.now(UTC))
        try:
            pyogrio.write_dataframe(
                table,
                tmp,
                layer="layer_styles",
                driver="GPKG",
                append=True,
                layer_options={"FID": "id", "IDENTIFIER": "layer_styles"},
            )
        except _PYOGRIO_ERRORS as err:
            raise _write_error(tmp, "layer layer_styles", err) from err

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                if self.styles:
                    self._write_styles()
                _sync(self._tmp)
            except BaseException:
                if not self._stack.__exit__(*sys.exc_info()):
                    raise
                return False
        return self._stack.__exit__(exc_type, exc, tb)


@contextlib.contextmanager
def _gdal_config(**options: str) -> Iterator[None]:
    """Set pyogrio's GDAL configuration options inside the block, then restore them."""
    before = {k: pyogrio.get_gdal_config_option(k) for k in options}
    pyogrio.set_gdal_config_options(options)
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options(before)


def _sync(path: Path | None) -> None:
    """Flush a finished file to the disk (before it is renamed to its final name)."""
    if path is None or not path.exists():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encoded(df: pd.DataFrame) -> dict | None:
    """``df`` as :func:`pyogrio.raw.write` takes it, its geometries encoded to WKB once, with
    the fields :func:`pyogrio.write_dataframe` would write; None for the columns that need more
    care (date-times, nullable numbers), which are written the usual way."""
    if not isinstance(df, gpd.GeoDataFrame):
        return None
    import shapely

    geometry = df.geometry
    fields = [c for c in df.columns if c != geometry.name]
    data, mask = [], []
    for c in fields:
        col = df[c]
        if isinstance(col.dtype, pd.StringDtype):  # as pyogrio.write_dataframe writes it
            data.append(np.asarray(col.array))
            mask.append(np.asarray(col.isna()))
        elif (
            isinstance(col.dtype, pd.api.extensions.ExtensionDtype)
            or col.dtype.kind == "M"
            or (col.dtype == object and pd.api.types.infer_dtype(col) not in ("string", "empty"))
        ):
            return None
        else:
            data.append(col.to_numpy())
            mask.append(None)
    crs = None
    if geometry.crs:
        epsg = geometry.crs.to_epsg()
        crs = f"EPSG:{epsg}" if epsg else geometry.crs.to_wkt("WKT1_GDAL")
    return {
        "geometry": shapely.to_wkb(geometry.values),
        "field_data": data,
        "field_mask": mask,
        "fields": fields,
        "crs": crs,
    }


def _batches(df: pd.DataFrame, max_vertices: int) -> Iterator[pd.DataFrame]:
    """Consecutive row ranges of ``df`` of at most ``max_vertices`` vertices (at least one row
    each); an empty or non-spatial frame is one batch."""
    if not isinstance(df, gpd.GeoDataFrame) or len(df) < 2:
        yield df
        return
    import shapely

    n = shapely.get_num_coordinates(df.geometry.values)
    start, total = 0, 0
    for i, v in enumerate(n):
        if i > start and total + v > max_vertices:
            yield df.iloc[start:i]
            start, total = i, 0
        total += int(v)
    yield df.iloc[start:]


def write_geopackage(
    path: str | Path,
    layers: dict[str, pd.DataFrame],
    *,
    styles: Mapping[str, LayerStyle] | None = None,
    update_time: datetime | None = None,
) -> Path:
    """Write tables and layers into one new GeoPackage 1.2 (atomically). Order of ``layers`` is
    kept. See :class:`GeoPackageWriter`; ``styles`` maps a layer name to its style.
    """
    styles = dict(styles or {})
    unknown = sorted(set(styles) - set(layers))
    if unknown:
        raise ValueError(f"styles for layers not written: {', '.join(unknown)}")
    with GeoPackageWriter(path, update_time=update_time) as gpkg:
        for name, df in layers.items():
            gpkg.add(name, df, style=styles.get(name))
    return Path(path)


def _layer_styles_table(
    gpkg: Path, styles: Mapping[str, LayerStyle], update_time: datetime
) -> pd.DataFrame:
    """One default ``layer_styles`` row per styled layer, naming its real geometry column."""
    con = sqlite3.connect(f"file:{gpkg}?mode=ro", uri=True)
    try:
        columns = dict(con.execute("SELECT table_name, column_name FROM gpkg_geometry_columns"))
    finally:
        con.close()
    stamp = pd.Timestamp(update_time)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    rows = []
    for name, style in styles.items():
        if name not in columns:
            raise ValueError(f"layer {name}: has no geometry column, so QGIS cannot style it")
        rows.append(
            {
                "f_table_catalog": "",
                "f_table_schema": "",  # QGIS matches '' exactly; NULL would not be found
                "f_table_name": name,
                "f_geometry_column": columns[name],
                "styleName": name,
                "styleQML": style.qml,
                "styleSLD": style.sld,
                "useAsDefault": True,
                "description": style.description,
                "owner": "",
                "ui": "",
                "update_time": stamp,
            }
        )
    return pd.DataFrame(rows, columns=LAYER_STYLES_COLUMNS)


def write_text(path: str | Path, text: str) -> Path:
    """Write a UTF-8 text file (a report, a ``.qml``) atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_zone_raster(
    path: str | Path,
    zones: da.Array,
    grid: Grid,
    *,
    tags: dict[str, str],
    copy: tuple[str | Path, dict[str, str]] | None = None,
) -> Path:
    """Write the zone raster as a cloud-optimised GeoTIFF: uint8, nodata 0, colour table.

    ``copy``: ``(path, more_tags)`` to write the same raster to a second file from the same
    pass over ``zones`` (the proposed plan when it is today's zones), its tags being ``tags``
    updated with ``more_tags``.

    Blocks are written one at a time into a tiled GeoTIFF, overviews are built on it by mode
    resampling (categories stay categories), then GDAL's COG driver lays it out. Beside it go
    ``<name>.tif.aux.xml`` (GDAL category names, English | Thai) and ``<name>.qml`` (a QGIS
    paletted style with the 8 classes 0-7, which QGIS loads by default; the TIFF's colour table
    alone makes QGIS list 256 entries).
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
        # the work file is read once by the COG driver: uncompressed is fastest; BigTIFF always,
        # as its overviews, added after GDAL's IF_SAFER guess, may take it past 4 GB
        "BIGTIFF": "YES",
    }
    targets = [(path, tags)] + ([(Path(copy[0]), copy[1])] if copy else [])
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(p)) for p, _ in targets]
        work = tmps[0].with_name(tmps[0].name + ".work.tif")
        try:
            with rasterio.open(work, "w", **profile) as dst:
                _store(zones, dst)
                dst.write_colormap(1, colormap())
                dst.colorinterp = [ColorInterp.palette]
                dst.set_band_description(1, "zone")
                dst.update_tags(**tags)
                dst.update_tags(1, **{f"ZONE_{z.code}": f"{z.name} | {z.name_th}" for z in ZONES})
            # overviews by mode once, on the work file; the COG driver lays them out
            # (computed without holding the GIL: the report is drawn meanwhile; a fifth of
            # GDAL's own mode's time, see ecoplan.overviews)
            with _no_palette_warning():
                try:
                    build_mode_overviews(work, _overview_factors(grid.shape, 512), nodata=NODATA)
                except OSError as err:  # e.g. the disk filled up: said as for the other writes
                    raise _write_error(work, "overviews", err) from err
            for k, (tmp, (_, file_tags)) in enumerate(zip(tmps, targets, strict=True)):
                if k:
                    with rasterio.open(work, "r+") as dst:
                        dst.update_tags(**file_tags)
                rasterio.shutil.copy(
                    work,
                    tmp,
                    driver="COG",
                    COMPRESS="DEFLATE",
                    # level 1: a quarter of the default level's time, files about a third larger
                    # (zones compress well either way: 4 MB for 100 Mpx)
                    LEVEL=1,
                    OVERVIEWS="FORCE_USE_EXISTING",
                    BIGTIFF="IF_SAFER",
                    NUM_THREADS="ALL_CPUS",
                )
        finally:
            _remove(work)
    for p, _ in targets:
        write_text(p.with_name(p.name + ".aux.xml"), _pam_categories(category_names()))
        write_text(p.with_suffix(".qml"), zone_raster_qml())
    return path


class _PaletteWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "palette index raster bands without a palette" not in record.getMessage()


@contextlib.contextmanager
def _no_palette_warning():
    """Silence GDAL 3.6's warning that overviews of a palette band "will probably lead to
    unexpected results": it is given even though the band has its colour table, and it does
    not apply to mode resampling, which picks the most frequent class index."""
    logger = logging.getLogger("rasterio._env")
    quiet = _PaletteWarning()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _overview_factors(shape: tuple[int, int], tile: int) -> list[int]:
    """Overview factors 2, 4, 8 … down to the first level that fits in one tile, as the COG
    driver's ``OVERVIEWS=AUTO`` chooses them."""
    factors, f = [], 2
    while max(shape) // (f // 2) > tile:  # sizes rounded down, as GDAL does
        factors.append(f)
        f *= 2
    return factors


def _pam_categories(names: list[str]) -> str:
    """A GDAL PAM sidecar holding the band's category names (GeoTIFF keeps them there)."""
    cats = "".join(f"      <Category>{escape(n)}</Category>\n" for n in names)
    return (
        "<PAMDataset>\n"
        '  <PAMRasterBand band="1">\n'
        "    <CategoryNames>\n"
        f"{cats}"
        "    </CategoryNames>\n"
        "  </PAMRasterBand>\n"
        "</PAMDataset>\n"
    )


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
