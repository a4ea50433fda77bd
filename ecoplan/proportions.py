"""Zone areas and shares per unit and per region, against the targets of the rules.

Areas are ground areas in hectares on the zone raster of the working grid: the sum of the cells'
ground areas (:mod:`ecoplan.areas`, pixel area corrected by the projection's areal scale) when
``area_m2`` is given, else pixel count × pixel area. Shares are in 0–1, over the denominator the
rules set (the region's land area by default, see :class:`~ecoplan.rules.ProportionSettings`).
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pandas as pd

from ecoplan.rules import Rules
from ecoplan.zones import MAX_CODE, ZONE_BY_CODE, ZONES

__all__ = ["pair_counts", "zone_counts", "proportions_table"]

N_CODES = MAX_CODE + 1


def pair_counts_block(a: np.ndarray, b: np.ndarray, *, n_b: int, n_a: int) -> np.ndarray:
    """Counts of each ``(a, b)`` pair in a block, as an ``(n_a, n_b)`` int64 matrix. Halo: 0."""
    key = a.astype(np.int64) * n_b + b.astype(np.int64)
    return np.bincount(key.ravel(), minlength=n_a * n_b).reshape(n_a, n_b)


def pair_counts(a: da.Array, b: da.Array, *, n_a: int, n_b: int) -> np.ndarray:
    """Pixel counts of every ``(a, b)`` value pair over two aligned dask arrays (a reduction)."""
    b = b.rechunk(a.chunks)  # e.g. map_overlap with a halo wider than a chunk rechunks
    parts = [
        dask.delayed(pair_counts_block)(x, y, n_a=n_a, n_b=n_b)
        for x, y in zip(a.to_delayed().ravel(), b.to_delayed().ravel(), strict=True)
    ]
    return np.sum(dask.compute(*parts), axis=0).astype(np.int64)


def zone_counts(zones: da.Array, units: da.Array, *, n_units: int) -> np.ndarray:
    """Pixel counts per ``(unit index, zone code)``; unit index 0 is outside every unit."""
    return pair_counts(units, zones, n_a=n_units + 1, n_b=N_CODES)


def _status(share: float, lo: float | None, hi: float | None) -> str:
    if lo is None and hi is None:
        return "no target"
    if np.isnan(share):
        return "no land"
    # shares are compared at a precision of 1e-9 so that a share equal to a target is "ok"
    if lo is not None and share < lo - 1e-9:
        return "below"
    if hi is not None and share > hi + 1e-9:
        return "above"
    return "ok"


def proportions_table(
    counts: np.ndarray | None,
    *,
    unit_ids: list[str],
    region_id: str,
    pixel_area_m2: float,
    rules: Rules,
    area_m2: np.ndarray | None = None,
    area_m2_after: np.ndarray | None = None,
) -> pd.DataFrame:
    """The ``proportions`` table: one row per zone per unit, then per zone for the region.

    ``counts[i, z]`` is the pixel count of zone code ``z`` in unit ``i`` (``i`` = 1…n; row 0 is
    outside every unit and ignored). ``area_m2`` (same shape), when given, holds the exact
    ground areas and is used instead of ``counts × pixel_area_m2`` (``counts`` may then be
    None). Columns: ``level`` (unit / region), ``unit_id``, ``zone``, ``zone_en``, ``zone_th``,
    ``area_ha``, ``share`` (0–1, empty for zones outside the denominator), ``target_min``,
    ``target_max``, ``status`` (ok / below / above / no target / not counted / no land),
    ``denominator``. With ``area_m2_after`` (the proposed plan's areas), also ``area_ha_after``,
    ``share_after`` and ``status_after``.
    """
    if area_m2 is None and counts is None:
        raise ValueError("proportions_table needs counts or area_m2")
    before = (
        np.asarray(area_m2, dtype=np.float64)
        if area_m2 is not None
        else np.asarray(counts, dtype=np.float64) * pixel_area_m2
    )
    phases = [("", before)]
    if area_m2_after is not None:
        phases.append(("_after", np.asarray(area_m2_after, dtype=np.float64)))
    denom_codes = [z.code for z in ZONES if z.name in rules.proportions.denominator_zones]
    targets = {(t.unit, t.zone): t for t in rules.targets}
    rows = []
    scopes = [("unit", uid, i + 1) for i, uid in enumerate(unit_ids)]
    scopes.append(("region", region_id, None))
    for level, uid, row in scopes:
        t_key = None if level == "region" else uid
        per_phase = []
        for suffix, m in phases:
            a = m[1:].sum(axis=0) if row is None else m[row]
            per_phase.append((suffix, a / 1e4, float(a[denom_codes].sum()) / 1e4))
        for z in ZONES:
            counted = z.code in denom_codes
            t = targets.get((t_key, z.name))
            lo = t.min_share if t else None
            hi = t.max_share if t else None
            rec = {
                "level": level,
                "unit_id": uid,
                "zone": z.code,
                "zone_en": z.name,
                "zone_th": ZONE_BY_CODE[z.code].name_th,
            }
            for suffix, area_ha, denom in per_phase:
                share = float(area_ha[z.code]) / denom if counted and denom > 0 else np.nan
                rec[f"area_ha{suffix}"] = float(area_ha[z.code])
                rec[f"share{suffix}"] = share
                if suffix == "":
                    rec["target_min"] = lo if lo is not None else np.nan
                    rec["target_max"] = hi if hi is not None else np.nan
                rec[f"status{suffix}"] = _status(share, lo, hi) if counted else "not counted"
                if suffix == "":
                    rec["denominator"] = rules.proportions.describe()
            rows.append(rec)
    return pd.DataFrame(rows)
