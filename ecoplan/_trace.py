"""Numba kernels of :mod:`ecoplan.polygons`: 4-connected regions of a block and their rings.

Cell ``(r, c)`` covers ``[c, c + 1] × [r, r + 1]`` in cell coordinates (x = column, y = row,
y down). A boundary edge is the side of a region cell whose 4-neighbour is not in the region,
directed with the region on its right: ``0`` +x (top side), ``1`` +y (right side), ``2`` -x
(bottom side), ``3`` -y (left side). Rings go clockwise on screen, so the shoelace area of an
outer ring is positive and that of a hole negative. Only vertices where the direction turns
are kept.

Where two cells of a region touch only at a corner (the other two cells are not in it), the
ring turns left, around the cells that are not in the region: the region's rings then pass
every vertex once (OGC-valid: a hole touching the shell or another hole at a point is a
separate ring), as GDAL's polygonizer and GEOS's overlay write them.

A block comes with a halo of one cell (the neighbouring blocks' cells, or masked-out cells at
the raster's edge). Rings that leave the block, or pass a corner contact whose two cells may
belong to one region only through other blocks, are cut there into chains that
:func:`link_chains` joins once the regions are known across blocks.
"""

from __future__ import annotations

import numba
import numpy as np

from ecoplan.kernels import _label_runs

# the four cells around vertex (x, y): 0 NW, 1 NE, 2 SW, 3 SE (row, column offsets)
_QR = np.array([-1, -1, 0, 0], np.int64)
_QC = np.array([-1, 0, -1, 0], np.int64)
# an edge leaving a vertex in direction d is a side of cell _OUT[d]; its neighbour _OUT_NB[d]
_OUT = np.array([3, 2, 0, 1], np.int64)
_OUT_NB = np.array([1, 3, 2, 0], np.int64)
# an edge reaching a vertex in direction d is a side of cell _IN[d]; its neighbour _IN_NB[d]
_IN = np.array([2, 0, 1, 3], np.int64)
_IN_NB = np.array([0, 1, 3, 2], np.int64)
_DX = np.array([1, 0, -1, 0], np.int64)
_DY = np.array([0, 1, 0, -1], np.int64)

LOCAL, EXTERNAL, UNKNOWN = 0, 1, 2


@numba.njit(cache=True, nogil=True)
def _find(parent, i):
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


@numba.njit(cache=True, nogil=True)
def label_block(vals, msk):
    """4-connected regions of equal value in the block inside the halo.

    Returns ``labels`` (shape of ``vals``, -1 outside regions and in the halo), the value of
    every label and whether a label has a cell 4-adjacent to an equal cell in the halo.
    Labels are numbered in raster order of their first cell.
    """
    hh, ww = vals.shape
    labels = np.full((hh, ww), -1, np.int32)
    inner = vals[1:-1, 1:-1]
    _, first = _label_runs(inner, msk[1:-1, 1:-1], True, False, labels[1:-1, 1:-1], -1)
    count = first.shape[0]
    value = np.empty(count, np.int64)
    w = ww - 2
    for lab in range(count):
        value[lab] = inner[first[lab] // w, first[lab] % w]
    crosses = np.zeros(count, np.bool_)
    for c in range(1, ww - 1):
        for rh, ri in ((0, 1), (hh - 1, hh - 2)):
            lab = labels[ri, c]
            if lab >= 0 and msk[rh, c] and vals[rh, c] == vals[ri, c]:
                crosses[lab] = True
    for r in range(1, hh - 1):
        for ch, ci in ((0, 1), (ww - 1, ww - 2)):
            lab = labels[r, ci]
            if lab >= 0 and msk[r, ch] and vals[r, ch] == vals[r, ci]:
                crosses[lab] = True
    return labels, value, crosses


def _tables():
    out = np.full(16, -1, np.int64)  # the direction leaving a vertex, by pattern (no pinch)
    inc = np.full(16, -1, np.int64)  # the direction reaching it
    for m in range(16):
        if m in (0b1001, 0b0110):
            continue
        for k in range(4):
            if m >> _OUT[k] & 1 and not m >> _OUT_NB[k] & 1:
                out[m] = k
            if m >> _IN[k] & 1 and not m >> _IN_NB[k] & 1:
                inc[m] = k
    return out, inc


_NEXT, _PREV = _tables()
# _NEXT packed 2 bits a pattern (a constant: cheaper than indexing a global array in numba)
_NEXT_BITS = sum(int(k % 4) << (2 * m) for m, k in enumerate(_NEXT))


@numba.njit(cache=True, nogil=True)
def _turn(vals, msk, labels, crosses, x, y, d, v, forward):
    """Next direction after an edge reaching (x, y) in direction d (``forward``), or the
    direction of the edge before one leaving it in direction d; and LOCAL, EXTERNAL (that
    edge is in another block) or UNKNOWN (a corner contact decided across blocks).

    (x, y) are block vertex coordinates; the cell (r, c) is at ``vals[r + 1, c + 1]``.
    """
    hh, ww = vals.shape
    # cells around the vertex in the region: bit 0 NW, 1 NE, 2 SW, 3 SE
    m = (
        (msk[y, x] and vals[y, x] == v)
        | (msk[y, x + 1] and vals[y, x + 1] == v) << 1
        | (msk[y + 1, x] and vals[y + 1, x] == v) << 2
        | (msk[y + 1, x + 1] and vals[y + 1, x + 1] == v) << 3
    )
    if m == 0b1001 or m == 0b0110:  # a corner contact
        a = _IN[d] if forward else _OUT[d]
        b = 3 - a
        ra, ca = y + 1 + _QR[a], x + 1 + _QC[a]
        rb, cb = y + 1 + _QR[b], x + 1 + _QC[b]
        if rb < 1 or rb > hh - 2 or cb < 1 or cb > ww - 2:
            return d, UNKNOWN
        la, lb = labels[ra, ca], labels[rb, cb]
        if la == lb:  # joined at the corner: turn left (around the cells outside)
            return ((d + 3) % 4 if forward else (d + 1) % 4), LOCAL
        if crosses[la] and crosses[lb]:
            return d, UNKNOWN
        return ((d + 1) % 4 if forward else (d + 3) % 4), LOCAL
    if forward:
        k = _NEXT[m]
        q = _OUT[k]
    else:
        k = _PREV[m]
        q = _IN[k]
    r, c = y + _QR[q], x + _QC[q]
    if r < 0 or r > hh - 3 or c < 0 or c > ww - 3:
        return k, EXTERNAL
    return k, LOCAL


@numba.njit(cache=True, nogil=True, inline="always")
def _out_cell(x, y, d):
    """The cell (block row, column) whose side leaves vertex (x, y) in direction d."""
    if d == 0:
        return y, x
    if d == 1:
        return y, x - 1
    if d == 2:
        return y - 1, x - 1
    return y - 1, x


@numba.njit(cache=True, nogil=True, inline="always")
def _push(buf, n, x, y):
    if n >= buf.shape[0]:
        grown = np.empty((2 * buf.shape[0], 2), buf.dtype)
        grown[:n] = buf[:n]
        buf = grown
    buf[n, 0] = x
    buf[n, 1] = y
    return buf


@numba.njit(cache=True, nogil=True, inline="always")
def _push_ring(rings, n, start, label, kind, first, last):
    if n >= rings.shape[0]:
        grown = np.empty((2 * rings.shape[0], 5), rings.dtype)
        grown[:n] = rings[:n]
        rings = grown
    rings[n, 0] = start
    rings[n, 1] = label
    rings[n, 2] = kind
    rings[n, 3] = first
    rings[n, 4] = last
    return rings


@numba.njit(cache=True, nogil=True)
def _trace_ring(vals, msk, labels, crosses, visited, coords, n, r, c, d0, row_off, col_off):
    """Trace the ring through side d0 of cell (r, c) (a boundary edge not visited yet) or, if
    it is cut, the chain through it; push its vertices to ``coords`` from ``n``.

    Returns ``coords`` (grown if need be), the new end ``n``, the kind (0 closed ring, 1
    chain) and the directions of the chain's first and last edges.
    """
    h, w = visited.shape
    v = vals[r + 1, c + 1]
    # start vertex of side d0 of cell (r, c)
    x0 = c + (1 if (d0 == 1 or d0 == 2) else 0)
    y0 = r + (1 if (d0 == 2 or d0 == 3) else 0)
    # closed ring?
    start = n
    visited[r, c] |= 1 << d0
    x, y, d = x0 + _DX[d0], y0 + _DY[d0], d0
    closed = False
    while True:
        # (the common case of _turn inline: a call costs more than the step)
        m = (
            (msk[y, x] and vals[y, x] == v)
            | (msk[y, x + 1] and vals[y, x + 1] == v) << 1
            | (msk[y + 1, x] and vals[y + 1, x] == v) << 2
            | (msk[y + 1, x + 1] and vals[y + 1, x + 1] == v) << 3
        )
        if m == 0b1001 or m == 0b0110:
            dn, st = _turn(vals, msk, labels, crosses, x, y, d, v, True)
            rq, cq = _out_cell(x, y, dn)
        else:
            dn = (_NEXT_BITS >> (2 * m)) & 3
            rq, cq = _out_cell(x, y, dn)
            st = LOCAL if (rq >= 0 and rq < h and cq >= 0 and cq < w) else EXTERNAL
        if st != LOCAL:
            break
        if dn != d:
            coords = _push(coords, n, x + col_off, y + row_off)
            n += 1
        if x == x0 and y == y0 and dn == d0:
            closed = True
            break
        visited[rq, cq] |= 1 << dn
        x, y, d = x + (dn == 0) - (dn == 2), y + (dn == 1) - (dn == 3), dn
    if closed:
        return coords, n, 0, d0, d0
    # a chain: go back to its first edge, then trace it forward
    n = start
    x, y, d = x0, y0, d0
    while True:
        dp, st = _turn(vals, msk, labels, crosses, x, y, d, v, False)
        if st != LOCAL:
            break
        x, y, d = x - _DX[dp], y - _DY[dp], dp
    first = d
    q = _OUT[d]
    visited[y + _QR[q], x + _QC[q]] |= 1 << d
    coords = _push(coords, n, x + col_off, y + row_off)
    n += 1
    x, y = x + _DX[d], y + _DY[d]
    while True:
        # (the common case of _turn inline: a call costs more than the step)
        m = (
            (msk[y, x] and vals[y, x] == v)
            | (msk[y, x + 1] and vals[y, x + 1] == v) << 1
            | (msk[y + 1, x] and vals[y + 1, x] == v) << 2
            | (msk[y + 1, x + 1] and vals[y + 1, x + 1] == v) << 3
        )
        if m == 0b1001 or m == 0b0110:
            dn, st = _turn(vals, msk, labels, crosses, x, y, d, v, True)
            rq, cq = _out_cell(x, y, dn)
        else:
            dn = (_NEXT_BITS >> (2 * m)) & 3
            rq, cq = _out_cell(x, y, dn)
            st = LOCAL if (rq >= 0 and rq < h and cq >= 0 and cq < w) else EXTERNAL
        if st != LOCAL:
            coords = _push(coords, n, x + col_off, y + row_off)
            n += 1
            break
        if dn != d:
            coords = _push(coords, n, x + col_off, y + row_off)
            n += 1
        visited[rq, cq] |= 1 << dn
        x, y, d = x + (dn == 0) - (dn == 2), y + (dn == 1) - (dn == 3), dn
    return coords, n, 1, first, d


@numba.njit(cache=True, nogil=True)
def trace_block(vals, msk, row_off, col_off):
    """Rings and chains of the regions of one block (``vals``, ``msk`` with a 1-cell halo).

    Returns ``labels, value, crosses`` (see :func:`label_block`), ``coords`` (int32 (n, 2)
    vertices in raster cell coordinates: x + ``col_off``, y + ``row_off``) and ``rings``, one row
    per ring or chain: start offset in ``coords`` (it ends where the next starts), label,
    kind (0 closed ring, its first vertex not repeated; 1 chain from a cut vertex to a cut
    vertex, both kept), direction of its first edge and of its last edge (chains only).
    """
    labels, value, crosses = label_block(vals, msk)
    hh, ww = vals.shape
    h, w = hh - 2, ww - 2
    visited = np.zeros((h, w), np.uint8)
    coords = np.empty((max(64, 2 * (h + w)), 2), np.int32)  # 8 bytes a vertex
    rings = np.empty((64, 5), np.int64)
    n = 0
    nr = 0
    boundary = np.empty(w, np.uint8)
    for r in range(h):
        # boundary sides of the row's cells (0 top, 1 right, 2 bottom, 3 left), in one
        # branch-free pass (the sides traced already are left out cell by cell below: tracing
        # marks cells of this row too)
        up, mid, down = vals[r], vals[r + 1], vals[r + 2]
        m_up, m_mid, m_down = msk[r], msk[r + 1], msk[r + 2]
        for c in range(w):
            v = mid[c + 1]
            boundary[c] = m_mid[c + 1] * (
                (1 - m_up[c + 1] * (up[c + 1] == v))
                | (1 - m_mid[c + 2] * (mid[c + 2] == v)) << 1
                | (1 - m_down[c + 1] * (down[c + 1] == v)) << 2
                | (1 - m_mid[c] * (mid[c] == v)) << 3
            )
        for c in range(w):
            if boundary[c] == 0:
                continue
            sides = boundary[c] & ~visited[r, c]
            if sides == 0:
                continue
            lab = labels[r + 1, c + 1]
            for d0 in range(4):
                if not (sides & (1 << d0)) or visited[r, c] & (1 << d0):
                    continue
                start = n
                coords, n, kind, first, last = _trace_ring(
                    vals, msk, labels, crosses, visited, coords, n, r, c, d0, row_off, col_off
                )
                rings = _push_ring(rings, nr, start, lab, kind, first, last)
                nr += 1
    return labels, value, crosses, coords[:n].copy(), rings[:nr].copy()


@numba.njit(cache=True, nogil=True)
def link_chains(coords, starts, ends, succ, first, last):
    """Join chains into closed rings: ``succ[i]`` is the chain after chain ``i``.

    Chain ``i`` is ``coords[starts[i]:ends[i]]`` (both cut vertices kept), its first and last
    edges go in directions ``first[i]`` and ``last[i]``. A junction vertex is kept only where
    the direction turns. Returns the rings' vertices (first vertex not repeated), the start
    of every ring in them and the first chain of every ring.
    """
    m = len(succ)
    done = np.zeros(m, np.bool_)
    out = np.empty((max(1, len(coords)), 2), np.int32)
    ring_start = np.empty(m + 1, np.int64)
    ring_chain = np.empty(m, np.int64)
    n = 0
    k = 0
    for i in range(m):
        if done[i]:
            continue
        ring_start[k] = n
        ring_chain[k] = i
        k += 1
        j = i
        while not done[j]:
            done[j] = True
            nxt = succ[j]
            # this chain's vertices but its last (the next chain's first), and that junction
            # vertex only where the ring turns there
            for t in range(starts[j] + 1, ends[j] - 1):
                out[n] = coords[t]
                n += 1
            if last[j] != first[nxt]:
                out[n] = coords[ends[j] - 1]
                n += 1
            j = nxt
    ring_start[k] = n
    return out[:n].copy(), ring_start[: k + 1].copy(), ring_chain[:k].copy()


@numba.njit(cache=True, nogil=True)
def union_roots(n, a, b):
    """Root (smallest member) of every one of ``n`` labels once ``a[k]`` and ``b[k]`` are joined."""
    parent = np.arange(n)
    for k in range(len(a)):
        ra = _find(parent, a[k])
        rb = _find(parent, b[k])
        if ra < rb:
            parent[rb] = ra
        elif rb < ra:
            parent[ra] = rb
    for i in range(n):
        parent[i] = _find(parent, i)
    return parent


@numba.njit(cache=True, nogil=True)
def ring_minima(x, y, starts):
    """Index of the smallest vertex (x first, then y) of every ring ``starts[k]:starts[k + 1]``."""
    n = len(starts) - 1
    out = np.empty(n, np.int64)
    for k in range(n):
        best = starts[k]
        for i in range(starts[k] + 1, starts[k + 1]):
            if x[i] < x[best] or (x[i] == x[best] and y[i] < y[best]):
                best = i
        out[k] = best
    return out


@numba.njit(cache=True, nogil=True)
def write_rings(x, y, starts, order, first, reverse):
    """Rings ``order`` one after the other, each from vertex ``first[k]`` on, backwards where
    ``reverse[k]``, closed by that vertex again (as GEOS's normalize writes them)."""
    total = 0
    for k in order:
        total += starts[k + 1] - starts[k] + 1
    out = np.empty((total, 2), np.float64)
    n = 0
    for k in order:
        s = starts[k]
        length = starts[k + 1] - s
        m = first[k] - s
        step = length - 1 if reverse[k] else 1
        for t in range(length):
            i = s + (m + t * step) % length
            out[n, 0] = x[i]
            out[n, 1] = y[i]
            n += 1
        out[n, 0] = x[first[k]]
        out[n, 1] = y[first[k]]
        n += 1
    return out


@numba.njit(cache=True, nogil=True)
def ring_areas2(coords, starts):
    """Twice the signed area of every ring ``starts[k]:starts[k + 1]`` of integer ``coords``
    (shoelace, exact in int64; positive when the ring turns counter-clockwise in (x, y))."""
    n = len(starts) - 1
    out = np.empty(n, np.int64)
    for k in range(n):
        s, e = starts[k], starts[k + 1]
        acc = 0
        for i in range(s, e):
            j = i + 1 if i + 1 < e else s
            xi, yi = np.int64(coords[i, 0]), np.int64(coords[i, 1])
            xj, yj = np.int64(coords[j, 0]), np.int64(coords[j, 1])
            acc += xi * yj - xj * yi
        out[k] = acc
    return out
