"""The ``ecoplan`` command line: a thin layer over the public API (only this package imports click)."""
