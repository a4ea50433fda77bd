"""The ``ecoplan`` command group and the one place where errors become exit codes.

Exit codes (DESIGN.md section 5): 0 success; 2 the user's input or rules are wrong (one line
``error: …`` on stderr, no traceback); 1 an internal error (traceback shown).
Each subcommand lives in its own module and is added to the group below.
"""

from __future__ import annotations

import errno
import logging
import sys
import warnings

import click

from ecoplan import __version__
from ecoplan.errors import EcoplanError

SUBCOMMAND_MODULES = (
    "ecoplan.cli.run",
    "ecoplan.cli.rules",
    "ecoplan.cli.kpi",
    "ecoplan.cli.classify",
    "ecoplan.cli.doctor",
)


_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}
"""OS errors that are the user's to fix (disk full, no permission), not ecoplan's bugs."""


def error_line(err: BaseException) -> str:
    """The ``error: …`` text of an error: its first line says the essential thing.

    Messages listing several problems (every bad key of a YAML file) keep their further lines,
    indented, after the first.
    """
    text = str(err).strip() or type(err).__name__
    first, *rest = text.splitlines()
    return "\n".join([f"error: {first}", *(f"  {r.strip()}" for r in rest if r.strip())])


class _StderrHandler(logging.StreamHandler):
    """Logs to whatever ``sys.stderr`` is at the time of the call (works under CliRunner)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _setup_logging(level: int) -> None:
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        root.addHandler(handler)
    handler.setLevel(level)
    root.setLevel(level)
    logging.captureWarnings(True)
    # rasterio sometimes warns that an in-memory raster of a rasterize call running on another
    # dask thread "has no geotransform" although every call passes one (outputs are identical
    # across schedulers, tested); it means nothing to a user, so it is not shown
    warnings.filterwarnings("ignore", message="Dataset has no geotransform")


class EcoplanGroup(click.Group):
    """A click group that turns ecoplan errors into ``error: …`` and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EcoplanError as err:
            click.echo(error_line(err), err=True)
            ctx.exit(2)
        except OSError as err:
            if err.errno not in _ENVIRONMENT_ERRNOS:
                raise
            where = f"{err.filename}: " if err.filename else ""
            click.echo(f"error: {where}{err.strerror or err}", err=True)
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
    _setup_logging(level)


def _register_subcommands() -> None:
    import importlib

    for name in SUBCOMMAND_MODULES:
        module = importlib.import_module(name)
        for command in module.COMMANDS:
            cli.add_command(command)


_register_subcommands()


def main() -> None:
    """The ``ecoplan`` command as a program (the console script and ``python -m ecoplan``).

    :func:`cli` exits through ``SystemExit``. By then every output is closed and committed, so
    the objects the run and its libraries made are frozen out of the garbage collector's last
    passes: the interpreter's exit then takes about 0.2 s instead of about 1 s (it traversed
    every object of pandas, dask, scipy, numba … several times). Exit handlers (logging's
    flush, temporary files) still run. Not done in :func:`cli` itself, which tests and scripts
    call in a process that goes on.
    """
    import gc

    try:
        cli()
    finally:
        gc.freeze()
