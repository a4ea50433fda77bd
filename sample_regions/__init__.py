"""Bundled sample regions (data files; see each README.md)."""
