"""The working grid: a small immutable value (CRS + transform + shape), in metres."""

from __future__ import annotations

import math
from dataclasses import dataclass

from affine import Affine
from pyproj import CRS, Transformer
from rasterio.crs import CRS as RioCRS
from rasterio.windows import Window

__all__ = ["Grid", "utm_crs_for", "metres_per_pixel"]


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid in a projected CRS whose unit is the metre."""

    crs: RioCRS
    transform: Affine
    height: int
    width: int

    @classmethod
    def covering(
        cls, bounds: tuple[float, float, float, float], *, crs: RioCRS, pixel_size_m: float
    ) -> Grid:
        """The smallest grid aligned on multiples of ``pixel_size_m`` that covers ``bounds``."""
        left, bottom, right, top = bounds
        p = float(pixel_size_m)
        x0 = math.floor(left / p) * p
        y1 = math.ceil(top / p) * p
        width = max(1, math.ceil((right - x0) / p))
        height = max(1, math.ceil((y1 - bottom) / p))
        return cls(crs, Affine(p, 0.0, x0, 0.0, -p, y1), height, width)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def pixel_size_m(self) -> float:
        return float(self.transform.a)

    @property
    def pixel_area_m2(self) -> float:
        return float(self.transform.a * -self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        t = self.transform
        return (t.c, t.f + t.e * self.height, t.c + t.a * self.width, t.f)

    def window_transform(self, row_off: int, col_off: int) -> Affine:
        return self.transform @ Affine.translation(col_off, row_off)

    def window(self, row_off: int, col_off: int, height: int, width: int) -> Window:
        return Window(col_off, row_off, width, height)


def utm_crs_for(lon: float, lat: float) -> RioCRS:
    """The WGS 84 / UTM zone CRS that contains a point (EPSG:326xx north, 327xx south)."""
    zone = int((lon + 180) // 6) + 1
    zone = min(max(zone, 1), 60)
    epsg = (32600 if lat >= 0 else 32700) + zone
    return RioCRS.from_epsg(epsg)


def metres_per_pixel(crs: RioCRS, res: tuple[float, float], *, at: tuple[float, float]) -> float:
    """The ground size of a pixel in metres (mean of x and y) near the point ``at`` (in ``crs``).

    For a projected CRS in metres (or feet, …) this is the resolution times the unit; for a
    geographic CRS the degrees are measured on the ellipsoid at ``at``.
    """
    pcrs = CRS.from_user_input(crs.to_wkt())
    if pcrs.is_geographic:
        geod = pcrs.get_geod()
        lon, lat = at
        _, _, dx = geod.inv(lon, lat, lon + res[0], lat)
        _, _, dy = geod.inv(lon, lat, lon, lat + res[1])
        return float((abs(dx) + abs(dy)) / 2)
    unit = pcrs.axis_info[0].unit_conversion_factor if pcrs.axis_info else 1.0
    return float((abs(res[0]) + abs(res[1])) / 2 * unit)


def to_lonlat(crs: RioCRS, x: float, y: float) -> tuple[float, float]:
    t = Transformer.from_crs(CRS.from_user_input(crs.to_wkt()), CRS.from_epsg(4326), always_xy=True)
    lon, lat = t.transform(x, y)
    return float(lon), float(lat)
