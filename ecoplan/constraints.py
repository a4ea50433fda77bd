"""Constraints beyond buffers: exclusion layers that forbid zones.

A constraint rule (``constraints:`` in the rules file) marks cells where some zones are not
allowed: inside a vector role's polygons (protected areas, flood-prone land …), where a raster
is above a threshold or holds given values (a flood-depth raster …), or where the slope of the
region's DEM is steeper than a threshold. Slope is computed on the working grid, in metres
(Horn's 3 × 3 method, halo 1), after the DEM is resampled bilinearly onto the grid.

Together with the buffer rules they give, per cell, the set of forbidden zones as a bit mask
(bit ``z`` set = zone code ``z`` forbidden), which the allocation respects, and the
``conflicts`` rows of land already in a forbidden zone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import geopandas as gpd
import numpy as np
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from ecoplan.buffers import BufferResult
from ecoplan.errors import InputError
from ecoplan.grid import Grid
from ecoplan.io import RasterInfo, _transformer, open_raster, rasterize_on_grid, read_vector
from ecoplan.rules import ConstraintRule
from ecoplan.zones import MAX_CODE, zone_code

__all__ = [
    "ConstraintResult",
    "values_on_grid",
    "slope_block",
    "slope_deg",
    "constraint_mask",
    "apply_constraints",
    "forbidden_bits",
    "zone_bit",
    "read_constraint_inputs",
]


def zone_bit(code: int) -> int:
    """The bit of zone code ``code`` in a forbidden-zones mask (uint8)."""
    return 1 << code


@dataclass(frozen=True)
class ConstraintResult:
    """A constraint rule on the grid: ``mask`` (uint8 1 where the rule holds, else 0)."""

    rule: ConstraintRule
    mask: da.Array


# -- raster values on the working grid (I/O: reads the raster block by block) -----------------


def values_on_grid(info: RasterInfo, grid: Grid, *, chunks) -> da.Array:
    """Band 1 of a raster resampled bilinearly onto ``grid`` as lazy float64; NaN = no data.

    Each grid pixel centre is transformed exactly into the source (as
    :func:`ecoplan.io.source_pixels`), so the value of a pixel does not depend on the chunk
    size. Where some of the four source neighbours are nodata, the valid ones are weighted.
    """
    path = str(info.path)

    def read_block(block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        out = np.full((r1 - r0, c1 - c0), np.nan)
        # source position of each centre, in pixel units from the source's pixel-centre lattice
        fr, fc = _fractional_position(grid, info, r0, r1, c0, c1)
        row, col = np.floor(fr + 0.5), np.floor(fc + 0.5)  # the pixel holding the centre
        inside = (row >= 0) & (row < info.height) & (col >= 0) & (col < info.width)
        if not inside.any():
            return out
        i0 = np.floor(fr).astype(np.int64)
        j0 = np.floor(fc).astype(np.int64)
        rmin = int(max(i0[inside].min(), 0))
        rmax = int(min(i0[inside].max() + 2, info.height))
        cmin = int(max(j0[inside].min(), 0))
        cmax = int(min(j0[inside].max() + 2, info.width))
        try:
            with rasterio.open(path) as src:
                data = src.read(1, window=Window(cmin, rmin, cmax - cmin, rmax - rmin), masked=True)
        except RasterioIOError as err:
            raise InputError(f"{path}: cannot read pixels ({err}); is the file complete?") from err
        vals = np.ma.filled(data.astype(np.float64), np.nan)
        wr = fr - i0
        wc = fc - j0
        acc = np.zeros(out.shape)
        wsum = np.zeros(out.shape)
        for di, wi in ((0, 1 - wr), (1, wr)):
            for dj, wj in ((0, 1 - wc), (1, wc)):
                ii = np.clip(i0 + di, 0, info.height - 1) - rmin
                jj = np.clip(j0 + dj, 0, info.width - 1) - cmin
                ok = inside & (ii >= 0) & (ii < vals.shape[0]) & (jj >= 0) & (jj < vals.shape[1])
                v = np.full(out.shape, np.nan)
                v[ok] = vals[ii[ok], jj[ok]]
                w = wi * wj
                good = ok & ~np.isnan(v)
                acc[good] += w[good] * v[good]
                wsum[good] += w[good]
        has = inside & (wsum > 0)
        out[has] = acc[has] / wsum[has]
        return out

    token = hashlib.sha1(f"values{path}{grid}".encode()).hexdigest()
    return da.map_blocks(
        read_block,
        chunks=da.core.normalize_chunks(chunks, grid.shape),
        dtype=np.float64,
        meta=np.empty((0, 0), np.float64),
        name=f"values-{token}",
    )


def _fractional_position(grid: Grid, info: RasterInfo, r0, r1, c0, c1):
    """Row and column of each grid pixel centre in source pixel-centre coordinates (floats)."""
    cols = np.arange(c0, c1, dtype=np.float64) + 0.5
    rows = np.arange(r0, r1, dtype=np.float64) + 0.5
    t = grid.transform
    x, y = np.meshgrid(t.c + t.a * cols, t.f + t.e * rows)
    if info.crs != grid.crs:
        x, y = _transformer(grid.crs, info.crs).transform(x, y)
    inv = ~info.transform
    col = inv.a * x + inv.b * y + inv.c - 0.5
    row = inv.d * x + inv.e * y + inv.f - 0.5
    return row, col


# -- slope ------------------------------------------------------------------------------------


def slope_block(dem: np.ndarray, *, pixel_size_m: float) -> np.ndarray:
    """Slope in degrees by Horn's method (as ``gdaldem slope``) with a square pixel. Halo: 1.

    ``dz/dx = ((c + 2f + i) − (a + 2d + g)) / (8 p)``, ``dz/dy = ((g + 2h + i) − (a + 2b + c)) /
    (8 p)`` over the 3 × 3 window ``a b c / d e f / g h i``; slope = atan(√(dz/dx² + dz/dy²)).
    Missing neighbours (NaN, or outside the array) take the centre's value; a NaN centre gives
    NaN. Range 0–90°.
    """
    z = np.asarray(dem, dtype=np.float64)
    p = np.pad(z, 1, constant_values=np.nan)
    centre = p[1:-1, 1:-1]

    def nb(di, dj):
        v = p[1 + di : p.shape[0] - 1 + di, 1 + dj : p.shape[1] - 1 + dj]
        return np.where(np.isnan(v), centre, v)

    a, b, c = nb(-1, -1), nb(-1, 0), nb(-1, 1)
    d, f = nb(0, -1), nb(0, 1)
    g, h, i = nb(1, -1), nb(1, 0), nb(1, 1)
    dzdx = ((c + 2 * f + i) - (a + 2 * d + g)) / (8 * pixel_size_m)
    dzdy = ((g + 2 * h + i) - (a + 2 * b + c)) / (8 * pixel_size_m)
    return np.degrees(np.arctan(np.hypot(dzdx, dzdy)))


def slope_deg(dem: da.Array, *, grid: Grid) -> da.Array:
    """Slope in degrees of a DEM already on the working grid (lazy, chunk-invariant)."""
    return dem.map_overlap(
        slope_block,
        depth=1,
        boundary=np.nan,
        trim=True,
        dtype=np.float64,
        pixel_size_m=grid.pixel_size_m,
    )


# -- constraint rules on the grid ---------------------------------------------------------------


def constraint_mask(
    rule: ConstraintRule,
    *,
    grid: Grid,
    chunks,
    vectors: dict[str, gpd.GeoSeries],
    rasters: dict[str, da.Array],
) -> da.Array | None:
    """uint8 mask (1 where the rule holds) of one rule; None when its input is not given.

    ``vectors`` maps vector roles to geometries in the working CRS; ``rasters`` maps raster
    roles (and ``path:<file>`` keys) to float arrays already on the grid (NaN = no data).
    """
    if rule.layer is not None:
        geoms = vectors.get(rule.layer)
        if geoms is None or len(geoms) == 0:
            return None
        return rasterize_on_grid(
            list(geoms), np.ones(len(geoms), dtype=np.uint8), grid, chunks=chunks, dtype=np.uint8
        )
    if rule.slope_above_deg is not None:
        dem = rasters.get("dem")
        if dem is None:
            return None
        return (slope_deg(dem, grid=grid) > rule.slope_above_deg).astype(np.uint8)
    key = rule.raster if rule.raster is not None else f"path:{rule.path}"
    values = rasters.get(key)
    if values is None:
        return None
    if rule.above is not None:
        hit = values > rule.above
    else:
        hit = da.isin(values, np.asarray(rule.values, dtype=np.float64))
    return hit.astype(np.uint8)


def apply_constraints(
    rules: list[ConstraintRule],
    *,
    grid: Grid,
    chunks,
    vectors: dict[str, gpd.GeoSeries],
    rasters: dict[str, da.Array],
    inside: da.Array,
) -> tuple[list[ConstraintResult], list[str]]:
    """Every constraint rule on the grid (restricted to ``inside`` > 0), and notes on skips."""
    results, notes = [], []
    for rule in rules:
        mask = constraint_mask(rule, grid=grid, chunks=chunks, vectors=vectors, rasters=rasters)
        if mask is None:
            what = "dem" if rule.slope_above_deg is not None else rule.describe()
            notes.append(f"constraint {rule.id}: skipped, the region gives no {what!r} input")
            continue
        results.append(ConstraintResult(rule, da.where(inside > 0, mask, 0).astype(np.uint8)))
    return results, notes


def forbidden_bits(
    buffers: list[BufferResult], constraints: list[ConstraintResult], *, like: da.Array
) -> da.Array:
    """uint8 bit mask of the zones forbidden in each cell by buffers and constraints.

    Bit ``z`` (``1 << z``) is set where zone code ``z`` may not be: inside a ring of a buffer
    rule that restricts it, or where a constraint that forbids it holds.
    """
    out = da.zeros(like.shape, dtype=np.uint8, chunks=like.chunks)
    for b in buffers:
        bits = _bits(b.rule.restricted_zones)
        if bits:
            out = out | da.where(b.rings.rechunk(like.chunks) > 0, np.uint8(bits), np.uint8(0))
    for c in constraints:
        bits = _bits(c.rule.forbids)
        out = out | da.where(c.mask.rechunk(like.chunks) > 0, np.uint8(bits), np.uint8(0))
    return out.astype(np.uint8)


def _bits(zone_names) -> int:
    bits = 0
    for name in zone_names:
        code = zone_code(name)
        assert code <= MAX_CODE < 8
        bits |= zone_bit(code)
    return bits


def read_constraint_inputs(
    rules: list[ConstraintRule], config, *, grid: Grid, chunks, extra_vectors=(), extra_rasters=()
) -> tuple[dict[str, gpd.GeoSeries], dict[str, da.Array]]:
    """Read the vector roles and rasters the rules need (I/O), on the working grid.

    ``extra_vectors`` and ``extra_rasters`` list further roles (and ``path:<file>`` raster
    keys) wanted, e.g. by the suitability factors. Roles the region does not give are left out.
    """
    vectors: dict[str, gpd.GeoSeries] = {}
    rasters: dict[str, da.Array] = {}
    vector_inputs = config.vector_layers()
    raster_inputs = config.raster_layers()
    wanted_vectors = {r.layer for r in rules if r.layer is not None} | set(extra_vectors)
    wanted_rasters = {r.raster for r in rules if r.raster is not None}
    wanted_rasters |= {"dem" for r in rules if r.slope_above_deg is not None}
    wanted_paths = {r.path for r in rules if r.path is not None}
    for key in extra_rasters:
        if str(key).startswith("path:"):
            wanted_paths.add(Path(str(key)[5:]))
        else:
            wanted_rasters.add(key)
    for role in sorted(wanted_vectors):
        if role in vector_inputs:
            v = vector_inputs[role]
            gdf = read_vector(
                v.path, layer=v.layer, where=v.where, crs=grid.crs, what=role, allow_empty=True
            )
            vectors[role] = gdf.geometry
    for role in sorted(wanted_rasters):
        if role in raster_inputs:
            info = open_raster(raster_inputs[role].path, what=f"{role} raster")
            rasters[role] = values_on_grid(info, grid, chunks=chunks)
    for path in sorted(wanted_paths, key=str):
        info = open_raster(path, what="raster")
        rasters[f"path:{path}"] = values_on_grid(info, grid, chunks=chunks)
    return vectors, rasters
