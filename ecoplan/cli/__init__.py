"""The ``ecoplan`` command line: a thin layer over the public API (only here is click used)."""
