"""The six plan layers (``plan_<id>``, DESIGN.md section 2), derived by the ``plans:`` rules.

Each plan rule adds one kind of land (a sub-category) to one plan, taken from

- ``zones:`` cells of the zone raster (today's zones, or the proposed plan when an allocation
  step made one),
- ``layer:`` the polygons of a vector role of the region (protected areas, heritage sites …),
- ``buffers:`` the bands of buffer rules (exact polygons for vector sources, cells for zones).

Within a plan, rules apply in file order and land already taken by an earlier rule of the same
plan is not taken again, so the features of a plan layer never overlap and ``area_ha`` adds up
to the plan's area. One feature per (unit, sub-category); ``rule_ids`` lists the rules whose
land it holds. Plans may overlap each other (a heritage site inside a city is in both).

The core, :func:`derive_plans`, is pure (arrays and GeoDataFrames in, GeoDataFrames out).
Cell masks stay lazy dask expressions of the zones (nothing the size of the grid is held in
memory besides what the caller holds); they are computed block by block when vectorised.
:func:`plans_for_region` gathers its inputs from a prepared region (reading the vector roles).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ecoplan.buffers import BufferResult
from ecoplan.grid import Grid
from ecoplan.plan_types import PLAN_TYPES
from ecoplan.polygons import vectorize
from ecoplan.rules import PlanRule
from ecoplan.zones import zone_code

__all__ = ["PLAN_COLUMNS", "PlanInputs", "PlanLayers", "derive_plans", "plans_for_region"]

PLAN_COLUMNS = [
    "plan_type",
    "name_en",
    "name_th",
    "subcategory",
    "subcategory_th",
    "area_ha",
    "region_id",
    "unit_id",
    "rule_ids",
    "geometry",
]
"""Fields of every ``plan_<id>`` layer, in order."""


@dataclass(frozen=True)
class PlanInputs:
    """Everything the plan rules may draw from, on one working grid.

    ``zones`` are zone codes (uint8, 0 outside), ``units`` the unit index of each cell
    (1..n, 0 outside the region), with ``unit_ids[i - 1]`` naming unit ``i``; both numpy or
    dask arrays (dask ones are computed block by block). ``buffers`` maps a buffer rule id to
    its result; ``skipped_buffers`` maps the id of a buffer that was not computed to the reason.
    ``layers`` maps a vector role to its geometries in the grid's CRS; roles the region does
    not give are absent.
    """

    zones: np.ndarray | da.Array
    units: np.ndarray | da.Array
    unit_ids: Sequence[str]
    grid: Grid
    region_id: str
    buffers: Mapping[str, BufferResult] = field(default_factory=dict)
    skipped_buffers: Mapping[str, str] = field(default_factory=dict)
    layers: Mapping[str, gpd.GeoSeries] = field(default_factory=dict)
    zones_from: str = "zones"  # "zones" (today's land use) or "proposed plan"


@dataclass
class PlanLayers:
    """The six plan layers (keyed by layer name ``plan_<id>``) and the warnings met on the way."""

    layers: dict[str, gpd.GeoDataFrame]
    warnings: list[str]
    zones_from: str = "zones"

    def areas(self) -> pd.DataFrame:
        """Area per plan type: ``plan_type``, ``layer``, ``name_en``, ``name_th``,
        ``features``, ``area_ha``."""
        rows = []
        for plan in PLAN_TYPES:
            gdf = self.layers[plan.layer]
            rows.append(
                {
                    "plan_type": plan.id,
                    "layer": plan.layer,
                    "name_en": plan.name_en,
                    "name_th": plan.name_th,
                    "features": len(gdf),
                    "area_ha": float(gdf["area_ha"].sum()) if len(gdf) else 0.0,
                }
            )
        return pd.DataFrame(rows)


def _polygonal(geom) -> shapely.Geometry | None:
    """The polygon parts of a geometry as one (multi)polygon, or None when it has no area."""
    if geom is None or geom.is_empty:
        return None
    if geom.geom_type in ("Polygon", "MultiPolygon") and geom.is_valid:
        return geom if geom.area > 0 else None  # already clean: no costly union
    parts = list(shapely.get_parts(shapely.make_valid(geom)))
    polys = []
    while parts:
        g = parts.pop()
        if g.geom_type == "Polygon":
            if g.area > 0:
                polys.append(g)
        elif g.geom_type in ("MultiPolygon", "GeometryCollection"):
            parts += list(shapely.get_parts(g))
    if not polys:
        return None
    return shapely.union_all(polys)


def _lazy(a, like=None) -> da.Array:
    """A dask view of an array (numpy arrays become one block, or ``like``'s blocks)."""
    if isinstance(a, da.Array):
        return a if like is None else a.rechunk(like.chunks)
    return da.from_array(np.asarray(a), chunks=like.chunks if like is not None else -1)


def _unit_polygons(units: da.Array, grid: Grid) -> dict[int, shapely.Geometry]:
    polys = vectorize(units.astype(np.int32), grid, mask=units > 0)
    return dict(zip(polys["value"], polys.geometry, strict=True))


class _Source:
    """A rule's land, as a cell mask or as a geometry (or nothing, with the reason).

    ``reason`` also says why a cell mask that turns out empty holds no land.
    """

    def __init__(self, mask=None, geometry=None, reason: str = ""):
        self.mask = mask
        self.geometry = geometry
        self.reason = reason


def _source(rule: PlanRule, inputs: PlanInputs, zones: da.Array, units: da.Array) -> _Source:
    src = rule.source
    if src.zones is not None:
        mask = da.isin(zones, [zone_code(z) for z in src.zones]) & (units > 0)
        why = f"no {'/'.join(src.zones)} cells in the {inputs.zones_from}"
        return _Source(mask=mask, reason=why)
    if src.layer is not None:
        role = src.layer
        if role not in inputs.layers:
            return _Source(reason=f"the region gives no '{role}' layer")
        geoms = inputs.layers[role]
        geom = _polygonal(shapely.union_all(np.asarray(geoms.values))) if len(geoms) else None
        if geom is None:
            return _Source(
                reason=f"layer '{role}' holds no polygons (points and lines have no area; "
                "a buffer rule around them does)"
            )
        return _Source(geometry=geom)
    mask = None
    geoms, reasons = [], []
    for bid in src.buffers or ():
        if bid not in inputs.buffers:
            why = inputs.skipped_buffers.get(bid, "it is not in the rules' buffers section")
            reasons.append(f"buffer {bid}: {why}")
            continue
        b = inputs.buffers[bid]
        if b.polygons is not None:
            geoms += [g for g in b.polygons.geometry if g is not None and not g.is_empty]
        else:
            rings = _lazy(b.rings, like=units) > 0
            mask = rings if mask is None else (mask | rings)
    reason = "; ".join(reasons) if reasons else "the buffers hold no land"
    if mask is not None:
        mask = mask & (units > 0)
        if not geoms:
            return _Source(mask=mask, reason=reason)
        # zone bands and vector bands together: the cells join as polygons
        cells = vectorize(mask.astype(np.uint8), inputs.grid)
        geoms += list(cells.geometry)
    geom = _polygonal(shapely.union_all(geoms)) if geoms else None
    if geom is None:
        return _Source(reason=reason)
    return _Source(geometry=geom)


def _empty(crs) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {c: pd.Series(dtype="float64" if c == "area_ha" else "object") for c in PLAN_COLUMNS[:-1]},
        geometry=gpd.GeoSeries([], crs=crs),
        crs=crs,
    )


def _cell_polygons(masks: list, units: da.Array, grid: Grid) -> list[dict[int, shapely.Geometry]]:
    """Per cell rule, its polygon in each unit: a cell goes to the first rule whose mask holds
    it. All rules of a plan in one raster, so one pass over the blocks."""
    if not masks:
        return []
    n = len(masks) + 1
    claim = da.zeros(units.shape, dtype=np.int32, chunks=units.chunks)
    for k in range(len(masks), 0, -1):
        claim = da.where(masks[k - 1], np.int32(k), claim)
    key = da.where(claim > 0, units.astype(np.int32) * n + claim, 0).astype(np.int32)
    polys = vectorize(key, grid)
    out: list[dict[int, shapely.Geometry]] = [{} for _ in masks]
    for value, geom in zip(polys["value"], polys.geometry, strict=True):
        u, k = divmod(int(value), n)
        out[k - 1][u] = geom
    return out


def derive_plans(inputs: PlanInputs, rules: Sequence[PlanRule]) -> PlanLayers:
    """The six plan layers from ``inputs`` by ``rules`` (see the module docstring).

    Every plan type gets a layer; one without land gets zero features and a warning saying why.
    ``area_ha`` is the ground area of the feature in hectares (the grid's CRS is metric).
    The cell rules of a plan are vectorised together, in one pass over the blocks.
    """
    crs = inputs.grid.crs
    units = _lazy(inputs.units)
    zones = _lazy(inputs.zones, like=units)
    unit_polys = None
    layers: dict[str, gpd.GeoDataFrame] = {}
    notes: list[str] = []
    for plan in PLAN_TYPES:
        prules = [r for r in rules if r.plan == plan.id]
        if not prules:
            notes.append(f"plan {plan.id}: no features (the rules have no plans: entry for it)")
            layers[plan.layer] = _empty(crs)
            continue
        sources = [_source(rule, inputs, zones, units) for rule in prules]
        cell_rules = [i for i, src in enumerate(sources) if src.mask is not None]
        by_rule = dict(
            zip(
                cell_rules,
                _cell_polygons([sources[i].mask for i in cell_rules], units, inputs.grid),
                strict=True,
            )
        )
        claimed_geom: dict[int, shapely.Geometry] = {}
        pieces: list[tuple[int, PlanRule, shapely.Geometry]] = []
        reasons = []
        for i, (rule, src) in enumerate(zip(prules, sources, strict=True)):
            if src.mask is not None:
                if not by_rule[i]:
                    reasons.append(f"{rule.id}: {src.reason}")
                for u, g in sorted(by_rule[i].items()):
                    if u in claimed_geom:
                        g = shapely.difference(g, claimed_geom[u])
                    pieces.append((u, rule, g))
                continue
            if src.geometry is None:
                reasons.append(f"{rule.id}: {src.reason}")
                continue
            if unit_polys is None:
                unit_polys = _unit_polygons(units, inputs.grid)
            # cells taken by the plan's earlier cell rules
            taken_by_unit: dict[int, list] = {}
            for j in cell_rules:
                if j < i:
                    for u, g in by_rule[j].items():
                        taken_by_unit.setdefault(u, []).append(g)
            for u, unit_geom in unit_polys.items():
                g = shapely.intersection(src.geometry, unit_geom)
                if g.is_empty:
                    continue
                taken = taken_by_unit.get(u)
                taken = shapely.union_all(taken) if taken else None
                for prior in (taken, claimed_geom.get(u)):
                    if prior is not None:
                        g = shapely.difference(g, prior)
                g = _polygonal(g)
                if g is None:
                    continue
                pieces.append((int(u), rule, g))
                prev = claimed_geom.get(u)
                claimed_geom[u] = g if prev is None else shapely.union(prev, g)
        gdf = _features(pieces, plan, inputs)
        if len(gdf) == 0:
            why = "; ".join(reasons) if reasons else "its rules select no land"
            notes.append(f"plan {plan.id}: no features ({why})")
        layers[plan.layer] = gdf
    return PlanLayers(layers, notes, zones_from=inputs.zones_from)


def _features(pieces, plan, inputs: PlanInputs) -> gpd.GeoDataFrame:
    crs = inputs.grid.crs
    groups: dict[tuple[int, str], list] = {}
    order: dict[str, int] = {}
    for u, rule, g in pieces:
        g = _polygonal(g)
        if g is None:
            continue
        groups.setdefault((u, rule.subcategory), []).append((rule, g))
        order.setdefault(rule.subcategory, len(order))
    rows = []
    for (u, sub), items in sorted(groups.items(), key=lambda kv: (kv[0][0], order[kv[0][1]])):
        geoms = [g for _, g in items]
        geom = geoms[0] if len(geoms) == 1 else _polygonal(shapely.union_all(geoms))
        if geom is None:
            continue
        if geom.geom_type == "Polygon":
            geom = shapely.MultiPolygon([geom])
        rule_ids = list(dict.fromkeys(r.id for r, _ in items))
        th = next((r.subcategory_th for r, _ in items if r.subcategory_th), "")
        rows.append(
            {
                "plan_type": plan.id,
                "name_en": plan.name_en,
                "name_th": plan.name_th,
                "subcategory": sub,
                "subcategory_th": th,
                "area_ha": float(geom.area) / 1e4,
                "region_id": inputs.region_id,
                "unit_id": str(inputs.unit_ids[u - 1]),
                "rule_ids": ",".join(rule_ids),
                "geometry": geom,
            }
        )
    if not rows:
        return _empty(crs)
    return gpd.GeoDataFrame(rows, columns=PLAN_COLUMNS, geometry="geometry", crs=crs)


def plans_for_region(
    region,
    zones: np.ndarray | da.Array,
    units: np.ndarray | da.Array,
    buffers: Sequence[BufferResult],
    *,
    proposed: np.ndarray | da.Array | None = None,
) -> PlanLayers:
    """Plan layers of a prepared region (``ecoplan.pipeline.Region``) after its buffers.

    ``proposed``: the zone codes of a proposed plan (from an allocation step); when given, the
    ``zones:`` rules read it instead of today's ``zones``. Reads the vector roles the plan
    rules name.
    """
    from ecoplan.io import read_vector

    rules = region.rules
    grid = region.grid
    wanted = {r.source.layer for r in rules.plans if r.source.layer is not None}
    given = region.config.vector_layers()
    layers = {}
    for role in sorted(wanted & set(given)):
        v = given[role]
        gdf = read_vector(
            v.path, layer=v.layer, where=v.where, crs=grid.crs, what=role, allow_empty=True
        )
        layers[role] = gdf.geometry
    computed = {b.rule.id: b for b in buffers}
    skipped = {}
    for rule in rules.buffers:
        if rule.id in computed:
            continue
        role = rule.source.layer
        skipped[rule.id] = (
            f"skipped, the region gives no '{role}' layer"
            if role and role not in given
            else "skipped, its source has no features"
        )
    inputs = PlanInputs(
        zones=proposed if proposed is not None else zones,
        units=units,
        unit_ids=region.unit_ids,
        grid=grid,
        region_id=region.config.id,
        buffers=computed,
        skipped_buffers=skipped,
        layers=layers,
        zones_from="proposed plan" if proposed is not None else "zones",
    )
    return derive_plans(inputs, rules.plans)
