"""Raster to polygons: cells of equal value become one (multi)polygon per value.

Blocks are vectorised one at a time and the pieces of a value that touch a block seam are
merged with those of the neighbouring blocks, so a chunked run gives the same polygons as an
unchunked one: no seam lines, no extra vertices (see :func:`vectorize`).
Polygons are traced in cell coordinates (integers, exact), merged there, and only then put on
the grid by its affine transform, so every vertex is computed the same way for any chunking.
"""

from __future__ import annotations

from collections import defaultdict

import dask
import dask.array as da
import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from rasterio.features import shapes

from ecoplan.grid import Grid

__all__ = ["vectorize", "block_pieces"]


def _polygon(rings: list) -> shapely.Polygon:
    # faster than shapely.geometry.shape() for GeoJSON-like polygons
    shell = shapely.linearrings(np.asarray(rings[0], dtype=np.float64))
    holes = [shapely.linearrings(np.asarray(r, dtype=np.float64)) for r in rings[1:]]
    return shapely.polygons(shell, holes or None)


def block_pieces(
    values: np.ndarray,
    mask: np.ndarray,
    *,
    row_off: int = 0,
    col_off: int = 0,
    seams: tuple[bool, bool, bool, bool] = (False, False, False, False),
) -> dict[int, tuple[list, list]]:
    """Polygons of one block per value, in cell coordinates, as ``(final, seam)`` lists. Halo: 0.

    ``seams`` says which sides of the block (top, bottom, left, right) border another block.
    ``seam`` pieces touch such a side and must be merged with the neighbours' pieces; ``final``
    pieces are whole polygons already.
    """
    if values.dtype not in (np.uint8, np.uint16, np.int16, np.int32):
        values = values.astype(np.int32)
    transform = Affine.translation(col_off, row_off)
    raw: dict[int, list] = defaultdict(list)
    for geom, value in shapes(values, mask=mask.astype(bool), transform=transform, connectivity=4):
        raw[int(value)].append(_polygon(geom["coordinates"]))
    h, w = values.shape
    top, bottom, left, right = seams
    out = {}
    for value, geoms in raw.items():
        arr = np.asarray(geoms, dtype=object)
        xmin, ymin, xmax, ymax = shapely.bounds(arr).T
        seam = (
            (top & (ymin <= row_off))
            | (bottom & (ymax >= row_off + h))
            | (left & (xmin <= col_off))
            | (right & (xmax >= col_off + w))
        )
        out[value] = (list(arr[~seam]), list(arr[seam]))
    return out


def _merge(final: list, seam: list, transform: Affine) -> shapely.MultiPolygon:
    polys = list(final)
    if seam:
        merged = shapely.union_all(seam)
        # vertices where a block seam crossed a straight edge are collinear: drop them
        merged = shapely.simplify(merged, 0)
        polys += [g for g in shapely.get_parts(merged) if g.geom_type == "Polygon"]
    polys = shapely.normalize(np.asarray(polys, dtype=object))
    order = np.lexsort(shapely.bounds(polys).T[[2, 3, 0, 1]]) if len(polys) else []
    polys = polys[order]
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
    matrix = np.array([[a, b], [d, e]])
    offset = np.array([c, f])
    on_grid = shapely.transform(polys, lambda xy: xy @ matrix.T + offset)
    # a negative y scale (north-up rasters) reverses ring orientation: normalise again
    return shapely.MultiPolygon(list(shapely.normalize(on_grid)))


def _vector_chunks(chunks: tuple, block_size: int) -> tuple:
    """Chunks of at least ``block_size`` cells made of whole computing chunks."""
    out = []
    for axis in chunks:
        merged, size = [], 0
        for c in axis:
            size += c
            if size >= block_size:
                merged.append(size)
                size = 0
        if size:
            merged.append(size)
        out.append(tuple(merged))
    return tuple(out)


def vectorize(
    values: np.ndarray | da.Array,
    grid: Grid,
    *,
    mask: np.ndarray | da.Array | None = None,
    block_size: int = 4096,
) -> gpd.GeoDataFrame:
    """One dissolved MultiPolygon per value where ``mask`` is true (default: ``values != 0``).

    Pixel edges are followed exactly (4-connected): polygon area = pixel count × pixel area.
    ``values`` may be a numpy array or a dask array (vectorised block by block, in parallel,
    in blocks of at least ``block_size`` cells a side made of whole dask chunks).
    Parts are normalised and sorted, so the result does not depend on the chunking.
    Returns columns ``value`` and ``geometry``, sorted by value.
    """
    if mask is None:
        mask = values != 0
    if isinstance(values, da.Array):
        # larger blocks than the computing chunks: fewer pieces to merge across seams
        values = values.rechunk(_vector_chunks(values.chunks, block_size))
        mask = mask if isinstance(mask, da.Array) else da.from_array(mask, chunks=values.chunks)
        mask = mask.rechunk(values.chunks)
        offsets = [np.cumsum((0, *c[:-1])) for c in values.chunks]
        nr, nc = len(offsets[0]), len(offsets[1])
        v_blocks, m_blocks = values.to_delayed(), mask.to_delayed()
        tasks = [
            dask.delayed(block_pieces)(
                v_blocks[i, j],
                m_blocks[i, j],
                row_off=int(offsets[0][i]),
                col_off=int(offsets[1][j]),
                seams=(i > 0, i < nr - 1, j > 0, j < nc - 1),
            )
            for i in range(nr)
            for j in range(nc)
        ]
        parts = dask.compute(*tasks)
    else:
        parts = [block_pieces(np.asarray(values), np.asarray(mask))]
    final: dict[int, list] = defaultdict(list)
    seam: dict[int, list] = defaultdict(list)
    for part in parts:
        for value, (done, joined) in part.items():
            final[value].extend(done)
            seam[value].extend(joined)
    rows = [
        {"value": v, "geometry": _merge(final[v], seam[v], grid.transform)} for v in sorted(final)
    ]
    return gpd.GeoDataFrame(rows, columns=["value", "geometry"], geometry="geometry", crs=grid.crs)
