"""Fast numeric kernels (numba), each tested against a plain reference implementation.

- :func:`distance_to_source` — exact Euclidean distance transform (Felzenszwalb & Huttenlocher
  2012, "Distance transforms of sampled functions"): two separable passes, O(n) per pixel, on the
  squared distance. Same values as ``scipy.ndimage.distance_transform_edt(~source, sampling=p)``.
- :func:`ring_numbers` — ring numbers of the cells within the buffer distances, without the
  distances: the nearest source in each column, then, row by row, the cells each reaches.
- :func:`label_equal` — patches of equal values (union-find over the runs of each row).
- :func:`lookup` — class-code lookup table applied in one pass.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["distance_to_source", "lookup", "ring_numbers"]

_INF = np.inf
_FINITE_MAX = np.finfo(np.float64).max


@numba.njit(cache=True, nogil=True)
def _column_pass(source: np.ndarray, out: np.ndarray) -> None:
    # squared distance, in cells, to the nearest source cell in the same column; swept a row
    # at a time (down, then up) with the last source row of every column, in memory order
    h, w = source.shape
    last = np.full(w, -1, np.int64)
    for i in range(h):
        for j in range(w):
            if source[i, j]:
                last[j] = i
                out[i, j] = 0.0
            elif last[j] >= 0:
                d = i - last[j]
                out[i, j] = d * d
            else:
                out[i, j] = _INF
    last[:] = -1
    for i in range(h - 1, -1, -1):
        for j in range(w):
            if source[i, j]:
                last[j] = i
            elif last[j] >= 0:
                d = last[j] - i
                if d * d < out[i, j]:
                    out[i, j] = d * d


@numba.njit(cache=True, nogil=True, inline="always")
def _envelope(f, cap, v, z):
    # lower envelope of the parabolas (q - p)² + f[p] with f[p] <= cap: their vertices in
    # v[0..k], the boundaries between them in z; returns k (-1: no parabola)
    k = -1
    for q in range(f.shape[0]):
        if f[q] > cap:
            continue
        s = -_INF
        while k >= 0:  # drop the parabolas this one hides
            p = v[k]
            s = ((f[q] + q * q) - (f[p] + p * p)) / (2.0 * (q - p))
            if s > z[k]:
                break
            k -= 1
        if k < 0:
            k = 0
            v[0] = q
            z[0] = -_INF
            z[1] = _INF
        else:
            k += 1
            v[k] = q
            z[k] = s
            z[k + 1] = _INF
    return k


@numba.njit(cache=True, nogil=True)
def _row_pass(g: np.ndarray, out: np.ndarray) -> None:
    # lower envelope of parabolas along each row (1-D squared distance transform of g)
    h, w = g.shape
    v = np.empty(w, np.int64)
    z = np.empty(w + 1, np.float64)
    for i in range(h):
        f = g[i]
        k = _envelope(f, _FINITE_MAX, v, z)  # every finite value
        if k < 0:
            for q in range(w):
                out[i, q] = _INF
            continue
        j = 0
        for q in range(w):
            while z[j + 1] < q:
                j += 1
            p = v[j]
            out[i, q] = (q - p) * (q - p) + f[p]


def distance_to_source(source: np.ndarray, *, pixel_size_m: float) -> np.ndarray:
    """Distance in metres from each cell centre to the nearest ``source`` cell centre.

    0 on source cells, ``inf`` everywhere when there is no source cell. Square cells.
    """
    source = np.ascontiguousarray(source, dtype=np.bool_)
    if not source.any():
        return np.full(source.shape, np.inf)
    g = np.empty(source.shape, np.float64)
    _column_pass(source, g)
    out = np.empty(source.shape, np.float64)
    _row_pass(g, out)
    np.sqrt(out, out=out)
    out *= pixel_size_m
    return out


@numba.njit(cache=True, nogil=True)
def _column_cells(source: np.ndarray, beyond: int, out: np.ndarray) -> None:
    # distance, in cells, to the nearest source cell in the same column, ``beyond`` where that
    # is more than ``beyond - 1``; swept a row at a time (down, then up), in memory order
    h, w = source.shape
    last = np.full(w, -beyond - 1, np.int64)
    for i in range(h):
        for j in range(w):
            if source[i, j]:
                last[j] = i
            out[i, j] = min(i - last[j], beyond)
    last[:] = h + beyond + 1
    for i in range(h - 1, -1, -1):
        for j in range(w):
            if source[i, j]:
                last[j] = i
            d = last[j] - i
            if d < out[i, j]:
                out[i, j] = d


@numba.njit(cache=True, nogil=True)
def _ring_rows(column, reach, ring_lo, ring_hi, targets, out):
    # Row by row: whether the nearest source is within each threshold t, from the cells of
    # the row (squared distance (q - p)² + column[p]²): cell p reaches the cells
    # p - r .. p + r with r = reach[t, column[p]] (-1: none), and a cell is within t when an
    # interval covers it (the largest end of the intervals starting at or before it). Then
    # ring k of a target: within its upper threshold and not within its lower one (the last k).
    h, w = column.shape
    n_t = reach.shape[0]
    n_rings = ring_lo.shape[0]
    end = np.full(w, -1, np.int64)
    within = np.zeros((n_t, w), np.bool_)
    top = ring_hi[0]
    for r in range(n_rings):
        if reach[ring_hi[r], 0] > reach[top, 0]:
            top = ring_hi[r]  # the widest upper threshold
    for i in range(h):
        c = column[i]
        t_row = targets[i]
        near = False
        for t in range(n_t):
            rt = reach[t]
            wt = within[t]
            if rt[0] == 0 and rt[1] < 0:  # within 0: the source cells
                for q in range(w):
                    wt[q] = c[q] == 0
                    near |= wt[q]
                continue
            for p in range(w):
                r = rt[c[p]]
                if r >= 0:
                    a = max(p - r, 0)
                    if p + r > end[a]:
                        end[a] = p + r
            cur = -1
            for q in range(w):
                if end[q] > cur:
                    cur = end[q]
                end[q] = -1
                wt[q] = cur >= q
            near |= cur >= 0
        if not near:
            continue  # no source within reach of this row
        wtop = within[top]
        for q in range(w):
            if not (t_row[q] and wtop[q]):
                continue
            for r in range(n_rings):
                if within[ring_hi[r], q] and not within[ring_lo[r], q]:
                    out[i, q] = r + 1


def _largest_square_within(distance_m: float, pixel_size_m: float) -> int:
    """The largest squared cell distance ``s`` with ``sqrt(s) * pixel_size_m <= distance_m``
    (as the kernels compute it), -1 if none."""
    if not distance_m >= 0:
        return -1
    s = int(np.floor((distance_m / pixel_size_m) ** 2))
    while np.sqrt(np.float64(s + 1)) * pixel_size_m <= distance_m:
        s += 1
    while s >= 0 and np.sqrt(np.float64(s)) * pixel_size_m > distance_m:
        s -= 1
    return s


def ring_numbers(
    source: np.ndarray,
    targets: np.ndarray,
    *,
    lower: np.ndarray,
    upper: np.ndarray,
    pixel_size_m: float,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Ring number (1, 2, …; uint8) of each ``targets`` cell whose distance ``d`` to the nearest
    ``source`` cell centre (as :func:`distance_to_source`) has ``lower[k] < d <= upper[k]``
    (the last such k), written into ``out`` (zeros by default); other cells are left as they are.

    Exact, without computing distances: ``d <= t`` is ``(row offset)² + (column offset)² <= s``
    for the largest integer ``s`` that still gives ``d <= t``. The nearest source in each
    column is found first (up to the largest ``upper``), then, row by row, the cells each of
    them reaches within each threshold: a few integer operations a cell and threshold.
    """
    source = np.ascontiguousarray(source, dtype=np.bool_)
    if out is None:
        out = np.zeros(source.shape, np.uint8)
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    if not len(upper) or not source.any():
        return out
    # the thresholds as largest squared cell distances, and the cells each reaches
    thresholds = sorted({float(v) for v in (*lower, *upper)})
    squares = [_largest_square_within(t, pixel_size_m) for t in thresholds]
    beyond = int(np.sqrt(max(max(squares), 0))) + 1  # column distances from here on: too far
    d = np.arange(beyond + 1)
    reach = np.full((len(thresholds), beyond + 1), -1, np.int64)
    for t, s in enumerate(squares):
        left = s - d[:-1] ** 2
        ok = left >= 0
        r = np.floor(np.sqrt(np.maximum(left, 0))).astype(np.int64)
        r += (r + 1) ** 2 <= left  # exact integer square roots
        r -= r**2 > left
        reach[t, :-1] = np.where(ok, r, -1)
    index = {t: k for k, t in enumerate(thresholds)}
    ring_lo = np.array([index[float(v)] for v in lower], np.int64)
    ring_hi = np.array([index[float(v)] for v in upper], np.int64)
    dtype = np.int16 if beyond < 2**15 else np.int32 if beyond < 2**31 else np.int64
    column = np.empty(source.shape, dtype)
    _column_cells(source, beyond, column)
    _ring_rows(column, reach, ring_lo, ring_hi, np.ascontiguousarray(targets, dtype=np.bool_), out)
    return out


@numba.njit(cache=True, nogil=True)
def _lookup(codes: np.ndarray, lut: np.ndarray, out: np.ndarray) -> None:
    n = lut.shape[0]
    flat_c = codes.ravel()
    flat_o = out.ravel()
    for k in range(flat_c.shape[0]):
        c = flat_c[k]
        flat_o[k] = lut[c] if 0 <= c < n else 0


@numba.njit(cache=True, nogil=True)
def _lookup_inside(codes, inside, lut, out) -> None:
    n = lut.shape[0]
    flat_c = codes.ravel()
    flat_i = inside.ravel()
    flat_o = out.ravel()
    for k in range(flat_c.shape[0]):
        c = flat_c[k]
        flat_o[k] = lut[c] if flat_i[k] > 0 and 0 <= c < n else 0


def lookup(codes: np.ndarray, lut: np.ndarray, *, inside: np.ndarray | None = None) -> np.ndarray:
    """``lut[codes]`` where ``0 <= codes < len(lut)`` (and ``inside > 0``, if given), else 0
    (uint8)."""
    codes = np.ascontiguousarray(codes)
    out = np.empty(codes.shape, np.uint8)
    lut = np.ascontiguousarray(lut, dtype=np.uint8)
    if inside is None:
        _lookup(codes, lut, out)
    else:
        inside = np.ascontiguousarray(inside)
        if inside.shape != codes.shape:
            raise ValueError(f"inside {inside.shape} and codes {codes.shape} differ in shape")
        _lookup_inside(codes, inside, lut, out)
    return out


@numba.njit(cache=True, nogil=True)
def _pair_lookup(a, b, table, out) -> None:
    n_a, n_b = table.shape
    flat_a = a.ravel()
    flat_b = b.ravel()
    flat_o = out.ravel()
    for k in range(flat_a.shape[0]):
        x, y = flat_a[k], flat_b[k]
        flat_o[k] = table[x, y] if 0 <= x < n_a and 0 <= y < n_b else 0


def pair_lookup(a: np.ndarray, b: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[a, b]`` where both are within the table, else 0 (the table's dtype): a code for
    each pair of classes (ring and zone, say) in one pass, without the pair's intermediate
    arrays."""
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    if a.shape != b.shape:
        raise ValueError(f"a {a.shape} and b {b.shape} differ in shape")
    table = np.ascontiguousarray(table)
    out = np.empty(a.shape, table.dtype)
    _pair_lookup(a, b, table, out)
    return out


@numba.njit(cache=True, nogil=True)
def _count_codes(codes, inside, counts) -> None:
    n = counts.shape[0]
    flat_c = codes.ravel()
    flat_i = inside.ravel()
    for k in range(flat_c.shape[0]):
        c = flat_c[k]
        if flat_i[k] > 0 and 0 <= c < n:
            counts[c] += 1


def code_counts(codes: np.ndarray, inside: np.ndarray, *, n: int) -> np.ndarray:
    """Pixel count (int64) of each code ``0 .. n - 1`` where ``inside > 0``, in one pass;
    codes out of that range are not counted."""
    codes = np.ascontiguousarray(codes)
    inside = np.ascontiguousarray(inside)
    if inside.shape != codes.shape:
        raise ValueError(f"inside {inside.shape} and codes {codes.shape} differ in shape")
    counts = np.zeros(n, np.int64)
    _count_codes(codes, inside, counts)
    return counts


# --- connected components of equal values (one block) ------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _find(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:  # path compression
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@numba.njit(cache=True, nogil=True, inline="always")
def _union(parent, a, b):
    # a may be 0 (no label yet); the smaller root wins, so a root is its component's first label
    if a == 0:
        return _find(parent, b)
    ra = _find(parent, a)
    rb = _find(parent, b)
    if ra < rb:
        parent[rb] = ra
        return ra
    if rb < ra:
        parent[ra] = rb
    return rb


@numba.njit(cache=True, nogil=True)
def _label_runs(values, mask, use_mask, eight, out, shift):
    # Patches of equal values (on cells where ``mask`` is true if ``use_mask``, else on
    # non-zero cells): the runs of each row are joined by union-find to the runs of the row
    # above that they touch (overlap, or touch at a corner with 8-connectivity). A label is
    # created only for a run that touches no run of its patch above, so labels are created in
    # the order of their first pixel and a patch's smallest label is that of its first pixel.
    # ``out``: labels 1..n plus ``shift``, 0 plus ``shift`` outside the patches.
    h, w = values.shape
    n_cells = h * w
    if n_cells == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    run_start = np.empty(n_cells + 1, np.int32)  # column where each run starts, row by row
    run_label = np.empty(n_cells, np.int32)  # 0: a run outside the patches
    row_first = np.empty(h + 1, np.int64)  # first run of each row
    parent = np.empty(n_cells + 1, np.int32)
    start = np.empty(n_cells + 1, np.int64)  # flat index of the pixel that created each label
    reach = 1 if eight else 0  # a run above may end this many cells before a run's start
    n = 0
    k = 0
    for i in range(h):
        row_first[i] = k
        vi = values[i]
        vu = values[i - 1] if i > 0 else vi
        mi = mask[i] if use_mask else mask[0]
        mu = mask[i - 1] if use_mask and i > 0 else mi
        # the row above: its runs prev .. prev_end - 1
        prev = row_first[i - 1] if i > 0 else 0
        prev_end = k
        # the row's runs first (starts at k0 .. k - 1, then w)
        k0 = k
        run_start[k] = 0
        k += 1
        if use_mask:
            for c in range(1, w):
                if (vi[c] != vi[c - 1]) | (mi[c] != mi[c - 1]):
                    run_start[k] = c
                    k += 1
        else:
            for c in range(1, w):
                if vi[c] != vi[c - 1]:
                    run_start[k] = c
                    k += 1
        run_start[k] = w  # a sentinel, overwritten by the next row's first run
        for r in range(k0, k):
            j = run_start[r]
            e = run_start[r + 1]
            v = vi[j]
            inside = mi[j] if use_mask else v != 0
            lab = 0
            if inside and i > 0:
                # skip the runs above that end before this run can touch them
                while prev < prev_end:
                    nxt = run_start[prev + 1] if prev + 1 < prev_end else w
                    if nxt + reach > j:
                        break
                    prev += 1
                q = prev
                while q < prev_end:
                    s = run_start[q]
                    if s >= e + reach:
                        break
                    if vu[s] == v and (mu[s] if use_mask else True):
                        lab = _union(parent, lab, run_label[q])
                    q += 1
            if inside and lab == 0:
                n += 1
                parent[n] = n
                start[n] = i * w + j
                lab = n
            run_label[r] = lab
    row_first[h] = k
    # a root is the smallest label of its tree (unions keep the smaller root) and parent[x] <= x,
    # so one increasing pass resolves every label; roots in increasing order are the patches in
    # the order of their first pixel (row-major)
    final = np.empty(n + 1, np.int32)
    final[0] = 0
    firsts = np.empty(n, np.int64)
    m = 0
    for x in range(1, n + 1):
        p = parent[x]
        if p == x:
            m += 1
            final[x] = m
            firsts[m - 1] = start[x]
        else:
            final[x] = final[p]
    counts = np.zeros(m + 1, np.int64)
    for i in range(h):
        for r in range(row_first[i], row_first[i + 1]):
            j0 = run_start[r]
            j1 = run_start[r + 1] if r + 1 < row_first[i + 1] else w
            f = final[run_label[r]]
            out[i, j0:j1] = f + shift
            counts[f] += j1 - j0
    return counts[1:], firsts[:m]


def label_equal(values: np.ndarray, *, connectivity: int = 8):
    """Patches of equal non-zero value in one block (union-find over the runs of each row).

    Returns ``(labels, counts, first)``: int32 labels ``1..n`` (0 where ``values`` is 0),
    numbered in the order of each patch's first pixel in row-major order; the pixel count of
    each patch; the flat index of its first pixel. The partition is that of
    :func:`scipy.ndimage.label` on ``values == v`` for each value ``v`` (4- or 8-connectivity).
    """
    values = np.ascontiguousarray(values)
    if values.dtype == np.bool_:
        values = values.view(np.uint8)
    out = np.empty(values.shape, np.int32)
    no_mask = np.zeros((1, 1), np.bool_)
    counts, firsts = _label_runs(values, no_mask, False, connectivity == 8, out, 0)
    return out, counts, firsts


# --- moving-window counts (exact, integer) -----------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _row_prefix(values, pad, pre):
    # pre[i, pad + x] = sum of values[i, :x] for x clipped to [0, w], for x in [-pad, w + pad]
    h, w = values.shape
    for i in range(h):
        for k in range(pad + 1):
            pre[i, k] = 0
        s = np.uint32(0)
        for j in range(w):
            s += values[i, j]  # wraps modulo 2**32: differences stay exact (see window_sum)
            pre[i, pad + j + 1] = s
        for k in range(pad + w + 1, pre.shape[1]):
            pre[i, k] = s


@numba.njit(cache=True, nogil=True)
def _window_sum(pre, lo, hi, pad, out):
    h, w = out.shape
    r = lo.shape[0] // 2
    for i in range(h):
        acc = out[i]
        acc[:] = 0
        for d in range(lo.shape[0]):
            ii = i + d - r
            if lo[d] > hi[d] or ii < 0 or ii >= h:
                continue
            row = pre[ii]
            ra = row[pad + lo[d] : pad + lo[d] + w]
            rb = row[pad + hi[d] + 1 : pad + hi[d] + 1 + w]
            for j in range(w):
                acc[j] += rb[j] - ra[j]


def kernel_runs(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Column offsets ``(lo, hi)`` of each row of a 0/1 kernel whose rows are single runs.

    None when a row is not one contiguous run (or the kernel is not odd-sized and square).
    Empty rows get ``lo > hi``.
    """
    k = np.asarray(kernel) != 0
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 == 0:
        return None
    r = k.shape[0] // 2
    lo = np.ones(k.shape[0], np.int64)
    hi = np.zeros(k.shape[0], np.int64)
    for d, row in enumerate(k):
        idx = np.flatnonzero(row)
        if len(idx) == 0:
            continue
        if idx[-1] - idx[0] + 1 != len(idx):
            return None
        lo[d], hi[d] = idx[0] - r, idx[-1] - r
    return lo, hi


def window_sum(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sum of ``values`` (uint32 or smaller) over a window given by row runs, modulo 2**32.

    The window at ``(i, j)`` holds ``(i + d - r, j + lo[d] .. j + hi[d])`` for each kernel row
    ``d`` (``r = len(lo) // 2``); positions outside the array count 0 (as ``mode="constant"``).
    Each window row is the difference of two row-wise prefix sums: O(rows) per pixel, integer
    arithmetic modulo 2**32, so the result is exact whenever the true sum is below 2**32 (e.g.
    counts of a 0/1 mask; or two counts below 2**16 packed as ``a + (b << 16)``).
    """
    v = np.ascontiguousarray(values, dtype=np.uint32)
    lo = np.asarray(lo, np.int64)
    hi = np.asarray(hi, np.int64)
    h, w = v.shape
    pad = int(max(np.abs(lo).max(initial=0), np.abs(hi).max(initial=0) + 1))
    pre = np.empty((h, w + 1 + 2 * pad), np.uint32)
    _row_prefix(v, pad, pre)
    out = np.empty((h, w), np.uint32)
    _window_sum(pre, lo, hi, pad, out)
    return out


@numba.njit(cache=True, nogil=True)
def _add_box_row(box, pre, ii, pad, box_lo, box_hi, sign):
    # box += sign * (row ii's packed counts in columns box_lo..box_hi around each column)
    w = box.shape[0]
    ra = pre[ii, pad + box_lo : pad + box_lo + w]
    rb = pre[ii, pad + box_hi + 1 : pad + box_hi + 1 + w]
    if sign > 0:
        for j in range(w):
            box[j] += rb[j] - ra[j]
    else:
        for j in range(w):
            box[j] -= rb[j] - ra[j]


@numba.njit(cache=True, nogil=True)
def _dense(zones, packed_lut, lo, hi, pad, threshold, box_lo, box_hi, outside, out):
    # (slices, not computed 2-D indices, in the inner loops: numba then vectorises them)
    h, w = zones.shape
    pre = np.empty((h, w + 1 + 2 * pad), np.uint32)
    for i in range(h):
        pre[i, : pad + 1] = 0
        zr = zones[i]
        dst = pre[i, pad + 1 : pad + 1 + w]
        s = np.uint32(0)
        for j in range(w):
            s += packed_lut[zr[j]]
            dst[j] = s
        pre[i, pad + w + 1 :] = s
    n_rows = lo.shape[0]
    r = n_rows // 2
    prune = outside >= 0
    # packed counts in the kernel's bounding box (all its rows, columns box_lo..box_hi), kept
    # for the current row by adding the row entering the box and removing the one leaving it
    box = np.zeros(w, np.uint32)
    if prune:
        for ii in range(0, min(h, n_rows - r)):
            _add_box_row(box, pre, ii, pad, box_lo, box_hi, 1)
    acc = np.empty(w, np.uint32)
    for i in range(h):
        zr = zones[i]
        j0, j1 = 0, w - 1
        if prune:
            if i > 0:
                if i + n_rows - 1 - r < h:
                    _add_box_row(box, pre, i + n_rows - 1 - r, pad, box_lo, box_hi, 1)
                if i - 1 - r >= 0:
                    _add_box_row(box, pre, i - 1 - r, pad, box_lo, box_hi, -1)
            # the window holds at most the box's built-up pixels and at least its mapped pixels
            # less the box's pixels outside the window (and the mapped centre): a pixel whose
            # bound is short of the threshold by a whole pixel cannot be dense
            out[i, :] = 0
            maybe = False
            for j in range(w):
                least = max(np.int64(box[j] & np.uint32(0xFFFF)) - outside, 1)
                maybe |= np.float64(box[j] >> np.uint32(16)) + 1.0 >= threshold * least
            if not maybe:
                continue
            j0, j1 = w, -1
            for j in range(w):
                least = max(np.int64(box[j] & np.uint32(0xFFFF)) - outside, 1)
                if zr[j] != 0 and np.float64(box[j] >> np.uint32(16)) + 1.0 >= threshold * least:
                    if j0 == w:
                        j0 = j
                    j1 = j
            if j1 < 0:
                continue
        n = j1 + 1 - j0
        part = acc[j0 : j1 + 1]
        part[:] = 0
        for d in range(n_rows):
            ii = i + d - r
            if lo[d] > hi[d] or ii < 0 or ii >= h:
                continue
            ra = pre[ii, pad + lo[d] + j0 : pad + lo[d] + j0 + n]
            rb = pre[ii, pad + hi[d] + 1 + j0 : pad + hi[d] + 1 + j0 + n]
            for j in range(n):
                part[j] += rb[j] - ra[j]
        for j in range(n):
            if zr[j0 + j] == 0:
                out[i, j0 + j] = 0
            else:
                a = part[j]
                share = np.float64(a >> np.uint32(16)) / np.float64(a & np.uint32(0xFFFF))
                out[i, j0 + j] = 1 if share >= threshold else 0


def dense_share(
    zones: np.ndarray, built: np.ndarray, lo: np.ndarray, hi: np.ndarray, threshold: float
) -> np.ndarray:
    """1 where ``built / mapped >= threshold`` in the window around a mapped pixel, else 0.

    ``zones`` are uint8 (0 = not mapped); ``built[z]`` says whether zone ``z`` is built-up
    (256 entries). The window is given by row runs as for :func:`window_sum`; both counts are
    packed into one uint32 (mapped in the low, built-up in the high 16 bits), so the window
    must hold fewer than 2**16 pixels. The share is the same float64 division as numpy's.

    Most pixels are far from any town: the counts in the window's bounding box (two additions a
    pixel, kept row by row) bound the share from above, and the window itself is summed only
    over the part of each row where that bound reaches the threshold.
    """
    zones = np.ascontiguousarray(zones, dtype=np.uint8)
    lo = np.asarray(lo, np.int64)
    hi = np.asarray(hi, np.int64)
    pad = int(max(np.abs(lo).max(initial=0), np.abs(hi).max(initial=0) + 1))
    out = np.empty(zones.shape, np.uint8)
    # per zone code: 1 (mapped) + 2**16 (built-up); 0 for code 0 (not mapped)
    packed = (np.arange(256) != 0).astype(np.uint32) + (np.asarray(built, np.uint32) << 16)
    packed[0] = 0
    rows = lo <= hi
    box_lo = int(lo[rows].min(initial=0))
    box_hi = int(hi[rows].max(initial=-1))
    n_box = len(lo) * max(box_hi - box_lo + 1, 0)
    # the bound needs the box's counts packed like the window's (each below 2**16)
    outside = n_box - int((hi - lo + 1)[rows].sum()) if 0 < n_box < 2**16 else -1
    _dense(zones, packed, lo, hi, pad, float(threshold), box_lo, box_hi, outside, out)
    return out


# --- minimum mapping unit: stable pixels touching small patches --------------------------------


@numba.njit(cache=True, nogil=True)
def _distinct_small_around(small, i, j, eight, nb):
    # the distinct non-zero patch ids among the neighbours of (i, j), into nb; returns how many
    m = 0
    for dy in range(-1, 2):
        for dx in range(-1, 2):
            if (dy == 0 and dx == 0) or (not eight and dy != 0 and dx != 0):
                continue
            s = small[i + dy, j + dx]
            if s == 0:
                continue
            seen = False
            for t in range(m):
                if nb[t] == s:
                    seen = True
                    break
            if not seen:
                nb[m] = s
                m += 1
    return m


@numba.njit(cache=True, nogil=True)
def _touch_rows(small, zones, eight):
    # small, zones: (h + 2, w + 2) with a one-pixel halo; small = patch id where the pixel is in a
    # small patch, else 0. For every stable core pixel (zone != 0, not small), each distinct small
    # patch among its neighbours gives one row (patch, zone of the pixel).
    # The scan over whole rows is kept minimal (row views, no inner loops): the rare pixel next
    # to a small patch is handled by _distinct_small_around. This is ~10x faster than one loop
    # nest with the neighbour search inlined, which LLVM did not optimise.
    h, w = zones.shape[0] - 2, zones.shape[1] - 2
    nb = np.empty(8, np.int64)
    cap = 1024
    out_lab = np.empty(cap, np.int64)
    out_zone = np.empty(cap, np.int64)
    n = 0
    for i in range(1, h + 1):
        up, mid, down, zrow = small[i - 1], small[i], small[i + 1], zones[i]
        for j in range(1, w + 1):
            near = up[j] | down[j] | mid[j - 1] | mid[j + 1]
            if eight:
                near |= up[j - 1] | up[j + 1] | down[j - 1] | down[j + 1]
            if near == 0:  # the common case: no small patch around
                continue
            z = zrow[j]
            if z == 0 or mid[j] != 0:
                continue
            m = _distinct_small_around(small, i, j, eight, nb)
            if n + m > cap:
                cap *= 2
                grown = np.empty(cap, np.int64)
                grown[:n] = out_lab[:n]
                out_lab = grown
                grown = np.empty(cap, np.int64)
                grown[:n] = out_zone[:n]
                out_zone = grown
            for t in range(m):
                out_lab[n] = nb[t]
                out_zone[n] = z
                n += 1
    return out_lab[:n].copy(), out_zone[:n].copy()


def touch_rows(small: np.ndarray, zones: np.ndarray, *, connectivity: int):
    """``(patch, zone)`` rows: one per stable core pixel and distinct small patch it touches.

    ``small`` (patch id in small patches, else 0) and ``zones`` carry a one-pixel halo.
    """
    return _touch_rows(np.ascontiguousarray(small), np.ascontiguousarray(zones), connectivity == 8)


# --- areas: pixel counts per (value pair, column) ------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _small_patch_pixels(core, n_local, base, target, r0, c0, width):
    h, w = core.shape
    sizes = np.zeros(target.shape[0], np.int64)
    n_change = 0
    n_wait = 0
    n_border = 0
    for i in range(h):
        for j in range(w):
            p = core[i, j]
            if p == 0:
                continue
            if p > n_local:
                n_border += 1
            else:
                sizes[p - base] += 1
                if target[p - base] > 0:
                    n_change += 1
                else:
                    n_wait += 1
    change_at = np.empty(n_change, np.int64)
    change_zone = np.empty(n_change, target.dtype)
    wait_at = np.empty(n_wait, np.int64)
    wait_id = np.empty(n_wait, np.int64)
    border_at = np.empty(n_border, np.int64)
    border_id = np.empty(n_border, np.int64)
    a = 0
    b = 0
    c = 0
    for i in range(h):
        row = (i + r0) * width + c0
        for j in range(w):
            p = core[i, j]
            if p == 0:
                continue
            if p > n_local:
                border_at[c] = row + j
                border_id[c] = p
                c += 1
            elif target[p - base] > 0:
                change_at[a] = i * w + j
                change_zone[a] = target[p - base]
                a += 1
            else:
                wait_at[b] = row + j
                wait_id[b] = p
                b += 1
    return sizes, (change_at, change_zone), (wait_at, wait_id), (border_at, border_id)


def small_patch_pixels(
    core: np.ndarray,
    *,
    n_local: int,
    base: int,
    target: np.ndarray,
    origin: tuple[int, int],
    width: int,
):
    """One pass over a block's small-patch ids (``core``; 0: a stable pixel), for the minimum
    mapping unit: inside patches have ids ``base + l`` (``1 <= base + l <= n_local``, local
    label ``l``) and take zone ``target[l]`` (0: none yet), border patches have ids above
    ``n_local``.

    Returns ``sizes`` (pixels of each local label), the pixels of the inside patches that take
    a zone (flat index in the block, zone), of those that wait (flat index in a grid
    ``width`` wide whose cell ``origin`` is the block's first, id) and of the border patches
    (the same), each in raster order.
    """
    core = np.ascontiguousarray(core)
    target = np.ascontiguousarray(target)
    return _small_patch_pixels(
        core, int(n_local), int(base), target, int(origin[0]), int(origin[1]), int(width)
    )


@numba.njit(cache=True, nogil=True)
def _pair_column_counts(a, b, n_a, n_b, out):
    h, w = a.shape
    for i in range(h):
        ar, br = a[i], b[i]
        for j in range(w):
            x, y = ar[j], br[j]
            if x < 0 or x >= n_a or y < 0 or y >= n_b:
                return False
            out[x * n_b + y, j] += 1
    return True


def pair_column_counts(a: np.ndarray, b: np.ndarray, *, n_a: int, n_b: int) -> np.ndarray:
    """Pixel counts per value pair and column: ``out[a * n_b + b, column]`` (int64), in one
    pass. Values must be in ``0 <= a < n_a`` and ``0 <= b < n_b`` (else ``ValueError``)."""
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"two 2-D arrays of one shape needed (got {a.shape} and {b.shape})")
    out = np.zeros((n_a * n_b, a.shape[1]), np.int64)
    if not _pair_column_counts(a, b, n_a, n_b, out):
        raise ValueError(f"values out of range: a must be in [0, {n_a}), b in [0, {n_b})")
    return out
