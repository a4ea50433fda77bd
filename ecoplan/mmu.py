"""Minimum mapping unit: small patches merged into the majority zone around them.

A patch is a set of contiguous pixels of one zone (4- or 8-connectivity). A patch is *small*
when its area (pixel count x pixel area) is below ``area_ha`` and its zone is not exempt; the
other patches are *stable*. One pass:

- for each small patch, count the stable pixels that touch it (each such pixel once, whatever
  the number of patch pixels it touches; "touch" uses the same connectivity);
- the patch takes the zone with the most such pixels; a tie goes to the lowest zone code;
- a small patch that touches no stable pixel waits for the next pass.

A patch that took a neighbour's zone joins a stable patch, so passes repeat until no small patch
touches a stable pixel (at most ``max_iterations``). Small patches with no stable pixel around
(an island of small patches surrounded by nodata) are left as they are and reported.

How it runs, chunk by chunk, with the result of the plain algorithm on the whole array:

- *First pass.* Each block is labelled on its own. A patch that does not reach the block's
  border is whole in the block, so whether it is small, and the stable pixels around it, are
  known in the block. Only patches on block borders are merged across the seams
  (:func:`ecoplan.components.border_patches`), and only for them are the touching pixels counted
  over all blocks (a halo of one pixel). So the tables held whole-grid have one row per border
  patch, not one per patch. Each block is labelled twice (the border summary, the counts); the
  counting pass lists the pixels its inside patches change, and the border patches' pixels,
  so the replacement writes those pixels without labelling again.
- *Later passes.* Stable pixels never change and a patch that took a zone joins a stable patch,
  so the small patches of pass *k + 1* are the patches that waited in pass *k* and did not
  join a patch that changed to their zone. Later passes run on those waiting pixels alone and
  their neighbours, read from the first pass's result: usually a few thousand pixels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import dask
import dask.array as da
import numpy as np

from ecoplan.components import (
    BorderPatches,
    Connectivity,
    border_patches,
    border_summary,
    per_block,
)
from ecoplan.holding import return_freed_memory
from ecoplan.kernels import label_equal, small_patch_pixels, touch_rows
from ecoplan.rules import MinMappingUnit
from ecoplan.spill import hold
from ecoplan.zones import NODATA, zone_code

__all__ = ["MmuResult", "touch_counts_block", "majority_targets", "apply_mmu"]

log = logging.getLogger(__name__)


def touch_counts_block(
    small: np.ndarray, zones: np.ndarray, *, connectivity: Connectivity
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stable pixels touching each small patch, by zone, for the core of a block. Halo: 1.

    ``small`` is the patch id on pixels of small patches, 0 elsewhere; ``small`` and ``zones``
    carry a one-pixel halo on every side. Returns ``(patch_id, zone, count)`` arrays.
    """
    lab, zone = touch_rows(small, zones, connectivity=connectivity)
    if len(lab) == 0:
        e = np.empty(0, np.int64)
        return e, e, e
    # each row is one (patch, stable pixel) pair: count them per (patch, zone)
    keys, counts = np.unique(lab * 256 + zone, return_counts=True)
    return keys // 256, keys % 256, counts.astype(np.int64)


def majority_targets(
    patch_ids: np.ndarray, zones: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each patch, the zone with the largest count; ties go to the lowest zone code.

    Rows for one ``(patch, zone)`` may repeat (from several blocks); they are summed first.
    """
    if len(patch_ids) == 0:
        e = np.empty(0, np.int64)
        return e, e
    ids, pinv = np.unique(patch_ids, return_inverse=True)
    key = pinv.astype(np.int64).ravel() * 256 + np.asarray(zones, dtype=np.int64)
    ukeys, inv = np.unique(key, return_inverse=True)
    total = np.bincount(inv.ravel(), weights=counts).astype(np.int64)
    keys = np.stack([ids[ukeys // 256], ukeys % 256], axis=1)
    order = np.lexsort((keys[:, 1], -total, keys[:, 0]))  # by patch, count desc, zone asc
    keys = keys[order]
    first = np.ones(len(keys), bool)
    first[1:] = keys[1:, 0] != keys[:-1, 0]
    return keys[first, 0], keys[first, 1]


@dataclass(frozen=True)
class MmuResult:
    """Zones after the minimum mapping unit, and what it changed."""

    zones: da.Array
    patches_merged: int
    pixels_changed: int
    patches_left: int  # small patches with no stable neighbour, left as they are
    passes: int


@dataclass(frozen=True)
class _FirstPass:
    """What a block needs to tell its small patches apart in the first pass.

    Small patch ids: a patch inside block ``k`` with local label ``l`` is ``local_bases[k] + l``
    (``1 .. n_local``); a border patch with index ``p`` is ``n_local + 1 + p``.
    """

    connectivity: Connectivity
    min_pixels: float
    exempt: np.ndarray  # 256 booleans, by zone code
    ncols: int  # blocks per row
    local_bases: np.ndarray
    n_local: int
    borders: BorderPatches
    border_small: np.ndarray  # per border patch: small?
    id_type: np.dtype

    def block_ids(self, zones: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The block's labels and the small-patch id of each local label (0: stable)."""
        lab, counts, first = label_equal(zones, connectivity=self.connectivity)
        values = zones.ravel()[first]
        ids = np.zeros(len(counts) + 1, self.id_type)
        small = (counts < self.min_pixels) & ~self.exempt[values]
        local = np.flatnonzero(small) + 1
        ids[local] = self.local_bases[k] + local
        border = self.borders.labels[k]
        patch = self.borders.block_patches(k)
        ids[border] = np.where(self.border_small[patch], self.n_local + 1 + patch, 0)
        return lab, ids


def _halos(first: _FirstPass, zone_type, chunks) -> list[tuple]:
    """Each block's one-pixel halo, from its neighbours' edge lines: the small-patch ids and
    zones of the row above and below (with the corners) and of the columns left and right.

    Edge pixels belong to border patches, whose ids are known once the seams are merged, so no
    block is labelled for its neighbours' sake.
    """
    heights, widths = chunks
    nr, nc = len(heights), len(widths)
    borders = first.borders

    def edge(i, j, side, length):
        if not (0 <= i < nr and 0 <= j < nc):
            return np.zeros(length, first.id_type), np.zeros(length, zone_type)
        patch, val = borders.edges[i * nc + j][side]
        ids = np.zeros(len(patch), first.id_type)
        on = patch >= 0
        ids[on] = np.where(first.border_small[patch[on]], first.n_local + 1 + patch[on], 0)
        return ids, np.asarray(val, zone_type)

    out = []
    for i in range(nr):
        for j in range(nc):
            w = widths[j]
            lines = []
            for di, side in ((-1, "bottom"), (1, "top")):
                left = edge(i + di, j - 1, side, 1)
                mid = edge(i + di, j, side, w)
                right = edge(i + di, j + 1, side, 1)
                lines.append(
                    tuple(np.concatenate([left[t][-1:], mid[t], right[t][:1]]) for t in range(2))
                )
            lines.append(edge(i, j - 1, "right", heights[i]))
            lines.append(edge(i, j + 1, "left", heights[i]))
            out.append(tuple(lines))  # (above, below, left, right), each (ids, zones)
    return out


def _with_halo(core: np.ndarray, halo: tuple, which: int) -> np.ndarray:
    h, w = core.shape
    out = np.empty((h + 2, w + 2), core.dtype)
    out[1:-1, 1:-1] = core
    above, below, left, right = halo
    out[0], out[-1] = above[which], below[which]
    out[1:-1, 0], out[1:-1, -1] = left[which], right[which]
    return out


def _count_block(zones, halo, first: _FirstPass, *, k: int, r0: int, c0: int, width: int):
    """Rows for the border patches; how the inside patches fare and the pixels they change
    (flat indices in the block, new zones); the pixels of waiting inside patches and of small
    border patches (global flat indices and ids). Halo: 1 (given)."""
    lab, block_ids = first.block_ids(zones, k)
    small_h = _with_halo(block_ids[lab], halo, 0)
    del lab
    zones_h = _with_halo(zones, halo, 1)
    ids, zs, counts = touch_counts_block(small_h, zones_h, connectivity=first.connectivity)
    core = small_h[1:-1, 1:-1]
    n_local, base = first.n_local, first.local_bases[k]
    on_border = ids > n_local
    # an inside patch's neighbours are all in the block: its majority zone is known here
    t_ids, t_zones = majority_targets(ids[~on_border], zs[~on_border], counts[~on_border])
    target = np.zeros(int(first.borders.counts[k]) + 1, zones.dtype)  # by local label
    target[t_ids - base] = t_zones
    sizes, (at, new), waiting, border_pixels = small_patch_pixels(
        core, n_local=n_local, base=base, target=target, origin=(r0, c0), width=width
    )
    taken = target > 0
    return {
        "rows": (ids[on_border], zs[on_border], counts[on_border]),
        "inside_small": int(np.count_nonzero(sizes)),
        "inside_merged": int(taken.sum()),
        "inside_changed": int(sizes[taken].sum()),
        "changes": (at.astype(_local_index(core.size)), new),
        "waiting": waiting,
        "border_pixels": border_pixels,
    }


def _local_index(size: int) -> np.dtype:
    return np.dtype(np.int32 if size < np.iinfo(np.int32).max else np.int64)


def _replace_block(zones: np.ndarray, changes: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The block after the first pass: ``changes`` = (flat indices in the block, new zones)."""
    at, new = changes
    if len(at) == 0:
        return zones
    out = zones.copy()
    out.ravel()[at] = new
    return out


def _block_changes(
    inside: list[tuple[np.ndarray, np.ndarray]],
    flat: np.ndarray,
    new: np.ndarray,
    chunks: tuple[tuple[int, ...], tuple[int, ...]],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each block's first-pass changes: its inside patches' (``inside``, by block) and the
    border patches' (global flat indices ``flat``, new zones ``new``) that fall in it."""
    heights, widths = chunks
    width = sum(widths)
    row_edges = np.cumsum((0, *heights))
    col_edges = np.cumsum((0, *widths))
    rows, cols = flat // width, flat % width
    bi = np.searchsorted(row_edges, rows, side="right") - 1
    bj = np.searchsorted(col_edges, cols, side="right") - 1
    block = bi * len(widths) + bj
    order = np.argsort(block, kind="stable")
    starts = np.searchsorted(block[order], np.arange(len(inside) + 1))
    out = []
    for k, (at, zone) in enumerate(inside):
        i, j = divmod(k, len(widths))
        sel = order[starts[k] : starts[k + 1]]
        local = (rows[sel] - row_edges[i]) * widths[j] + (cols[sel] - col_edges[j])
        out.append(
            (
                np.concatenate([at, local.astype(at.dtype)]),
                np.concatenate([zone, new[sel].astype(zone.dtype)]),
            )
        )
    return out


def _offsets(connectivity: Connectivity) -> np.ndarray:
    four = [(-1, 0), (0, -1), (0, 1), (1, 0)]
    eight = [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    return np.array(four + (eight if connectivity == 8 else []), dtype=np.int64)


@dataclass
class _Tail:
    """The later passes' outcome: new zones of pixels (global flat indices), and counts."""

    flat: np.ndarray
    zones: np.ndarray
    merged: int = 0
    changed: int = 0
    left: int = 0
    passes: int = 0
    exhausted: bool = False


def _around(zones: da.Array, rows: np.ndarray, cols: np.ndarray, off: np.ndarray):
    """Zones at ``(rows, cols)`` (sorted by row) and at each of their neighbours ``off``
    (0 past the edges), read one band of block rows (with a one-row halo) at a time."""
    height, width = zones.shape
    edges = np.concatenate([[0], np.cumsum(zones.chunks[0])]).astype(np.int64)
    own = np.zeros(len(rows), zones.dtype)
    near = np.zeros((len(rows), len(off)), zones.dtype)
    band = np.searchsorted(edges, rows, side="right") - 1
    for b in np.unique(band):
        lo, hi = np.searchsorted(band, [b, b + 1])
        top = max(int(edges[b]) - 1, 0)
        window = np.asarray(zones[top : min(int(edges[b + 1]) + 1, height)].compute())
        r, c = rows[lo:hi] - top, cols[lo:hi]
        own[lo:hi] = window[r, c]
        for d, (dy, dx) in enumerate(off):
            rr, cc = r + dy, c + dx
            ok = (rows[lo:hi] + dy >= 0) & (rows[lo:hi] + dy < height) & (cc >= 0) & (cc < width)
            near[lo:hi, d][ok] = window[rr[ok], cc[ok]]
    return own, near


def _later_passes(
    zones: da.Array,
    flat: np.ndarray,
    patch: np.ndarray,
    *,
    connectivity: Connectivity,
    passes: int,
) -> _Tail:
    """Passes 2 .. ``passes + 1`` on the pixels of the patches that waited in pass 1.

    ``flat`` (global flat indices) and ``patch`` (their patch ids) list every pixel of the
    waiting patches; ``zones`` is the result of pass 1, read only around those pixels.
    """
    height, width = zones.shape
    order = np.argsort(flat, kind="stable")
    flat, patch = flat[order], patch[order]
    pids, pidx = np.unique(patch, return_inverse=True)
    pidx = pidx.ravel().astype(np.int64)
    del patch, order
    n_patches = len(pids)
    sizes = np.bincount(pidx, minlength=n_patches)
    rows, cols = flat // width, flat % width
    off = _offsets(connectivity)
    step = off[:, 0] * width + off[:, 1]  # flat offset of each neighbour
    zone_now, nb_zone0 = _around(zones, rows, cols, off)
    zone_now = zone_now.astype(np.int64)
    inside = np.ones(nb_zone0.shape, bool)
    for d, (dy, dx) in enumerate(off):
        inside[:, d] = (rows + dy >= 0) & (rows + dy < height) & (cols + dx >= 0)
        inside[:, d] &= cols + dx < width
    del rows, cols
    # the waiting pixel each neighbour is, if any (-1), and its patch
    index_type = np.int32 if len(flat) < np.iinfo(np.int32).max else np.int64
    nb_w = np.full(nb_zone0.shape, -1, index_type)
    for d in range(len(off)):
        nb = flat + step[d]
        pos = np.clip(np.searchsorted(flat, nb), 0, len(flat) - 1)
        nb_w[:, d] = np.where(inside[:, d] & (flat[pos] == nb), pos, -1)
    is_w = nb_w >= 0
    nb_patch = np.where(is_w, pidx[np.maximum(nb_w, 0)], -1).astype(index_type)
    patch_zone = np.zeros(n_patches, np.int64)
    patch_zone[pidx] = zone_now
    waiting = np.ones(n_patches, bool)
    tail = _Tail(np.empty(0, np.int64), np.empty(0, np.int64), left=n_patches)
    changed_px = np.zeros(len(flat), bool)
    for _ in range(passes):
        nb_zone = np.where(is_w, zone_now[np.maximum(nb_w, 0)], nb_zone0)
        # a waiting patch next to a pixel that now has its zone joined that (stable) patch
        same = inside & (nb_zone == patch_zone[pidx][:, None]) & (nb_patch != pidx[:, None])
        joined = np.bincount(pidx[same.any(axis=1)], minlength=n_patches) > 0
        del same
        waiting &= ~joined
        tail.left = int(waiting.sum())
        if tail.left == 0:
            break
        # stable neighbours: mapped, and not a pixel of a patch still waiting
        stable = inside & (nb_zone != NODATA) & waiting[pidx][:, None]
        stable &= ~(is_w & waiting[np.maximum(nb_patch, 0)])
        pi, ki = np.nonzero(stable)
        del stable
        if len(pi) == 0:
            break
        # each stable pixel once per patch
        if n_patches * height * width < 2**62:  # one int64 key per (patch, pixel)
            key = pidx[pi] * np.int64(height * width) + (flat[pi] + step[ki])
            _, first_row = np.unique(key, return_index=True)
        else:
            key = np.stack([pidx[pi], flat[pi] + step[ki]], axis=1)
            _, first_row = np.unique(key, axis=0, return_index=True)
        del key
        p_rows = pidx[pi][first_row]
        z_rows = nb_zone[pi, ki][first_row]
        del pi, ki, nb_zone
        ids, targets = majority_targets(p_rows, z_rows, np.ones(len(p_rows), np.int64))
        tail.passes += 1
        tail.merged += len(ids)
        tail.changed += int(sizes[ids].sum())
        new_zone = np.zeros(n_patches, np.int64)
        new_zone[ids] = targets
        moved = new_zone[pidx] > 0
        zone_now = np.where(moved, new_zone[pidx], zone_now)
        patch_zone[ids] = targets
        changed_px |= moved
        waiting[ids] = False
        tail.left -= len(ids)
    else:
        tail.exhausted = True
    tail.flat, tail.zones = flat[changed_px], zone_now[changed_px]
    return tail


def _apply_changes(zones, *, changes, origins, width, block_info=None):
    """Pixels given by global flat index take new zones (``changes``: sorted flat, zones)."""
    (r0, r1), (c0, c1) = block_info[0]["array-location"]
    flat, new = changes
    lo = np.searchsorted(flat, r0 * width)
    hi = np.searchsorted(flat, (r1 - 1) * width + c1)
    if lo == hi:
        return zones
    f, z = flat[lo:hi], new[lo:hi]
    r, c = f // width, f % width
    ok = (c >= c0) & (c < c1)
    if not ok.any():
        return zones
    out = zones.copy()
    out[r[ok] - r0, c[ok] - c0] = z[ok]
    return out


def apply_mmu(
    zones: da.Array,
    settings: MinMappingUnit,
    *,
    pixel_size_m: float,
    budget_bytes: int | None = None,
    folder=None,
) -> MmuResult:
    """Merge patches smaller than ``settings.area_ha`` into their majority neighbour zone.

    The zones after the first pass are kept (:func:`ecoplan.spill.hold`): in memory when
    ``budget_bytes`` is None or they fit it, else in a temporary file in ``folder``. Later
    passes change few pixels; they are applied on the fly as the result is read.
    """
    if settings.area_ha <= 0:
        return MmuResult(zones, 0, 0, 0, 0)
    min_pixels = settings.area_ha * 1e4 / pixel_size_m**2
    if min_pixels <= 1 + 1e-9:
        return MmuResult(zones, 0, 0, 0, 0)  # no patch is smaller than one pixel
    exempt = np.zeros(256, bool)
    exempt[[zone_code(z) for z in settings.exempt]] = True
    conn = settings.connectivity
    if settings.max_iterations < 1:
        return MmuResult(zones, 0, 0, 0, 0)

    # pass 1: patches inside a block are settled in it; border patches over all blocks
    summaries = per_block(border_summary, zones, connectivity=conn).compute()
    borders = border_patches(summaries, connectivity=conn)
    del summaries
    local_bases = np.concatenate([[0], np.cumsum(borders.counts)[:-1]]).astype(np.int64)
    n_local = int(borders.counts.sum())
    border_small = (borders.sizes < min_pixels * (1 - 1e-9)) & ~exempt[borders.values]
    top = n_local + 1 + len(borders.sizes)
    first = _FirstPass(
        connectivity=conn,
        min_pixels=min_pixels * (1 - 1e-9),
        exempt=exempt,
        ncols=zones.numblocks[1],
        local_bases=local_bases,
        n_local=n_local,
        borders=borders,
        border_small=border_small,
        id_type=np.dtype(np.int32 if top < np.iinfo(np.int32).max else np.int64),
    )
    origins = tuple(np.concatenate([[0], np.cumsum(c)[:-1]]).astype(np.int64) for c in zones.chunks)
    width = zones.shape[1]
    halos = _halos(first, zones.dtype, zones.chunks)
    first = replace(first, borders=replace(borders, edges=[]))  # the edges are in the halos
    del borders.edges[:]
    shared = dask.delayed(first, pure=True)
    blocks = zones.to_delayed()
    nr, nc = zones.numblocks
    tasks = [
        dask.delayed(_count_block, pure=True)(
            blocks[i, j],
            halos[i * nc + j],
            shared,
            k=i * nc + j,
            r0=int(origins[0][i]),
            c0=int(origins[1][j]),
            width=width,
        )
        for i in range(nr)
        for j in range(nc)
    ]
    del halos
    parts = list(dask.compute(*tasks))
    del tasks, blocks, shared
    border_ids, border_targets = majority_targets(
        np.concatenate([p["rows"][0] for p in parts]),
        np.concatenate([p["rows"][1] for p in parts]),
        np.concatenate([p["rows"][2] for p in parts]),
    )
    n_small = sum(p["inside_small"] for p in parts) + int(border_small.sum())
    if n_small == 0:
        return MmuResult(zones, 0, 0, 0, 0)
    b_index = border_ids - (n_local + 1)
    merged = sum(p["inside_merged"] for p in parts) + len(border_ids)
    changed = sum(p["inside_changed"] for p in parts) + int(borders.sizes[b_index].sum())
    if merged == 0:
        return MmuResult(zones, 0, 0, n_small, 0)
    # the pixels of border patches that took a zone, and of the patches that wait
    b_flat = np.concatenate([p["border_pixels"][0] for p in parts])
    b_patch = np.concatenate([p["border_pixels"][1] for p in parts])
    pos = np.clip(np.searchsorted(border_ids, b_patch), 0, max(len(border_ids) - 1, 0))
    b_taken = border_ids[pos] == b_patch if len(border_ids) else np.zeros(len(b_patch), bool)
    w_flat = np.concatenate([p["waiting"][0] for p in parts] + [b_flat[~b_taken]])
    w_patch = np.concatenate([p["waiting"][1] for p in parts] + [b_patch[~b_taken]])
    changes = _block_changes(
        [p.pop("changes") for p in parts],
        b_flat[b_taken],
        border_targets[pos[b_taken]],
        zones.chunks,
    )
    del parts, b_flat, b_patch, pos, b_taken
    blocks = zones.to_delayed()
    replaced = da.block(
        [
            [
                da.from_delayed(
                    dask.delayed(_replace_block, pure=True)(blocks[i, j], changes[i * nc + j]),
                    shape=(zones.chunks[0][i], zones.chunks[1][j]),
                    dtype=zones.dtype,
                )
                for j in range(nc)
            ]
            for i in range(nr)
        ]
    )
    del changes, blocks
    result = hold(replaced, budget_bytes=budget_bytes, folder=folder)
    del replaced
    return_freed_memory()
    passes, left = 1, n_small - merged
    if len(w_flat) == 0 or settings.max_iterations == 1:
        if settings.max_iterations == 1:
            log.warning("minimum mapping unit: stopped after %d passes", settings.max_iterations)
        return MmuResult(result, merged, changed, left, passes)
    tail = _later_passes(
        result, w_flat, w_patch, connectivity=conn, passes=settings.max_iterations - 1
    )
    if tail.exhausted:
        log.warning("minimum mapping unit: stopped after %d passes", settings.max_iterations)
    if len(tail.flat):
        changes = (tail.flat, tail.zones.astype(zones.dtype))
        result = result.map_blocks(
            _apply_changes, changes=changes, origins=origins, width=width, dtype=zones.dtype
        )
    return MmuResult(
        result, merged + tail.merged, changed + tail.changed, tail.left, passes + tail.passes
    )
