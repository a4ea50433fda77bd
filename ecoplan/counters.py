"""Master-plan counters: where each region stands against the targets of issue 06.

Reads plan events (from :class:`ecoplan.registry.Registry`), the targets
(``zoning_rules/targets/master_plan_06.yaml``), a region table
(``zoning_rules/regions/thailand_6_regions.csv``) and, optionally, a CSV of observations for the
indicators that need outside figures. Imports nothing spatial.

Definitions (the YAML's header says the same, for planners):

- A plan type of a region is *approved as of* a date D when some registration gave it status
  ``approved`` with a status date <= D (its first such date is its approval date). Draft and
  hearing do not count; a later draft of a revision does not undo an approval.
- A region *qualifies* (has a regional eco-landscape plan) once all six plan types
  (:data:`ecoplan.plan_types.PLAN_TYPES`) are approved; its qualification date is the latest of
  the six approval dates.
- Periods are whole Buddhist-Era calendar years: P1 = 1 Jan 2566 – 31 Dec 2570 B.E.
  (2023-01-01 – 2027-12-31), P2 = 2571–2575, P3 = 2576–2580. A qualification belongs to the
  period containing its date; one before the first period is a baseline, not counted.
- Registry indicators (060002 in regions, 060202 in plans) have per-period targets of what the
  period adds; a period is *met* when the cumulative achievement reaches the cumulative target
  (sum of the targets up to that period). For 060202 a region adds its six plans, and both the
  plans target and the regions target must be reached.
- Observation indicators (060001, 060003, 060101a–c, 060201) are met when the observed value is
  >= the target of the period.

Period states: ``not_started`` (as-of date before the period), ``in_progress``, ``ended``.
Period statuses: ``met``, ``not_met`` (ended below target), ``in_progress`` (below target so far),
``not_started``, ``no_data`` (observation indicator without a figure for a started period).
"""

from __future__ import annotations

import csv
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ecoplan.dates import be_year, ce_year, format_be, format_both, parse_date
from ecoplan.errors import InputError, RulesError
from ecoplan.plan_types import PLAN_TYPES
from ecoplan.registry import STATUSES, PlanEvent
from ecoplan.rules import rules_dir

__all__ = [
    "DEFAULT_TARGETS",
    "DEFAULT_REGIONS",
    "Targets",
    "IndicatorSpec",
    "PeriodSpec",
    "ProvinceList",
    "Region",
    "Observation",
    "MissingPlan",
    "RegionStatus",
    "PeriodResult",
    "IndicatorResult",
    "KpiReport",
    "load_targets",
    "load_regions",
    "read_observations",
    "compute_kpi",
    "format_report",
    "shipped_file",
]

DEFAULT_TARGETS = "targets/master_plan_06.yaml"
"""Shipped targets, relative to the ``zoning_rules`` folder."""

DEFAULT_REGIONS = "regions/thailand_6_regions.csv"
"""Shipped region table (Thailand's six regions), relative to the ``zoning_rules`` folder."""

PeriodState = Literal["not_started", "in_progress", "ended"]
PeriodStatus = Literal["met", "not_met", "in_progress", "not_started", "no_data"]

_STATUS_RANK = {s: i for i, s in enumerate(STATUSES)}
_ID = re.compile(r"^[a-z0-9_]+$")


def shipped_file(relative: str) -> Traversable:
    """A file of the shipped ``zoning_rules`` folder.

    In a source checkout the folder beside the ``ecoplan`` package is used (so the data always
    comes from the same tree as the code that runs); in an installed package, the package data
    ``ecoplan.zoning_rules``.
    """
    return rules_dir() / relative


# ---------------------------------------------------------------------------------------------
# Targets (YAML)
# ---------------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PeriodSpec(_Model):
    """A period of whole Buddhist-Era calendar years, ``start_be`` to ``end_be`` inclusive."""

    id: str = Field(pattern=r"^[A-Za-z0-9_]+$")
    start_be: int = Field(ge=2443, le=2942)
    end_be: int = Field(ge=2443, le=2942)

    @model_validator(mode="after")
    def _ordered(self) -> PeriodSpec:
        if self.end_be < self.start_be:
            raise ValueError(f"end_be {self.end_be} is before start_be {self.start_be}")
        return self

    @property
    def start(self) -> date:
        """First day (C.E.)."""
        return date(ce_year(self.start_be), 1, 1)

    @property
    def end(self) -> date:
        """Last day, inclusive (C.E.)."""
        return date(ce_year(self.end_be), 12, 31)

    def contains(self, d: date) -> bool:
        return self.start <= d <= self.end

    def state(self, as_of: date) -> PeriodState:
        if as_of < self.start:
            return "not_started"
        return "in_progress" if as_of <= self.end else "ended"


class IndicatorSpec(_Model):
    """One indicator of the master plan with its target per period."""

    id: str = Field(pattern=r"^\d{6}[a-z]?$")
    code: str = Field(pattern=r"^\d{6}$")
    section: str
    goal_en: str
    goal_th: str
    name_en: str
    name_th: str
    unit: Literal["percent", "regions", "plans", "cities"]
    kind: Literal["rate", "total", "added"]
    source: Literal["registry", "observations"]
    applies_to: str | None = None
    targets: dict[str, float]
    regions: dict[str, int] | None = None
    targets_th: dict[str, str] = {}
    note_en: str = ""
    note_th: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> IndicatorSpec:
        if self.source == "registry":
            if self.unit not in ("regions", "plans") or self.kind != "added":
                raise ValueError("a registry indicator needs unit regions or plans and kind added")
            if self.unit == "plans" and self.regions is None:
                raise ValueError("a registry indicator in plans needs `regions` per period")
        elif self.regions is not None:
            raise ValueError("`regions` is only for registry indicators")
        return self


class ProvinceRef(_Model):
    th: str
    en: str
    note: str = ""
    alternative: ProvinceRef | None = None


class ProvinceGroup(_Model):
    id: str
    name_en: str
    name_th: str
    provinces: list[ProvinceRef]


class ProvinceList(_Model):
    """A named list of provinces in the document's groups (economic centres, target provinces)."""

    name_en: str
    name_th: str
    groups: list[ProvinceGroup]

    @property
    def provinces(self) -> list[ProvinceRef]:
        return [p for g in self.groups for p in g.provinces]


class Targets(_Model):
    """The targets file: periods, indicators and province lists."""

    id: str
    name_en: str
    name_th: str
    source: str = ""
    periods: list[PeriodSpec] = Field(min_length=1)
    indicators: list[IndicatorSpec] = Field(min_length=1)
    lists: dict[str, ProvinceList] = {}

    @model_validator(mode="after")
    def _cross_checks(self) -> Targets:
        ids = [p.id for p in self.periods]
        if len(set(ids)) != len(ids):
            raise ValueError(f"periods: duplicate ids in {ids}")
        for a, b in zip(self.periods, self.periods[1:], strict=False):
            if b.start_be <= a.end_be:
                raise ValueError(f"periods: {b.id} must start after {a.id} ends ({a.end_be})")
        seen = set()
        for i, ind in enumerate(self.indicators):
            where = f"indicators[{i}] ({ind.id})"
            if ind.id in seen:
                raise ValueError(f"{where}: duplicate indicator id")
            seen.add(ind.id)
            for name in ("targets", "regions"):
                values = getattr(ind, name)
                if values is not None and sorted(values) != sorted(ids):
                    raise ValueError(
                        f"{where}.{name}: needs one value for each period {ids} "
                        f"(got {sorted(values)})"
                    )
            if set(ind.targets_th) - set(ids):
                raise ValueError(
                    f"{where}.targets_th: unknown periods {set(ind.targets_th) - set(ids)}"
                )
            if ind.applies_to is not None and ind.applies_to not in self.lists:
                raise ValueError(
                    f"{where}.applies_to: no list {ind.applies_to!r} (lists: {sorted(self.lists)})"
                )
        return self

    def indicator(self, indicator_id: str) -> IndicatorSpec:
        for ind in self.indicators:
            if ind.id == indicator_id:
                return ind
        raise KeyError(indicator_id)

    def period(self, period_id: str) -> PeriodSpec:
        for p in self.periods:
            if p.id == period_id:
                return p
        raise KeyError(period_id)


def _format_loc(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out or "(top level)"


def load_targets(path: str | Path | None = None) -> Targets:
    """Read a targets YAML; default: the shipped ``targets/master_plan_06.yaml``.

    Raises :class:`RulesError` naming the file and the key for every problem found.
    """
    source = shipped_file(DEFAULT_TARGETS) if path is None else Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesError(f"{source}: targets file not found") from None
    except UnicodeDecodeError as err:
        raise RulesError(f"{source}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except OSError as err:
        raise RulesError(f"{source}: cannot read the targets file ({err})") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise RulesError(f"{source}: invalid YAML{where}: {getattr(err, 'problem', err)}") from err
    if not isinstance(data, dict):
        raise RulesError(f"{source}: expected a mapping of keys (id, periods, indicators, …)")
    try:
        return Targets.model_validate(data)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
            if e["type"] == "missing":
                msg = "required key is missing"
            problems.append(f"{_format_loc(e['loc'])}: {msg.removeprefix('Value error, ')}")
        raise RulesError(f"{source}: " + "; ".join(problems)) from err


# ---------------------------------------------------------------------------------------------
# Regions (CSV)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Region:
    """A region of the region table, with its provinces' Thai names (may be empty)."""

    id: str
    name_en: str
    name_th: str
    provinces: tuple[str, ...] = ()


def load_regions(path: str | Path | None = None) -> tuple[Region, ...]:
    """Read a region table CSV (``region_id, region_en, region_th`` + optional province columns).

    Default: the shipped six-region table. Regions keep the order of their first row.
    Raises :class:`InputError` naming the file, row and column of every problem.
    """
    source = shipped_file(DEFAULT_REGIONS) if path is None else Path(path)
    rows, header = _read_csv(source, what="region table")
    missing = [c for c in ("region_id", "region_en", "region_th") if c not in header]
    if missing:
        raise InputError(f"{source}: missing column(s) {', '.join(missing)} (header: {header})")
    regions: dict[str, dict[str, Any]] = {}
    problems = []
    for line, row in rows:
        rid = row["region_id"].strip()
        if not _ID.match(rid):
            problems.append(f"row {line}, column region_id: {rid!r} is not [a-z0-9_]+")
            continue
        names = (row["region_en"].strip(), row["region_th"].strip())
        entry = regions.setdefault(rid, {"names": names, "provinces": [], "line": line})
        if entry["names"] != names:
            problems.append(
                f"row {line}: region {rid!r} is named {names}, but {entry['names']} on row "
                f"{entry['line']}"
            )
        province = (row.get("province_th") or "").strip()
        if province:
            entry["provinces"].append(province)
    if problems:
        raise InputError(f"{source}: " + "; ".join(problems))
    if not regions:
        raise InputError(f"{source}: the region table has no rows")
    return tuple(
        Region(rid, e["names"][0], e["names"][1], tuple(e["provinces"]))
        for rid, e in regions.items()
    )


def _read_csv(
    source: Path | Traversable, *, what: str
) -> tuple[list[tuple[int, dict[str, str]]], list[str]]:
    """Rows as (line number, row) with stripped lower-case header names; blank rows skipped."""
    try:
        text = source.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{source}: {what} not found") from None
    except IsADirectoryError:
        raise InputError(f"{source}: is a folder, not a CSV file") from None
    except UnicodeDecodeError as err:
        raise InputError(
            f"{source}: not UTF-8 text ({err.reason} at byte {err.start}); save the {what} as "
            f"CSV UTF-8"
        ) from err
    except OSError as err:
        raise InputError(f"{source}: cannot read the {what} ({err})") from err
    reader = csv.reader(text.splitlines())
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise InputError(f"{source}: the {what} is empty (no header row)") from None
    except csv.Error as err:
        raise InputError(f"{source}: row 1: not valid CSV ({err})") from err
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise InputError(f"{source}: row 1: duplicate column(s) {', '.join(duplicated)}")
    rows = []
    try:
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) > len(header):
                raise InputError(
                    f"{source}: row {line}: {len(values)} values but the header has "
                    f"{len(header)} columns ({', '.join(header)})"
                )
            values = values + [""] * (len(header) - len(values))
            rows.append((line, dict(zip(header, values, strict=True))))
    except csv.Error as err:
        raise InputError(f"{source}: row {reader.line_num}: not valid CSV ({err})") from err
    return rows, header


# ---------------------------------------------------------------------------------------------
# Observations (CSV)
# ---------------------------------------------------------------------------------------------

_OBS_REQUIRED = ("indicator", "period", "value")
_OBS_OPTIONAL = ("date", "source", "note")
_THAI_DIGITS = str.maketrans("๐๑๒๓๔๕๖๗๘๙", "0123456789")


@dataclass(frozen=True)
class Observation:
    """An outside figure for an indicator and period, e.g. GPP growth of P1 = 3.9 (%).

    ``date``: when the figure was measured or published (C.E.); rows dated after the as-of date
    are ignored, and of several rows for the same indicator and period the latest one counts.
    ``row``: the row's line number in the CSV (the header is line 1).
    """

    indicator: str
    period: str
    value: float
    date: date | None = None
    source: str = ""
    note: str = ""
    row: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["date"] = self.date.isoformat() if self.date else None
        return d


def _parse_number(text: str) -> float:
    cleaned = text.translate(_THAI_DIGITS).strip().removesuffix("%").replace(",", "").strip()
    value = float(cleaned)
    if not math.isfinite(value):
        raise ValueError("not finite")
    return value


def _normalise_indicator(text: str) -> str:
    ind = text.translate(_THAI_DIGITS).strip().lower()
    if re.fullmatch(r"\d{5}[a-z]?", ind):  # a spreadsheet dropped the leading zero
        ind = "0" + ind
    return ind


def read_observations(path: str | Path, targets: Targets) -> tuple[Observation, ...]:
    """Read the CSV of observations: columns ``indicator, period, value`` (required) and
    ``date, source, note`` (optional), one row per figure, UTF-8.

    ``indicator`` is an indicator id of ``targets`` with source ``observations`` (``060001``,
    ``060101a`` …); ``period`` a period id (``P1`` …); ``value`` a number in the indicator's unit
    (a trailing ``%`` and thousands separators are allowed); ``date`` B.E. or C.E.
    Raises :class:`InputError` naming the file, row and column of every malformed row at once.
    """
    source = Path(path)
    rows, header = _read_csv(source, what="observations file")
    unknown = [h for h in header if h not in _OBS_REQUIRED + _OBS_OPTIONAL]
    missing = [c for c in _OBS_REQUIRED if c not in header]
    if unknown or missing:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column(s) {', '.join(unknown)}")
        raise InputError(
            f"{source}: row 1: {'; '.join(parts)} — the columns are "
            f"{', '.join(_OBS_REQUIRED)} (required) and {', '.join(_OBS_OPTIONAL)} (optional)"
        )
    observed = [i.id for i in targets.indicators if i.source == "observations"]
    computed = [i.id for i in targets.indicators if i.source == "registry"]
    period_ids = [p.id for p in targets.periods]
    problems: list[str] = []
    out: list[Observation] = []
    seen: dict[tuple, int] = {}
    for line, row in rows:
        where = f"row {line}"
        bad = len(problems)
        ind = _normalise_indicator(row["indicator"])
        if not ind:
            problems.append(f"{where}, column indicator: empty")
        elif ind in computed:
            problems.append(
                f"{where}, column indicator: {ind} is counted from the plan registry, not "
                f"from observations; remove the row"
            )
        elif ind not in observed:
            problems.append(
                f"{where}, column indicator: unknown indicator {row['indicator'].strip()!r}; "
                f"one of {', '.join(observed)}"
            )
        period = row["period"].strip().upper()
        if period not in period_ids:
            shown = ", ".join(f"{p.id} (B.E. {p.start_be}–{p.end_be})" for p in targets.periods)
            problems.append(
                f"{where}, column period: "
                + (f"unknown period {row['period'].strip()!r}" if period else "empty")
                + f"; one of {shown}"
            )
        value = math.nan
        if not row["value"].strip():
            problems.append(f"{where}, column value: empty; give a number")
        else:
            try:
                value = _parse_number(row["value"])
            except ValueError:
                problems.append(f"{where}, column value: {row['value'].strip()!r} is not a number")
        when = None
        if (row.get("date") or "").strip():
            try:
                when = parse_date(row["date"], what=f"{where}, column date")
            except InputError as err:
                problems.append(str(err))
        if len(problems) > bad:
            continue
        key = (ind, period, when)
        if key in seen:
            problems.append(
                f"{where}: same indicator, period and date as row {seen[key]} ({ind} {period}"
                + (f" {format_be(when)}" if when else ", no date")
                + "); keep one, or date them"
            )
            continue
        seen[key] = line
        out.append(
            Observation(
                ind,
                period,
                value,
                when,
                (row.get("source") or "").strip(),
                (row.get("note") or "").strip(),
                line,
            )
        )
    if problems:
        shown = problems[:10] + ([f"… and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise InputError(f"{source}: " + "; ".join(shown))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class MissingPlan:
    """A plan type a region still lacks: its latest status as of the date, or None."""

    plan_type: str
    name_en: str
    name_th: str
    status: str | None = None
    status_date: date | None = None


@dataclass(frozen=True)
class RegionStatus:
    """Where a region stands: approved plan types, qualification date and period, what is missing.

    ``period``: the id of the period of the qualification, ``"baseline"`` before the first period,
    ``"after"`` after the last, None when the region does not qualify.
    """

    region_id: str
    name_en: str
    name_th: str
    approved: tuple[str, ...]
    approved_on: dict[str, date]
    qualified_on: date | None
    period: str | None
    missing: tuple[MissingPlan, ...]

    @property
    def qualifies(self) -> bool:
        return self.qualified_on is not None


@dataclass(frozen=True)
class PeriodResult:
    """Target versus achievement of one indicator in one period.

    ``target``/``achieved``: added in the period (registry indicators) or the value of the period
    (observation indicators); ``cumulative_*``: since the start of the first period (registry
    indicators only). ``regions_*``: the regions part of a plans target (060202).
    """

    period: str
    start: date
    end: date
    state: PeriodState
    status: PeriodStatus
    target: float
    achieved: float | None
    cumulative_target: float | None = None
    cumulative_achieved: float | None = None
    regions_target: int | None = None
    regions_achieved: int | None = None
    cumulative_regions_target: int | None = None
    cumulative_regions_achieved: int | None = None
    target_th: str = ""
    observation: Observation | None = None
    regions: tuple[str, ...] = ()


@dataclass(frozen=True)
class IndicatorResult:
    id: str
    code: str
    name_en: str
    name_th: str
    unit: str
    source: str
    periods: tuple[PeriodResult, ...]
    applies_to: str | None = None


@dataclass(frozen=True)
class KpiReport:
    """Everything ``ecoplan kpi`` reports. ``str(report)`` is the table for people;
    :meth:`to_dict` the JSON form."""

    as_of: date
    targets_id: str
    targets_name_en: str
    targets_name_th: str
    regions: tuple[RegionStatus, ...]
    indicators: tuple[IndicatorResult, ...]
    approved_plans: int
    baseline_regions: tuple[str, ...] = ()
    unknown_regions: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    registry: str | None = None
    observations_file: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        for region, status in zip(d["regions"], self.regions, strict=True):
            region["qualifies"] = status.qualifies
        d["as_of_be"] = format_be(self.as_of)
        d["plan_types"] = [p.id for p in PLAN_TYPES]
        return _jsonable(d)

    def __str__(self) -> str:
        return format_report(self)


# ---------------------------------------------------------------------------------------------
# Computation
# ---------------------------------------------------------------------------------------------


def _latest(events: Iterable[PlanEvent]) -> PlanEvent:
    return max(events, key=lambda e: (e.status_date, _STATUS_RANK[e.status], e.event_id))


def compute_kpi(
    events: Iterable[PlanEvent],
    *,
    as_of: date,
    targets: Targets | None = None,
    regions: Sequence[Region] | None = None,
    observations: Sequence[Observation] = (),
    observations_file: str | None = None,
    registry: str | None = None,
) -> KpiReport:
    """Compute where each region and indicator stands on ``as_of`` (a C.E. date, inclusive).

    ``events``: every registration (e.g. ``Registry.history()``); events dated after ``as_of``
    are ignored. ``targets``/``regions`` default to the shipped files. ``observations`` (from
    :func:`read_observations`) give the figures of the observation indicators;
    ``observations_file`` and ``registry`` only label the report.
    """
    targets = targets if targets is not None else load_targets()
    regions = tuple(regions) if regions is not None else load_regions()
    periods = targets.periods
    known = {r.id for r in regions}
    by_plan: dict[tuple[str, str], list[PlanEvent]] = {}
    for e in events:
        if e.status_date <= as_of:
            by_plan.setdefault((e.region_id, e.plan_type), []).append(e)

    statuses = []
    for region in regions:
        approved_on: dict[str, date] = {}
        missing = []
        for pt in PLAN_TYPES:
            evs = by_plan.get((region.id, pt.id), [])
            approvals = [e.status_date for e in evs if e.status == "approved"]
            if approvals:
                approved_on[pt.id] = min(approvals)
            else:
                last = _latest(evs) if evs else None
                missing.append(
                    MissingPlan(
                        pt.id,
                        pt.name_en,
                        pt.name_th,
                        last.status if last else None,
                        last.status_date if last else None,
                    )
                )
        qualified_on = max(approved_on.values()) if not missing else None
        period = None
        if qualified_on is not None:
            period = next((p.id for p in periods if p.contains(qualified_on)), None)
            if period is None:
                period = "baseline" if qualified_on < periods[0].start else "after"
        statuses.append(
            RegionStatus(
                region.id,
                region.name_en,
                region.name_th,
                tuple(approved_on),
                approved_on,
                qualified_on,
                period,
                tuple(missing),
            )
        )

    qualified = [s for s in statuses if s.qualifies and s.period not in ("baseline", "after")]
    notes: list[str] = []
    unknown = sorted({rid for rid, _ in by_plan} - known)
    for rid in unknown:
        notes.append(
            f"region {rid!r} is in the registry but not in the region table: its plans are not "
            f"counted (use --regions FILE for another region system)"
        )
    baseline = tuple(s.region_id for s in statuses if s.period == "baseline")
    for rid in baseline:
        notes.append(
            f"region {rid!r} qualified before {periods[0].id} (B.E. {periods[0].start_be}): "
            f"baseline, not counted toward the targets"
        )

    given = {o.indicator for o in observations}
    results = []
    for ind in targets.indicators:
        if ind.source == "registry":
            results.append(_registry_indicator(ind, periods, qualified, as_of))
        else:
            result = _observation_indicator(ind, periods, observations, as_of)
            results.append(result)
            lacking = [p.period for p in result.periods if p.status == "no_data"]
            if lacking and observations_file and ind.id in given:
                later = sum(
                    1
                    for o in observations
                    if o.indicator == ind.id and o.period in lacking and o.date and o.date > as_of
                )
                notes.append(
                    f"{observations_file}: no observation for {ind.id} in {', '.join(lacking)}"
                    + (f" by the as-of date ({later} later row(s) ignored)" if later else "")
                )
            elif lacking and observations_file:
                notes.append(f"{observations_file}: no row for indicator {ind.id}")
    if not observations_file:
        needed = [i.id for i in targets.indicators if i.source == "observations"]
        if needed:
            notes.append(
                f"indicators {', '.join(needed)} need outside figures: give them with "
                f"--observations FILE (columns indicator, period, value[, date, source, note])"
            )
    approved_plans = sum(len(s.approved) for s in statuses)
    return KpiReport(
        as_of=as_of,
        targets_id=targets.id,
        targets_name_en=targets.name_en,
        targets_name_th=targets.name_th,
        regions=tuple(statuses),
        indicators=tuple(results),
        approved_plans=approved_plans,
        baseline_regions=baseline,
        unknown_regions=tuple(unknown),
        notes=tuple(notes),
        registry=registry,
        observations_file=observations_file,
    )


def _status(state: PeriodState, met: bool) -> PeriodStatus:
    if met:
        return "met"
    return {"ended": "not_met", "in_progress": "in_progress"}.get(state, "not_started")  # type: ignore[return-value]


def _registry_indicator(
    ind: IndicatorSpec, periods: Sequence[PeriodSpec], qualified: Sequence[RegionStatus], as_of
) -> IndicatorResult:
    per_region = len(PLAN_TYPES)
    out = []
    cum_target = cum_regions_target = 0.0
    for p in periods:
        in_period = [s for s in qualified if p.contains(s.qualified_on)]
        up_to = [s for s in qualified if s.qualified_on <= p.end]
        cum_target += ind.targets[p.id]
        n, cum_n = len(in_period), len(up_to)
        if ind.unit == "regions":
            achieved, cum_achieved = n, cum_n
            met = cum_n >= cum_target
            regions_fields: dict[str, Any] = {}
        else:
            achieved, cum_achieved = n * per_region, cum_n * per_region
            cum_regions_target += ind.regions[p.id]
            met = cum_achieved >= cum_target and cum_n >= cum_regions_target
            regions_fields = {
                "regions_target": ind.regions[p.id],
                "regions_achieved": n,
                "cumulative_regions_target": int(cum_regions_target),
                "cumulative_regions_achieved": cum_n,
            }
        state = p.state(as_of)
        out.append(
            PeriodResult(
                period=p.id,
                start=p.start,
                end=p.end,
                state=state,
                status=_status(state, met),
                target=ind.targets[p.id],
                achieved=achieved,
                cumulative_target=cum_target,
                cumulative_achieved=cum_achieved,
                target_th=ind.targets_th.get(p.id, ""),
                regions=tuple(s.region_id for s in in_period),
                **regions_fields,
            )
        )
    return IndicatorResult(
        ind.id, ind.code, ind.name_en, ind.name_th, ind.unit, ind.source, tuple(out), ind.applies_to
    )


def _observation_indicator(
    ind: IndicatorSpec, periods: Sequence[PeriodSpec], observations, as_of: date
) -> IndicatorResult:
    out = []
    for p in periods:
        candidates = [
            o
            for o in observations
            if o.indicator == ind.id and o.period == p.id and (o.date is None or o.date <= as_of)
        ]
        obs = max(candidates, key=lambda o: (o.date or date.min, o.row)) if candidates else None
        state = p.state(as_of)
        if obs is None:
            status: PeriodStatus = "not_started" if state == "not_started" else "no_data"
        else:
            status = _status(state, obs.value >= ind.targets[p.id])
        out.append(
            PeriodResult(
                period=p.id,
                start=p.start,
                end=p.end,
                state=state,
                status=status,
                target=ind.targets[p.id],
                achieved=obs.value if obs else None,
                target_th=ind.targets_th.get(p.id, ""),
                observation=obs,
            )
        )
    return IndicatorResult(
        ind.id, ind.code, ind.name_en, ind.name_th, ind.unit, ind.source, tuple(out), ind.applies_to
    )


# ---------------------------------------------------------------------------------------------
# Text output
# ---------------------------------------------------------------------------------------------

_UNITS = {
    "percent": ("%", "ร้อยละ"),
    "regions": ("regions", "ภาค"),
    "plans": ("plans", "ผัง"),
    "cities": ("cities", "เมือง"),
}
_STATUS_TEXT = {
    "met": "met",
    "not_met": "NOT MET",
    "in_progress": "in progress",
    "not_started": "not started",
    "no_data": "no data",
}
_PLAN_STATUS_TH = {"draft": "ร่าง", "hearing": "รับฟังความคิดเห็น", "approved": "เห็นชอบ"}


def _width(text: str) -> int:
    """Terminal columns of ``text``: Thai vowel and tone marks (combining) take none."""
    return sum(
        0
        if unicodedata.combining(ch) or unicodedata.category(ch) == "Mn"
        else 2
        if unicodedata.east_asian_width(ch) in "WF"
        else 1
        for ch in text
    )


def _table(rows: Sequence[Sequence[str]], *, indent: str = "  ", right: Sequence[int] = ()) -> str:
    widths = [max(_width(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            pad = " " * (widths[i] - _width(cell))
            cells.append(pad + cell if i in right else cell + pad)
        lines.append((indent + "  ".join(cells)).rstrip())
    return "\n".join(lines)


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:g}"


def format_report(report: KpiReport) -> str:
    """The report as text tables with English and Thai names."""
    out = [
        f"Master-plan counters as of {format_both(report.as_of)}",
        f"{report.targets_name_en}",
        f"{report.targets_name_th}",
    ]
    if report.registry:
        out.append(f"registry: {report.registry}")
    n_regions = sum(1 for r in report.regions if r.approved)
    out.append(f"approved plans: {report.approved_plans} in {n_regions} region(s)")
    out.append("")
    out.append("Regions — a region qualifies when plans of all six types are approved")
    out.append("ภาค — ภาคที่มีแผนผังภูมินิเวศครบทั้ง ๖ ประเภทที่ได้รับความเห็นชอบ")
    rows = [["region", "approved", "qualified on (B.E. / C.E.)", "period", "name"]]
    for r in report.regions:
        rows.append(
            [
                r.region_id,
                f"{len(r.approved)}/{len(PLAN_TYPES)}",
                format_both(r.qualified_on) if r.qualified_on else "—",
                r.period or "—",
                f"{r.name_en} / {r.name_th}",
            ]
        )
    out.append(_table(rows, right=(1,)))

    for ind in report.indicators:
        if ind.source != "registry":
            continue
        unit_en, unit_th = _UNITS[ind.unit]
        out.append("")
        out.append(f"{ind.id}  {ind.name_en} ({unit_en})")
        out.append(f"        {ind.name_th}")
        header = ["period", "B.E.", "C.E.", "target", "achieved", "cum. target", "cum. achieved"]
        header += ["status", "regions added"]
        rows = [header]
        for p in ind.periods:
            target, achieved = f"+{_num(p.target)}", f"+{_num(p.achieved)}"
            cum_t, cum_a = _num(p.cumulative_target), _num(p.cumulative_achieved)
            if p.regions_target is not None:
                target += f" in {p.regions_target}"
                achieved += f" in {p.regions_achieved}"
                cum_t += f" in {p.cumulative_regions_target}"
                cum_a += f" in {p.cumulative_regions_achieved}"
            rows.append(
                [
                    p.period,
                    f"{be_year(p.start.year)}–{be_year(p.end.year)}",
                    f"{p.start.year}–{p.end.year}",
                    target,
                    achieved,
                    cum_t,
                    cum_a,
                    _STATUS_TEXT[p.status],
                    ", ".join(p.regions) or "—",
                ]
            )
        out.append(_table(rows, right=(3, 4, 5, 6)))
        if ind.unit == "plans":
            out.append(f"  ({unit_en} counted in qualifying regions, {len(PLAN_TYPES)} per region)")

    lacking = [r for r in report.regions if not r.qualifies]
    if lacking:
        out.append("")
        out.append("Missing plan types of regions that do not qualify yet")
        out.append("ประเภทแผนผังที่ยังไม่ได้รับความเห็นชอบ")
        for r in lacking:
            head = f"  {r.region_id} ({r.name_en} / {r.name_th}): "
            if all(m.status is None for m in r.missing) and not r.approved:
                out.append(head + "nothing registered by this date: all six plan types missing")
                continue
            out.append(head + f"{len(r.missing)} of {len(PLAN_TYPES)} missing")
            rows = []
            for m in r.missing:
                if m.status:
                    state = (
                        f"{m.status} ({_PLAN_STATUS_TH[m.status]}) since {format_be(m.status_date)}"
                    )
                else:
                    state = "not registered (ยังไม่ลงทะเบียน)"
                rows.append([f"- {m.plan_type}", state, f"{m.name_en} / {m.name_th}"])
            out.append(_table(rows, indent="    "))

    observed = [i for i in report.indicators if i.source == "observations"]
    if observed:
        out.append("")
        label = f" ({report.observations_file})" if report.observations_file else ""
        out.append(f"Indicators from outside figures{label}")
        out.append("ตัวชี้วัดที่ใช้ข้อมูลจากภายนอก")
        for ind in observed:
            unit_en, _ = _UNITS[ind.unit]
            out.append(f"  {ind.id}  {ind.name_en}")
            out.append(f"           {ind.name_th}")
            rows = [["period", "target", "observed", "status", "date", "source"]]
            for p in ind.periods:
                o = p.observation
                rows.append(
                    [
                        p.period,
                        f"{_num(p.target)} {unit_en}",
                        f"{_num(p.achieved)} {unit_en}" if o else "—",
                        _STATUS_TEXT[p.status],
                        format_be(o.date) if o and o.date else "",
                        o.source if o else "",
                    ]
                )
            out.append(_table(rows, indent="    ", right=(1, 2)))
    if report.notes:
        out.append("")
        out.append("Notes")
        out.extend(f"  - {n}" for n in report.notes)
    return "\n".join(out)
