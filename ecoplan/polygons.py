"""Raster to polygons: cells of equal value become one (multi)polygon per value."""

from __future__ import annotations

from collections import defaultdict

import geopandas as gpd
import numpy as np
import shapely
from rasterio.features import shapes
from shapely.geometry import shape

from ecoplan.grid import Grid

__all__ = ["vectorize"]


def vectorize(
    values: np.ndarray, grid: Grid, *, mask: np.ndarray | None = None
) -> gpd.GeoDataFrame:
    """One dissolved (multi)polygon per value where ``mask`` is true (default: values != 0).

    Pixel edges are followed exactly (4-connected): polygon area = pixel count × pixel area.
    Returns columns ``value`` and ``geometry``, sorted by value.
    """
    if mask is None:
        mask = values != 0
    if values.dtype == np.int64:
        values = values.astype(np.int32)
    pieces: dict[int, list] = defaultdict(list)
    for geom, value in shapes(
        values, mask=mask.astype(bool), transform=grid.transform, connectivity=4
    ):
        pieces[int(value)].append(shape(geom))
    rows = []
    for value in sorted(pieces):
        merged = shapely.coverage_union_all(pieces[value])
        polys = [g for g in shapely.get_parts(merged) if g.geom_type == "Polygon"]
        rows.append({"value": value, "geometry": shapely.MultiPolygon(polys)})
    return gpd.GeoDataFrame(rows, columns=["value", "geometry"], geometry="geometry", crs=grid.crs)
