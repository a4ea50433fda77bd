"""Rules: the YAML files planners edit (buffers, targets, proportions) and crosswalks.

Rules are validated once, at load time, into strict models: unknown keys are refused and every
problem is reported at once as ``file: buffers[2].distance_m: must be > 0 (got -5)``.
A user's rules file may leave sections out; those take the shipped defaults.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ecoplan._yaml import read_yaml, validate
from ecoplan.errors import RulesError
from ecoplan.zones import ZONE_BY_NAME

__all__ = [
    "VECTOR_ROLES",
    "RASTER_ROLES",
    "BufferSource",
    "BufferRule",
    "Target",
    "ProportionSettings",
    "Rules",
    "CrosswalkClass",
    "Crosswalk",
    "load_rules",
    "load_crosswalk",
    "shipped_rules_names",
    "shipped_crosswalk_names",
    "rules_dir",
]

VECTOR_ROLES = (
    "rivers",
    "water_bodies",
    "roads",
    "protected_areas",
    "heritage_sites",
    "industrial_estates",
    "landuse",
)
"""Vector inputs a region may give, by role (DESIGN.md section 3)."""

RASTER_ROLES = ("dem", "population")

Id = Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_zone_names(names: list[str]) -> list[str]:
    for name in names:
        if name not in ZONE_BY_NAME:
            raise ValueError(f"unknown zone {name!r}; valid zones: {', '.join(ZONE_BY_NAME)}")
    if len(set(names)) != len(names):
        raise ValueError("a zone is listed twice")
    return names


class BufferSource(_Strict):
    """Where a buffer is measured from: a vector role, or cells of some zones."""

    layer: Literal[VECTOR_ROLES] | None = None  # type: ignore[valid-type]
    zones: list[str] | None = None

    @field_validator("zones")
    @classmethod
    def _zones_known(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("must list at least one zone")
        return _check_zone_names(v)

    @model_validator(mode="after")
    def _one_kind(self) -> BufferSource:
        if (self.layer is None) == (self.zones is None):
            raise ValueError("give exactly one of 'layer' (a vector role) or 'zones'")
        return self

    def describe(self) -> str:
        if self.layer is not None:
            return f"layer:{self.layer}"
        return "zones:" + ",".join(self.zones or ())


class BufferRule(_Strict):
    """A buffer zone (แนวกันชน): a band at a ground distance from a source.

    ``distance_m`` gives one band ``(0, d]``; ``rings_m: [a, b, c]`` gives the disjoint rings
    ``(0, a]``, ``(a, b]``, ``(b, c]``. ``side`` says whether the band lies outside the source,
    inside it (from its edge inwards), or both. ``restricts`` lists the zones not allowed inside.
    """

    id: Id
    name_en: str
    name_th: str = ""
    source: BufferSource
    distance_m: float | None = Field(default=None, gt=0)
    rings_m: list[Annotated[float, Field(gt=0)]] | None = None
    side: Literal["outside", "inside", "both"] = "outside"
    restricts: list[str] = Field(default_factory=list)
    allows: list[str] | None = None
    basis: str = ""  # where the number comes from (law, guideline, planning assumption)

    _zones_known = field_validator("restricts", "allows")(
        classmethod(lambda cls, v: v if v is None else _check_zone_names(v))
    )

    @field_validator("rings_m")
    @classmethod
    def _rings_increasing(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("must list at least one distance")
        if any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError("distances must increase strictly")
        return v

    @model_validator(mode="after")
    def _one_distance(self) -> BufferRule:
        if (self.distance_m is None) == (self.rings_m is None):
            raise ValueError("give exactly one of 'distance_m' or 'rings_m'")
        if self.allows is not None and set(self.allows) & set(self.restricts):
            raise ValueError("a zone is both in 'restricts' and in 'allows'")
        return self

    @property
    def rings(self) -> tuple[tuple[float, float], ...]:
        """The bands as ``(inner_m, outer_m)`` pairs; the first starts at 0."""
        edges = [0.0, *(self.rings_m if self.rings_m is not None else [self.distance_m])]
        return tuple((float(a), float(b)) for a, b in zip(edges, edges[1:], strict=False))

    @property
    def max_distance_m(self) -> float:
        return self.rings[-1][1]

    @property
    def restricted_zones(self) -> tuple[str, ...]:
        """Zones not allowed in the band: ``restricts``, or every zone not in ``allows``."""
        if self.allows is not None:
            listed = set(self.restricts) | (set(ZONE_BY_NAME) - set(self.allows))
            return tuple(z for z in ZONE_BY_NAME if z in listed)
        return tuple(self.restricts)


class Target(_Strict):
    """A suitable-proportion target: the share of a zone, between 0 and 1."""

    zone: str
    min_share: float | None = Field(default=None, ge=0, le=1)
    max_share: float | None = Field(default=None, ge=0, le=1)
    unit: str | None = None  # a unit id; None = the whole region
    basis: str = ""

    @field_validator("zone")
    @classmethod
    def _zone_known(cls, v: str) -> str:
        _check_zone_names([v])
        return v

    @model_validator(mode="after")
    def _bounds(self) -> Target:
        if self.min_share is None and self.max_share is None:
            raise ValueError("give 'min_share', 'max_share' or both")
        if (
            self.min_share is not None
            and self.max_share is not None
            and self.min_share > self.max_share
        ):
            raise ValueError(f"min_share {self.min_share} is above max_share {self.max_share}")
        return self


class ProportionSettings(_Strict):
    """Which zones count in the denominator of a share (the region's land area by default)."""

    include_water: bool = False
    include_other: bool = True

    @property
    def denominator_zones(self) -> tuple[str, ...]:
        zones = ["forest", "agriculture", "rural", "urban", "industrial"]
        if self.include_water:
            zones.append("water")
        if self.include_other:
            zones.append("other")
        return tuple(zones)

    def describe(self) -> str:
        return "area of " + " + ".join(self.denominator_zones)


class Rules(_Strict):
    """A whole rules file."""

    version: Literal[1] = 1
    name: str = ""
    description: str = ""
    proportions: ProportionSettings = Field(default_factory=ProportionSettings)
    buffers: list[BufferRule] = Field(default_factory=list)
    targets: list[Target] = Field(default_factory=list)

    @field_validator("buffers")
    @classmethod
    def _unique_ids(cls, v: list[BufferRule]) -> list[BufferRule]:
        dupes = [k for k, n in Counter(b.id for b in v).items() if n > 1]
        if dupes:
            raise ValueError(f"buffer id {dupes[0]!r} is used more than once")
        return v

    @field_validator("targets")
    @classmethod
    def _targets_add_up(cls, v: list[Target]) -> list[Target]:
        seen: Counter[tuple[str | None, str]] = Counter((t.unit, t.zone) for t in v)
        dupes = [k for k, n in seen.items() if n > 1]
        if dupes:
            unit, zone = dupes[0]
            where = f" for unit {unit!r}" if unit else ""
            raise ValueError(f"zone {zone!r} has more than one target{where}")
        for unit in {t.unit for t in v}:
            total = sum(t.min_share or 0.0 for t in v if t.unit == unit)
            if total > 1 + 1e-9:
                where = f" for unit {unit!r}" if unit else ""
                raise ValueError(
                    f"min_share values{where} add up to {total * 100:.0f} %, above 100 %"
                )
        return v

    def digest(self) -> str:
        """SHA-256 of the rules as validated (what a run actually used)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CrosswalkClass(_Strict):
    code: int
    label: str
    zone: str
    reason: str = ""

    @field_validator("zone")
    @classmethod
    def _zone_known(cls, v: str) -> str:
        _check_zone_names([v])
        return v


class Crosswalk(_Strict):
    """A table from the class codes of a land-cover product to zones."""

    name: Id
    title: str
    source: str = ""
    nodata: list[int] = Field(default_factory=list)  # codes that mean "no data", besides the file's
    on_unmapped: Literal["error", "other"] = "error"
    classes: list[CrosswalkClass]

    @field_validator("classes")
    @classmethod
    def _unique_codes(cls, v: list[CrosswalkClass]) -> list[CrosswalkClass]:
        if not v:
            raise ValueError("must list at least one class")
        dupes = [k for k, n in Counter(c.code for c in v).items() if n > 1]
        if dupes:
            raise ValueError(f"code {dupes[0]} is listed more than once")
        return v

    def mapping(self) -> dict[int, str]:
        return {c.code: c.zone for c in self.classes}

    def digest(self) -> str:
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def rules_dir() -> Path:
    """The folder of shipped rules and crosswalks (``zoning_rules/``).

    In a source checkout this is the ``zoning_rules/`` folder beside the package; in an
    installed wheel, the copy installed as ``ecoplan.zoning_rules``.
    """
    checkout = Path(__file__).resolve().parents[1] / "zoning_rules"
    if (checkout / "default.yaml").is_file():
        return checkout
    return Path(str(resources.files("ecoplan.zoning_rules")))


def shipped_rules_names() -> list[str]:
    return sorted(p.stem for p in rules_dir().glob("*.yaml"))


def shipped_crosswalk_names() -> list[str]:
    return sorted(p.stem for p in (rules_dir() / "crosswalks").glob("*.yaml"))


def _resolve(name_or_path: str | Path, *, kind: str, folder: Path, names: list[str]) -> Path:
    text = str(name_or_path)
    if text in names:
        return folder / f"{text}.yaml"
    path = Path(name_or_path)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists() or "/" in text:
        if not path.exists():
            raise RulesError(f"{path}: {kind} file not found")
        return path
    raise RulesError(
        f"unknown {kind} {text!r}: give a path to a YAML file or one of: {', '.join(names)}"
    )


def load_rules(name_or_path: str | Path = "default") -> Rules:
    """Load and validate a rules file (a shipped name such as ``default``, or a path).

    Sections the file leaves out take the shipped defaults.
    """
    path = _resolve(name_or_path, kind="rules", folder=rules_dir(), names=shipped_rules_names())
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RulesError(f"{path}: a rules file must be a mapping of sections")
    default_path = rules_dir() / "default.yaml"
    if path.resolve() != default_path.resolve():
        defaults = read_yaml(default_path) or {}
        data = {**{k: v for k, v in defaults.items() if k not in ("name", "description")}, **data}
    return validate(Rules, data, source=path)


def load_crosswalk(name_or_path: str | Path) -> Crosswalk:
    """Load and validate a crosswalk (a shipped name such as ``worldcover``, or a path)."""
    folder = rules_dir() / "crosswalks"
    path = _resolve(name_or_path, kind="crosswalk", folder=folder, names=shipped_crosswalk_names())
    return validate(Crosswalk, read_yaml(path), source=path)
