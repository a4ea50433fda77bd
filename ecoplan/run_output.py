"""What a run's GeoPackage holds for the plan registry: its region, plan layers and checksum.

``ecoplan run`` writes ``<region_id>.gpkg`` with one layer ``plan_<id>`` per plan type
(DESIGN.md section 4). :func:`inspect_run_output` finds which of the six plan layers are present
and non-empty, and the region id: the ``region_id`` row of the ``run_metadata`` table
(columns ``key``/``value``) when there is one, else the file's stem.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyogrio
import pyogrio.errors

from ecoplan.errors import InputError
from ecoplan.plan_types import PLAN_TYPES, layer_name

__all__ = ["PlanLayer", "RunOutput", "inspect_run_output", "file_sha256"]

log = logging.getLogger(__name__)

_REGION_ID = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True)
class PlanLayer:
    """A non-empty plan layer: plan type id, layer name, number of features."""

    plan_type: str
    layer: str
    feature_count: int


@dataclass(frozen=True)
class RunOutput:
    """The registry's view of a run's GeoPackage.

    ``plan_layers``: present and non-empty; ``missing``: plan types without a layer; ``empty``:
    plan types whose layer has no feature. ``region_id_source``: ``run_metadata`` or
    ``file name``.
    """

    path: Path
    region_id: str
    region_id_source: Literal["run_metadata", "file name"]
    sha256: str
    plan_layers: tuple[PlanLayer, ...]
    missing: tuple[str, ...]
    empty: tuple[str, ...]
    note: str = ""


def file_sha256(path: str | os.PathLike, *, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, as 64 lower-case hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def _metadata_region_id(path: Path, layers: set[str]) -> str | None:
    if "run_metadata" not in layers:
        return None
    try:
        table = pyogrio.read_dataframe(path, layer="run_metadata", read_geometry=False)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as err:
        log.warning("%s: cannot read run_metadata (%s); using the file name", path, err)
        return None
    if not {"key", "value"} <= set(table.columns):
        log.info("%s: run_metadata has no key/value columns; using the file name", path)
        return None
    values = table.loc[table["key"] == "region_id", "value"]
    if values.empty or not str(values.iloc[0]).strip():
        return None
    return str(values.iloc[0]).strip()


def inspect_run_output(path: str | os.PathLike) -> RunOutput:
    """Inspect a run's GeoPackage (read only).

    Raises :class:`InputError` naming the file when it is missing, not a GeoPackage, or its
    region id is not ``[a-z0-9_]+``.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found")
    if p.is_dir():
        raise InputError(f"{p}: is a folder; give the run's <region_id>.gpkg")
    try:
        listed = pyogrio.list_layers(p)
        layers = {str(name) for name, _ in listed}
        counts = {}
        for pt in PLAN_TYPES:
            if pt.layer in layers:
                info = pyogrio.read_info(p, layer=pt.layer, force_feature_count=True)
                counts[pt.id] = int(info["features"])
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as err:
        reason = str(err).split(";")[0]  # GDAL's hint about driver prefixes does not apply
        raise InputError(f"{p}: cannot read as a GeoPackage ({reason})") from err
    driver = pyogrio.read_info(p, layer=listed[0][0])["driver"] if len(listed) else None
    if driver is not None and driver != "GPKG":
        raise InputError(f"{p}: is a {driver} file, not a GeoPackage (run output <region_id>.gpkg)")

    from_metadata = _metadata_region_id(p, layers)
    region_id = from_metadata or p.stem
    source: Literal["run_metadata", "file name"] = "run_metadata" if from_metadata else "file name"
    if not _REGION_ID.match(region_id):
        raise InputError(
            f"{p}: region id {region_id!r} (from the {source}) is not [a-z0-9_]+; name the file "
            f"<region_id>.gpkg as `ecoplan run` does, or add a run_metadata row region_id"
        )
    note = ""
    if from_metadata and from_metadata != p.stem:
        note = f"region id {from_metadata!r} from run_metadata (the file is named {p.name})"
    return RunOutput(
        path=p,
        region_id=region_id,
        region_id_source=source,
        sha256=file_sha256(p),
        plan_layers=tuple(
            PlanLayer(pt.id, layer_name(pt.id), counts[pt.id])
            for pt in PLAN_TYPES
            if counts.get(pt.id, 0) > 0
        ),
        missing=tuple(pt.id for pt in PLAN_TYPES if pt.id not in counts),
        empty=tuple(pt.id for pt in PLAN_TYPES if counts.get(pt.id) == 0),
        note=note,
    )
