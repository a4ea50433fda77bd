"""ecoplan: ecological-landscape plans (ผังภูมินิเวศ) for Thailand's regions."""

from __future__ import annotations

__version__ = "0.1.0"
