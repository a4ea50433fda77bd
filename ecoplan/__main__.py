"""``python -m ecoplan`` is the ``ecoplan`` command."""

from ecoplan.cli.main import main

if __name__ == "__main__":
    main()
