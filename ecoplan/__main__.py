"""``python -m ecoplan`` is the ``ecoplan`` command."""

from ecoplan.cli.main import cli

if __name__ == "__main__":
    cli()
