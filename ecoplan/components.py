"""Connected components (patches) of a chunked raster, whole across chunk borders.

Each block is labelled on its own (:func:`ecoplan.kernels.label_equal`: union-find over equal
neighbouring values, one scan for all values), giving labels ``1..n`` per block; block ``b``'s
label ``k`` is the provisional label ``base[b] + k``, unique over the whole array. The pixel
pairs that touch across chunk seams join provisional labels; a graph of those joins
(:func:`scipy.sparse.csgraph.connected_components`) merges them. Components are numbered
``1..n`` in the order of their smallest provisional label, so the partition into components is
exactly that of :func:`scipy.ndimage.label` on the whole array, whatever the chunking (the
label numbers themselves depend on the chunking; their grouping and sizes do not).

No label array is kept: :attr:`Components.labels` and :meth:`Components.lookup` label each
block again when computed (a fast, deterministic pass) and map its local labels through a
table. Memory: one table row per provisional label; the seam lines hold two rows or columns
per chunk border.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import dask.array as da
import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ecoplan.kernels import label_equal

__all__ = [
    "BorderPatches",
    "Components",
    "border_patches",
    "border_summary",
    "label_block",
    "label_components",
    "per_block",
    "structure",
]

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
    structure(connectivity)
    lab, _, _ = label_equal(_as_int(values), connectivity=connectivity)
    out = lab.astype(np.int64)
    if offset:
        out[lab > 0] += offset
    return out


def _as_int(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "iub":
        return values
    return values.astype(np.int64)


@dataclass(frozen=True)
class Components:
    """Patches of a raster: a table of their labels and sizes, and lazy per-pixel lookups.

    ``ids`` is ``1..n`` (sorted); ``sizes[i]`` is the pixel count and ``values[i]`` the raster
    value of the patch labelled ``ids[i]``. :attr:`labels` is the lazy int64 label array (0
    outside every patch).
    """

    ids: np.ndarray
    sizes: np.ndarray
    values: np.ndarray
    source: da.Array
    connectivity: Connectivity
    bases: np.ndarray  # first provisional label - 1 of each block (row-major block order)
    counts: np.ndarray  # number of local labels of each block
    remap: np.ndarray  # component id of each provisional label (1-based labels, 0-based index)

    @property
    def labels(self) -> da.Array:
        return self._map(self.remap, 0, np.dtype(np.int64))

    def lookup(self, table_ids: np.ndarray, table_values: np.ndarray, fill=0) -> da.Array:
        """A lazy array holding ``table_values[k]`` where the label is ``table_ids[k]``."""
        table_ids = np.asarray(table_ids, dtype=np.int64)
        table_values = np.asarray(table_values)
        dense = np.full(len(self.ids) + 1, fill, dtype=table_values.dtype)
        ok = (table_ids >= 1) & (table_ids <= len(self.ids))
        dense[table_ids[ok]] = table_values[ok]
        return self._map(dense[self.remap], fill, table_values.dtype)

    def _map(self, table: np.ndarray, fill, dtype) -> da.Array:
        """Each pixel's provisional label mapped through ``table`` (``fill`` on background)."""
        ncol = self.source.numblocks[1]
        bases, counts, conn = self.bases, self.counts, self.connectivity

        def block(v, block_info=None):
            i, j = block_info[0]["chunk-location"]
            k = i * ncol + j
            lab, _, _ = label_equal(_as_int(v), connectivity=conn)
            ext = np.empty(int(counts[k]) + 1, dtype=dtype)
            ext[0] = fill
            ext[1:] = table[bases[k] : bases[k] + counts[k]]
            return ext[lab]

        return self.source.map_blocks(block, dtype=dtype, meta=np.empty((0, 0), dtype))


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


def block_summary(values: np.ndarray, *, connectivity: Connectivity) -> dict:
    """One block's patches: their count, sizes and values, and the labels and values of its
    four edge lines (for the seams)."""
    lab, counts, first = label_equal(_as_int(values), connectivity=connectivity)
    return {
        "n": len(counts),
        "sizes": counts,
        "values": values.ravel()[first].astype(np.int64),
        "edges": _edge_lines(lab, values),
    }


def _edge_lines(lab: np.ndarray, values: np.ndarray) -> dict:
    """Labels and values of a block's four edge lines (copies)."""
    return {
        "top": (lab[0].copy(), values[0].copy()),
        "bottom": (lab[-1].copy(), values[-1].copy()),
        "left": (lab[:, 0].copy(), values[:, 0].copy()),
        "right": (lab[:, -1].copy(), values[:, -1].copy()),
    }


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
    nr, nc = values.numblocks
    summaries = per_block(block_summary, values, connectivity=connectivity).compute()
    return components_from_summaries(summaries, values, connectivity=connectivity)


def components_from_summaries(
    summaries: np.ndarray, values: da.Array, *, connectivity: Connectivity
) -> Components:
    """Merge the :func:`block_summary` of every block (an object array, one per block)."""
    nr, nc = summaries.shape
    flat = summaries.ravel().tolist()
    counts = np.array([s["n"] for s in flat], dtype=np.int64)
    bases = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    n = int(counts.sum())
    sizes = np.concatenate([s["sizes"] for s in flat]) if n else np.empty(0, np.int64)
    vals = np.concatenate([s["values"] for s in flat]) if n else np.empty(0, np.int64)

    def line(i, j, side):
        lab, val = flat[i * nc + j]["edges"][side]
        g = lab.astype(np.int64)
        g[lab > 0] += bases[i * nc + j]
        return g, val

    seams = []
    for i in range(1, nr):  # horizontal seams: bottom of row i - 1 against top of row i
        a = [line(i - 1, j, "bottom") for j in range(nc)]
        b = [line(i, j, "top") for j in range(nc)]
        seams.append(_seam_pairs(*_cat(a, b), connectivity))
    for j in range(1, nc):  # vertical seams: right of column j - 1 against left of column j
        a = [line(i, j - 1, "right") for i in range(nr)]
        b = [line(i, j, "left") for i in range(nr)]
        seams.append(_seam_pairs(*_cat(a, b), connectivity))
    if n == 0:
        e = np.empty(0, np.int64)
        return Components(e, e, e, values, connectivity, bases, counts, e)
    pairs = np.concatenate(seams) if seams else np.empty((0, 2), np.int64)
    if len(pairs):
        graph = coo_matrix(
            (np.ones(len(pairs), np.int8), (pairs[:, 0] - 1, pairs[:, 1] - 1)), shape=(n, n)
        )
        ncomp, comp = connected_components(graph, directed=False)
    else:
        ncomp, comp = n, np.arange(n)
    root = np.full(ncomp, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(root, comp, np.arange(n, dtype=np.int64))
    rank = np.empty(ncomp, np.int64)
    rank[np.argsort(root)] = np.arange(1, ncomp + 1)
    remap = rank[comp]  # provisional label - 1 -> component id (1..ncomp, by smallest label)
    size = np.bincount(remap, weights=sizes, minlength=ncomp + 1)[1:].astype(np.int64)
    value = np.zeros(ncomp, dtype=np.int64)
    value[remap - 1] = vals
    ids = np.arange(1, ncomp + 1, dtype=np.int64)
    return Components(ids, size, value, values, connectivity, bases, counts, remap)


def _cat(a, b):
    return (
        np.concatenate([x[0] for x in a]),
        np.concatenate([x[0] for x in b]),
        np.concatenate([x[1] for x in a]),
        np.concatenate([x[1] for x in b]),
    )


# --- patches that reach a block's border (the rest are whole inside one block) ------------------


def border_summary(values: np.ndarray, *, connectivity: Connectivity) -> dict:
    """One block's patches, with a table only for those on the block's border lines.

    A patch that does not reach the block's first or last row or column is whole inside the
    block: its size here is its size in the whole array. The others may go on in the next
    blocks: their local labels (``border``, sorted), sizes and values are kept for
    :func:`border_patches`, with the labels and values of the four edge lines.
    """
    lab, counts, first = label_equal(_as_int(values), connectivity=connectivity)
    edges = _edge_lines(lab, values)
    border = np.unique(np.concatenate([e[0] for e in edges.values()]))
    border = border[border > 0]
    return {
        "n": len(counts),
        "border": border,
        "sizes": counts[border - 1],
        "values": values.ravel()[first[border - 1]].astype(np.int64),
        "edges": edges,
    }


@dataclass(frozen=True)
class BorderPatches:
    """The patches that reach a block border, merged across the seams (:func:`border_patches`).

    Block ``k`` (row-major) has ``counts[k]`` local labels; its border labels ``labels[k]``
    belong to the patches ``patch[bases[k] : bases[k] + len(labels[k])]`` (0-based indices into
    ``sizes`` and ``values``: each patch's pixel count in the whole array, and its value).
    ``edges[k][side]`` (side ``top``, ``bottom``, ``left``, ``right``) is the block's edge line
    as ``(patch index or -1, value)``: what the neighbouring blocks see in their halo.
    """

    counts: np.ndarray
    labels: list[np.ndarray]
    bases: np.ndarray
    patch: np.ndarray
    sizes: np.ndarray
    values: np.ndarray
    edges: list[dict]

    def block_patches(self, k: int) -> np.ndarray:
        """The patch index of each border label of block ``k``."""
        return self.patch[self.bases[k] : self.bases[k] + len(self.labels[k])]


def border_patches(summaries: np.ndarray, *, connectivity: Connectivity) -> BorderPatches:
    """Merge the :func:`border_summary` of every block (an object array, one per block).

    Memory is one row per border label: patches inside one block take no room here.
    """
    nr, nc = summaries.shape
    flat = summaries.ravel().tolist()
    counts = np.array([s["n"] for s in flat], dtype=np.int64)
    labels = [s["border"] for s in flat]
    nb = np.array([len(x) for x in labels], dtype=np.int64)
    bases = np.concatenate([[0], np.cumsum(nb)[:-1]]).astype(np.int64)
    n = int(nb.sum())
    e = np.empty(0, np.int64)
    sizes = np.concatenate([s["sizes"] for s in flat]).astype(np.int64) if n else e
    vals = np.concatenate([s["values"] for s in flat]) if n else e

    def line(i, j, side):
        k = i * nc + j
        lab, val = flat[k]["edges"][side]
        g = np.zeros(len(lab), np.int64)  # 1-based compact label, 0 for background
        on = lab > 0
        g[on] = bases[k] + np.searchsorted(labels[k], lab[on]) + 1
        return g, val

    seams = []
    for i in range(1, nr):
        a = [line(i - 1, j, "bottom") for j in range(nc)]
        b = [line(i, j, "top") for j in range(nc)]
        seams.append(_seam_pairs(*_cat(a, b), connectivity))
    for j in range(1, nc):
        a = [line(i, j - 1, "right") for i in range(nr)]
        b = [line(i, j, "left") for i in range(nr)]
        seams.append(_seam_pairs(*_cat(a, b), connectivity))
    if n == 0:
        comp = e
        ncomp = 0
    else:
        comp = _merge(_pairs_of(seams), n)
        ncomp = int(comp.max()) + 1
    size = np.bincount(comp, weights=sizes, minlength=ncomp).astype(np.int64)
    value = np.zeros(ncomp, dtype=np.int64)
    value[comp] = vals
    edges = []
    for i in range(nr):
        for j in range(nc):
            sides = {}
            for side in ("top", "bottom", "left", "right"):
                g, val = line(i, j, side)
                patch = np.full(len(g), -1, np.int64)
                patch[g > 0] = comp[g[g > 0] - 1]
                sides[side] = (patch, val)
            edges.append(sides)
    return BorderPatches(counts, labels, bases, comp, size, value, edges)


def _pairs_of(seams: list) -> np.ndarray:
    return np.concatenate(seams) if seams else np.empty((0, 2), np.int64)


def _merge(pairs: np.ndarray, n: int) -> np.ndarray:
    """Component (0-based) of each of ``n`` labels joined by 1-based label ``pairs``."""
    if len(pairs):
        graph = coo_matrix(
            (np.ones(len(pairs), np.int8), (pairs[:, 0] - 1, pairs[:, 1] - 1)), shape=(n, n)
        )
        _, comp = connected_components(graph, directed=False)
    else:
        comp = np.arange(n)
    return comp.astype(np.int64)
