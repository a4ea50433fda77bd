"""The ``ecoplan`` command group and the one place where errors become exit codes.

Exit codes (DESIGN.md section 5): 0 success; 2 the user's input or rules are wrong (one line
``error: …`` on stderr, no traceback); 1 an internal error (traceback shown).
Each subcommand lives in its own module and is added to the group below.
"""

from __future__ import annotations

import logging
import sys

import click

from ecoplan import __version__
from ecoplan.errors import EcoplanError

SUBCOMMAND_MODULES = (
    "ecoplan.cli.run",
    "ecoplan.cli.rules",
    "ecoplan.cli.kpi",
    "ecoplan.cli.classify",
)


class EcoplanGroup(click.Group):
    """A click group that turns ecoplan errors into ``error: …`` and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EcoplanError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=EcoplanGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ecoplan")
@click.option("-v", "--verbose", count=True, help="More log messages (-vv for debug).")
def cli(verbose: int) -> None:
    """ecoplan: ecological-landscape plans (ผังภูมินิเวศ) for Thailand's regions."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)
    logging.captureWarnings(True)


def _register_subcommands() -> None:
    import importlib

    for name in SUBCOMMAND_MODULES:
        module = importlib.import_module(name)
        for command in module.COMMANDS:
            cli.add_command(command)


_register_subcommands()
