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
from ecoplan.rules import MinMappingUnit
from ecoplan.zones import NODATA, zone_code

__all__ = ["MmuResult", "neighbour_counts_block", "majority_targets", "apply_mmu"]

log = logging.getLogger(__name__)


def _offsets(connectivity: Connectivity) -> list[tuple[int, int]]:
    if connectivity == 4:
        return [(-1, 0), (1, 0), (0, -1), (0, 1)]
    return [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


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
    h, w = labels.shape[0] - 2, labels.shape[1] - 2
    if len(small_ids):
        pos = np.clip(np.searchsorted(small_ids, labels), 0, len(small_ids) - 1)
        small = (small_ids[pos] == labels) & (labels > 0)
    else:
        small = np.zeros(labels.shape, bool)
    core_zone = zones[1:-1, 1:-1]
    stable = (core_zone != NODATA) & (labels[1:-1, 1:-1] > 0) & ~small[1:-1, 1:-1]
    qidx = np.arange(h * w, dtype=np.int64).reshape(h, w)
    pl, pq = [], []
    for dy, dx in _offsets(connectivity):
        nb = (slice(1 + dy, 1 + dy + h), slice(1 + dx, 1 + dx + w))
        sel = stable & small[nb]
        pl.append(labels[nb][sel])
        pq.append(qidx[sel])
    lab = np.concatenate(pl)
    q = np.concatenate(pq)
    if len(lab) == 0:
        e = np.empty(0, np.int64)
        return e, e, e
    # one row per (patch, touching pixel), then counts per (patch, zone); keys packed in int64
    ids, inv = np.unique(lab, return_inverse=True)
    pair = np.unique(inv.astype(np.int64) * (h * w) + q)
    patch, pixel = pair // (h * w), pair % (h * w)
    key = patch * 256 + core_zone.ravel()[pixel].astype(np.int64)
    keys, counts = np.unique(key, return_counts=True)
    return ids[keys // 256], keys % 256, counts.astype(np.int64)


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


def apply_mmu(zones: da.Array, settings: MinMappingUnit, *, pixel_size_m: float) -> MmuResult:
    """Merge patches smaller than ``settings.area_ha`` into their majority neighbour zone."""
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
        lab_h = da.overlap.overlap(comps.labels, depth=1, boundary=0)
        zon_h = da.overlap.overlap(zones, depth=1, boundary=NODATA)
        parts = per_block(
            neighbour_counts_block, lab_h, zon_h, small_ids=small_ids, connectivity=conn
        )
        parts = parts.compute().ravel().tolist()
        ids, targets = majority_targets(
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
        )
        if len(ids) == 0:
            break
        passes += 1
        merged += len(ids)
        changed += int(comps.sizes[np.searchsorted(comps.ids, ids)].sum())
        target = comps.lookup(ids, targets.astype(zones.dtype))
        zones = da.map_blocks(_replace_block, zones, target, dtype=zones.dtype).persist()
        left -= len(ids)
    else:
        log.warning("minimum mapping unit: stopped after %d passes", settings.max_iterations)
    return MmuResult(zones, merged, changed, left, passes)
