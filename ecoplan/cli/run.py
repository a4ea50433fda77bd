"""``ecoplan run`` and ``ecoplan demo``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ecoplan.pipeline import STEPS, run_region, sample_region_path
from ecoplan.progress import silent, tqdm_progress

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
_quiet = click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
_json = click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")


def _run_one(region_yaml: Path, out_dir: Path, *, overwrite, chunk_size, quiet, as_json) -> None:
    if quiet or as_json:
        report, close = silent, (lambda: None)
    else:
        report, close = tqdm_progress(len(STEPS), desc=f"ecoplan {region_yaml.parent.name}")
    try:
        result = run_region(
            region_yaml, out_dir, overwrite=overwrite, chunk_size=chunk_size, progress=report
        )
    finally:
        close()
    if as_json:
        click.echo(json.dumps(result.summary(), ensure_ascii=False, indent=2))
    elif not quiet:
        s = result.summary()
        click.echo(f"wrote {result.geopackage}")
        click.echo(f"wrote {result.zone_raster}")
        region = result.proportions[result.proportions.level == "region"]
        click.echo(f"{'zone':<12} {'area (ha)':>14} {'share':>7}  status")
        for r in region.itertuples():
            share = "" if r.share != r.share else f"{r.share:.1%}"
            click.echo(f"{r.zone_en:<12} {r.area_ha:>14,.0f} {share:>7}  {r.status}")
        click.echo(f"conflict area: {s['conflict_area_ha']:,.0f} ha; {s['seconds']:.1f} s")
        for w in result.warnings:
            click.echo(f"warning: {w}", err=True)


@click.command()
@click.argument("region_yaml", type=click.Path(dir_okay=False, path_type=Path))
@_out
@_overwrite
@_chunk
@_quiet
@_json
def run(region_yaml, out_dir, overwrite, chunk_size, quiet, as_json):
    """Compute the eco-plan of the region described by REGION_YAML into --out."""
    _run_one(
        region_yaml,
        out_dir,
        overwrite=overwrite,
        chunk_size=chunk_size,
        quiet=quiet,
        as_json=as_json,
    )


@click.command()
@_out
@_overwrite
@_chunk
@_quiet
@_json
def demo(out_dir, overwrite, chunk_size, quiet, as_json):
    """Run the bundled sample region (Northern Thailand, MODIS 2019) into --out."""
    region_yaml = sample_region_path("north")
    _run_one(
        region_yaml,
        out_dir,
        overwrite=overwrite,
        chunk_size=chunk_size,
        quiet=quiet,
        as_json=as_json,
    )


COMMANDS = [run, demo]
