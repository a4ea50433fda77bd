"""``ecoplan run`` (one or several regions, or a batch file) and ``ecoplan demo``.

Several regions run one after the other into the same ``--out`` folder (each region's outputs
are named by its id). A region whose input or rules are wrong is reported (``error: …`` on
stderr) and the others still run; the exit code is then 2 (1 if an internal error happened).
A summary table ends the run; ``--json`` prints machine-readable summaries instead and
``--quiet`` prints nothing but errors.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ecoplan.errors import EcoplanError, InputError, RulesError
from ecoplan.progress import STEPS, silent, tqdm_progress

if TYPE_CHECKING:
    from ecoplan.pipeline import RunResult

# The pipeline (dask, scipy, geopandas, …) is imported when a region runs, not when the CLI
# starts, so that `ecoplan --help`, `kpi` and `register` answer at once.


def run_region(*args, **kwargs):
    """:func:`ecoplan.pipeline.run_region`, imported on first use."""
    from ecoplan.pipeline import run_region as _run_region

    return _run_region(*args, **kwargs)


def check_scheduler(scheduler: str) -> None:
    from ecoplan.pipeline import check_scheduler as _check

    _check(scheduler)


def sample_region_path(name: str) -> Path:
    from ecoplan.pipeline import sample_region_path as _sample

    return _sample(name)


log = logging.getLogger(__name__)

_out = click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (created if missing).",
)
_overwrite = click.option("--overwrite", is_flag=True, help="Replace outputs that already exist.")
_chunk = click.option(
    "--chunk-size",
    default=1024,
    show_default=True,
    type=click.IntRange(min=64),
    help="Raster block size in pixels (results do not depend on it).",
)
_scheduler = click.option(
    "--scheduler",
    default="threads",
    show_default=True,
    metavar="threads|synchronous|processes|tcp://HOST:PORT",
    help="Dask scheduler: a local one, or the address of a dask.distributed scheduler.",
)
_budget = click.option(
    "--memory-budget-mb",
    default=128.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Keep intermediate rasters (zones, buffer rings, suitability, the proposed plan) in "
    "memory up to this total; the rest go to temporary files in --out.",
)
_quiet = click.option(
    "-q", "--quiet", is_flag=True, help="No progress bar, no summary, no warnings; errors only."
)
_json = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the summary as JSON on stdout (one region: an object; several: "
    '{"regions": [...], "ok": n, "failed": n}).',
)


@dataclass
class Outcome:
    """How one region's run ended."""

    source: Path
    region_id: str | None
    result: RunResult | None = None
    error: str | None = None
    internal: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.result is not None

    def summary(self) -> dict:
        if self.result is not None:
            return {"source": str(self.source), "status": "ok", **self.result.summary()}
        return {
            "source": str(self.source),
            "status": "failed",
            "region_id": self.region_id,
            "error": self.error,
            "internal_error": self.internal,
            "seconds": round(self.seconds, 2),
        }


def read_batch_file(path: Path) -> list[Path]:
    """Region files listed in a batch file, relative paths against the batch file's folder.

    A text file with one region YAML per line (blank lines and ``#`` comments ignored), or a
    YAML file holding a list of paths or ``{regions: [paths]}``.
    """
    from ecoplan._yaml import read_yaml

    base = path.resolve().parent
    if path.suffix.lower() in (".yaml", ".yml"):
        data = read_yaml(path)
        items = data.get("regions") if isinstance(data, dict) else data
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise RulesError(
                f"{path}: a batch YAML must be a list of region files or {{regions: [files]}}"
            )
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise InputError(f"{path}: cannot read the batch file ({err.strerror})") from err
        items = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
        items = [i for i in items if i]
    if not items:
        raise InputError(f"{path}: the batch file lists no region files")
    return [p if p.is_absolute() else base / p for p in (Path(i).expanduser() for i in items)]


def _run_with_progress(path: Path, out_dir: Path, *, desc: str | None, **options) -> RunResult:
    """Run one region with a progress bar titled ``desc`` (none when ``desc`` is None)."""
    report, close = (silent, lambda: None) if desc is None else tqdm_progress(len(STEPS), desc=desc)
    try:
        return run_region(path, out_dir, progress=report, **options)
    finally:
        close()


def _region_id(path: Path) -> str | None:
    from ecoplan.region import load_region

    try:
        return load_region(path).id
    except EcoplanError:
        return None  # the run reports the problem


def run_regions(
    paths: list[Path],
    out_dir: Path,
    *,
    overwrite: bool,
    chunk_size: int,
    quiet: bool,
    as_json: bool,
    scheduler: str = "threads",
    memory_budget_mb: float = 128.0,
) -> list[Outcome]:
    """Run every region file; one failing does not stop the others."""
    outcomes: list[Outcome] = []
    seen: dict[str, Path] = {}
    n = len(paths)
    for i, path in enumerate(paths, start=1):
        rid = _region_id(path)
        t0 = time.perf_counter()
        if rid is not None and rid in seen:
            msg = (
                f"{path}: region id {rid!r} is also the id of {seen[rid]}; their outputs "
                "would overwrite each other (give each region its own region.id)"
            )
            outcomes.append(Outcome(path, rid, error=msg))
            click.echo(f"error: {msg}", err=True)
            continue
        if rid is not None:
            seen[rid] = path
        desc = f"ecoplan {rid or path.parent.name}" + (f" ({i}/{n})" if n > 1 else "")
        try:
            result = _run_with_progress(
                path,
                out_dir,
                desc=None if quiet or as_json else desc,
                overwrite=overwrite,
                chunk_size=chunk_size,
                scheduler=scheduler,
                memory_budget_mb=memory_budget_mb,
            )
            outcomes.append(Outcome(path, result.region_id, result=result))
        except EcoplanError as err:
            outcomes.append(Outcome(path, rid, error=str(err), seconds=time.perf_counter() - t0))
            click.echo(f"error: {err}", err=True)
        except Exception as err:  # an internal error in one region must not stop the batch
            if n == 1:
                raise
            outcomes.append(
                Outcome(
                    path,
                    rid,
                    error=f"internal error: {type(err).__name__}: {err}",
                    internal=True,
                    seconds=time.perf_counter() - t0,
                )
            )
            click.echo(f"internal error in {path}:\n{traceback.format_exc()}", err=True)
    return outcomes


def _print_single(result: RunResult) -> None:
    s = result.summary()
    click.echo(f"wrote {result.geopackage}")
    click.echo(f"wrote {result.zone_raster}")
    if result.report:
        click.echo(f"wrote {result.report}")
    region = result.proportions[result.proportions.level == "region"]
    click.echo(f"{'zone':<12} {'area (ha)':>14} {'share':>7}  status")
    for r in region.itertuples():
        share = "" if r.share != r.share else f"{r.share:.1%}"
        click.echo(f"{r.zone_en:<12} {r.area_ha:>14,.0f} {share:>7}  {r.status}")
    if result.plan_areas is not None:
        have = int((result.plan_areas["features"] > 0).sum())
        click.echo(f"plans with land: {have} of 6")
    click.echo(f"conflict area: {s['conflict_area_ha']:,.0f} ha; {s['seconds']:.1f} s")


def _print_table(outcomes: list[Outcome]) -> None:
    """One line per region: status, forest share, targets missed, conflicts, plans, time."""
    head = (
        f"{'region':<14} {'status':<7} {'forest':>7} {'targets not met':<24} "
        f"{'conflict ha':>12} {'plans':>5} {'s':>6}"
    )
    click.echo(head)
    click.echo("-" * len(head))
    for o in outcomes:
        name = (o.region_id or o.source.parent.name)[:14]
        if o.result is None:
            click.echo(f"{name:<14} {'FAILED':<7} {o.error}"[:160])
            continue
        s = o.result.summary()
        table = o.result.proportions
        forest = table[(table.level == "region") & (table.zone_en == "forest")]["share"]
        fshare = f"{float(forest.iloc[0]):.1%}" if len(forest) else ""
        missed = ", ".join(t.split(":")[0] for t in s["targets_not_met"]) or "-"
        plans = (
            int((o.result.plan_areas["features"] > 0).sum())
            if o.result.plan_areas is not None
            else 0
        )
        click.echo(
            f"{name:<14} {'ok':<7} {fshare:>7} {missed[:24]:<24} "
            f"{s['conflict_area_ha']:>12,.0f} {plans:>3}/6 {s['seconds']:>6.1f}"
        )
    n_fail = sum(not o.ok for o in outcomes)
    click.echo(f"{len(outcomes) - n_fail} of {len(outcomes)} regions done; {n_fail} failed")


def _finish(outcomes: list[Outcome], *, batch: bool, quiet: bool, as_json: bool) -> None:
    ctx = click.get_current_context()
    if not quiet and not as_json:  # warnings first, so the summary ends the output
        for o in outcomes:
            if o.result is not None:
                for w in o.result.warnings:
                    prefix = f"{o.result.region_id}: " if batch else ""
                    click.echo(f"warning: {prefix}{w}", err=True)
    if as_json:
        if batch:
            payload = {
                "regions": [o.summary() for o in outcomes],
                "ok": sum(o.ok for o in outcomes),
                "failed": sum(not o.ok for o in outcomes),
            }
        else:
            payload = outcomes[0].summary()
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    elif not quiet:
        if batch:
            _print_table(outcomes)
        elif outcomes[0].result is not None:
            _print_single(outcomes[0].result)
    if any(o.internal for o in outcomes):
        ctx.exit(1)
    if any(not o.ok for o in outcomes):
        ctx.exit(2)


@click.command()
@click.argument(
    "region_yaml", nargs=-1, type=click.Path(dir_okay=False, path_type=Path), metavar="REGION_YAML…"
)
@click.option(
    "--batch",
    "batch_file",
    type=click.Path(dir_okay=False, path_type=Path, exists=True),
    help="A file listing region YAMLs (one per line, or a YAML list); adds to REGION_YAML….",
)
@_out
@_overwrite
@_chunk
@_scheduler
@_budget
@_quiet
@_json
def run(
    region_yaml,
    batch_file,
    out_dir,
    overwrite,
    chunk_size,
    scheduler,
    memory_budget_mb,
    quiet,
    as_json,
):
    """Compute the eco-plan of each region described by REGION_YAML… into --out.

    Several regions (or a --batch file) run one after the other; one region's bad input is
    reported and the others still complete (exit code 2 if any failed).
    """
    paths = list(region_yaml)
    if batch_file is not None:
        paths += read_batch_file(batch_file)
    if not paths:
        raise click.UsageError("give at least one REGION_YAML or --batch FILE")
    batch = len(paths) > 1 or batch_file is not None
    try:
        check_scheduler(scheduler)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--scheduler") from None
    options = {"scheduler": scheduler, "memory_budget_mb": memory_budget_mb}
    if not batch:  # one region: its error is the command's error (``error: …``, exit 2)
        _run_single(
            paths[0],
            out_dir,
            overwrite=overwrite,
            chunk_size=chunk_size,
            quiet=quiet,
            as_json=as_json,
            **options,
        )
        return
    outcomes = run_regions(
        paths,
        out_dir,
        overwrite=overwrite,
        chunk_size=chunk_size,
        quiet=quiet,
        as_json=as_json,
        **options,
    )
    _finish(outcomes, batch=True, quiet=quiet, as_json=as_json)


def _run_single(
    path: Path,
    out_dir: Path,
    *,
    overwrite,
    chunk_size,
    quiet,
    as_json,
    scheduler="threads",
    memory_budget_mb=128.0,
) -> None:
    result = _run_with_progress(
        path,
        out_dir,
        desc=None if quiet or as_json else f"ecoplan {path.parent.name}",
        overwrite=overwrite,
        chunk_size=chunk_size,
        scheduler=scheduler,
        memory_budget_mb=memory_budget_mb,
    )
    outcome = Outcome(path, result.region_id, result=result)
    _finish([outcome], batch=False, quiet=quiet, as_json=as_json)


@click.command()
@_out
@_overwrite
@_chunk
@_quiet
@_json
def demo(out_dir, overwrite, chunk_size, quiet, as_json):
    """Run the bundled sample region (Northern Thailand, MODIS 2019) into --out."""
    _run_single(
        sample_region_path("north"),
        out_dir,
        overwrite=overwrite,
        chunk_size=chunk_size,
        quiet=quiet,
        as_json=as_json,
    )


COMMANDS = [run, demo]
