"""Connected components (patches) of a chunked raster, whole across chunk borders.

Each block is labelled on its own with :func:`scipy.ndimage.label` (one pass per value), giving
provisional labels unique over the whole array. The pixel pairs that touch across chunk seams
join provisional labels; a graph of those joins (:func:`scipy.sparse.csgraph.connected_components`)
merges them. A component's final label is the smallest provisional label it contains, so the
partition into components is exactly that of :func:`scipy.ndimage.label` on the whole array,
whatever the chunking (the label numbers themselves depend on the chunking; their grouping and
sizes do not).

Memory: the per-label tables hold one row per provisional label; the seam pairs hold two rows or
columns per chunk border. No block is ever loaded with its neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import dask
import dask.array as da
import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["Components", "structure", "label_block", "label_components", "per_block"]

Connectivity = Literal[4, 8]


def structure(connectivity: Connectivity) -> np.ndarray:
    """The 3 x 3 neighbourhood of :func:`scipy.ndimage.label` for 4- or 8-connectivity."""
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8 (got {connectivity!r})")
    return ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)


def label_block(values: np.ndarray, *, connectivity: Connectivity, offset: int = 0) -> np.ndarray:
    """Labels (int64) of patches of equal non-zero value in one block; 0 where ``values`` is 0.

    Labels are ``offset + 1 …``; patches of different values never share a label.
    """
    out = np.zeros(values.shape, dtype=np.int64)
    st = structure(connectivity)
    next_label = offset
    if values.dtype.kind in "ub" and values.dtype.itemsize <= 2:
        present = np.flatnonzero(np.bincount(values.ravel(), minlength=1))  # faster than unique
    else:
        present = np.unique(values)
    for v in present:
        if v == 0:
            continue
        lab, n = ndimage.label(values == v, structure=st)
        sel = lab > 0
        out[sel] = lab[sel] + next_label
        next_label += n
    return out


@dataclass(frozen=True)
class Components:
    """Patches of a raster: a lazy label array and a table of the labels and their sizes.

    ``labels`` is int64, 0 outside every patch. ``ids`` is sorted; ``sizes[i]`` is the pixel
    count and ``values[i]`` the raster value of the patch labelled ``ids[i]``.
    """

    labels: da.Array
    ids: np.ndarray
    sizes: np.ndarray
    values: np.ndarray

    def lookup(self, table_ids: np.ndarray, table_values: np.ndarray, fill=0) -> da.Array:
        """A lazy array holding ``table_values[k]`` where the label is ``table_ids[k]``."""
        order = np.argsort(table_ids)
        keys = np.asarray(table_ids)[order]
        vals = np.asarray(table_values)[order]
        return self.labels.map_blocks(_map_block, keys, vals, fill, dtype=vals.dtype)


def _map_block(labels, keys, vals, fill):
    out = np.full(labels.shape, fill, dtype=vals.dtype)
    if len(keys) == 0:
        return out
    pos = np.searchsorted(keys, labels)
    pos = np.clip(pos, 0, len(keys) - 1)
    hit = (keys[pos] == labels) & (labels > 0)
    out[hit] = vals[pos[hit]]
    return out


def _provisional(values: da.Array, connectivity: Connectivity) -> da.Array:
    nrow, ncol = values.numblocks
    stride = int(max(values.chunks[0]) * max(values.chunks[1]))

    def block(v, block_info=None):
        i, j = block_info[0]["chunk-location"]
        return label_block(v, connectivity=connectivity, offset=(i * ncol + j) * stride)

    return values.map_blocks(block, dtype=np.int64, meta=np.empty((0, 0), np.int64))


def per_block(func, *arrays: da.Array, **kwargs) -> da.Array:
    """A lazy object array holding ``func(block, …)`` of each block (one graph layer)."""

    def wrap(*blocks):
        out = np.empty((1, 1), dtype=object)
        out[0, 0] = func(*blocks, **kwargs)
        return out

    nr, nc = arrays[0].numblocks
    return da.map_blocks(
        wrap,
        *arrays,
        chunks=((1,) * nr, (1,) * nc),
        dtype=object,
        meta=np.empty((0, 0), dtype=object),
    )


def _block_table(labels: np.ndarray, values: np.ndarray):
    sel = labels > 0
    ids, first, counts = np.unique(labels[sel], return_index=True, return_counts=True)
    return ids, counts, values[sel][first]


def _seam_pairs(a_lab, b_lab, a_val, b_val, connectivity) -> np.ndarray:
    """Label pairs joined across a seam between line ``a`` and the next line ``b`` (1-D)."""
    shifts = (0,) if connectivity == 4 else (-1, 0, 1)
    pairs = []
    n = len(a_lab)
    for s in shifts:
        lo, hi = max(0, -s), min(n, n - s)
        la, lb = a_lab[lo:hi], b_lab[lo + s : hi + s]
        va, vb = a_val[lo:hi], b_val[lo + s : hi + s]
        ok = (la > 0) & (lb > 0) & (va == vb)
        pairs.append(np.stack([la[ok], lb[ok]], axis=1))
    return np.concatenate(pairs) if pairs else np.empty((0, 2), np.int64)


def label_components(values: da.Array, *, connectivity: Connectivity = 8) -> Components:
    """Patches of equal non-zero value of a dask array, whole across chunk borders.

    Values 0 are background. The grouping of pixels into patches and each patch's size equal
    those of :func:`scipy.ndimage.label` on the whole array (per value), for any chunking.
    """
    structure(connectivity)  # validates
    values = values.astype(np.int64) if values.dtype.kind not in "iu" else values
    prov = _provisional(values, connectivity)
    tables = per_block(_block_table, prov, values)
    rows = np.cumsum(values.chunks[0])[:-1]
    cols = np.cumsum(values.chunks[1])[:-1]
    lines = []
    if len(rows):
        lines += [prov[rows - 1, :], prov[rows, :], values[rows - 1, :], values[rows, :]]
    if len(cols):
        lines += [prov[:, cols - 1].T, prov[:, cols].T, values[:, cols - 1].T, values[:, cols].T]
    tables, lines = dask.compute(tables, lines)
    tables = tables.ravel().tolist()
    seams = []
    for k in range(0, len(lines), 4):
        la, lb, va, vb = (np.asarray(x) for x in lines[k : k + 4])
        for i in range(la.shape[0]):
            seams.append(_seam_pairs(la[i], lb[i], va[i], vb[i], connectivity))
    ids = np.concatenate([t[0] for t in tables]) if tables else np.empty(0, np.int64)
    counts = np.concatenate([t[1] for t in tables]) if tables else np.empty(0, np.int64)
    vals = np.concatenate([t[2] for t in tables]) if tables else np.empty(0, np.int64)
    order = np.argsort(ids)
    ids, counts, vals = ids[order], counts[order], vals[order]
    n = len(ids)
    if n == 0:
        empty = np.empty(0, np.int64)
        return Components(prov, empty, empty, empty)
    pairs = np.concatenate(seams) if seams else np.empty((0, 2), np.int64)
    if len(pairs):
        ia = np.searchsorted(ids, pairs[:, 0])
        ib = np.searchsorted(ids, pairs[:, 1])
        graph = coo_matrix((np.ones(len(ia), np.int8), (ia, ib)), shape=(n, n))
        _, comp = connected_components(graph, directed=False)
    else:
        comp = np.arange(n)
    ncomp = int(comp.max()) + 1
    root = np.full(ncomp, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(root, comp, ids)
    size = np.bincount(comp, weights=counts, minlength=ncomp).astype(np.int64)
    value = np.zeros(ncomp, dtype=np.int64)
    value[comp] = vals
    remap = root[comp]  # provisional id -> final id
    labels = prov.map_blocks(_map_block, ids, remap, 0, dtype=np.int64)
    order = np.argsort(root)
    return Components(labels, root[order], size[order], value[order])
