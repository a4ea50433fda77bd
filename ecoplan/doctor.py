"""Check every input of a region without computing the plan (``ecoplan doctor``).

:func:`diagnose` opens and checks everything :func:`ecoplan.pipeline.run_region` would read —
the region file, rules, crosswalk, land cover, boundary, every layer — and counts the class
codes inside the boundary (the one raster pass it makes, reading the land cover once). It
returns a :class:`Diagnosis` that lists what a run would do and every problem found, so a user
can fix the data before a long run. Problems that stop the checks early (an unreadable region
file, a boundary that does not overlap the land cover) raise the usual :class:`EcoplanError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dask

from ecoplan.classify import check_codes, code_histogram
from ecoplan.errors import CrosswalkError, InputError
from ecoplan.export import stale_temp_files
from ecoplan.io import (
    MAX_PIXELS,
    RasterInfo,
    VectorSummary,
    describe_vector,
    open_raster,
    read_vector,
)
from ecoplan.pipeline import prepare_region
from ecoplan.region import RegionConfig, load_region

__all__ = ["Diagnosis", "diagnose", "stale_temp_files"]


@dataclass
class Diagnosis:
    """What a run of a region would do, and what is wrong with its inputs.

    ``problems`` would make ``ecoplan run`` fail (or give a wrong plan); ``warnings`` are
    handled (repaired geometries, skipped rules, …) but worth a look.
    """

    region_file: str
    region: dict
    working_crs: str
    crs_from: str
    grid: dict
    landcover: dict
    crosswalk: dict
    class_codes: list[dict]
    units: dict
    layers: dict[str, dict]
    rules: dict
    outputs: dict
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        """The report as text lines, for people."""
        g, lc, cw = self.grid, self.landcover, self.crosswalk
        out = [
            f"region file   {self.region_file}",
            f"region        {self.region['id']} — {self.region['name_en']} / "
            f"{self.region['name_th']}",
            f"working CRS   {self.working_crs} ({self.crs_from})",
            f"grid          {g['height']} x {g['width']} pixels of {g['pixel_size_m']:g} m "
            f"({g['height'] * g['pixel_size_m'] / 1000:.1f} x "
            f"{g['width'] * g['pixel_size_m'] / 1000:.1f} km), {g['blocks']} block(s) of "
            f"{g['chunk_size']} px; pixel size from {g['pixel_size_from']}",
            f"land cover    {lc['path']}",
            f"              {lc['crs']}, {lc['height']} x {lc['width']} px, {lc['dtype']}, "
            f"nodata {lc['nodata']}, {lc['bands']} band(s), pixel {lc['pixel_size_m']:g} m",
            f"crosswalk     {cw['name']} (on_unmapped: {cw['on_unmapped']}; "
            f"nodata codes {cw['nodata_codes']})",
            "class codes inside the boundary:",
            f"  {'code':>6} {'pixels':>10} {'area_ha':>12}  {'zone':<12} label",
        ]
        for c in self.class_codes:
            out.append(
                f"  {c['code']:>6} {c['pixels']:>10,} {c['area_ha']:>12,.1f}  "
                f"{c['zone']:<12} {c['label']}"
            )
        if not self.class_codes:
            out.append("  (none: every pixel inside the boundary is nodata)")
        u = self.units
        head = f"units         {u['count']}" + (
            f" (field {u['field']!r})" if u["field"] else " (the whole region)"
        )
        out.append(head)
        for uid, area in u["area_ha"].items():
            out.append(f"  {uid:<20} {area:>14,.1f} ha")
        out.append("layers" + ("        (none)" if not self.layers else ""))
        for role, info in self.layers.items():
            if "problem" in info:
                out.append(f"  {role:<18} PROBLEM: {info['problem']}")
            elif info["kind"] == "vector":
                out.append(
                    f"  {role:<18} {info['path']} (layer {info['layer']!r}): "
                    f"{info['feature_count']} feature(s), "
                    f"{'/'.join(info['geometry_types']) or 'no geometry'}, {info['crs']}"
                )
            else:
                out.append(
                    f"  {role:<18} {info['path']}: {info['crs']}, {info['height']} x "
                    f"{info['width']} px, {info['dtype']}, nodata {info['nodata']}"
                )
        r = self.rules
        out.append(
            f"rules         {r['source']}: {len(r['buffers'])} buffer rule(s), "
            f"{len(r['targets'])} target(s); shares over {r['denominator']}"
        )
        for b in r["buffers"]:
            out.append(
                f"  buffer {b['id']:<22} {b['source']:<22} {b['distances_m']} m {b['side']}"
                + (f"  — {b['note']}" if b["note"] else "")
            )
        for t in r["targets"]:
            out.append(f"  target {t}")
        o = self.outputs
        out.append(f"outputs       {o['folder']}: {o['status']}")
        for f in o["files"]:
            out.append(f"  would write {f}")
        for w in self.warnings:
            out.append(f"warning: {w}")
        for p in self.problems:
            out.append(f"PROBLEM: {p}")
        out.append(
            "ok: ready to run" if self.ok else f"{len(self.problems)} problem(s) to fix first"
        )
        return out


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _collect_warnings() -> Iterator[list[str]]:
    """Collect the warnings ecoplan logs (repaired geometries, …) while the checks run."""
    logger = logging.getLogger("ecoplan")
    handler = _Collect()
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def _raster_dict(info: RasterInfo) -> dict:
    from ecoplan.grid import metres_per_pixel

    b = info.bounds
    epsg = info.crs.to_epsg()
    return {
        "kind": "raster",
        "path": str(info.path),
        "crs": f"EPSG:{epsg}" if epsg else info.crs.to_string(),
        "width": info.width,
        "height": info.height,
        "bands": info.count,
        "dtype": info.dtype,
        "nodata": info.nodata,
        "pixel_size_m": round(
            metres_per_pixel(info.crs, info.res, at=((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)), 3
        ),
    }


def _vector_dict(s: VectorSummary) -> dict:
    return {"kind": "vector", **s.to_dict()}


def _outputs(config: RegionConfig, out_dir: Path | None) -> tuple[dict, list[str], list[str]]:
    names = [f"{config.id}.gpkg", f"{config.id}_zones.tif"]
    if out_dir is None:
        return {"folder": "(not given)", "status": "not checked", "files": names}, [], []
    problems, warnings = [], []
    out_dir = Path(out_dir)
    files = [str(out_dir / n) for n in names]
    if out_dir.exists():
        if not out_dir.is_dir():
            problems.append(f"{out_dir}: exists and is not a folder")
            status = "not a folder"
        elif not os.access(out_dir, os.W_OK | os.X_OK):
            problems.append(f"{out_dir}: output folder is not writable")
            status = "not writable"
        else:
            status = "writable"
            existing = [f for f in files if Path(f).exists()]
            if existing:
                warnings.append(
                    f"{', '.join(existing)}: exist; `ecoplan run` needs --overwrite to replace them"
                )
            stale = stale_temp_files(out_dir, names)
            if stale:
                warnings.append(
                    f"{out_dir}: {len(stale)} temporary file(s) left by a killed run "
                    f"({', '.join(p.name for p in stale)}); they can be deleted"
                )
    else:
        parent = next((p for p in out_dir.parents if p.exists()), None)
        if parent is None or not parent.is_dir():
            problems.append(f"{out_dir}: cannot create the output folder (no folder above it)")
            status = "cannot be created"
        elif not os.access(parent, os.W_OK | os.X_OK):
            problems.append(f"{out_dir}: cannot create the output folder ({parent} not writable)")
            status = "cannot be created"
        else:
            status = "will be created"
    return {"folder": str(out_dir), "status": status, "files": files}, problems, warnings


def diagnose(
    config: RegionConfig | str | Path,
    *,
    out_dir: str | Path | None = None,
    chunk_size: int = 1024,
) -> Diagnosis:
    """Check every input of a region and describe the run, without computing the plan.

    Raises :class:`EcoplanError` when the checks cannot go on (bad region or rules file,
    unreadable land cover or boundary, no overlap); every other problem is listed in the
    returned :class:`Diagnosis`.
    """
    if not isinstance(config, RegionConfig):
        config = load_region(config)
    problems: list[str] = []
    warnings_: list[str] = []
    with _collect_warnings() as logged:
        region = prepare_region(config, chunk_size=chunk_size, check=False)
        grid, cw, lc = region.grid, region.crosswalk, region.landcover
        if grid.height * grid.width > MAX_PIXELS:
            raise InputError(
                f"{config.source_file}: pixel_size_m: a grid of {grid.height:,} x "
                f"{grid.width:,} pixels of {grid.pixel_size_m:g} m is more than ecoplan "
                f"accepts ({MAX_PIXELS:,}); give a larger pixel_size_m"
            )
        with dask.config.set(scheduler="threads"):
            hist = code_histogram(region.codes, region.units)
            n_inside = int((region.units > 0).sum().compute())
        labels = {c.code: c for c in cw.classes}
        ha = grid.pixel_area_m2 / 1e4
        n_data = sum(n for c, n in hist.items() if c not in cw.nodata)
        if n_inside and n_data < n_inside:
            gap = 1 - n_data / n_inside
            if gap > 0.001:
                warnings_.append(
                    f"{lc.path}: {gap:.1%} of the region ({(n_inside - n_data) * ha:,.1f} ha) "
                    "has no land-cover data (outside the raster, or nodata); shares are "
                    "computed over the rest"
                )
        codes = []
        for code, n in hist.items():
            c = labels.get(code)
            if code in cw.nodata:
                zone, label = "(nodata)", "no data in the crosswalk"
            elif c is not None:
                zone, label = c.zone, c.label
            else:
                zone = "other" if cw.on_unmapped == "other" else "(unmapped)"
                label = "not in the crosswalk"
            codes.append(
                {"code": code, "pixels": n, "area_ha": n * ha, "zone": zone, "label": label}
            )
        data_codes = {c: n for c, n in hist.items() if c not in cw.nodata}
        if not data_codes:
            problems.append(
                f"{lc.path}: no land-cover data inside the boundary {config.boundary.path} "
                "(every pixel is nodata)"
            )
        try:
            check_codes(hist, cw, source=str(lc.path))
        except CrosswalkError as err:
            problems.append(str(err))
        unmapped = [c["code"] for c in codes if c["label"] == "not in the crosswalk"]
        if unmapped and cw.on_unmapped == "other":
            warnings_.append(
                f"{lc.path}: codes {', '.join(map(str, unmapped))} are not in crosswalk "
                f"{cw.name!r} and become 'other'"
            )

        b = config.boundary
        if b.unit_field:
            raw = read_vector(b.path, layer=b.layer, where=b.where, what="boundary")
            empty = raw[b.unit_field].isna() | (raw[b.unit_field].astype(str).str.strip() == "")
            if empty.any():
                problems.append(
                    f"{b.path}: {int(empty.sum())} boundary feature(s) have no value in "
                    f"{b.unit_field!r} (unit_field); `ecoplan run` would leave them out of "
                    "every unit; fill the field in"
                )

        layers: dict[str, dict] = {}
        for role, v in config.vector_layers().items():
            try:
                layers[role] = _vector_dict(
                    describe_vector(v.path, layer=v.layer, where=v.where, what=role)
                )
            except InputError as err:
                layers[role] = {"kind": "vector", "problem": str(err)}
                problems.append(str(err))
        for role, v in config.raster_layers().items():
            try:
                layers[role] = _raster_dict(open_raster(v.path, what=f"{role} raster"))
            except InputError as err:
                layers[role] = {"kind": "raster", "problem": str(err)}
                problems.append(str(err))

        buffers = []
        for rule in region.rules.buffers:
            note = ""
            role = rule.source.layer
            if role is not None and role not in layers:
                note = f"skipped: the region gives no '{role}' layer"
            elif role is not None and layers[role].get("feature_count") == 0:
                note = f"skipped: layer '{role}' has no features"
            elif rule.max_distance_m < grid.pixel_size_m and rule.source.zones is not None:
                note = f"narrower than a pixel ({grid.pixel_size_m:g} m): holds no cell centre"
            buffers.append(
                {
                    "id": rule.id,
                    "source": rule.source.describe(),
                    "distances_m": ", ".join(f"{outer:g}" for _, outer in rule.rings),
                    "side": rule.side,
                    "restricts": list(rule.restricted_zones),
                    "note": note,
                }
            )
        targets = []
        for t in region.rules.targets:
            bounds = []
            if t.min_share is not None:
                bounds.append(f"min {t.min_share:.0%}")
            if t.max_share is not None:
                bounds.append(f"max {t.max_share:.0%}")
            where = f" in unit {t.unit}" if t.unit else ""
            targets.append(f"{t.zone} {' '.join(bounds)}{where}")
            if t.unit is not None and t.unit not in region.unit_ids:
                problems.append(
                    f"{config.rules}: target for unit {t.unit!r}: no such unit; units are: "
                    f"{', '.join(region.unit_ids)}"
                )
        outputs, out_problems, out_warnings = _outputs(config, out_dir)
        problems += out_problems
        warnings_ += out_warnings

    areas = region.boundary.geometry.area / 1e4
    nb = -(-grid.height // region.chunks[0]) * -(-grid.width // region.chunks[1])
    return Diagnosis(
        region_file=str(config.source_file or ""),
        region={
            "id": config.id,
            "name_en": config.region.name_en,
            "name_th": config.region.name_th,
        },
        working_crs=f"EPSG:{grid.crs.to_epsg()}" if grid.crs.to_epsg() else grid.crs.to_string(),
        crs_from="crs in the region file" if config.crs else "UTM zone of the boundary's centroid",
        grid={
            "height": grid.height,
            "width": grid.width,
            "pixel_size_m": grid.pixel_size_m,
            "pixel_size_from": "pixel_size_m in the region file"
            if config.pixel_size_m
            else "the land cover's own resolution",
            "bounds": [round(v, 3) for v in grid.bounds],
            "chunk_size": region.chunks[0],
            "blocks": nb,
        },
        landcover=_raster_dict(lc),
        crosswalk={
            "name": cw.name,
            "on_unmapped": cw.on_unmapped,
            "nodata_codes": list(cw.nodata),
            "unmapped_codes": unmapped,
        },
        class_codes=codes,
        units={
            "field": config.boundary.unit_field,
            "count": len(region.boundary),
            "area_ha": {u: round(float(a), 1) for u, a in zip(region.unit_ids, areas, strict=True)},
        },
        layers=layers,
        rules={
            "source": str(config.rules),
            "denominator": region.rules.proportions.describe(),
            "buffers": buffers,
            "targets": targets,
        },
        outputs=outputs,
        problems=problems,
        warnings=list(dict.fromkeys([*logged, *warnings_])),
    )
