"""``ecoplan rules check``: validate a rules file, a crosswalk or a region file."""

from __future__ import annotations

from pathlib import Path

import click

from ecoplan._yaml import read_yaml
from ecoplan.region import load_region
from ecoplan.rules import load_crosswalk, load_rules


@click.group()
def rules():
    """Work with rules files (zoning_rules/)."""


@rules.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def check(files):
    """Validate rules, crosswalk or region YAML FILES; list every problem with its YAML key."""
    for path in files:
        data = read_yaml(path)
        if isinstance(data, dict) and "classes" in data:
            cw = load_crosswalk(path)
            click.echo(f"{path}: ok (crosswalk {cw.name!r}, {len(cw.classes)} classes)")
        elif isinstance(data, dict) and "region" in data and "landcover" in data:
            cfg = load_region(path)
            load_rules(cfg.rules)
            load_crosswalk(cfg.landcover.crosswalk)
            click.echo(f"{path}: ok (region {cfg.id!r})")
        else:
            r = load_rules(path)
            click.echo(
                f"{path}: ok ({len(r.buffers)} buffer rules, {len(r.targets)} targets; "
                f"shares over {r.proportions.describe()})"
            )


COMMANDS = [rules]
