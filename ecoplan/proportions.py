"""Zone areas and shares per unit and per region, against the targets of the rules.

Areas are ground areas in hectares, counted on the zone raster of the working grid
(pixel count × pixel area). Shares are in 0–1, over the denominator the rules set
(the region's land area by default, see :class:`~ecoplan.rules.ProportionSettings`).
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
    counts: np.ndarray,
    *,
    unit_ids: list[str],
    region_id: str,
    pixel_area_m2: float,
    rules: Rules,
) -> pd.DataFrame:
    """The ``proportions`` table: one row per zone per unit, then per zone for the region.

    ``counts[i, z]`` is the pixel count of zone code ``z`` in unit ``i`` (``i`` = 1…n; row 0 is
    outside every unit and ignored). Columns: ``level`` (unit / region), ``unit_id``, ``zone``,
    ``zone_en``, ``zone_th``, ``area_ha``, ``share`` (0–1, empty for zones outside the
    denominator), ``target_min``, ``target_max``, ``status`` (ok / below / above / no target),
    ``denominator``.
    """
    denom_codes = [z.code for z in ZONES if z.name in rules.proportions.denominator_zones]
    targets = {(t.unit, t.zone): t for t in rules.targets}
    rows = []
    blocks = [("unit", uid, counts[i + 1]) for i, uid in enumerate(unit_ids)]
    blocks.append(("region", region_id, counts[1:].sum(axis=0)))
    for level, uid, c in blocks:
        denom = float(c[denom_codes].sum()) * pixel_area_m2 / 1e4
        for z in ZONES:
            area_ha = float(c[z.code]) * pixel_area_m2 / 1e4
            counted = z.code in denom_codes
            share = area_ha / denom if counted and denom > 0 else np.nan
            t = targets.get((None if level == "region" else uid, z.name))
            lo = t.min_share if t else None
            hi = t.max_share if t else None
            rows.append(
                {
                    "level": level,
                    "unit_id": uid,
                    "zone": z.code,
                    "zone_en": z.name,
                    "zone_th": ZONE_BY_CODE[z.code].name_th,
                    "area_ha": area_ha,
                    "share": share,
                    "target_min": lo if lo is not None else np.nan,
                    "target_max": hi if hi is not None else np.nan,
                    "status": _status(share, lo, hi) if counted else "not counted",
                    "denominator": rules.proportions.describe(),
                }
            )
    return pd.DataFrame(rows)
