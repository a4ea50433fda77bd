"""The region config (``region.yaml``, DESIGN.md section 3).

Relative paths resolve against the YAML's own folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ecoplan._yaml import read_yaml, validate
from ecoplan.errors import RulesError
from ecoplan.rules import (
    RASTER_ROLES,
    VECTOR_ROLES,
    shipped_crosswalk_names,
    shipped_rules_names,
)

__all__ = [
    "RegionInfo",
    "VectorInput",
    "BoundaryInput",
    "LandcoverInput",
    "RegionConfig",
    "load_region",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _looks_like_path(v: str) -> bool:
    return v.endswith((".yaml", ".yml")) or "/" in v or "\\" in v


def _shipped_or_path(v: Any, info: ValidationInfo, *, kind: str, names: list[str]) -> Any:
    """A shipped name stays a name; a path resolves against the YAML's folder; else refuse."""
    if not isinstance(v, str):
        return v
    if _looks_like_path(v):
        return _resolve_path(v, info)
    if v not in names:
        raise ValueError(
            f"unknown {kind} {v!r}; shipped {kind} names: {', '.join(names)} "
            "(or give a path to a .yaml file)"
        )
    return v


def _resolve_path(v: Any, info: ValidationInfo) -> Any:
    base = (info.context or {}).get("base")
    if isinstance(v, str) and base is not None:
        p = Path(v).expanduser()
        return p if p.is_absolute() else Path(base) / p
    return v


class RegionInfo(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]
    name_en: str = ""
    name_th: str = ""


class VectorInput(_Strict):
    """A vector (or, for the raster roles, raster) input: any OGR/GDAL dataset."""

    path: Path
    layer: str | None = None
    where: str | None = None

    _abs = field_validator("path", mode="before")(_resolve_path)


class BoundaryInput(VectorInput):
    unit_field: str | None = None


class LandcoverInput(_Strict):
    path: Path
    crosswalk: str | Path

    _abs = field_validator("path", mode="before")(_resolve_path)

    @field_validator("crosswalk", mode="before")
    @classmethod
    def _crosswalk_path(cls, v: Any, info: ValidationInfo) -> Any:
        return _shipped_or_path(v, info, kind="crosswalk", names=shipped_crosswalk_names())


class RegionConfig(_Strict):
    region: RegionInfo
    crs: str | None = None
    boundary: BoundaryInput
    landcover: LandcoverInput
    pixel_size_m: float | None = Field(default=None, gt=0)
    layers: dict[str, VectorInput] = Field(default_factory=dict)
    rules: str | Path = "default"
    source_file: Path | None = Field(default=None, exclude=True)

    @field_validator("layers")
    @classmethod
    def _roles_known(cls, v: dict[str, VectorInput]) -> dict[str, VectorInput]:
        known = VECTOR_ROLES + RASTER_ROLES
        for role in v:
            if role not in known:
                raise ValueError(f"unknown layer role {role!r}; valid roles: {', '.join(known)}")
        return v

    @field_validator("rules", mode="before")
    @classmethod
    def _rules_path(cls, v: Any, info: ValidationInfo) -> Any:
        return _shipped_or_path(v, info, kind="rules", names=shipped_rules_names())

    @property
    def id(self) -> str:
        return self.region.id

    def vector_layers(self) -> dict[str, VectorInput]:
        return {k: v for k, v in self.layers.items() if k in VECTOR_ROLES}

    def raster_layers(self) -> dict[str, VectorInput]:
        return {k: v for k, v in self.layers.items() if k in RASTER_ROLES}


def load_region(path: str | Path) -> RegionConfig:
    """Load and validate a ``region.yaml``; relative paths resolve against its folder."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise RulesError(f"{path}: a region file must be a mapping (region, boundary, landcover …)")
    data = {**data, "source_file": path}
    return validate(RegionConfig, data, source=path, context={"base": path.resolve().parent})
