"""Suitability of each cell for each zone: a weighted sum of normalised factors (0–1).

Factors are declared in the rules (``suitability.factors``): the ground distance to a vector
role (roads, rivers …) or to cells of some zones (existing urban …), the slope of the DEM, the
value of a raster (the DEM as elevation, population, any raster file), or today's zone. Each
measured value ``v`` is turned into 0–1 by a linear ramp (:func:`normalise`):

- ``increasing``: ``0`` for ``v ≤ low``, ``(v − low) / (high − low)`` between, ``1`` for
  ``v ≥ high``;
- ``decreasing``: ``1 − increasing`` (1 near, 0 far);
- ``current_zone`` factors give the 0–1 value of each zone directly (unlisted zones: 0).

The suitability of zone ``z`` is ``S_z = Σ_f w_zf · n_f`` with weights that add up to 1, given
directly or derived from an AHP pairwise matrix (:func:`ecoplan.rules.ahp_weights`; matrices with
a consistency ratio above 0.1 are refused when the rules are loaded). ``S_z`` is in 0–1; missing
data (NaN) in a factor counts as 0.

Distances are Euclidean, in metres on the working grid, from pixel centre to the nearest source
pixel centre (vector sources are burnt onto the grid first, so within one pixel of the exact
distance). A distance is needed only up to the ramp's far end (``max(low, high)``), beyond which
the factor is constant, so each block needs a halo of that distance: chunk-invariant.
"""

from __future__ import annotations

import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd

from ecoplan.buffers import distance_block, halo_pixels, overlap_depth
from ecoplan.constraints import slope_deg
from ecoplan.grid import Grid
from ecoplan.io import rasterize_on_grid
from ecoplan.rules import Factor, Normalise, SuitabilitySettings
from ecoplan.zones import NODATA, ZONES, zone_code

__all__ = [
    "normalise",
    "factor_raster",
    "factor_available",
    "zone_suitability",
    "needed_inputs",
    "weights_table",
]


def normalise(values: np.ndarray, spec: Normalise) -> np.ndarray:
    """A linear ramp of ``values`` to 0–1 (see the module docstring). NaN stays NaN."""
    v = np.asarray(values, dtype=np.float64)
    up = np.clip((v - spec.low) / (spec.high - spec.low), 0.0, 1.0)
    return up if spec.kind == "increasing" else 1.0 - up


def _distance_factor_block(source: np.ndarray, *, pixel_size_m: float, spec: Normalise):
    d = distance_block(source > 0, pixel_size_m=pixel_size_m)
    return normalise(d, spec)


def factor_raster(
    factor: Factor,
    *,
    zones: da.Array,
    grid: Grid,
    vectors: dict[str, gpd.GeoSeries],
    rasters: dict[str, da.Array],
) -> da.Array | None:
    """The factor's 0–1 values on the grid (lazy float64); None when its input is not given."""
    src = factor.source
    chunks = zones.chunks
    if src.current_zone is not None:
        lut = np.zeros(256, dtype=np.float64)
        for name, value in src.current_zone.items():
            lut[zone_code(name)] = value
        return zones.map_blocks(lambda z: lut[z], dtype=np.float64)
    spec = factor.normalise
    assert spec is not None
    if src.distance_to is not None:
        if src.distance_to.zones is not None:
            codes = [zone_code(z) for z in src.distance_to.zones]
            source = da.isin(zones, codes).astype(np.uint8)
        else:
            geoms = vectors.get(src.distance_to.layer)
            if geoms is None or len(geoms) == 0:
                return None
            source = rasterize_on_grid(
                list(geoms),
                np.ones(len(geoms), dtype=np.uint8),
                grid,
                chunks=chunks,
                dtype=np.uint8,
            )
        halo = halo_pixels(max(spec.low, spec.high, 0.0), grid.pixel_size_m)
        return source.map_overlap(
            _distance_factor_block,
            depth=overlap_depth(halo, source.shape),
            boundary=0,
            trim=True,
            dtype=np.float64,
            pixel_size_m=grid.pixel_size_m,
            spec=spec,
        ).rechunk(chunks)
    if src.slope_of is not None:
        dem = rasters.get("dem")
        if dem is None:
            return None
        return slope_deg(dem.rechunk(chunks), grid=grid).map_blocks(
            normalise, spec, dtype=np.float64
        )
    key = src.raster if src.raster is not None else f"path:{src.path}"
    values = rasters.get(key)
    if values is None:
        return None
    return values.rechunk(chunks).map_blocks(normalise, spec, dtype=np.float64)


def needed_inputs(settings: SuitabilitySettings) -> tuple[set[str], set[str]]:
    """The vector roles and raster keys (roles, ``path:<file>``) the factors read."""
    vectors, rasters = set(), set()
    for f in settings.factors:
        s = f.source
        if s.distance_to is not None and s.distance_to.layer is not None:
            vectors.add(s.distance_to.layer)
        elif s.slope_of is not None:
            rasters.add("dem")
        elif s.raster is not None:
            rasters.add(s.raster)
        elif s.path is not None:
            rasters.add(f"path:{s.path}")
    return vectors, rasters


def zone_suitability(
    settings: SuitabilitySettings,
    *,
    zones: da.Array,
    grid: Grid,
    vectors: dict[str, gpd.GeoSeries],
    rasters: dict[str, da.Array],
) -> tuple[dict[int, da.Array], list[str]]:
    """Suitability (0–1, lazy float64) per zone code, and notes on factors left out.

    Zones with no suitability rule have suitability 0 everywhere. When a factor's input is not
    given the factor is left out and the zone's other weights are scaled to add up to 1 again;
    a note says so.
    """
    notes: list[str] = []
    factors = {}
    for f in settings.factors:
        r = factor_raster(f, zones=zones, grid=grid, vectors=vectors, rasters=rasters)
        if r is None:
            notes.append(f"suitability factor {f.id}: left out, its input is not given")
        factors[f.id] = r
    out: dict[int, da.Array] = {}
    for z in ZONES:
        rule = settings.zones.get(z.name)
        if rule is None:
            continue
        weights = rule.factor_weights()
        present = {k: w for k, w in weights.items() if factors.get(k) is not None}
        total = sum(present.values())
        if total <= 0:
            notes.append(f"suitability of {z.name}: no factor available, suitability 0")
            continue
        if len(present) < len(weights):
            notes.append(
                f"suitability of {z.name}: weights of "
                + ", ".join(f"{k} {w:.3f}" for k, w in present.items())
                + f" scaled by {1 / total:.3f} to add up to 1"
            )
        s = sum(w / total * da.nan_to_num(factors[k]) for k, w in present.items())
        out[z.code] = da.where(zones != NODATA, da.clip(s, 0.0, 1.0), 0.0)
    return out, notes


def factor_available(factor: Factor, *, vectors: dict, rasters: dict) -> bool:
    """Whether the region gives the input a factor reads."""
    s = factor.source
    if s.distance_to is not None and s.distance_to.layer is not None:
        return len(vectors.get(s.distance_to.layer, ())) > 0
    if s.slope_of is not None:
        return "dem" in rasters
    if s.raster is not None:
        return s.raster in rasters
    if s.path is not None:
        return f"path:{s.path}" in rasters
    return True


def weights_table(settings: SuitabilitySettings, *, available: set[str] | None = None):
    """The weights per zone and factor, how they were set, and the AHP consistency ratio.

    Columns: ``zone``, ``zone_en``, ``factor``, ``factor_name``, ``weight`` (as the rules give
    it, normalised to add up to 1 per zone), ``weight_used`` (rescaled over the ``available``
    factors; 0 for a factor left out), ``method`` (weights / ahp), ``consistency_ratio`` (AHP
    only; matrices above 0.1 are refused).
    """
    names = {f.id: f.name_en for f in settings.factors}
    rows = []
    for zone, rule in settings.zones.items():
        cr = rule.ahp.consistency_ratio if rule.ahp is not None else np.nan
        weights = rule.factor_weights()
        ok = set(weights) if available is None else set(weights) & available
        total = sum(w for k, w in weights.items() if k in ok)
        for fid, w in weights.items():
            rows.append(
                {
                    "zone": zone_code(zone),
                    "zone_en": zone,
                    "factor": fid,
                    "factor_name": names.get(fid, ""),
                    "weight": w,
                    "weight_used": w / total if fid in ok and total > 0 else 0.0,
                    "method": "ahp" if rule.ahp is not None else "weights",
                    "consistency_ratio": cr,
                }
            )
    cols = ["zone", "zone_en", "factor", "factor_name", "weight", "weight_used", "method"]
    cols.append("consistency_ratio")
    return pd.DataFrame(rows, columns=cols)
