"""``ecoplan doctor``: check every input of a region and say what a run would do."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ecoplan.errors import InputError


@click.command()
@click.argument("region_yaml", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    help="Also check the output folder a run would write into (nothing is created).",
)
@click.option(
    "--chunk-size",
    default=1024,
    show_default=True,
    type=click.IntRange(min=64),
    help="Raster block size in pixels, as for `ecoplan run`.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def doctor(region_yaml: Path, out_dir: Path | None, chunk_size: int, as_json: bool) -> None:
    """Check REGION_YAML and every input it names, without computing the plan.

    Prints the working CRS and grid, the land cover (CRS, size, nodata, type), the class codes
    found inside the boundary with their zones, the units, every layer with its feature count
    and CRS, and the rules. Exit code 2 when something must be fixed before `ecoplan run`.
    """
    from ecoplan.doctor import diagnose  # imports the pipeline: only when the command runs

    report = diagnose(region_yaml, out_dir=out_dir, chunk_size=chunk_size)
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2, default=str))
    else:
        for line in report.lines():
            click.echo(line)
    if report.problems:
        more = len(report.problems) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''} listed above)" if more else ""
        raise InputError(report.problems[0].splitlines()[0] + tail)


COMMANDS = [doctor]
