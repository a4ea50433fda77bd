"""Ground areas of grid cells: the pixel area corrected by the projection's areal scale.

A cell of a projected grid covers ``p²`` m² *on the map*; on the ground (the WGS 84 ellipsoid)
it covers ``p² / s`` where ``s`` is the projection's areal scale factor at the cell
(``pyproj.Proj.get_factors(...).areal_scale``, the ratio map area / ground area). In UTM,
``s = k²`` with the point scale ``k ≈ k0 (1 + x² / (2 ρ ν k0²))`` (``x`` = distance from the
central meridian, ``k0 = 0.9996``): ``s`` is 0.9992 on the central meridian and about 1.0031 at
400 km from it, so ``p²`` alone is off by −0.3 % … +0.08 % on the ground area.

For transverse Mercator grids (UTM and any ``tmerc``), ``s`` is evaluated once per grid column
at the column's centre easting and the grid's middle northing. Because ``k`` depends on ``x``
and only through ``ρ ν`` on the latitude, the relative error of this per-column factor is below
``(x / R)² · 2e² · |Δ sin² φ|``: below 5e-6 (4.1e-6 measured) over latitudes 4.6–20.8° N at up
to 400 km from the central meridian, i.e. all of Thailand (checked in tests).
For any other projected CRS ``s`` is evaluated exactly at every pixel centre. (Projections
defined on a sphere, such as Web Mercator EPSG:3857, give factors relative to that sphere, not
the ellipsoid: about 0.8 % off in Thailand. Use UTM.)

Either way the factor of a pixel depends only on the grid, never on the chunk: area sums do not
depend on the chunk size.
"""

from __future__ import annotations

import functools

import dask
import dask.array as da
import numpy as np
from pyproj import CRS, Proj, Transformer

from ecoplan.grid import Grid
from ecoplan.kernels import pair_column_counts

__all__ = [
    "is_transverse_mercator",
    "column_area_m2",
    "cell_area_block",
    "cell_area_m2",
    "pair_areas_m2",
]


def is_transverse_mercator(grid: Grid) -> bool:
    crs = CRS.from_user_input(grid.crs.to_wkt())
    op = crs.coordinate_operation
    return op is not None and op.method_name.lower().startswith("transverse mercator")


@functools.lru_cache(maxsize=32)
def _proj(wkt: str) -> tuple[Proj, Transformer]:
    crs = CRS.from_wkt(wkt)
    return Proj(crs), Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)


def _areal_scale(grid: Grid, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    proj, to_geo = _proj(grid.crs.to_wkt())
    lon, lat = to_geo.transform(x, y)
    return np.asarray(proj.get_factors(lon, lat).areal_scale, dtype=np.float64)


def column_area_m2(grid: Grid) -> np.ndarray:
    """Ground area (m²) of one cell of each column of a transverse Mercator grid."""
    t = grid.transform
    x = t.c + t.a * (np.arange(grid.width) + 0.5)
    y = np.full(grid.width, t.f + t.e * grid.height / 2)
    return grid.pixel_area_m2 / _areal_scale(grid, x, y)


def cell_area_block(grid: Grid, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Ground area (m²) of each cell of the block rows ``r0:r1``, columns ``c0:c1``."""
    if is_transverse_mercator(grid):
        cols = _column_area_cached(grid)[c0:c1]
        return np.broadcast_to(cols, (r1 - r0, c1 - c0)).copy()
    t = grid.transform
    x, y = np.meshgrid(t.c + t.a * (np.arange(c0, c1) + 0.5), t.f + t.e * (np.arange(r0, r1) + 0.5))
    return grid.pixel_area_m2 / _areal_scale(grid, x, y)


@functools.lru_cache(maxsize=8)
def _column_area_cached(grid: Grid) -> np.ndarray:
    return column_area_m2(grid)


def cell_area_m2(grid: Grid, *, chunks) -> da.Array:
    """Ground area (m²) of every cell, as a lazy float64 array."""

    def block(block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        return cell_area_block(grid, r0, r1, c0, c1)

    return da.map_blocks(
        block,
        chunks=da.core.normalize_chunks(chunks, grid.shape),
        dtype=np.float64,
        meta=np.empty((0, 0), np.float64),
    )


AREA_STEPS = 2**20
"""Cell areas are summed as integers in units of ``pixel_area / AREA_STEPS`` (a relative
rounding of at most 5e-7 per cell), so that a sum does not depend on the order of the blocks,
hence on the chunk size or the scheduler: float sums would differ in their last bits."""


def _pair_area_block(a, b, w, *, n_a: int, n_b: int, unit_m2: float) -> np.ndarray:
    key = a.astype(np.int64) * n_b + b.astype(np.int64)
    steps = np.rint(w.ravel() / unit_m2)
    # a block holds far fewer than 2**33 cells, so these float sums of integers are exact
    sums = np.bincount(key.ravel(), weights=steps, minlength=n_a * n_b)
    return sums.astype(np.int64).reshape(n_a, n_b)


def _pair_area_columns(a, b, *, steps: np.ndarray, n_a: int, n_b: int, block_info=None):
    """As :func:`_pair_area_block` when a cell's area depends on its column only (transverse
    Mercator): pixel counts per (pair, column) times the column's area steps. Same integers."""
    (_, _), (c0, c1) = block_info[0]["array-location"]
    counts = pair_column_counts(a, b, n_a=n_a, n_b=n_b)
    return (counts @ steps[c0:c1]).reshape(n_a, n_b)


def pair_areas_m2(a: da.Array, b: da.Array, *, n_a: int, n_b: int, grid: Grid) -> np.ndarray:
    """Ground area (m²) of every ``(a, b)`` value pair over two aligned arrays on ``grid``."""
    b = b.rechunk(a.chunks)
    unit_m2 = grid.pixel_area_m2 / AREA_STEPS
    # per (pair, column) counts: only while that table stays small (few units and zones)
    if is_transverse_mercator(grid) and n_a * n_b * max(a.chunks[1]) <= 2**22:
        steps = np.rint(_column_area_cached(grid) / unit_m2).astype(np.int64)
        locations = [
            {0: {"array-location": ((0, 0), (int(c0), int(c0 + cw)))}}
            for _ in a.chunks[0]
            for c0, cw in zip(np.cumsum((0, *a.chunks[1][:-1])), a.chunks[1], strict=True)
        ]
        parts = [
            dask.delayed(_pair_area_columns)(x, y, steps=steps, n_a=n_a, n_b=n_b, block_info=loc)
            for x, y, loc in zip(
                a.to_delayed().ravel(), b.to_delayed().ravel(), locations, strict=True
            )
        ]
    else:
        w = cell_area_m2(grid, chunks=a.chunks)
        parts = [
            dask.delayed(_pair_area_block)(x, y, z, n_a=n_a, n_b=n_b, unit_m2=unit_m2)
            for x, y, z in zip(
                a.to_delayed().ravel(), b.to_delayed().ravel(), w.to_delayed().ravel(), strict=True
            )
        ]
    total = np.zeros((n_a, n_b), np.int64)
    for part in dask.compute(*parts):
        total += part
    return total * unit_m2
