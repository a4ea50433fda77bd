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

Patches are whole across chunk borders (:mod:`ecoplan.components`), and the counting is a halo-1
operation, so the result does not depend on the chunk size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dask.array as da
import numpy as np

from ecoplan.components import Connectivity, label_components, per_block
from ecoplan.holding import return_freed_memory
from ecoplan.kernels import touch_rows
from ecoplan.rules import MinMappingUnit
from ecoplan.spill import hold
from ecoplan.zones import NODATA, zone_code

__all__ = [
    "MmuResult",
    "neighbour_counts_block",
    "touch_counts_block",
    "block_majority",
    "majority_targets",
    "apply_mmu",
]

log = logging.getLogger(__name__)


def neighbour_counts_block(
    labels: np.ndarray,
    zones: np.ndarray,
    small_ids: np.ndarray,
    *,
    connectivity: Connectivity,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stable pixels touching each small patch, by zone, for the interior of a block. Halo: 1.

    ``labels`` and ``zones`` carry a one-pixel halo on every side; ``small_ids`` is sorted.
    Returns ``(patch_id, zone, count)`` arrays.
    """
    if len(small_ids):
        pos = np.clip(np.searchsorted(small_ids, labels), 0, len(small_ids) - 1)
        small = np.where((small_ids[pos] == labels) & (labels > 0), labels, 0)
    else:
        small = np.zeros(labels.shape, np.int64)
    return touch_counts_block(small, zones, connectivity=connectivity)


def touch_counts_block(
    small: np.ndarray, zones: np.ndarray, *, connectivity: Connectivity
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`neighbour_counts_block` given ``small``: the patch id on pixels of small patches,
    0 elsewhere (with the one-pixel halo)."""
    lab, zone = touch_rows(small, zones, connectivity=connectivity)
    if len(lab) == 0:
        e = np.empty(0, np.int64)
        return e, e, e
    # each row is one (patch, stable pixel) pair: count them per (patch, zone)
    keys, counts = np.unique(lab * 256 + zone, return_counts=True)
    return keys // 256, keys % 256, counts.astype(np.int64)


def block_majority(
    small: np.ndarray, zones: np.ndarray, *, connectivity: Connectivity
) -> tuple[np.ndarray, ...]:
    """The zone each small patch of a block takes, settled inside the block. Halo: 1.

    A small patch that does not reach the block's border has all its neighbours in the block:
    its majority is final here, ``(ids, targets)``. Patches on the border (or in the halo) may
    go on in other blocks: their ``(patch_id, zone, count)`` rows are returned for
    :func:`majority_targets` over all blocks. So only patches along block seams are gathered
    whole-grid.
    """
    ids, zs, counts = touch_counts_block(small, zones, connectivity=connectivity)
    # patches on the block's border rows and columns, and those of the neighbours seen in the
    # halo (stable pixels here touch them: their rows are only part of their count)
    rim = [small[k] for k in (0, 1, -2, -1)] + [small[:, k] for k in (0, 1, -2, -1)]
    border = np.unique(np.concatenate(rim))
    on_border = np.isin(ids, border[border > 0])
    inner = ~on_border
    inner_ids, inner_targets = majority_targets(ids[inner], zs[inner], counts[inner])
    return inner_ids, inner_targets, ids[on_border], zs[on_border], counts[on_border]


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
    key = pinv.astype(np.int64) * 256 + np.asarray(zones, dtype=np.int64)
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


def _replace_block(zones, target):
    return np.where(target > 0, target, zones).astype(zones.dtype)


def apply_mmu(
    zones: da.Array,
    settings: MinMappingUnit,
    *,
    pixel_size_m: float,
    budget_bytes: int | None = None,
    folder=None,
) -> MmuResult:
    """Merge patches smaller than ``settings.area_ha`` into their majority neighbour zone.

    The zones after each pass are kept (:func:`ecoplan.spill.hold`): in memory when
    ``budget_bytes`` is None or they fit it, else in a temporary file in ``folder``.
    """
    if settings.area_ha <= 0:
        return MmuResult(zones, 0, 0, 0, 0)
    min_pixels = settings.area_ha * 1e4 / pixel_size_m**2
    if min_pixels <= 1 + 1e-9:
        return MmuResult(zones, 0, 0, 0, 0)  # no patch is smaller than one pixel
    exempt = np.array([zone_code(z) for z in settings.exempt], dtype=np.int64)
    conn = settings.connectivity
    merged = changed = left = passes = 0
    for _ in range(settings.max_iterations):
        comps = label_components(zones, connectivity=conn)
        small = (comps.sizes < min_pixels * (1 - 1e-9)) & ~np.isin(comps.values, exempt)
        small_ids = comps.ids[small]
        left = int(small.sum())
        if left == 0:
            break
        # int32 ids where they fit: the haloed blocks a pass holds are half the size
        id_type = np.int32 if len(comps.ids) < np.iinfo(np.int32).max else np.int64
        small_lab = comps.lookup(small_ids, small_ids.astype(id_type), fill=0)
        lab_h = da.overlap.overlap(small_lab, depth=1, boundary=0)
        zon_h = da.overlap.overlap(zones, depth=1, boundary=NODATA)
        parts = per_block(block_majority, lab_h, zon_h, connectivity=conn)
        parts = parts.compute().ravel().tolist()
        seam_ids, seam_targets = majority_targets(
            np.concatenate([p[2] for p in parts]),
            np.concatenate([p[3] for p in parts]),
            np.concatenate([p[4] for p in parts]),
        )
        ids = np.concatenate([*(p[0] for p in parts), seam_ids])
        targets = np.concatenate([*(p[1] for p in parts), seam_targets])
        order = np.argsort(ids, kind="stable")
        ids, targets = ids[order], targets[order]
        del parts
        if len(ids) == 0:
            break
        passes += 1
        merged += len(ids)
        changed += int(comps.sizes[np.searchsorted(comps.ids, ids)].sum())
        target = comps.lookup(ids, targets.astype(zones.dtype))
        zones = da.map_blocks(_replace_block, zones, target, dtype=zones.dtype)
        zones = hold(zones, budget_bytes=budget_bytes, folder=folder)
        del comps, target, small_lab, lab_h, zon_h
        return_freed_memory()
        left -= len(ids)
    else:
        log.warning("minimum mapping unit: stopped after %d passes", settings.max_iterations)
    return MmuResult(zones, merged, changed, left, passes)
