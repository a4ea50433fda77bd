"""Refining the crosswalk classification (DESIGN.md section 6, "refine").

``refine_zones`` is the one call the pipeline makes between the crosswalk and the buffers:

1. vector zone rules (``vector_zones``): industrial estates, protected areas, LDD land use …
   burnt over the raster in priority order (:mod:`ecoplan.vector_rules`);
2. the urban/rural split of built-up land (``urban_rural``, :mod:`ecoplan.settlement`);
3. the minimum mapping unit (``min_mapping_unit``, :mod:`ecoplan.mmu`).

Each step is chunk-invariant; the function returns the new lazy zones and notes for the run log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import dask.array as da
import numpy as np

from ecoplan.classify import BUILT_UP
from ecoplan.errors import InputError
from ecoplan.grid import Grid
from ecoplan.io import open_raster, read_vector
from ecoplan.mmu import apply_mmu
from ecoplan.region import RegionConfig
from ecoplan.rules import Rules
from ecoplan.settlement import population_urban_cells, split_built_up, split_by_population
from ecoplan.spill import hold
from ecoplan.vector_rules import burn_rules, feature_targets, load_rule_crosswalk
from ecoplan.zones import zone_code

__all__ = ["refine_zones", "apply_vector_rules"]


class _RegionLike(Protocol):  # ecoplan.pipeline.Region (not imported: it imports us)
    config: RegionConfig
    rules: Rules
    grid: Grid
    units: da.Array


def apply_vector_rules(
    zones: da.Array, *, config: RegionConfig, rules: Rules, grid: Grid, units: da.Array
) -> tuple[da.Array, list[str]]:
    """Zones with the region's vector layers burnt in by the ``vector_zones`` rules."""
    notes: list[str] = []
    inputs = config.vector_layers()
    used = set()
    cache = {}
    layers = []
    for rule in rules.vector_zones:
        if rule.layer not in inputs:
            notes.append(
                f"vector_zones {rule.id}: skipped, the region gives no '{rule.layer}' layer"
            )
            continue
        used.add(rule.layer)
        v = inputs[rule.layer]
        if rule.layer not in cache:
            cache[rule.layer] = read_vector(
                v.path,
                layer=v.layer,
                where=v.where,
                crs=grid.crs,
                what=rule.layer,
                allow_empty=True,
            )
        gdf = cache[rule.layer]
        targets = feature_targets(
            gdf, rule, crosswalk=load_rule_crosswalk(rule), source=str(v.path)
        )
        n = int((targets > 0).sum())
        notes.append(f"vector_zones {rule.id}: {n} of {len(gdf)} features of '{rule.layer}' burnt")
        layers.append((rule, gdf, targets))
    if "landuse" in inputs and "landuse" not in used:
        notes.append("layer 'landuse' is given but no vector_zones rule uses it")
    if layers:
        zones = burn_rules(zones, layers, grid=grid, units=units)
    return zones, notes


def refine_zones(
    zones: da.Array,
    region: _RegionLike,
    *,
    budget_bytes: int | None = None,
    folder: Path | None = None,
    held: bool = False,
) -> tuple[da.Array, list[str]]:
    """Vector rules, urban/rural split and minimum mapping unit, as the region's rules say.

    Intermediate zone rasters are computed once and kept (:func:`ecoplan.spill.hold`): in
    memory when ``budget_bytes`` is None (the default) or they fit it, else in temporary files
    in ``folder`` (the system's temporary folder by default), removed when no longer used.
    ``held``: ``zones`` are computed already (held by the caller), so they are kept again only
    when vector rules change them.
    """
    rules, grid = region.rules, region.grid
    given = zones
    zones, notes = apply_vector_rules(
        zones, config=region.config, rules=rules, grid=grid, units=region.units
    )

    def keep(a: da.Array) -> da.Array:
        return hold(a, budget_bytes=budget_bytes, folder=folder)

    if not (held and zones is given):
        zones = keep(zones)
    built = zones == BUILT_UP
    n_built = int(built.sum().compute())
    if n_built:
        ur = rules.urban_rural
        if ur.method == "population":
            zones = keep(_split_by_population(zones, region))
            how = (
                f"population; {ur.population_cell_m:g} m cells >= "
                f"{ur.min_population_density_per_km2:g}/km², clusters >= "
                f"{ur.min_cluster_population:g} inhabitants"
            )
        else:
            split = split_built_up(
                zones,
                ur,
                pixel_size_m=grid.pixel_size_m,
                budget_bytes=budget_bytes,
                folder=folder,
            )
            zones = keep(split)
            del split
            how = (
                f"{ur.method}; radius {ur.radius_m:g} m, share >= {ur.min_built_share:g}, "
                f"clusters >= {ur.min_cluster_area_ha:g} ha"
            )
        n_urban = int((built & (zones == zone_code("urban"))).sum().compute())
        notes.append(
            f"urban/rural: {n_built} built-up pixels -> {n_urban} urban, {n_built - n_urban} "
            f"rural ({how})"
        )
    # only the latest zones stay referenced while the minimum mapping unit runs
    del built
    mmu = apply_mmu(
        zones,
        rules.min_mapping_unit,
        pixel_size_m=grid.pixel_size_m,
        budget_bytes=budget_bytes,
        folder=folder,
    )
    if rules.min_mapping_unit.area_ha > 0:
        notes.append(
            f"minimum mapping unit {rules.min_mapping_unit.area_ha:g} ha: {mmu.patches_merged} "
            f"patches ({mmu.pixels_changed} pixels) merged in {mmu.passes} passes"
            + (
                f"; {mmu.patches_left} small patches had no larger neighbour"
                if mmu.patches_left
                else ""
            )
        )
    return mmu.zones.astype(np.uint8), notes


def population_on_cells(path, cell_grid: Grid) -> np.ndarray:
    """Inhabitants per cell of ``cell_grid``: the population raster summed by GDAL's warper
    (``sum`` resampling), any CRS and resolution; no data counts as 0. An I/O function."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    info = open_raster(path, what="population raster")
    out = np.zeros(cell_grid.shape, dtype=np.float64)
    with rasterio.open(info.path) as src:
        reproject(
            rasterio.band(src, 1),
            out,
            dst_transform=cell_grid.transform,
            dst_crs=cell_grid.crs,
            dst_nodata=np.nan,
            resampling=Resampling.sum,
        )
    return np.nan_to_num(out, nan=0.0)


def _split_by_population(zones: da.Array, region: _RegionLike) -> da.Array:
    ur = region.rules.urban_rural
    rasters = region.config.raster_layers()
    if "population" not in rasters:
        raise InputError(
            f"{region.config.source_file}: urban_rural method 'population' needs a population "
            "raster; add `layers: {population: {path: …}}` to the region file, or use "
            "method: density"
        )
    cell_grid = Grid.covering(
        region.grid.bounds, crs=region.grid.crs, pixel_size_m=ur.population_cell_m
    )
    pop = population_on_cells(rasters["population"].path, cell_grid)
    urban_cells = population_urban_cells(
        pop,
        cell_area_km2=ur.population_cell_m**2 / 1e6,
        min_density_per_km2=ur.min_population_density_per_km2,
        min_population=ur.min_cluster_population,
    )
    return split_by_population(zones, urban_cells, grid=region.grid, cell_grid=cell_grid)
