"""Shared fixtures: a tiny synthetic region built in code.

``synth_region`` writes, under ``tmp_path``:

- ``data/landcover.tif`` — ESA WorldCover class codes (10 forest, 40 cropland, 50 built-up,
  80 water, 30 grassland; 0 = nodata) on a 160 x 160 grid of 20 m pixels in EPSG:32647
  (UTM 47N, near Chiang Mai), so the region is 3.2 km square;
- ``data/boundary.gpkg`` — layer ``units``: two adjacent rectangles in EPSG:4326 (lon/lat),
  field ``unit`` (``west``, ``east``) and ``name_th`` (Thai names);
- ``data/rivers.gpkg`` — layer ``rivers``: one line in EPSG:4326 crossing the region;
- ``region.yaml`` pointing at them (crosswalk ``worldcover``, default rules).

The builder's methods write variants (rasters, vectors, YAML) so each test changes one thing.
Everything is small enough that a whole ``ecoplan run`` takes well under a second in-process.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import yaml
from affine import Affine
from pyproj import Transformer

# Speed only: SQLite skips fsync when GDAL writes a GeoPackage (every test writes several).
# A killed *process* loses nothing the OS has accepted, so the SIGKILL tests are unaffected.
os.environ.setdefault("OGR_SQLITE_SYNCHRONOUS", "OFF")

CRS_UTM = "EPSG:32647"
X0, Y0 = 500_000.0, 2_080_000.0  # top-left corner of the land-cover raster (UTM 47N)
PIXEL_M = 20.0
SIZE = 160  # pixels per side


def landcover_codes(size: int = SIZE) -> np.ndarray:
    """The WorldCover codes of the synthetic region (uint8), deterministic.

    West half mostly tree cover (10), east half cropland (40), a built-up block (50) in the east,
    a water band (80) down the middle, a grassland patch (30), and a nodata (0) frame of 2 px.
    """
    a = np.full((size, size), 40, dtype=np.uint8)
    a[:, : size // 2] = 10
    a[size // 4 : size // 2, size * 5 // 8 : size * 7 // 8] = 50
    a[:, size // 2 - 3 : size // 2 + 3] = 80
    a[size * 3 // 4 :, size // 8 : size // 4] = 30
    a[:2, :] = a[-2:, :] = 0
    a[:, :2] = a[:, -2:] = 0
    return a


def utm_to_lonlat(geom):
    t = Transformer.from_crs(CRS_UTM, "EPSG:4326", always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))


def unit_boxes_utm(size: int = SIZE) -> list:
    """The two units in UTM metres: inside the raster with a 200 m margin, split at the middle."""
    left, right = X0 + 200, X0 + size * PIXEL_M - 200
    top, bottom = Y0 - 200, Y0 - size * PIXEL_M + 200
    mid = X0 + size * PIXEL_M / 2
    west = shapely.segmentize(shapely.box(left, bottom, mid, top), 100)
    east = shapely.segmentize(shapely.box(mid, bottom, right, top), 100)
    return [west, east]


@dataclass
class SynthRegion:
    """Writes the synthetic region and its variants into ``root``."""

    root: Path
    size: int = SIZE  # pixels per side of the land cover

    @property
    def data(self) -> Path:
        d = self.root / "data"
        d.mkdir(parents=True, exist_ok=True)
        return d

    # -- rasters ------------------------------------------------------------------------------
    def write_raster(
        self,
        name: str = "landcover.tif",
        *,
        codes: np.ndarray | None = None,
        crs: str | None = CRS_UTM,
        transform: Affine | None = None,
        nodata: float | None = 0,
        dtype: str = "uint8",
        count: int = 1,
        tiled: bool = False,
        driver: str = "GTiff",
    ) -> Path:
        codes = landcover_codes(self.size) if codes is None else codes
        path = self.data / name
        profile: dict[str, Any] = {
            "driver": driver,
            "height": codes.shape[0],
            "width": codes.shape[1],
            "count": count,
            "dtype": dtype,
            "transform": transform or Affine(PIXEL_M, 0, X0, 0, -PIXEL_M, Y0),
        }
        if crs is not None:
            profile["crs"] = crs
        if nodata is not None:
            profile["nodata"] = nodata
        if tiled:
            profile.update(tiled=True, blockxsize=64, blockysize=64)
        with rasterio.open(path, "w", **profile) as dst:
            for b in range(1, count + 1):
                dst.write(codes.astype(dtype), b)
        return path

    # -- vectors ------------------------------------------------------------------------------
    def boundary_frame(self, crs: str | None = "EPSG:4326") -> gpd.GeoDataFrame:
        geoms = unit_boxes_utm(self.size)
        if crs == "EPSG:4326":
            geoms = [utm_to_lonlat(g) for g in geoms]
        else:
            geoms = list(gpd.GeoSeries(geoms, crs=CRS_UTM).to_crs(crs or CRS_UTM))
        return gpd.GeoDataFrame(
            {"unit": ["west", "east"], "name_th": ["ตะวันตก", "ตะวันออก"]},
            geometry=geoms,
            crs=crs,
        )

    def rivers_frame(self) -> gpd.GeoDataFrame:
        k = self.size / SIZE
        line = shapely.LineString(
            [
                (X0 + 100, Y0 - 1000 * k),
                (X0 + 1600 * k, Y0 - 1500 * k),
                (X0 + 3100 * k, Y0 - 1200 * k),
            ]
        )
        return gpd.GeoDataFrame(
            {"name": ["แม่น้ำปิง"]}, geometry=[utm_to_lonlat(line)], crs="EPSG:4326"
        )

    def write_vector(
        self, gdf: gpd.GeoDataFrame, name: str, *, layer: str | None = None, **kwargs
    ) -> Path:
        path = self.data / name
        kwargs = {"engine": "pyogrio", **kwargs}
        if layer is not None:
            kwargs["layer"] = layer
        if gdf.crs is None:
            # geopandas refuses to write nothing as CRS only through warnings; be explicit
            gdf = gdf.copy()
        gdf.to_file(path, **kwargs)
        return path

    # -- region.yaml --------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "region": {"id": "tiny", "name_en": "Tiny test region", "name_th": "ภูมิภาคทดสอบ"},
            "boundary": {"path": "data/boundary.gpkg", "layer": "units", "unit_field": "unit"},
            "landcover": {"path": "data/landcover.tif", "crosswalk": "worldcover"},
            "layers": {"rivers": {"path": "data/rivers.gpkg", "layer": "rivers"}},
            "rules": "default",
        }

    def write_yaml(self, data: Any, name: str = "region.yaml") -> Path:
        path = self.root / name
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
        return path

    def build(self, **overrides: Any) -> Path:
        """Write the default region (inputs and ``region.yaml``); returns the YAML path.

        ``overrides`` replace top-level keys of the region config (``None`` removes a key).
        The input files are written once per size and copied (GDAL writes are slow).
        """
        if self.size not in _TEMPLATES:
            template = SynthRegion(Path(tempfile.mkdtemp(prefix="ecoplan-synth-")), self.size)
            atexit.register(shutil.rmtree, template.root, ignore_errors=True)
            template.write_raster()
            template.write_vector(template.boundary_frame(), "boundary.gpkg", layer="units")
            template.write_vector(template.rivers_frame(), "rivers.gpkg", layer="rivers")
            _TEMPLATES[self.size] = template.data
        shutil.copytree(_TEMPLATES[self.size], self.data, dirs_exist_ok=True)
        cfg = self.config()
        for k, v in overrides.items():
            if v is None:
                cfg.pop(k, None)
            else:
                cfg[k] = v
        return self.write_yaml(cfg)


_TEMPLATES: dict[int, Path] = {}


@pytest.fixture
def synth(tmp_path: Path) -> SynthRegion:
    """A builder of the tiny synthetic region under ``tmp_path / "region"``."""
    return SynthRegion(tmp_path / "region")


@pytest.fixture
def region_yaml(synth: SynthRegion) -> Path:
    """The ``region.yaml`` of the default tiny synthetic region."""
    return synth.build()
