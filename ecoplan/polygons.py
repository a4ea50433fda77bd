"""Raster to polygons: cells of equal value become one (multi)polygon per value.

Blocks are traced one at a time (in parallel with dask) by the numba kernels of
:mod:`ecoplan._trace`, each with a 1-cell halo of its neighbours: rings inside a block come out
whole, rings that cross block seams come out as chains cut at the seams, and the chains are
joined once the regions are known across blocks. So a chunked run gives exactly the polygons of
an unchunked one: no seam lines, no extra vertices (see :func:`vectorize`).
Rings are traced in cell coordinates (integers, exact) and only then put on the grid by its
affine transform, so every vertex is computed the same way for any chunking.
"""

from __future__ import annotations

from typing import NamedTuple

import dask
import dask.array as da
import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from ecoplan import _trace
from ecoplan.grid import Grid
from ecoplan.holding import return_freed_memory

__all__ = ["vectorize"]


class _Block(NamedTuple):
    """What :func:`_trace_block` keeps of one block (labels are local to the block)."""

    value: np.ndarray  # value of every label
    coords: np.ndarray  # int32 (n, 2) ring and chain vertices, raster cell coordinates
    rings: np.ndarray  # (start, label, kind, first direction, last direction) per ring
    top: np.ndarray  # labels of the block's first row (-1: no region)
    bottom: np.ndarray
    left: np.ndarray  # labels of the block's first column
    right: np.ndarray


def _trace_block(values: np.ndarray, mask: np.ndarray, row_off: int, col_off: int) -> _Block:
    """Rings and chains of one block given with a 1-cell halo (masked out past the raster).

    Values are compared as int32, as rasterio's polygonizer did (other types were cast).
    """
    msk = np.ascontiguousarray(mask, dtype=np.bool_)
    h, w = msk.shape[0] - 2, msk.shape[1] - 2
    if not msk[1:-1, 1:-1].any():  # nothing to trace (most blocks of a sparse layer)
        return _Block(
            np.empty(0, np.int64),
            np.empty((0, 2), np.int32),
            np.empty((0, 5), np.int64),
            *(np.full(n, -1, np.int32) for n in (w, w, h, h)),
        )
    vals = np.ascontiguousarray(values, dtype=np.int32)
    labels, value, _, coords, rings = _trace.trace_block(vals, msk, row_off, col_off)
    return _Block(
        value,
        coords,
        rings,
        labels[1, 1:-1].copy(),
        labels[-2, 1:-1].copy(),
        labels[1:-1, 1].copy(),
        labels[1:-1, -2].copy(),
    )


def _with_halo(arr: np.ndarray, r0: int, r1: int, c0: int, c1: int, fill) -> np.ndarray:
    """``arr[r0:r1, c0:c1]`` with one more cell on every side (``fill`` past the edges)."""
    h, w = arr.shape
    out = np.full((r1 - r0 + 2, c1 - c0 + 2), fill, dtype=arr.dtype)
    a0, a1, b0, b1 = max(r0 - 1, 0), min(r1 + 1, h), max(c0 - 1, 0), min(c1 + 1, w)
    out[a0 - r0 + 1 : a1 - r0 + 1, b0 - c0 + 1 : b1 - c0 + 1] = arr[a0:a1, b0:b1]
    return out


def _chunk_groups(chunks: tuple[int, ...], block_size: int) -> list[tuple[int, int]]:
    """Runs ``(i0, i1)`` of whole computing chunks, each at least ``block_size`` cells long (the
    last may be shorter)."""
    groups, i0, size = [], 0, 0
    for i, c in enumerate(chunks):
        size += c
        if size >= block_size:
            groups.append((i0, i + 1))
            i0, size = i + 1, 0
    if i0 < len(chunks):
        groups.append((i0, len(chunks)))
    return groups


def _haloed(pieces: list[list[np.ndarray]], top: int, left: int, window: tuple, fill):
    """Cells ``r0:r1, c0:c1`` with one more cell on every side (``fill`` past the raster), cut
    from the computing chunks ``pieces`` whose first cell is (``top``, ``left``)."""
    r0, r1, c0, c1 = window
    first = np.asarray(pieces[0][0])
    out = np.full((r1 - r0 + 2, c1 - c0 + 2), fill, dtype=first.dtype)
    y = top
    for row in pieces:
        x = left
        for piece in row:
            piece = np.asarray(piece)
            h, w = piece.shape
            a0, a1 = max(y, r0 - 1), min(y + h, r1 + 1)
            b0, b1 = max(x, c0 - 1), min(x + w, c1 + 1)
            if a1 > a0 and b1 > b0:
                out[a0 - r0 + 1 : a1 - r0 + 1, b0 - c0 + 1 : b1 - c0 + 1] = piece[
                    a0 - y : a1 - y, b0 - x : b1 - x
                ]
            x += w
        y += h
    return out


def _trace_window(values, mask, top: int, left: int, window: tuple, origin: tuple) -> _Block:
    """:func:`_trace_block` of one block of a dask array, given the computing chunks around it
    (``mask``: its chunks, or None for ``values != 0``)."""
    vals = _haloed(values, top, left, window, 0)
    msk = vals != 0 if mask is None else _haloed(mask, top, left, window, False)
    return _trace_block(vals, msk, origin[0] + window[0], origin[1] + window[2])


def _dask_blocks(
    values: da.Array, mask: da.Array | None, block_size: int, origin: tuple[int, int]
) -> list[list[_Block]]:
    """The traced blocks of a dask array: one task a block of at least ``block_size`` cells a
    side made of whole computing chunks, its one-cell halo cut straight from the neighbouring
    chunks (no rechunk, no overlap graph: a block's task reads at most 16 chunks)."""
    # the tasks are written straight into the graph, with the chunks' keys as arguments:
    # calling a dask.delayed function on the chunks' Delayed objects merged their graphs once
    # a task, 0.3 s of the main thread's time for 25 blocks of a 100-chunk array
    v_keys = _key_grid(values)
    m_keys = None if mask is None else _key_grid(mask)
    starts = [np.cumsum((0, *c)) for c in values.chunks]
    groups = [_chunk_groups(c, block_size) for c in values.chunks]
    n_rows, n_cols = (len(c) for c in values.chunks)
    name = "trace-" + dask.base.tokenize(values, mask, block_size, origin)
    graph, keys = {}, []
    for i0, i1 in groups[0]:
        ia, ib = max(i0 - 1, 0), min(i1 + 1, n_rows)  # the chunk rows the haloed block needs
        for j0, j1 in groups[1]:
            ja, jb = max(j0 - 1, 0), min(j1 + 1, n_cols)
            window = [
                int(starts[0][i0]),
                int(starts[0][i1]),
                int(starts[1][j0]),
                int(starts[1][j1]),
            ]
            key = (name, len(keys))
            graph[key] = (
                _trace_window,
                v_keys[ia:ib, ja:jb].tolist(),
                None if m_keys is None else m_keys[ia:ib, ja:jb].tolist(),
                int(starts[0][ia]),
                int(starts[1][ja]),
                window,
                list(origin),
            )
            keys.append(key)
    deps = [values] if mask is None else [values, mask]
    hlg = HighLevelGraph.from_collections(name, graph, dependencies=deps)
    flat = list(dask.compute(*(Delayed(k, hlg, layer=name) for k in keys)))
    nc = len(groups[1])
    return [flat[k : k + nc] for k in range(0, len(flat), nc)]


def _key_grid(array: da.Array) -> np.ndarray:
    """The keys of a 2-D dask array's chunks, as an object array of (name, i, j) tuples."""
    keys = array.__dask_keys__()
    grid = np.empty((len(keys), len(keys[0]) if keys else 0), dtype=object)
    for i, row in enumerate(keys):
        for j, key in enumerate(row):
            grid[i, j] = key
    return grid


def _regions(blocks: list[list[_Block]]) -> tuple[np.ndarray, np.ndarray, list]:
    """Global label of every block label (``base[i][j] + label``: its region's root) and value."""
    flat = [b for row in blocks for b in row]
    sizes = [len(b.value) for b in flat]
    starts = np.cumsum([0, *sizes])
    base = [[0] * len(row) for row in blocks]
    k = 0
    for i, row in enumerate(blocks):
        for j in range(len(row)):
            base[i][j] = int(starts[k])
            k += 1
    value = np.concatenate([b.value for b in flat]) if flat else np.empty(0, np.int64)
    a, b = [], []

    def join(la, ba, lb, bb):
        ok = (la >= 0) & (lb >= 0)
        la, lb = la[ok].astype(np.int64) + ba, lb[ok].astype(np.int64) + bb
        same = value[la] == value[lb]
        a.append(la[same])
        b.append(lb[same])

    for i, row in enumerate(blocks):
        for j, blk in enumerate(row):
            if j + 1 < len(row):
                join(blk.right, base[i][j], row[j + 1].left, base[i][j + 1])
            if i + 1 < len(blocks):
                join(blk.bottom, base[i][j], blocks[i + 1][j].top, base[i + 1][j])
    a = np.concatenate(a) if a else np.empty(0, np.int64)
    b = np.concatenate(b) if b else np.empty(0, np.int64)
    root = _trace.union_roots(len(value), a, b)
    return root, value, base


def _rings(blocks: list[list[_Block]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every closed ring of every region: vertices, ring starts (and the end), region, value.

    The entries of ``blocks`` are set to None as their vertices are copied (they are freed).
    """
    root, value, base = _regions(blocks)
    parts, part_starts, part_region = [], [], []
    chain_coords, chain_rows, chain_region = [], [], []
    offset = chain_offset = 0
    for i, row in enumerate(blocks):
        for j, blk in enumerate(row):
            row[j] = None  # the caller's blocks leave memory as their vertices are copied
            rings = blk.rings
            if not len(rings):
                continue
            ends = np.append(rings[1:, 0], len(blk.coords))
            region = root[rings[:, 1] + base[i][j]]
            closed = rings[:, 2] == 0
            # closed rings: their vertices are contiguous runs of coords
            keep = np.repeat(closed, ends - rings[:, 0])
            lengths = (ends - rings[:, 0])[closed]
            parts.append(blk.coords[keep])
            part_starts.append(offset + np.cumsum(lengths) - lengths)
            part_region.append(region[closed])
            offset += int(lengths.sum())
            if not closed.all():
                chains = ~closed
                keep = np.repeat(chains, ends - rings[:, 0])
                lengths = (ends - rings[:, 0])[chains]
                chain_coords.append(blk.coords[keep])
                rows = np.empty((int(chains.sum()), 4), np.int64)
                rows[:, 0] = chain_offset + np.cumsum(lengths) - lengths
                rows[:, 1] = rows[:, 0] + lengths
                rows[:, 2:] = rings[chains, 3:]
                chain_rows.append(rows)
                chain_region.append(region[chains])
                chain_offset += int(lengths.sum())
    if chain_rows:
        coords = np.concatenate(chain_coords)
        rows = np.concatenate(chain_rows)
        region = np.concatenate(chain_region)
        starts, ends, first, last = rows.T
        # the chain after each chain: the one of the same region starting where it ends; at a
        # corner contact (two of them) the one turning left
        span = np.int64(coords.max()) + 2
        key_start = (region * span + coords[starts, 1]) * span + coords[starts, 0]
        key_end = (region * span + coords[ends - 1, 1]) * span + coords[ends - 1, 0]
        order = np.lexsort((first, key_start))
        lo = np.searchsorted(key_start[order], key_end, side="left")
        hi = np.searchsorted(key_start[order], key_end, side="right")
        if not ((hi - lo >= 1) & (hi - lo <= 2)).all():
            raise AssertionError("vectorize: unmatched ring chain (a bug)")
        succ = order[lo]
        two = hi - lo == 2
        second = order[np.minimum(lo + 1, len(order) - 1)]
        left = (last + 3) % 4
        succ = np.where(two & (first[second] == left[np.arange(len(last))]), second, succ)
        linked, starts_l, ring_chain = _trace.link_chains(coords, starts, ends, succ, first, last)
        parts.append(linked)
        part_starts.append(offset + starts_l[:-1])
        part_region.append(region[ring_chain])
        offset += len(linked)
    if not parts:
        empty = np.empty(0, np.int64)
        return np.empty((0, 2), np.int64), np.zeros(1, np.int64), empty, empty
    coords = np.concatenate(parts)
    starts = np.append(np.concatenate(part_starts), len(coords))
    region = np.concatenate(part_region)
    return coords, starts, region, value[region]


def _normalize_parts(multi: np.ndarray) -> np.ndarray:
    """Every part of every MultiPolygon normalised by GEOS, the parts kept in their order."""
    parts, index = shapely.get_parts(multi, return_index=True)
    return shapely.multipolygons(shapely.normalize(parts), indices=index)


_GROUP_VERTICES = 250_000
"""Values are turned into polygons in groups of about this many vertices (a value is never
split): the working arrays (about 150 bytes a vertex) are those of one group at a time."""


def _polygons(
    rings: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    transform: Affine,
    *,
    group_vertices: int | None = None,
) -> tuple[list, list]:
    """Values and their normalised MultiPolygons (parts sorted by cell-coordinate bounds), from
    the :func:`_rings` of every region, a group of values at a time (each value's MultiPolygon
    depends only on its own rings, so the result does not depend on the grouping)."""
    coords, starts, region, ring_value = rings
    if not len(region):
        return [], []
    group_vertices = _GROUP_VERTICES if group_vertices is None else group_vertices
    lengths = np.diff(starts)
    values, ring_group = np.unique(ring_value, return_inverse=True)
    per_value = np.bincount(ring_group, weights=lengths, minlength=len(values))
    # consecutive values, a new group when the running total passes group_vertices
    group_of_value = (np.cumsum(per_value) - per_value) // max(int(group_vertices), 1)
    _, group_of_value = np.unique(group_of_value, return_inverse=True)
    ring_group = group_of_value[ring_group]
    out_values: list = []
    out_geoms: list = []
    for g in range(int(group_of_value.max()) + 1):
        take = ring_group == g
        if take.all():
            sub = (coords, starts, region, ring_value)
        else:
            sub_lengths = lengths[take]
            sub_starts = np.zeros(len(sub_lengths) + 1, np.int64)
            np.cumsum(sub_lengths, out=sub_starts[1:])
            sub = (coords[np.repeat(take, lengths)], sub_starts, region[take], ring_value[take])
        v, m = _group_polygons(*sub, transform)
        out_values += v
        out_geoms += m
    return out_values, out_geoms


def _group_polygons(
    coords: np.ndarray,
    starts: np.ndarray,
    region: np.ndarray,
    ring_value: np.ndarray,
    transform: Affine,
) -> tuple[list, list]:
    """:func:`_polygons` for the rings of a group of whole values."""
    value = ring_value
    n_rings = len(region)
    lengths = np.diff(starts)
    x, y = coords[:, 0], coords[:, 1]
    # the working arrays below are about 50 bytes a vertex at their peak (a value's rings can
    # hold tens of millions of vertices): per-ring kernels, in-place arithmetic, early frees
    area2 = _trace.ring_areas2(coords, starts).astype(np.float64)
    shell = area2 > 0
    # one polygon per region: its shell first, then its holes
    shells = np.flatnonzero(shell)
    xmin = np.minimum.reduceat(x, starts[:-1])[shells]
    xmax = np.maximum.reduceat(x, starts[:-1])[shells]
    ymin = np.minimum.reduceat(y, starts[:-1])[shells]
    ymax = np.maximum.reduceat(y, starts[:-1])[shells]
    poly_value = value[shells]
    order = np.lexsort((xmax, ymax, xmin, ymin, poly_value))
    regions, region = np.unique(region, return_inverse=True)
    if len(np.unique(region[shells])) != len(shells) or len(regions) != len(shells):
        raise AssertionError("vectorize: a region without exactly one outer ring (a bug)")
    rank = np.empty(len(shells), np.int64)  # rank of each region's polygon
    rank[region[shells[order]]] = np.arange(len(shells))
    ring_rank = rank[region]
    # on the grid (as the matrix product x @ M.T + offset did, element by element):
    # gx = (x * a + y * b) + c and gy = (x * d + y * e) + f, the same operations in place
    gx = x.astype(np.float64)
    gx *= transform.a
    term = y.astype(np.float64)
    term *= transform.b
    gx += term
    gx += transform.c
    gy = x.astype(np.float64)
    gy *= transform.d
    term[:] = y
    term *= transform.e
    gy += term
    gy += transform.f
    del term, x, y
    # GEOS's normalize, done here: every ring starts at its smallest vertex (x, then y), shells
    # clockwise and holes counter-clockwise on the grid, holes sorted in decreasing order
    # (number of vertices, then coordinates)
    first = _trace.ring_minima(gx, gy, starts)
    det = transform.a * transform.e - transform.b * transform.d
    ccw = area2 * det > 0
    reverse = np.where(shell, ccw, ~ccw)
    key_x, key_y = gx[first], gy[first]
    ring_order = np.lexsort((-key_y, -key_x, -lengths, ~shell, ring_rank))
    on_grid = _trace.write_rings(gx, gy, starts, ring_order, first, reverse)
    del gx, gy
    sorted_values = poly_value[order]
    values, first_poly = np.unique(sorted_values, return_index=True)
    ring_offsets = np.zeros(n_rings + 1, np.int64)
    np.cumsum(lengths[ring_order] + 1, out=ring_offsets[1:])
    poly_offsets = np.zeros(len(shells) + 1, np.int64)
    np.cumsum(np.bincount(ring_rank, minlength=len(shells)), out=poly_offsets[1:])
    multi_offsets = np.append(first_poly, len(shells))
    multi = shapely.from_ragged_array(
        shapely.GeometryType.MULTIPOLYGON, on_grid, (ring_offsets, poly_offsets, multi_offsets)
    )
    # two holes of a polygon can only tie on (vertices, first vertex) if the grid is degenerate:
    # then let GEOS order them (by all their coordinates)
    r_key = np.stack([ring_rank, lengths, key_x, key_y])[:, ring_order]
    tie = (~shell[ring_order][1:]) & (r_key[:, 1:] == r_key[:, :-1]).all(axis=0)
    if tie.any():
        multi = _normalize_parts(multi)
    return [int(v) for v in values], list(multi)


def vectorize(
    values: np.ndarray | da.Array,
    grid: Grid,
    *,
    mask: np.ndarray | da.Array | None = None,
    block_size: int = 1024,
    origin: tuple[int, int] = (0, 0),
) -> gpd.GeoDataFrame:
    """One dissolved MultiPolygon per value where ``mask`` is true (default: ``values != 0``).

    Pixel edges are followed exactly (4-connected): polygon area = pixel count × pixel area.
    Cells of a value touching only at a corner are separate polygons unless joined by other
    cells; then the holes touch the shell (or each other) at that corner (OGC-valid).
    ``values`` may be a numpy array or a dask array (vectorised block by block, in parallel,
    in blocks of at least ``block_size`` cells a side made of whole dask chunks); a numpy
    array is traced in blocks of ``block_size`` cells.
    Parts are normalised and sorted, so the result does not depend on the chunking.
    ``origin``: the grid cell (row, column) of ``values[0, 0]`` when ``values`` is a window of
    ``grid`` (vertices are computed from whole-grid cell coordinates, so a window gives the
    very coordinates of the whole grid).
    Returns columns ``value`` and ``geometry``, sorted by value.
    """
    row0, col0 = (int(v) for v in origin)
    if max(row0 + values.shape[0], col0 + values.shape[1]) >= 2**31 - 2:
        raise ValueError("vectorize: more than 2**31 cells a side (vertices are int32)")
    return_freed_memory()  # what earlier steps freed, before tracing's block-sized arrays
    if isinstance(values, da.Array):
        if mask is not None:
            mask = mask if isinstance(mask, da.Array) else da.from_array(mask, chunks=values.chunks)
            mask = mask.rechunk(values.chunks).astype(bool)
        blocks = _dask_blocks(values, mask, int(block_size), (row0, col0))
    else:
        values = np.asarray(values)
        mask = values != 0 if mask is None else np.asarray(mask, dtype=bool)
        h, w = values.shape
        step = max(int(block_size), 1)
        blocks = [
            [
                _trace_block(
                    _with_halo(values, r0, min(r0 + step, h), c0, min(c0 + step, w), 0),
                    _with_halo(mask, r0, min(r0 + step, h), c0, min(c0 + step, w), False),
                    row0 + r0,
                    col0 + c0,
                )
                for c0 in range(0, w, step)
            ]
            for r0 in range(0, h, step)
        ]
    # glibc keeps the heap that tracing's block-sized arrays used; the large arrays below are
    # mapped anew, so give that heap back first (it would otherwise add to the peak)
    return_freed_memory()
    rings = _rings(blocks)
    del blocks  # the blocks' vertices are in ``rings`` now
    return_freed_memory()
    values, geoms = _polygons(rings, grid.transform)
    del rings
    return_freed_memory()
    return gpd.GeoDataFrame({"value": values, "geometry": geoms}, geometry="geometry", crs=grid.crs)
