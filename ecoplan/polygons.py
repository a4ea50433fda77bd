"""Raster to polygons: cells of equal value become one (multi)polygon per value.

Blocks are vectorised one at a time (each with its own offset transform) and the pieces of a
value are merged across block seams with a coverage union, so a chunked run gives the same
polygons as an unchunked one: no seam lines, no extra vertices (see :func:`vectorize`).
"""

from __future__ import annotations

from collections import defaultdict

import dask
import dask.array as da
import geopandas as gpd
import numpy as np
import shapely
from rasterio.features import shapes
from shapely.geometry import shape

from ecoplan.grid import Grid

__all__ = ["vectorize", "block_pieces"]


def block_pieces(
    values: np.ndarray, mask: np.ndarray, grid: Grid, *, row_off: int = 0, col_off: int = 0
) -> dict[int, list]:
    """Polygons of one block, per value, in grid coordinates (4-connected). Halo: 0."""
    if values.dtype not in (np.uint8, np.uint16, np.int16, np.int32):
        values = values.astype(np.int32)
    transform = grid.window_transform(row_off, col_off)
    pieces: dict[int, list] = defaultdict(list)
    for geom, value in shapes(values, mask=mask.astype(bool), transform=transform, connectivity=4):
        pieces[int(value)].append(shape(geom))
    # Edges on the block's border get a vertex at every cell corner, so that pieces of
    # neighbouring blocks share their seam vertices exactly (a coverage union needs that), and
    # every coordinate is snapped to 1/1000 of a cell so equal corners are bit-for-bit equal.
    p = grid.pixel_size_m
    h, w = values.shape
    x0, y1 = transform.c, transform.f
    x1, y0 = x0 + transform.a * w, y1 + transform.e * h
    out = {}
    for value, geoms in pieces.items():
        arr = np.asarray(geoms, dtype=object)
        xmin, ymin, xmax, ymax = shapely.bounds(arr).T
        eps = p * 1e-6
        seam = (xmin <= x0 + eps) | (xmax >= x1 - eps) | (ymin <= y0 + eps) | (ymax >= y1 - eps)
        if seam.any():
            arr[seam] = shapely.segmentize(arr[seam], p)
        out[value] = list(shapely.set_precision(arr, p * 1e-3))
    return out


def _merge(pieces: list) -> shapely.MultiPolygon:
    merged = shapely.coverage_union_all(pieces)
    # vertices where a block seam crossed a straight edge are collinear: drop them
    merged = shapely.simplify(merged, 0)
    polys = [shapely.normalize(g) for g in shapely.get_parts(merged) if g.geom_type == "Polygon"]
    polys.sort(key=lambda g: (g.bounds[1], g.bounds[0], g.bounds[3], g.bounds[2]))
    return shapely.MultiPolygon(polys)


def vectorize(
    values: np.ndarray | da.Array,
    grid: Grid,
    *,
    mask: np.ndarray | da.Array | None = None,
) -> gpd.GeoDataFrame:
    """One dissolved MultiPolygon per value where ``mask`` is true (default: ``values != 0``).

    Pixel edges are followed exactly (4-connected): polygon area = pixel count × pixel area.
    ``values`` may be a numpy array or a dask array (vectorised block by block). Parts are
    normalised and sorted, so the result does not depend on the chunking.
    Returns columns ``value`` and ``geometry``, sorted by value.
    """
    if mask is None:
        mask = values != 0
    if isinstance(values, da.Array):
        mask = mask if isinstance(mask, da.Array) else da.from_array(mask, chunks=values.chunks)
        mask = mask.rechunk(values.chunks)
        offsets = [np.cumsum((0, *c[:-1])) for c in values.chunks]
        tasks = []
        v_blocks = values.to_delayed()
        m_blocks = mask.to_delayed()
        for i, r0 in enumerate(offsets[0]):
            for j, c0 in enumerate(offsets[1]):
                tasks.append(
                    dask.delayed(block_pieces)(
                        v_blocks[i, j], m_blocks[i, j], grid, row_off=int(r0), col_off=int(c0)
                    )
                )
        parts = dask.compute(*tasks)
    else:
        parts = [block_pieces(values, np.asarray(mask), grid)]
    pieces: dict[int, list] = defaultdict(list)
    for part in parts:
        for value, geoms in part.items():
            pieces[value].extend(geoms)
    rows = [{"value": v, "geometry": _merge(pieces[v])} for v in sorted(pieces)]
    return gpd.GeoDataFrame(rows, columns=["value", "geometry"], geometry="geometry", crs=grid.crs)
