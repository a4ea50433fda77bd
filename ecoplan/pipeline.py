"""The one orchestration of a regional eco-plan run, used by the CLI and by notebooks.

inputs -> working grid -> classify (crosswalk) -> buffers and conflicts -> proportions ->
outputs (GeoPackage, zone GeoTIFF). Raster steps are lazy dask arrays mapped block by block.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Literal

import dask
import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from rasterio.warp import transform_bounds

from ecoplan import __version__
from ecoplan.allocation import propose_plan
from ecoplan.areas import pair_areas_m2
from ecoplan.buffers import BufferResult, vector_buffer, zone_rings
from ecoplan.classify import check_codes, code_histogram, lookup_table
from ecoplan.errors import InputError
from ecoplan.export import (
    GeoPackageWriter,
    check_output_dir,
    staged_outputs,
    stale_temp_files,
    write_zone_raster,
)
from ecoplan.grid import Grid, metres_per_pixel, utm_crs_for
from ecoplan.holding import Holder, return_freed_memory
from ecoplan.io import (
    MAX_PIXELS,
    RasterInfo,
    check_layers,
    codes_on_grid,
    open_raster,
    rasterize_on_grid,
    read_vector,
    sha256_file,
)
from ecoplan.kernels import code_counts, lookup, pair_lookup
from ecoplan.plans import plans_for_region
from ecoplan.polygons import vectorize
from ecoplan.progress import STEPS, Progress, silent
from ecoplan.proportions import N_CODES, proportions_table
from ecoplan.refine import refine_zones
from ecoplan.region import RegionConfig, load_region
from ecoplan.report import ReportData, write_report
from ecoplan.rules import Crosswalk, Rules, load_crosswalk, load_rules
from ecoplan.spill import hold, hold_and_compute
from ecoplan.styles import vector_styles
from ecoplan.zones import ZONE_BY_CODE, zone_code

__all__ = ["RunResult", "Region", "prepare_region", "run_region", "sample_region_path", "STEPS"]

log = logging.getLogger(__name__)


Scheduler = Literal["threads", "synchronous", "processes"] | str
LOCAL_SCHEDULERS = ("threads", "synchronous", "processes")


GDAL_CACHE_MB = 256
"""GDAL's raster block cache during a run, in MB (GDAL_CACHEMAX)."""

OUTPUT_ENDINGS = (
    ".gpkg",
    "_zones.tif",
    "_zones.tif.aux.xml",
    "_zones.qml",
    "_proposed.tif",
    "_proposed.tif.aux.xml",
    "_proposed.qml",
    "_report.html",
)
"""What a run writes into ``out_dir`` for a region id (DESIGN.md section 4)."""


def check_scheduler(scheduler: str) -> None:
    """Accept a local dask scheduler name or a ``dask.distributed`` address (``tcp://…``)."""
    if scheduler in LOCAL_SCHEDULERS or "://" in str(scheduler):
        return
    raise ValueError(
        f"scheduler must be one of {', '.join(LOCAL_SCHEDULERS)} or a dask.distributed "
        f"scheduler address such as tcp://10.0.0.5:8786 (got {scheduler!r})"
    )


def _local_scheduler(name: str):
    """The ``get`` function of a local dask scheduler, by name (as dask names them)."""
    import dask.local
    import dask.multiprocessing
    import dask.threaded

    return {
        "threads": dask.threaded.get,
        "synchronous": dask.local.get_sync,
        "processes": dask.multiprocessing.get,
    }[name]


@contextlib.contextmanager
def scheduler_context(scheduler: str):
    """Run the dask graphs inside with a local scheduler or on a ``dask.distributed`` cluster."""
    if scheduler in LOCAL_SCHEDULERS:
        # the scheduler's function, not its name: given a name, dask imports dask.distributed
        # (0.4 s) to look for a client at the first compute
        with dask.config.set(scheduler=_local_scheduler(scheduler)):
            yield
        return
    try:
        from distributed import Client
    except ImportError as err:  # pragma: no cover - distributed is an optional extra
        raise InputError(
            f"scheduler {scheduler}: the dask.distributed package is not installed; "
            "pip install 'ecoplan[cluster]'"
        ) from err
    try:
        client = Client(scheduler, timeout="20s", set_as_default=False)
    except OSError as err:
        raise InputError(f"scheduler {scheduler}: cannot connect ({err})") from err
    try:
        with client.as_current(), dask.config.set(scheduler="dask.distributed"):
            yield
    finally:
        client.close()


@dataclass
class Region:
    """A region ready to compute: config, rules, crosswalk, working grid and lazy rasters."""

    config: RegionConfig
    rules: Rules
    crosswalk: Crosswalk
    landcover: RasterInfo
    grid: Grid
    boundary: gpd.GeoDataFrame  # one row per unit, in the working CRS: unit_id, geometry
    units: da.Array  # int32 unit index (1..n), 0 outside the region
    codes: da.Array  # int32 land-cover class codes, -1 where no data
    chunks: tuple[int, int]

    @property
    def unit_ids(self) -> list[str]:
        return [str(u) for u in self.boundary["unit_id"]]


@dataclass
class RunResult:
    """What a run produced: the output files and the main tables, for people and scripts."""

    region_id: str
    geopackage: Path
    zone_raster: Path
    proportions: pd.DataFrame
    conflicts: pd.DataFrame
    warnings: list[str]
    seconds: float
    report: Path | None = None  # issue 5: <id>_report.html
    plan_areas: pd.DataFrame | None = None  # issue 5: area per plan type

    def summary(self) -> dict:
        region = self.proportions[self.proportions.level == "region"]
        return {
            "region_id": self.region_id,
            "geopackage": str(self.geopackage),
            "zone_raster": str(self.zone_raster),
            "area_ha": {r.zone_en: round(r.area_ha, 2) for r in region.itertuples()},
            "targets_not_met": [
                f"{r.zone_en}: {r.share:.1%} ({r.status})"
                for r in region.itertuples()
                if r.status in ("below", "above")
            ],
            "conflict_area_ha": round(float(self.conflicts["area_ha"].sum()), 2)
            if len(self.conflicts)
            else 0.0,
            "report": str(self.report) if self.report else None,
            "plans_ha": {}
            if self.plan_areas is None
            else {r.plan_type: round(r.area_ha, 2) for r in self.plan_areas.itertuples()},
            "warnings": self.warnings,
            "seconds": round(self.seconds, 2),
        }


def sample_region_path(name: str = "north") -> Path:
    """The ``region.yaml`` of a bundled sample region (``north`` is the demo)."""
    checkout = Path(__file__).resolve().parents[1] / "sample_regions"
    base = checkout if checkout.is_dir() else Path(str(resources.files("ecoplan.sample_regions")))
    path = base / name / "region.yaml"
    if not path.is_file():
        names = sorted(p.parent.name for p in base.glob("*/region.yaml"))
        raise InputError(f"no sample region {name!r}; samples are: {', '.join(names)}")
    return path


def _working_crs(config: RegionConfig, boundary: gpd.GeoDataFrame):
    from rasterio.crs import CRS

    if config.crs:
        try:
            crs = CRS.from_user_input(config.crs)
        except Exception as err:
            raise InputError(f"{config.source_file}: crs: not a CRS ({config.crs!r})") from err
        if crs.is_geographic:
            raise InputError(
                f"{config.source_file}: crs: {config.crs} is geographic (degrees); give a "
                "projected CRS in metres, e.g. EPSG:32647, or leave crs out for the UTM zone"
            )
        return crs
    centre = shapely.union_all(boundary.to_crs(4326).geometry.values).centroid
    return utm_crs_for(centre.x, centre.y)


def prepare_region(
    config: RegionConfig | str | Path,
    *,
    chunk_size: int = 1024,
    check: bool = True,
) -> Region:
    """Open and check every input of a region and set up its lazy rasters on the working grid.

    ``check=False`` leaves out the checks that :func:`ecoplan.doctor.diagnose` makes and
    reports itself (every layer opens, every unit has an id, the grid is not too large), so
    that it can list every problem at once.
    """
    if not isinstance(config, RegionConfig):
        config = load_region(config)
    rules = load_rules(config.rules)
    crosswalk = load_crosswalk(config.landcover.crosswalk)
    landcover = open_raster(config.landcover.path, what="land-cover raster")
    b = config.boundary
    boundary = read_vector(b.path, layer=b.layer, where=b.where, what="boundary")
    crs = _working_crs(config, boundary)
    boundary = boundary.to_crs(crs)
    if b.unit_field:
        if b.unit_field not in boundary.columns:
            fields = ", ".join(c for c in boundary.columns if c != boundary.geometry.name)
            raise InputError(
                f"{b.path}: no field {b.unit_field!r} (unit_field); fields are: {fields}"
            )
        raw_ids = boundary[b.unit_field]
        blank = raw_ids.isna() | (raw_ids.astype(str).str.strip() == "")
        if blank.any() and check:
            raise InputError(
                f"{b.path}: {int(blank.sum())} boundary feature(s) have no value in the "
                f"unit_field {b.unit_field!r}; give every feature a unit id, or leave "
                "unit_field out to report the region as one unit"
            )
        ids = raw_ids.astype(str)
        boundary = gpd.GeoDataFrame(
            {"unit_id": ids, "geometry": boundary.geometry}, crs=crs
        ).dissolve(by="unit_id", as_index=False, sort=True)
    else:
        geom = shapely.union_all(boundary.geometry.values)
        boundary = gpd.GeoDataFrame({"unit_id": [config.id], "geometry": [geom]}, crs=crs)

    rb = transform_bounds(landcover.crs, crs, *landcover.bounds, densify_pts=21)
    bb = boundary.total_bounds
    if rb[0] >= bb[2] or rb[2] <= bb[0] or rb[1] >= bb[3] or rb[3] <= bb[1]:
        raise InputError(
            f"{b.path}: boundary does not overlap the land-cover raster {landcover.path} "
            f"(boundary {tuple(round(v) for v in bb)} vs raster "
            f"{tuple(round(v) for v in rb)} in {crs.to_string()})"
        )
    if config.pixel_size_m:
        pixel = float(config.pixel_size_m)
    else:
        x = (landcover.bounds[0] + landcover.bounds[2]) / 2
        y = (landcover.bounds[1] + landcover.bounds[3]) / 2
        pixel = round(metres_per_pixel(landcover.crs, landcover.res, at=(x, y)), 3)
    grid = Grid.covering(tuple(bb), crs=crs, pixel_size_m=pixel)
    if grid.height * grid.width > MAX_PIXELS and check:
        where = (
            f"{config.source_file}: pixel_size_m"
            if config.pixel_size_m
            else (f"{landcover.path}: its resolution")
        )
        raise InputError(
            f"{where} ({pixel:g} m) gives a working grid of {grid.height:,} x {grid.width:,} "
            f"cells, more than ecoplan computes ({MAX_PIXELS:,}); choose a larger pixel_size_m"
        )
    # every layer the region names must open, even one no rule reads today
    if check:
        check_layers(config.vector_layers(), config.raster_layers())
    chunks = (int(chunk_size), int(chunk_size))
    units = rasterize_on_grid(
        list(boundary.geometry), np.arange(1, len(boundary) + 1), grid, chunks=chunks
    )
    codes = codes_on_grid(landcover, grid, chunks=chunks)
    return Region(config, rules, crosswalk, landcover, grid, boundary, units, codes, chunks)


def _buffers(region: Region, zones: da.Array) -> tuple[list[BufferResult], list[str]]:
    results, notes = [], []
    grid = region.grid
    clip = shapely.union_all(region.boundary.geometry.values)
    vector_inputs = region.config.vector_layers()
    for rule in region.rules.buffers:
        if rule.max_distance_m < grid.pixel_size_m and rule.source.zones is not None:
            notes.append(
                f"buffer {rule.id}: {rule.max_distance_m:g} m is less than the pixel size "
                f"{grid.pixel_size_m:g} m, so its band holds no cell centre"
            )
        if rule.source.zones is not None:
            results.append(BufferResult(rule, zone_rings(zones, rule, grid=grid)))
            continue
        role = rule.source.layer
        if role not in vector_inputs:
            notes.append(f"buffer {rule.id}: skipped, the region gives no '{role}' layer")
            continue
        v = vector_inputs[role]
        gdf = read_vector(
            v.path, layer=v.layer, where=v.where, crs=grid.crs, what=role, allow_empty=True
        )
        if len(gdf) == 0:
            notes.append(f"buffer {rule.id}: skipped, layer '{role}' ({v.path}) has no features")
            continue
        results.append(
            vector_buffer(
                gdf.geometry,
                rule,
                grid=grid,
                chunks=region.chunks,
                inside=region.units,
                clip_to=clip,
            )
        )
    return results, notes


def _zone_fields(codes) -> dict[str, list]:
    return {
        "zone": [int(c) for c in codes],
        "zone_en": [ZONE_BY_CODE[int(c)].name for c in codes],
        "zone_th": [ZONE_BY_CODE[int(c)].name_th for c in codes],
    }


def run_region(
    config: RegionConfig | str | Path,
    out_dir: str | Path,
    *,
    chunk_size: int = 1024,
    scheduler: Scheduler = "threads",
    overwrite: bool = False,
    memory_budget_mb: float = 128,
    progress: Progress = silent,
) -> RunResult:
    """Run the whole eco-plan pipeline for one region and write its outputs into ``out_dir``.

    Writes ``<region_id>.gpkg`` and ``<region_id>_zones.tif``; refuses to replace existing
    outputs unless ``overwrite``. ``scheduler`` is ``threads`` (default), ``synchronous``,
    ``processes``, or the address of a ``dask.distributed`` scheduler (``tcp://host:8786``).
    Same inputs and rules give the same outputs, for any ``chunk_size`` and scheduler.
    Intermediate rasters read several times (zones, buffer rings, forbidden zones, suitability
    levels, the proposed plan) are kept in memory while their total fits ``memory_budget_mb``;
    the rest go to temporary files in ``out_dir``, removed at the end (:mod:`ecoplan.holding`).
    """
    check_scheduler(scheduler)
    # GDAL's block cache (5 % of the machine's memory by default) counts against the budget
    with (
        rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB),
        scheduler_context(scheduler),
        contextlib.ExitStack() as hold,
    ):
        return _run_region(
            config,
            out_dir,
            chunk_size=chunk_size,
            overwrite=overwrite,
            progress=progress,
            hold=hold,
            budget_bytes=int(memory_budget_mb * 2**20),
        )


def _run_region(
    config: RegionConfig | str | Path,
    out_dir: str | Path,
    *,
    chunk_size: int = 1024,
    overwrite: bool = False,
    progress: Progress = silent,
    hold: contextlib.ExitStack,
    budget_bytes: int,
) -> RunResult:
    """The body of :func:`run_region`, inside the scheduler context."""
    t0 = time.perf_counter()
    started = datetime.now(UTC)
    progress("inputs")
    region = prepare_region(config, chunk_size=chunk_size)
    cfg = region.config
    out_dir = check_output_dir(out_dir)
    for stale in stale_temp_files(out_dir, [f"{cfg.id}{end}" for end in OUTPUT_ENDINGS]):
        log.info("removing %s, left by a run that was killed", stale)
        stale.unlink(missing_ok=True)
    gpkg_path = out_dir / f"{cfg.id}.gpkg"
    tif_path = out_dir / f"{cfg.id}_zones.tif"
    report_path = out_dir / f"{cfg.id}_report.html"
    proposed_path = out_dir / f"{cfg.id}_proposed.tif"  # issue 4: the proposed plan
    if not overwrite:
        for p in (gpkg_path, tif_path, proposed_path, report_path):
            if p.exists():
                raise InputError(
                    f"{p}: output exists; use --overwrite (overwrite=True) to replace it"
                )
    notes: list[str] = []
    grid = region.grid

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        progress("classify")
        keep = Holder(hold, folder=out_dir, budget_bytes=budget_bytes)
        # nearly every step reads the units: burnt once and held, in the smallest integer type
        region = replace(region, units=keep(_compact_units(region)).astype(np.int32))
        hist, zones = _classified(region, budget_bytes=budget_bytes, folder=out_dir)
        # refine (issue 3): vector zone rules, urban/rural split, minimum mapping unit
        zones, refine_notes = refine_zones(
            zones, region, budget_bytes=budget_bytes, folder=out_dir, held=True
        )
        notes += refine_notes
        zones = keep(zones)

        return_freed_memory()
        progress("buffers")
        buffers, buffer_notes = _buffers(region, zones)
        # each rule's rings are read by the allocation, the layers and the plans: once
        buffers = [replace(b, rings=keep(b.rings.astype(np.uint8))) for b in buffers]
        notes += buffer_notes

        return_freed_memory()
        progress("proportions")
        # --- issue 4: constraints, suitability and the proposed plan (ecoplan.allocation) ---
        plan = propose_plan(region, zones, buffers, keep=keep)
        notes += plan.notes
        # the allocation's exact ground areas per (unit, zone): no separate count pass
        table = proportions_table(
            counts=None,
            unit_ids=region.unit_ids,
            region_id=cfg.id,
            pixel_area_m2=grid.pixel_area_m2,
            rules=region.rules,
            area_m2=plan.area_m2_before,
            area_m2_after=plan.area_m2_after,
        )

    return_freed_memory()
    progress("polygons")
    # All outputs are committed together at the end: a failure leaves the previous ones. The
    # layers go into the GeoPackage as they are made, so only one is in memory at a time.
    with (
        staged_outputs(),
        GeoPackageWriter(gpkg_path) as gpkg,
        warnings.catch_warnings(),
        # the zone GeoTIFFs are written beside the report (after the layers: GDAL's memory
        # would stay under the polygons'); the pool is left before the outputs are committed
        # or, on a failure, removed
        ThreadPoolExecutor(1, thread_name_prefix="ecoplan-geotiff") as background,
    ):
        warnings.simplefilter("ignore", RuntimeWarning)

        written: dict[str, list[pd.DataFrame]] = {}  # attributes of the layers written so far

        def add(name: str, layer: pd.DataFrame, *, also: tuple[str, ...] = ()) -> None:
            """Write a layer, or one more part of it, and the same rows to the ``also``
            layers; a layer's style covers all its parts."""
            styles = {}
            for n in (name, *also):
                styled = layer
                if isinstance(layer, gpd.GeoDataFrame):
                    parts = written.setdefault(n, [])
                    parts.append(pd.DataFrame(layer.drop(columns=layer.geometry.name)))
                    attributes = pd.concat(parts, ignore_index=True)
                    styled = gpd.GeoDataFrame(attributes, geometry=[None] * len(attributes))
                styles[n] = vector_styles(
                    {n: styled},
                    plan_rules=region.rules.plans,
                    buffer_rules=region.rules.buffers,
                ).get(n)
            gpkg.add(name, layer, style=styles[name], also={n: styles[n] for n in also})
            return_freed_memory()

        # zones, and (issue 4) the proposed plan, written a unit at a time
        for part in _zone_layer_parts(zones, region, plan.area_m2_before):
            # without a proposed plan it is today's zones: the same rows, encoded once
            add("zones", part, also=("proposed_zones",) if plan.result is None else ())
        if plan.result is not None:
            for part in _zone_layer_parts(plan.proposed, region, plan.area_m2_after):
                add("proposed_zones", part)
        part = None  # the last unit's polygons leave memory
        # buffer zones, a rule at a time (its rings leave memory once written), and conflicts
        buffer_tables, conflict_rows = [], []
        for b, (buffer_layer, ring_areas) in zip(
            buffers, _buffer_layers(region, zones, buffers), strict=True
        ):
            add("buffer_zones", buffer_layer)
            buffer_tables.append(pd.DataFrame(buffer_layer.drop(columns="geometry")))
            del buffer_layer
            conflict_rows += _buffer_conflicts(b, zones, ring_areas, grid)
        if not buffers:
            add("buffer_zones", _buffer_frame([], crs=grid.crs))
        buffer_table = (
            pd.concat(buffer_tables, ignore_index=True)
            if buffer_tables
            else pd.DataFrame(columns=BUFFER_COLUMNS[:-1])
        )
        # issue 4: land in a zone a constraint forbids
        conflict_layer = gpd.GeoDataFrame(
            conflict_rows + plan.conflict_rows,
            columns=CONFLICT_COLUMNS,
            geometry="geometry",
            crs=grid.crs,
        )
        add("conflicts", conflict_layer)
        conflict_table = pd.DataFrame(conflict_layer.drop(columns="geometry"))
        del conflict_layer, conflict_rows
        add("proportions", table)
        # --- plan layers (issue 5, ecoplan.plans), from the proposed plan ---
        plans = plans_for_region(region, zones, region.units, buffers, proposed=plan.proposed)
        notes += plans.warnings
        plan_areas = plans.areas()
        for name, layer in plans.layers.items():
            add(name, layer)
        del plans
        # issue 4: constraints and the changes of the proposed plan
        add("constraint_zones", plan.constraint_layer)
        add("zone_changes", plan.changes)
        add("suitability_weights", plan.weights)
        for note in notes:
            log.info("%s", note)

        return_freed_memory()
        progress("write")
        tags = {
            "ECOPLAN_VERSION": __version__,
            "REGION_ID": cfg.id,
            "RULES_SHA256": region.rules.digest(),
            "CROSSWALK": region.crosswalk.name,
        }
        proposed_tags = {**tags, "PHASE": "proposed"}
        # GDAL writes them (mostly outside the GIL, in its own threads) while the report is
        # drawn; a copy of this context: the files join the outputs staged here
        geotiffs = background.submit(
            contextvars.copy_context().run,
            _write_zone_rasters,
            (tif_path, zones, tags),
            (proposed_path, None if plan.result is None else plan.proposed, proposed_tags),
            grid=grid,
        )
        finished = datetime.now(UTC)
        metadata = _metadata(
            region, started=started, finished=finished, notes=notes, histogram=hist
        )
        add("run_metadata", metadata)
        gpkg.update_time = finished
        # --- report (issue 5, ecoplan.report) ---
        report = ReportData(
            region_id=cfg.id,
            name_en=cfg.region.name_en,
            name_th=cfg.region.name_th,
            grid=grid,
            zones=zones,
            proportions=table,
            buffers=buffer_table,
            conflicts=conflict_table,
            metadata=metadata,
            boundary=region.boundary,
            plan_areas=plan_areas,
            warnings=notes,
            proposed=plan.proposed,  # issue 4: the proposed plan, its proportions and changes
            proportions_after=table.assign(
                area_ha=table["area_ha_after"],
                share=table["share_after"],
                status=table["status_after"],
            ),
            zone_changes=plan.changes,
        )
        write_report(report_path, report)
        geotiffs.result()  # its error, if any, is the run's
    return RunResult(
        region_id=cfg.id,
        geopackage=gpkg_path,
        zone_raster=tif_path,
        proportions=table,
        conflicts=conflict_table,
        warnings=notes,
        seconds=time.perf_counter() - t0,
        report=report_path,
        plan_areas=plan_areas,
    )


BUFFER_COLUMNS = [
    "rule_id",
    "rule_name",
    "rule_name_th",
    "source",
    "side",
    "ring",
    "inner_m",
    "distance_m",
    "restricts",
    "area_ha",
    "geometry",
]
CONFLICT_COLUMNS = [
    "rule_id",
    "rule_name",
    "zone",
    "zone_en",
    "zone_th",
    "ring",
    "distance_m",
    "area_ha",
    "geometry",
]


def _block_code_counts(codes: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Pixel count of each class code 0-255 inside the units, as a (1, 1, 256) block."""
    return code_counts(codes, units, n=256).reshape(1, 1, 256)


def _block_zones(codes: np.ndarray, units: np.ndarray, *, lut: np.ndarray) -> np.ndarray:
    """Zones of the class codes by ``lut`` inside the units, 0 outside (uint8)."""
    return lookup(codes, lut, inside=units)


def _classified(
    region: Region, *, budget_bytes: int, folder: Path
) -> tuple[dict[int, int], da.Array]:
    """The land-cover codes' histogram inside the boundary (checked against the crosswalk) and
    the zones by the crosswalk (0 outside the units), held (:func:`ecoplan.spill.hold`).

    A byte raster is read once: its zones (by a table of all 256 codes, which gives the zones
    of the table sized to the codes found) and its histogram are computed in the same pass.
    Other rasters are read twice, as the table's size comes from the histogram.
    """
    codes, units = region.codes, region.units
    one_pass = np.dtype(region.landcover.dtype) == np.uint8
    if one_pass:
        lut = lookup_table(region.crosswalk, max_code=255)
        zones = da.map_blocks(_block_zones, codes, units, lut=lut, dtype=np.uint8)
        counts = da.map_blocks(
            _block_code_counts,
            codes,
            units,
            new_axis=2,
            chunks=((1,) * codes.numblocks[0], (1,) * codes.numblocks[1], (256,)),
            dtype=np.int64,
        )
        counts = counts.sum(axis=(0, 1))
        zones, (total,) = hold_and_compute(zones, counts, budget_bytes=budget_bytes, folder=folder)
        hist = {int(c): int(total[c]) for c in np.flatnonzero(total)}
    else:
        hist = code_histogram(codes, units)
    if not {c for c in hist if c not in set(region.crosswalk.nodata)}:
        raise InputError(
            f"{region.landcover.path}: no land-cover data inside the boundary "
            f"{region.config.boundary.path} (all pixels are nodata)"
        )
    check_codes(hist, region.crosswalk, source=str(region.landcover.path))
    if not one_pass:
        lut = lookup_table(region.crosswalk, max_code=max(hist))
        zones = da.map_blocks(_block_zones, codes, units, lut=lut, dtype=np.uint8)
        zones = hold(zones, budget_bytes=budget_bytes, folder=folder)
    return hist, zones


def _write_zone_rasters(today: tuple, proposed: tuple, *, grid: Grid) -> None:
    """The zone GeoTIFF and the proposed plan's: ``(path, zones, tags)`` each; the proposed
    plan's zones None when they are today's (one pass over the zones, two files)."""
    path, zones, tags = today
    proposed_path, proposed, proposed_tags = proposed
    if proposed is None:
        write_zone_raster(path, zones, grid, tags=tags, copy=(proposed_path, proposed_tags))
    else:
        write_zone_raster(path, zones, grid, tags=tags)
        write_zone_raster(proposed_path, proposed, grid, tags=proposed_tags)


def _compact_units(region: Region) -> da.Array:
    """The unit raster in the smallest unsigned type that holds every unit index."""
    n = len(region.boundary)
    dtype = np.uint8 if n < 2**8 else np.uint16 if n < 2**16 else np.int32
    return region.units.astype(dtype)


def _unit_windows(region: Region) -> list[tuple[int, int, int, int]]:
    """Rows ``r0:r1`` and columns ``c0:c1`` of the grid holding each unit (boundary order):
    its boundary's bounding box, one cell wider on every side, within the grid."""
    grid = region.grid
    a, b, c, d, e, f = tuple(~grid.transform)[:6]  # map coordinates -> (column, row)
    windows = []
    for minx, miny, maxx, maxy in region.boundary.geometry.bounds.to_numpy():
        corners = [(x, y) for x in (minx, maxx) for y in (miny, maxy)]
        cols = [a * x + b * y + c for x, y in corners]
        rows = [d * x + e * y + f for x, y in corners]
        r0 = min(max(int(np.floor(min(rows))) - 1, 0), grid.height)
        r1 = min(max(int(np.ceil(max(rows))) + 1, 0), grid.height)
        c0 = min(max(int(np.floor(min(cols))) - 1, 0), grid.width)
        c1 = min(max(int(np.ceil(max(cols))) + 1, 0), grid.width)
        windows.append((r0, r1, c0, c1))
    return windows


def _zone_layer_parts(
    zones: da.Array, region: Region, area_m2: np.ndarray
) -> Iterator[gpd.GeoDataFrame]:
    """The ``zones`` layer (or ``proposed_zones``), one unit at a time: one feature per
    (unit, zone), dissolved; ``area_m2[u, z]`` is the ground area of zone z in unit index u.

    Each unit is vectorised within its own window of the grid (vertices as in a whole-grid
    run), so only one unit's polygons are in memory at a time.
    """
    for u, (r0, r1, c0, c1) in enumerate(_unit_windows(region), start=1):
        codes, geoms = np.empty(0, np.int64), []
        if r1 > r0 and c1 > c0:  # else a unit outside the grid: no cell
            unit_zones = zones[r0:r1, c0:c1]
            inside = (region.units[r0:r1, c0:c1] == u) & (unit_zones > 0)
            poly = vectorize(unit_zones, region.grid, mask=inside, origin=(r0, c0))
            codes, geoms = poly["value"].to_numpy(dtype=np.int64), poly.geometry.values
        yield gpd.GeoDataFrame(
            {
                **_zone_fields(codes),
                "area_ha": [float(area_m2[u, z]) / 1e4 for z in codes],
                "unit_id": [region.unit_ids[u - 1]] * len(codes),
            },
            geometry=geoms,
            crs=region.grid.crs,
        )


def _buffer_frame(rows: list[dict], *, crs) -> gpd.GeoDataFrame:
    """Rows of the ``buffer_zones`` layer with the layer's field types (also when empty)."""
    frame = gpd.GeoDataFrame(rows, columns=BUFFER_COLUMNS, geometry="geometry", crs=crs)
    return frame.astype(
        {"ring": "int64", "inner_m": "float64", "distance_m": "float64", "area_ha": "float64"}
    )


def _buffer_layers(
    region: Region, zones: da.Array, buffers: list[BufferResult]
) -> Iterator[tuple[gpd.GeoDataFrame, np.ndarray]]:
    """The ``buffer_zones`` layer (one feature per rule and ring), a rule at a time, with the
    area of each (ring, zone) of the rule in pixel-area units (ring 0: outside the rings)."""
    grid = region.grid
    ha = grid.pixel_area_m2 / 1e4
    for b in buffers:
        rings, rule = b.rings, b.rule
        # ground areas (ecoplan.areas) in pixel-area units
        rc = (
            pair_areas_m2(rings, zones, n_a=len(rule.rings) + 1, n_b=N_CODES, grid=grid)
            / grid.pixel_area_m2
        )
        if b.polygons is not None:
            ring_geoms = dict(zip(b.polygons["ring"], b.polygons.geometry, strict=True))
        else:
            rp = vectorize(rings, grid)
            ring_geoms = dict(zip(rp["value"], rp.geometry, strict=True))
            del rp
        rows = [
            {
                "rule_id": rule.id,
                "rule_name": rule.name_en,
                "rule_name_th": rule.name_th,
                "source": rule.source.describe(),
                "side": rule.side,
                "ring": k,
                "inner_m": inner,
                "distance_m": outer,
                "restricts": ",".join(rule.restricted_zones),
                "area_ha": float(rc[k, 1:].sum()) * ha,
                "geometry": ring_geoms.pop(k),
            }
            for k, (inner, outer) in enumerate(rule.rings, start=1)
            if k in ring_geoms
        ]
        del ring_geoms
        yield _buffer_frame(rows, crs=grid.crs), rc


def _buffer_conflicts(b: BufferResult, zones: da.Array, rc: np.ndarray, grid: Grid) -> list[dict]:
    """Rows of one buffer rule's conflicts: one per ring and restricted zone found in it;
    ``rc[ring, zone]`` is their area in pixel-area units."""
    rings, rule = b.rings, b.rule
    restricted = [zone_code(z) for z in rule.restricted_zones]
    if not restricted or not rc[1:, restricted].any():
        return []
    ha = grid.pixel_area_m2 / 1e4
    # ring * N_CODES + zone, in the smallest type that holds it (tracing holds a band of
    # blocks of it at a time)
    top = (len(rule.rings) + 1) * N_CODES
    dtype = np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.int32
    # ring * N_CODES + zone for a restricted zone inside a ring, else 0: one table, one pass
    table = np.zeros((len(rule.rings) + 1, N_CODES), dtype)
    for k in range(1, len(rule.rings) + 1):
        table[k, restricted] = k * N_CODES + np.asarray(restricted)
    conflict = da.map_blocks(
        pair_lookup, rings.rechunk(zones.chunks), zones, table=table, dtype=dtype
    )
    cp = vectorize(conflict, grid)
    rows = []
    for value, geom in zip(cp["value"], cp.geometry, strict=True):
        k, z = divmod(int(value), N_CODES)
        rows.append(
            {
                "rule_id": rule.id,
                "rule_name": rule.name_en,
                **{f: v[0] for f, v in _zone_fields([z]).items()},
                "ring": k,
                "distance_m": rule.rings[k - 1][1],
                "area_ha": float(rc[k, z]) * ha,
                "geometry": geom,
            }
        )
    return rows


def _metadata(region: Region, *, started, finished, notes, histogram) -> pd.DataFrame:
    cfg = region.config
    rows = [
        ("region_id", cfg.id, "", ""),
        ("region_name_en", cfg.region.name_en, "", ""),
        ("region_name_th", cfg.region.name_th, "", ""),
        ("ecoplan_version", __version__, "", ""),
        ("region_file", str(cfg.source_file or ""), "", _sha(cfg.source_file)),
        (
            "input:landcover",
            cfg.landcover.path.name,
            str(cfg.landcover.path),
            _sha(cfg.landcover.path),
        ),
        ("input:boundary", cfg.boundary.path.name, str(cfg.boundary.path), _sha(cfg.boundary.path)),
    ]
    for role, v in cfg.layers.items():
        rows.append((f"input:{role}", v.path.name, str(v.path), _sha(v.path)))
    rules_src = str(cfg.rules)
    rows += [
        ("rules", rules_src, "", region.rules.digest()),
        (
            "crosswalk",
            region.crosswalk.name,
            str(cfg.landcover.crosswalk),
            region.crosswalk.digest(),
        ),
        ("crs", region.grid.crs.to_string(), "", ""),
        ("pixel_size_m", f"{region.grid.pixel_size_m:g}", "", ""),
        ("grid_shape", f"{region.grid.height} x {region.grid.width}", "", ""),
        ("proportions_denominator", region.rules.proportions.describe(), "", ""),
        ("class_codes_found", ", ".join(f"{c}:{n}" for c, n in histogram.items()), "", ""),
        ("started_at", started.isoformat(timespec="seconds"), "", ""),
        ("finished_at", finished.isoformat(timespec="seconds"), "", ""),
    ]
    rows += [("warning", n, "", "") for n in notes]
    return pd.DataFrame(rows, columns=["key", "value", "path", "sha256"])


def _sha(path) -> str:
    if not path:
        return ""
    try:
        return sha256_file(path)
    except OSError:
        return ""
