"""Vector zone rules: features of vector layers mapped to zones by attribute and burnt onto the
zone raster (rules section ``vector_zones``).

A rule selects features with one test on a field (``equals``, ``in``, ``prefix``) or a pandas
expression, and gives them a zone, or the zone their field value maps to through a text
crosswalk (LDD ``LU_CODE`` -> ``ldd``). Rules are in priority order: where several cover a pixel
centre, the first listed decides; all of them override the raster (within ``replaces``).

The core functions work on GeoDataFrames and numpy arrays; :func:`burn_rules` maps the burn over
a dask array, block by block (halo 0).
"""

from __future__ import annotations

import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd

from ecoplan.classify import BUILT_UP, target_code, text_zones
from ecoplan.errors import InputError, RulesError
from ecoplan.grid import Grid
from ecoplan.io import rasterize_on_grid
from ecoplan.rules import Crosswalk, VectorCondition, VectorZoneRule, load_crosswalk
from ecoplan.zones import zone_code

__all__ = ["select_features", "feature_targets", "replaceable_codes", "burn_rules"]


def _field(gdf: pd.DataFrame, name: str, *, source: str) -> pd.Series:
    if name not in gdf.columns:
        fields = ", ".join(
            str(c) for c in gdf.columns if c != getattr(gdf, "_geometry_column_name", None)
        )
        raise InputError(f"{source}: no field {name!r}; fields are: {fields}")
    return gdf[name]


def _same(col: pd.Series, value) -> np.ndarray:
    """``col == value``, numerically for numbers, else as text without surrounding blanks."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        num = pd.to_numeric(col, errors="coerce")
        return (num == value).fillna(False).to_numpy(bool)
    text = col.astype("string").str.strip()
    return (text == str(value).strip()).fillna(False).to_numpy(bool)


def select_features(gdf: pd.DataFrame, where: VectorCondition | None, *, source: str) -> np.ndarray:
    """Boolean mask of the features a condition selects (all when ``where`` is None)."""
    n = len(gdf)
    if where is None:
        return np.ones(n, dtype=bool)
    if where.expression is not None:
        table = pd.DataFrame(gdf.drop(columns=gdf.geometry.name, errors="ignore"))
        try:
            result = table.eval(where.expression, engine="python")
        except Exception as err:
            raise RulesError(
                f"{source}: expression {where.expression!r} failed ({type(err).__name__}: "
                f"{err}); fields are: {', '.join(map(str, table.columns))}"
            ) from err
        if not isinstance(result, pd.Series) or result.dtype != bool:
            raise RulesError(
                f"{source}: expression {where.expression!r} must give true/false per feature"
            )
        return result.to_numpy(bool)
    col = _field(gdf, where.field, source=source)
    if where.equals is not None:
        return _same(col, where.equals)
    if where.in_ is not None:
        mask = np.zeros(n, dtype=bool)
        for v in where.in_:
            mask |= _same(col, v)
        return mask
    prefixes = (where.prefix,) if isinstance(where.prefix, str) else tuple(where.prefix)
    text = col.astype("string").str.strip()
    return text.str.startswith(prefixes).fillna(False).to_numpy(bool)


def feature_targets(
    gdf: gpd.GeoDataFrame,
    rule: VectorZoneRule,
    *,
    crosswalk: Crosswalk | None = None,
    source: str,
) -> np.ndarray:
    """Raster value (zone code or :data:`BUILT_UP`) per feature; 0 = the rule does not burn it."""
    where = f"{source}: vector_zones rule {rule.id!r}"
    selected = select_features(gdf, rule.where, source=where)
    out = np.zeros(len(gdf), dtype=np.uint8)
    if rule.zone is not None:
        out[selected] = target_code(rule.zone)
        return out
    if crosswalk is None:
        raise ValueError(f"rule {rule.id!r} needs its crosswalk")
    field = rule.field or crosswalk.field
    if field is None:
        raise RulesError(
            f"{where}: give 'field' (the crosswalk {crosswalk.name!r} names no default field)"
        )
    col = _field(gdf, field, source=f"{source} (vector_zones rule {rule.id!r})")
    values = [_plain(v) for v in col[selected]]
    out[selected] = text_zones(values, crosswalk, source=f"{source}, field {field!r}")
    return out


def _plain(v):
    if isinstance(v, float) and v == v and v.is_integer():
        return int(v)
    return v


def replaceable_codes(rule: VectorZoneRule) -> tuple[int, ...]:
    """Raster values a rule may overwrite (built-up land counts as urban and rural)."""
    if rule.replaces is None:
        return tuple(range(1, 8)) + (BUILT_UP,)
    codes = [zone_code(z) for z in rule.replaces]
    if "urban" in rule.replaces or "rural" in rule.replaces:
        codes.append(BUILT_UP)
    return tuple(codes)


def load_rule_crosswalk(rule: VectorZoneRule) -> Crosswalk | None:
    """The crosswalk a rule names (a shipped name or a path), or None."""
    if rule.crosswalk is None:
        return None
    try:
        return load_crosswalk(rule.crosswalk)
    except RulesError as err:
        raise RulesError(f"vector_zones rule {rule.id!r}: {err}") from err


def _overlay_block(zones, raster_zones, units, burnt, *, codes):
    sel = (burnt > 0) & (units > 0) & np.isin(raster_zones, codes)
    return np.where(sel, burnt, zones).astype(zones.dtype)


def burn_rules(
    zones: da.Array,
    layers: list[tuple[VectorZoneRule, gpd.GeoDataFrame, np.ndarray]],
    *,
    grid: Grid,
    units: da.Array,
) -> da.Array:
    """Burn ``(rule, features in the grid CRS, target per feature)`` in priority order.

    The first rule in the list wins where rules overlap; within one rule, later features win.
    Pixels outside the units (``units == 0``) are never changed; ``replaces`` is tested against
    the zones given (the raster classification).
    """
    out = zones
    for rule, gdf, targets in reversed(layers):
        keep = targets > 0
        if not keep.any():
            continue
        burnt = rasterize_on_grid(
            list(gdf.geometry.values[keep]),
            targets[keep],
            grid,
            chunks=zones.chunks,
            dtype=np.uint8,
        )
        out = da.map_blocks(
            _overlay_block,
            out,
            zones,
            units,
            burnt,
            codes=replaceable_codes(rule),
            dtype=zones.dtype,
        )
    return out
