"""``ecoplan register`` and ``ecoplan kpi``: the plan registry and the master-plan counters."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import click

from ecoplan.dates import format_be, format_both, parse_date
from ecoplan.errors import InputError
from ecoplan.plan_types import PLAN_TYPE_BY_ID, layer_name
from ecoplan.registry import DEFAULT_REGISTRY, REGISTRY_ENV, STATUSES, PlanSubmission, Registry

__all__ = ["COMMANDS", "register", "kpi"]

registry_option = click.option(
    "--registry",
    "registry_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_REGISTRY,
    envvar=REGISTRY_ENV,
    show_default=True,
    show_envvar=True,
    help="The plan registry (an SQLite file; several people may share it on a local disk).",
)
regions_option = click.option(
    "--regions",
    "regions_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Region table CSV (region_id, region_en, region_th, …). "
    "Default: Thailand's six regions (north, central, northeast, west, east, south).",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (UTF-8) instead of a table."
)

_DATE_HELP = (
    "B.E. or C.E., YYYY-MM-DD or DD/MM/YYYY: a year >= 2400 is B.E. (2569-05-01 = 2026-05-01), "
    "or say it: 'BE 2569-05-01', 'พ.ศ. 2569-05-01', '2026-05-01 CE'."
)


def _echo_json(data: object) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


@click.command("register")
@click.argument("gpkg", metavar="OUT.gpkg", type=click.Path(path_type=Path))
@click.option(
    "--status",
    type=click.Choice(STATUSES),
    required=True,
    help="Status the plans reached: draft, hearing (public hearing) or approved.",
)
@click.option(
    "--date",
    "date_text",
    default=None,
    help="Date of that status. Default: today. " + _DATE_HELP,
)
@registry_option
@regions_option
@json_option
def register(
    gpkg: Path,
    *,
    status: str,
    date_text: str | None,
    registry_path: Path,
    regions_path: Path | None,
    as_json: bool,
) -> None:
    """Record the plans of a run's GeoPackage in the plan registry.

    Each layer plan_<id> present and non-empty in OUT.gpkg (the output of `ecoplan run`) is
    recorded for the region (the run_metadata row region_id, else the file name
    <region_id>.gpkg) with its status, date, path and SHA-256. Registering the same file
    again with the same status changes nothing; a new status adds to the plan's history.
    Missing or empty plan layers are not recorded, and are listed.
    """
    from ecoplan.counters import load_regions
    from ecoplan.run_output import inspect_run_output

    when = parse_date(date_text, what="--date") if date_text else date.today()
    out = inspect_run_output(gpkg)
    if not out.plan_layers:
        parts = []
        if out.missing:
            parts.append("missing: " + ", ".join(layer_name(p) for p in out.missing))
        if out.empty:
            parts.append("empty: " + ", ".join(layer_name(p) for p in out.empty))
        raise InputError(
            f"{gpkg}: no plan layer with features ({'; '.join(parts)}); nothing registered"
        )
    known = {r.id for r in load_regions(regions_path)}
    source_path = str(gpkg.resolve())
    submissions = [
        PlanSubmission(
            region_id=out.region_id,
            plan_type=layer.plan_type,
            status=status,  # type: ignore[arg-type]
            status_date=when,
            source_path=source_path,
            sha256=out.sha256,
            feature_count=layer.feature_count,
        )
        for layer in out.plan_layers
    ]
    with Registry(registry_path, create=True) as registry:
        results = registry.register(submissions)

    notes = []
    if out.note:
        notes.append(out.note)
    if out.region_id not in known:
        notes.append(
            f"region {out.region_id!r} is not in the region table "
            f"({regions_path or 'Thailand six regions'}): `ecoplan kpi` will not count it"
        )
    if as_json:
        _echo_json(
            {
                "file": source_path,
                "region_id": out.region_id,
                "region_id_source": out.region_id_source,
                "sha256": out.sha256,
                "status": status,
                "date": when.isoformat(),
                "date_be": format_be(when),
                "registry": str(registry_path),
                "plans": [
                    {
                        "plan_type": r.submission.plan_type,
                        "layer": layer_name(r.submission.plan_type),
                        "action": r.action,
                        "feature_count": r.submission.feature_count,
                        "previous_status": r.previous_status,
                        "previous_date": r.previous_date.isoformat() if r.previous_date else None,
                    }
                    for r in results
                ],
                "missing": list(out.missing),
                "empty": list(out.empty),
                "notes": notes,
            }
        )
        return

    click.echo(
        f"{gpkg}: region {out.region_id} (from the {out.region_id_source}), "
        f"sha256 {out.sha256[:12]}…, {status} on {format_both(when)}"
    )
    for r in results:
        pt = PLAN_TYPE_BY_ID[r.submission.plan_type]
        if r.action == "added":
            what = f"{r.submission.feature_count} features"
        elif r.action == "updated":
            what = f"was {r.previous_status} on {format_be(r.previous_date)}"
        else:
            what = f"already {r.previous_status} on {format_be(r.previous_date)} (same file)"
        click.echo(f"  {r.action:<9}  {pt.id:<23}  {what:<40}  {pt.name_th}")
    for plan_id in out.missing:
        pt = PLAN_TYPE_BY_ID[plan_id]
        click.echo(
            f"  {'missing':<9}  {plan_id:<23}  {'no layer ' + pt.layer + ', not registered':<40}"
            f"  {pt.name_th}"
        )
    for plan_id in out.empty:
        pt = PLAN_TYPE_BY_ID[plan_id]
        click.echo(
            f"  {'empty':<9}  {plan_id:<23}  {'layer has no features, not registered':<40}"
            f"  {pt.name_th}"
        )
    for note in notes:
        click.echo(f"note: {note}")
    counts = {a: sum(r.action == a for r in results) for a in ("added", "updated", "unchanged")}
    click.echo(
        f"registry {registry_path}: {counts['added']} added, {counts['updated']} updated, "
        f"{counts['unchanged']} unchanged; {len(out.missing) + len(out.empty)} not registered"
    )


@click.command("kpi")
@registry_option
@click.option(
    "--as-of",
    "as_of_text",
    default=None,
    help="Count what was reached by this date (inclusive). Default: today. " + _DATE_HELP,
)
@click.option(
    "--observations",
    "observations_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="CSV of outside figures (GPP, registered capital, city counts …): columns indicator, "
    "period, value and optionally date, source, note.",
)
@click.option(
    "--targets",
    "targets_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Targets YAML. Default: the shipped master plan issue 06 targets.",
)
@regions_option
@json_option
def kpi(
    *,
    registry_path: Path,
    as_of_text: str | None,
    observations_path: Path | None,
    targets_path: Path | None,
    regions_path: Path | None,
    as_json: bool,
) -> None:
    """Where each region stands against the master plan's targets.

    Per period (P1 B.E. 2566–2570, P2 2571–2575, P3 2576–2580) and cumulatively: which regions
    have approved plans of all six types, target versus achieved for 060002 (regions) and
    060202 (plans), the plan types each other region still lacks, and the indicators that need
    outside figures (--observations).
    """
    from ecoplan.counters import compute_kpi, load_regions, load_targets, read_observations

    as_of = parse_date(as_of_text, what="--as-of") if as_of_text else date.today()
    targets = load_targets(targets_path)
    regions = load_regions(regions_path)
    observations = read_observations(observations_path, targets) if observations_path else ()
    with Registry(registry_path, create=False) as registry:
        events = registry.history()
    report = compute_kpi(
        events,
        as_of=as_of,
        targets=targets,
        regions=regions,
        observations=observations,
        observations_file=str(observations_path) if observations_path else None,
        registry=str(registry_path),
    )
    if as_json:
        _echo_json(report.to_dict())
    else:
        click.echo(str(report))


COMMANDS = [register, kpi]
