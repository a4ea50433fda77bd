"""Small regions built in code for tests: a land-cover GeoTIFF, a boundary and a region.yaml."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
import yaml
from affine import Affine

UTM47 = "EPSG:32647"
# a 100 m grid whose upper-left corner is at (600000, 1600000) in UTM 47N (about 100.0 E, 14.5 N)
X0, Y0, PIXEL = 600_000.0, 1_600_000.0, 100.0


def write_raster(
    path: Path,
    codes: np.ndarray,
    *,
    crs: str | None = UTM47,
    transform: Affine | None = None,
    nodata: int | None = 0,
) -> Path:
    """Write a single-band uint8 GeoTIFF of class codes."""
    transform = transform or Affine(PIXEL, 0, X0, 0, -PIXEL, Y0)
    profile = {
        "driver": "GTiff",
        "width": codes.shape[1],
        "height": codes.shape[0],
        "count": 1,
        "dtype": codes.dtype.name,
        "transform": transform,
    }
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(codes, 1)
    return path


def box_boundary(
    path: Path, boxes: dict[str, tuple[float, float, float, float]], *, crs=UTM47
) -> Path:
    """A boundary layer ``units`` with one box per unit id (``unit`` field), in ``crs``."""
    gdf = gpd.GeoDataFrame(
        {"unit": list(boxes), "name_th": [f"หน่วย {k}" for k in boxes]},
        geometry=[shapely.box(*b) for b in boxes.values()],
        crs=UTM47,
    ).to_crs(crs)
    gdf.to_file(path, layer="units", driver="GPKG")
    return path


def write_region(
    folder: Path,
    *,
    landcover: str,
    boundary: str,
    crosswalk: str = "worldcover",
    region_id: str = "test",
    unit_field: str | None = "unit",
    pixel_size_m: float | None = None,
    rules: str | dict | None = None,
    layers: dict | None = None,
    crs: str | None = None,
) -> Path:
    """A ``region.yaml`` in ``folder``; a dict ``rules`` is written beside it as rules.yaml."""
    doc: dict = {
        "region": {"id": region_id, "name_en": "Test region", "name_th": "ภาคทดสอบ"},
        "boundary": {"path": boundary, "layer": "units"},
        "landcover": {"path": landcover, "crosswalk": crosswalk},
    }
    if unit_field:
        doc["boundary"]["unit_field"] = unit_field
    if pixel_size_m:
        doc["pixel_size_m"] = pixel_size_m
    if crs:
        doc["crs"] = crs
    if layers:
        doc["layers"] = layers
    if isinstance(rules, dict):
        (folder / "rules.yaml").write_text(yaml.safe_dump(rules, allow_unicode=True), "utf-8")
        doc["rules"] = "rules.yaml"
    elif rules:
        doc["rules"] = rules
    path = folder / "region.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path
