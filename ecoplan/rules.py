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
from ecoplan.plan_types import PLAN_TYPES
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
    "PlanSource",
    "PlanRule",
]

VECTOR_ROLES = (
    "rivers",
    "water_bodies",
    "roads",
    "protected_areas",
    "heritage_sites",
    "industrial_estates",
    "landuse",
    "flood_prone",
)
"""Vector inputs a region may give, by role (DESIGN.md section 3)."""

RASTER_ROLES = ("dem", "population", "flood_depth")

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


def _optional_zones(v: list[str] | None) -> list[str] | None:
    """A list of zone names that may be left out (None) but not given empty."""
    if v is None:
        return v
    if not v:
        raise ValueError("must list at least one zone")
    return _check_zone_names(v)


class BufferSource(_Strict):
    """Where a buffer is measured from: a vector role, or cells of some zones."""

    layer: Literal[VECTOR_ROLES] | None = None  # type: ignore[valid-type]
    zones: list[str] | None = None

    _zones_known = field_validator("zones")(classmethod(lambda cls, v: _optional_zones(v)))

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
        edges = [
            0.0,
            *(self.rings_m if self.rings_m is not None else [self.distance_m]),
        ]
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
    vector_zones: list[VectorZoneRule] = Field(default_factory=list)  # issue 3
    urban_rural: UrbanRuralSettings = Field(default_factory=lambda: UrbanRuralSettings())
    min_mapping_unit: MinMappingUnit = Field(default_factory=lambda: MinMappingUnit())
    plans: list[PlanRule] = Field(default_factory=list)  # issue 5: plan layers
    _plans_unique = field_validator("plans")(classmethod(lambda cls, v: _unique_plan_rule_ids(v)))
    # issue 4: constraints, suitability, allocation, transitions (models at the end of the file)
    constraints: list[ConstraintRule] = Field(default_factory=list)
    suitability: SuitabilitySettings = Field(default_factory=lambda: SuitabilitySettings())
    allocation: AllocationSettings = Field(default_factory=lambda: AllocationSettings())
    transitions: Transitions = Field(default_factory=dict)

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


SPLIT_ZONE = "built_up"
"""Crosswalk target meaning built-up land, urban or rural: decided by the ``urban_rural`` rules."""


class CrosswalkClass(_Strict):
    code: int | str  # int for raster class codes, str for vector attribute codes (LDD ``A101``)
    label: str
    label_th: str = ""
    zone: str  # a zone name, or ``built_up`` (needs the urban/rural split)
    reason: str = ""

    @field_validator("zone")
    @classmethod
    def _zone_known(cls, v: str) -> str:
        if v != SPLIT_ZONE:
            _check_zone_names([v])
        return v


class Crosswalk(_Strict):
    """A table from the class codes of a land-cover product to zones."""

    name: Id
    title: str
    source: str = ""
    nodata: list[int] = Field(default_factory=list)  # codes that mean "no data", besides the file's
    on_unmapped: Literal["error", "other"] = "error"
    # text codes only (vector attributes): "prefix" falls back to the longest listed prefix
    # (LDD A208 -> A2 -> A); mixed symbols such as A303/A405 are read by their first code
    match: Literal["exact", "prefix"] = "exact"
    mixed_separators: list[str] = Field(default_factory=list)
    field: str | None = None  # the attribute field the codes usually come in (e.g. LU_CODE)
    classes: list[CrosswalkClass]

    @field_validator("classes")
    @classmethod
    def _unique_codes(cls, v: list[CrosswalkClass]) -> list[CrosswalkClass]:
        if not v:
            raise ValueError("must list at least one class")
        dupes = [k for k, n in Counter(c.code for c in v).items() if n > 1]
        if dupes:
            raise ValueError(f"code {dupes[0]} is listed more than once")
        if len({type(c.code) for c in v}) > 1:
            raise ValueError("codes must be all numbers (raster) or all text (vector attribute)")
        return v

    @model_validator(mode="after")
    def _text_options(self) -> Crosswalk:
        if not self.is_text and (self.match != "exact" or self.mixed_separators):
            raise ValueError("'match: prefix' and 'mixed_separators' need text codes")
        return self

    @property
    def is_text(self) -> bool:
        """True for a crosswalk of vector attribute codes (``A101``), False for raster codes."""
        return isinstance(self.classes[0].code, str)

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
        data = {
            **{k: v for k, v in defaults.items() if k not in ("name", "description")},
            **data,
        }
    return validate(Rules, data, source=path)


def load_crosswalk(name_or_path: str | Path) -> Crosswalk:
    """Load and validate a crosswalk (a shipped name such as ``worldcover``, or a path)."""
    folder = rules_dir() / "crosswalks"
    path = _resolve(name_or_path, kind="crosswalk", folder=folder, names=shipped_crosswalk_names())
    return validate(Crosswalk, read_yaml(path), source=path)


# --- plan layers (issue 5) -------------------------------------------------------------------
# One rule adds one kind of land to one of the six plan layers (``plan_<id>``). The rules of a
# plan are applied in file order: land claimed by an earlier rule of the same plan is not
# claimed again, so the features of a plan layer do not overlap and their areas add up.

PLAN_IDS = tuple(p.id for p in PLAN_TYPES)


class PlanSource(_Strict):
    """What a plan rule takes: cells of some zones, a vector role, or the bands of buffers."""

    zones: list[str] | None = None
    layer: Literal[VECTOR_ROLES] | None = None  # type: ignore[valid-type]
    buffers: list[Id] | None = None

    _zones_known = field_validator("zones")(classmethod(lambda cls, v: _optional_zones(v)))

    @field_validator("buffers")
    @classmethod
    def _some_buffers(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("must list at least one buffer id")
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> PlanSource:
        given = [k for k in ("zones", "layer", "buffers") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'zones' (zone names), 'layer' (a vector role) or "
                "'buffers' (buffer rule ids)"
            )
        return self

    def describe(self) -> str:
        if self.zones is not None:
            return "zones:" + ",".join(self.zones)
        if self.layer is not None:
            return f"layer:{self.layer}"
        return "buffers:" + ",".join(self.buffers or ())


class PlanRule(_Strict):
    """One kind of land in one plan layer, e.g. forest zones in the conservation plan."""

    id: Id
    plan: Literal[PLAN_IDS]  # type: ignore[valid-type]
    subcategory: str
    subcategory_th: str = ""
    source: PlanSource
    basis: str = ""


def _unique_plan_rule_ids(v: list[PlanRule]) -> list[PlanRule]:
    dupes = [k for k, n in Counter(r.id for r in v).items() if n > 1]
    if dupes:
        raise ValueError(f"plan rule id {dupes[0]!r} is used more than once")
    return v


# ---------------------------------------------------------------------------------------------
# Issue 4: constraints (exclusion layers), suitability factors, allocation and transitions.
# The code that uses them lives in ecoplan.constraints, ecoplan.suitability, ecoplan.allocation.
# ---------------------------------------------------------------------------------------------

import numpy as np  # noqa: E402
from pydantic import AfterValidator, ValidationInfo  # noqa: E402

RANDOM_INDEX = (0.0, 0.0, 0.58, 0.90, 1.12, 1.24, 1.32, 1.41, 1.45, 1.49)
RANDOM_INDEX += (1.51, 1.48, 1.56, 1.57, 1.59)
"""Saaty's random consistency index RI for AHP matrices of size 1 … 15."""


def _zone_list(v: list[str]) -> list[str]:
    if not v:
        raise ValueError("must list at least one zone")
    return _check_zone_names(v)


class ConstraintRule(_Strict):
    """An exclusion layer: where it holds, the zones in ``forbids`` are not allowed.

    Give exactly one source: ``layer`` (a vector role: inside its polygons, or on the cells its
    lines/points touch), ``raster`` (a raster role) or ``path`` (a raster file, relative to the
    rules file) with ``above`` (cells whose value is > above) or ``values`` (cells whose value is
    one of them), or ``slope_above_deg`` (cells steeper than this, from the region's ``dem``).
    """

    id: Id
    name_en: str
    name_th: str = ""
    layer: Literal[VECTOR_ROLES] | None = None  # type: ignore[valid-type]
    raster: Literal[RASTER_ROLES] | None = None  # type: ignore[valid-type]
    path: Path | None = None
    above: float | None = None
    values: list[float] | None = None
    slope_above_deg: float | None = Field(default=None, gt=0, lt=90)
    forbids: list[str]
    basis: str = ""

    _forbids = field_validator("forbids")(classmethod(lambda cls, v: _zone_list(v)))

    @field_validator("path", mode="before")
    @classmethod
    def _relative_to_rules(cls, v, info: ValidationInfo):
        source = (info.context or {}).get("source")
        if isinstance(v, str) and source and not Path(v).expanduser().is_absolute():
            return Path(source).parent / v
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ConstraintRule:
        given = [
            k
            for k in ("layer", "raster", "path", "slope_above_deg")
            if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one source: 'layer', 'raster', 'path' or 'slope_above_deg'"
                + (f" (got {', '.join(given)})" if given else "")
            )
        is_raster = self.raster is not None or self.path is not None
        if is_raster and (self.above is None) == (self.values is None):
            raise ValueError("a raster source needs exactly one of 'above' or 'values'")
        if not is_raster and (self.above is not None or self.values is not None):
            raise ValueError("'above' and 'values' apply only to a 'raster' or 'path' source")
        return self

    def describe(self) -> str:
        if self.layer is not None:
            return f"layer:{self.layer}"
        if self.slope_above_deg is not None:
            return f"slope>{self.slope_above_deg:g}deg"
        name = f"raster:{self.raster}" if self.raster else f"path:{self.path}"
        if self.above is not None:
            return f"{name}>{self.above:g}"
        return f"{name} in {','.join(f'{v:g}' for v in self.values or ())}"


class Normalise(_Strict):
    """A linear ramp to 0–1: ``increasing`` is 0 at ``low`` and below, 1 at ``high`` and above;
    ``decreasing`` is 1 at ``low`` and below, 0 at ``high`` and above."""

    kind: Literal["increasing", "decreasing"]
    low: float
    high: float

    @model_validator(mode="after")
    def _order(self) -> Normalise:
        if self.high <= self.low:
            raise ValueError(f"high ({self.high:g}) must be above low ({self.low:g})")
        return self


class FactorSource(_Strict):
    """What a suitability factor measures; give exactly one key."""

    distance_to: BufferSource | None = None  # ground distance (m) to a vector role or zones
    slope_of: Literal["dem"] | None = None  # slope in degrees of the region's DEM
    raster: Literal[RASTER_ROLES] | None = None  # value of a raster role, e.g. dem = elevation
    path: Path | None = None  # value of any raster file (relative to the rules file)
    current_zone: dict[str, float] | None = None  # today's zone -> value in 0–1

    @field_validator("path", mode="before")
    @classmethod
    def _relative_to_rules(cls, v, info: ValidationInfo):
        return ConstraintRule._relative_to_rules(v, info)

    @field_validator("current_zone")
    @classmethod
    def _zone_values(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is None:
            return v
        _check_zone_names(list(v))
        bad = {k: x for k, x in v.items() if not 0 <= x <= 1}
        if bad:
            raise ValueError(f"values must be in 0–1 (got {bad})")
        return v

    @model_validator(mode="after")
    def _one(self) -> FactorSource:
        keys = ("distance_to", "slope_of", "raster", "path", "current_zone")
        given = [k for k in keys if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(keys)}")
        return self

    @property
    def kind(self) -> str:
        keys = ("distance_to", "slope_of", "raster", "path", "current_zone")
        return next(k for k in keys if getattr(self, k) is not None)


class Factor(_Strict):
    """A suitability factor: a measured value turned into 0–1 by ``normalise``."""

    id: Id
    name_en: str = ""
    name_th: str = ""
    source: FactorSource
    normalise: Normalise | None = None
    basis: str = ""

    @model_validator(mode="after")
    def _needs_normalise(self) -> Factor:
        if self.source.current_zone is None and self.normalise is None:
            raise ValueError("needs 'normalise' (kind, low, high) to turn values into 0–1")
        if self.source.current_zone is not None and self.normalise is not None:
            raise ValueError(
                "a current_zone factor gives its 0–1 values directly; drop 'normalise'"
            )
        return self


def _ratio(x) -> float:
    if isinstance(x, str):
        text = x.strip()
        if "/" in text:
            num, den = text.split("/", 1)
            return float(num) / float(den)
        return float(text)
    return float(x)


class AHP(_Strict):
    """An AHP pairwise comparison matrix (Saaty 1–9 scale; "1/3" strings allowed).

    ``matrix[i][j]`` says how much more important factor i is than factor j. Weights are the
    principal eigenvector (normalised to sum 1); CR = CI / RI with CI = (λmax − n) / (n − 1) and
    Saaty's random index RI. A matrix with CR > 0.1 is refused.
    """

    factors: list[str]
    matrix: list[list[float | str]]

    @model_validator(mode="after")
    def _consistent(self) -> AHP:
        n = len(self.factors)
        if n < 1 or n > len(RANDOM_INDEX):
            raise ValueError(f"AHP needs 1 to {len(RANDOM_INDEX)} factors (got {n})")
        if len(set(self.factors)) != n:
            raise ValueError("a factor is listed twice")
        if len(self.matrix) != n or any(len(r) != n for r in self.matrix):
            raise ValueError(f"matrix must be {n} x {n}, one row and column per factor")
        try:
            a = np.array([[_ratio(x) for x in r] for r in self.matrix], dtype=float)
        except (ValueError, ZeroDivisionError) as err:
            raise ValueError(
                f"matrix entries must be numbers or ratios like '1/3' ({err})"
            ) from err
        if (a <= 0).any():
            raise ValueError("matrix entries must be > 0")
        for i in range(n):
            for j in range(n):
                if abs(a[i, j] * a[j, i] - 1) > 0.01:
                    raise ValueError(
                        f"matrix[{i}][{j}] x matrix[{j}][{i}] must be 1 (reciprocal), "
                        f"got {a[i, j]:g} and {a[j, i]:g}"
                    )
        cr = ahp_weights(a)[1]
        if cr > 0.1:
            raise ValueError(
                f"inconsistent AHP matrix: consistency ratio {cr:.3f} > 0.1; revise the "
                "comparisons (Saaty's rule)"
            )
        return self

    def weights(self) -> dict[str, float]:
        a = np.array([[_ratio(x) for x in r] for r in self.matrix], dtype=float)
        w, _ = ahp_weights(a)
        return dict(zip(self.factors, (float(x) for x in w), strict=True))

    @property
    def consistency_ratio(self) -> float:
        return ahp_weights(np.array([[_ratio(x) for x in r] for r in self.matrix], float))[1]


def ahp_weights(matrix) -> tuple:
    """Weights (principal eigenvector, sum 1) and consistency ratio of an AHP matrix."""
    import numpy as np

    a = np.asarray(matrix, dtype=float)
    n = a.shape[0]
    vals, vecs = np.linalg.eig(a)
    k = int(np.argmax(vals.real))
    w = np.abs(vecs[:, k].real)
    w = w / w.sum()
    lam = float(vals[k].real)
    if n <= 2:
        return w, 0.0
    ci = (lam - n) / (n - 1)
    return w, float(max(ci, 0.0) / RANDOM_INDEX[n - 1])


class ZoneSuitability(_Strict):
    """How suitable a cell is for one zone: weights given directly or from an AHP matrix."""

    weights: dict[str, Annotated[float, Field(ge=0)]] | None = None
    ahp: AHP | None = None

    @model_validator(mode="after")
    def _one(self) -> ZoneSuitability:
        if (self.weights is None) == (self.ahp is None):
            raise ValueError("give exactly one of 'weights' or 'ahp'")
        if self.weights is not None and sum(self.weights.values()) <= 0:
            raise ValueError("weights must add up to more than 0")
        return self

    def factor_weights(self) -> dict[str, float]:
        """Weights normalised to add up to 1."""
        if self.ahp is not None:
            return self.ahp.weights()
        total = sum((self.weights or {}).values())
        return {k: v / total for k, v in (self.weights or {}).items()}


class SuitabilitySettings(_Strict):
    """Suitability (0–1) of each cell for each zone: a weighted sum of normalised factors."""

    factors: list[Factor] = Field(default_factory=list)
    zones: dict[str, ZoneSuitability] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _refs(self) -> SuitabilitySettings:
        _check_zone_names(list(self.zones))
        ids = [f.id for f in self.factors]
        dupes = [k for k, n in Counter(ids).items() if n > 1]
        if dupes:
            raise ValueError(f"factor id {dupes[0]!r} is used more than once")
        for zone, zs in self.zones.items():
            used = list(zs.weights or {}) if zs.weights is not None else zs.ahp.factors
            unknown = [f for f in used if f not in ids]
            if unknown:
                raise ValueError(
                    f"zones.{zone}: unknown factor {unknown[0]!r}; factors are: {', '.join(ids)}"
                )
        return self


class AllocationSettings(_Strict):
    """The proposed plan: one zone per cell meeting the targets (see ecoplan.allocation)."""

    enabled: bool = True
    suitability_step: float = Field(default=0.01, ge=0.005, le=0.5)
    basis: str = ""


def _check_transitions(v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    _check_zone_names(list(v))
    for src, dests in v.items():
        _check_zone_names(list(dests))
        bad = {k: c for k, c in dests.items() if c < 0}
        if bad:
            raise ValueError(f"{src}: change costs must be >= 0 (got {bad})")
    return v


Transitions = Annotated[dict[str, dict[str, float]], AfterValidator(_check_transitions)]
"""``{from_zone: {to_zone: change_cost}}``: the changes allowed from each zone (like CLUE-S's
conversion matrix) and their cost in suitability units per unit area. Staying is always allowed
at no cost; a zone not listed may not change."""


__all__ += [
    "ConstraintRule",
    "Normalise",
    "FactorSource",
    "Factor",
    "AHP",
    "ahp_weights",
    "ZoneSuitability",
    "SuitabilitySettings",
    "AllocationSettings",
    "Transitions",
]


# --- classification refinement (issue 3): vector zone rules, urban/rural split, minimum mapping
# unit. Applied by ecoplan.refine.refine_zones between the crosswalk and the buffers. ---

Scalar = str | int | float


class VectorCondition(_Strict):
    """Which features of a layer a rule takes: one test on a field, or an expression.

    ``{field: landuse, equals: industrial}``, ``{field: LU_CODE, in: [U501, U502]}``,
    ``{field: LU_CODE, prefix: U5}`` (or a list of prefixes), or
    ``{expression: "Area_Rai > 100 and LUL1_CODE == 'U'"}`` (pandas ``DataFrame.query`` syntax;
    quote field names with spaces or Thai letters in backticks). Text compares exactly (Thai too).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    field: str | None = None
    equals: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    prefix: str | list[str] | None = None
    expression: str | None = None

    @model_validator(mode="after")
    def _one_test(self) -> VectorCondition:
        tests = [
            k for k in ("equals", "in_", "prefix", "expression") if getattr(self, k) is not None
        ]
        if len(tests) != 1:
            raise ValueError("give exactly one of 'equals', 'in', 'prefix' or 'expression'")
        if self.expression is not None and self.field is not None:
            raise ValueError("'expression' names its fields itself; leave 'field' out")
        if self.expression is None and not self.field:
            raise ValueError("'equals', 'in' and 'prefix' need a 'field'")
        if self.in_ is not None and not self.in_:
            raise ValueError("'in' must list at least one value")
        return self

    def describe(self) -> str:
        if self.expression is not None:
            return self.expression
        if self.equals is not None:
            return f"{self.field} == {self.equals!r}"
        if self.in_ is not None:
            return f"{self.field} in {list(self.in_)!r}"
        return f"{self.field} starts with {self.prefix!r}"


class VectorZoneRule(_Strict):
    """Features of a vector layer burnt onto the zone raster as a zone.

    Either every selected feature takes ``zone`` (a zone name or ``built_up``), or each takes
    the zone its ``field`` value maps to through ``crosswalk`` (a text crosswalk such as ``ldd``;
    ``field`` defaults to the crosswalk's own). ``replaces`` limits the raster zones a rule may
    overwrite (default: all). Rules are in priority order: where several cover a pixel centre,
    the first in the list decides.
    """

    id: Id
    name_en: str = ""
    name_th: str = ""
    layer: Literal[VECTOR_ROLES]  # type: ignore[valid-type]
    where: VectorCondition | None = None
    zone: str | None = None
    crosswalk: str | None = None
    field: str | None = None
    replaces: list[str] | None = None
    basis: str = ""

    @field_validator("zone")
    @classmethod
    def _zone_known(cls, v: str | None) -> str | None:
        if v is not None and v != SPLIT_ZONE:
            _check_zone_names([v])
        return v

    _replaces_known = field_validator("replaces")(
        classmethod(lambda cls, v: v if v is None else _check_zone_names(v))
    )

    @model_validator(mode="after")
    def _one_target(self) -> VectorZoneRule:
        if (self.zone is None) == (self.crosswalk is None):
            raise ValueError("give exactly one of 'zone' or 'crosswalk' (with 'field')")
        if self.field is not None and self.crosswalk is None:
            raise ValueError("'field' goes with 'crosswalk'; to select features use 'where'")
        return self


class UrbanRuralSettings(_Strict):
    """How built-up land (crosswalk target ``built_up``) is split into urban and rural.

    In the spirit of the Degree of Urbanisation (Eurostat/UN 2020): the built-up share in a
    window of ``radius_m`` around each pixel; pixels with share >= ``min_built_share`` are dense;
    dense pixels that form a contiguous cluster (``connectivity``) of at least
    ``min_cluster_area_ha`` are urban. Built-up pixels in such a cluster are urban, the rest rural.
    ``method: population`` uses the DoU urban-cluster test on a population grid instead;
    ``method: all_urban`` / ``all_rural`` skip the test.
    """

    method: Literal["density", "population", "all_urban", "all_rural"] = "density"
    radius_m: float = Field(default=500.0, gt=0)
    window: Literal["circle", "square"] = "circle"
    min_built_share: float = Field(default=0.5, gt=0, le=1)
    min_cluster_area_ha: float = Field(default=100.0, ge=0)
    connectivity: Literal[4, 8] = 8
    counts_as_built_up: list[str] = Field(default_factory=lambda: ["urban", "rural", "industrial"])
    # method: population (the region's `population` raster, inhabitants per cell): DoU urban
    # clusters on cells of population_cell_m: density >= min_population_density_per_km2,
    # 8-connected, total >= min_cluster_population
    population_cell_m: float = Field(default=1000.0, gt=0)
    min_population_density_per_km2: float = Field(default=300.0, ge=0)
    min_cluster_population: float = Field(default=5000.0, ge=0)
    basis: str = ""

    _counts_known = field_validator("counts_as_built_up")(
        classmethod(lambda cls, v: _check_zone_names(v))
    )


class MinMappingUnit(_Strict):
    """Patches (contiguous pixels of one zone) smaller than ``area_ha`` are merged into the
    majority zone around them. ``area_ha: 0`` turns this off. ``exempt`` zones are never merged
    away (they still absorb small neighbours)."""

    area_ha: float = Field(default=0.0, ge=0)
    connectivity: Literal[4, 8] = 4
    exempt: list[str] = Field(default_factory=list)
    max_iterations: int = Field(default=50, ge=1)
    basis: str = ""

    _exempt_known = field_validator("exempt")(
        classmethod(lambda cls, v: _check_zone_names(v) if v else v)
    )


Rules.model_rebuild()
