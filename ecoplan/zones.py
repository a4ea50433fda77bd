"""The zone table: codes, names and colours (DESIGN.md section 1).

This module owns the table; everything else imports it. Zone codes are the values of the zone
raster and of the ``zone`` field of every vector layer.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Zone",
    "ZONES",
    "NODATA",
    "ZONE_BY_NAME",
    "ZONE_BY_CODE",
    "LAND_ZONES",
    "zone_code",
    "colormap",
]


@dataclass(frozen=True)
class Zone:
    code: int
    name: str  # the English name, used in rules files (``forest``, ``urban`` …)
    name_th: str
    color: str  # ``#rrggbb``

    @property
    def name_en(self) -> str:
        return self.name

    @property
    def rgb(self) -> tuple[int, int, int]:
        h = self.color.lstrip("#")
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


NODATA = 0
"""Raster value for nodata / outside the region."""

ZONES: tuple[Zone, ...] = (
    Zone(1, "forest", "พื้นที่ป่า", "#1b7837"),
    Zone(2, "agriculture", "พื้นที่เกษตร", "#f1c232"),
    Zone(3, "rural", "พื้นที่ชนบท", "#d9a066"),
    Zone(4, "urban", "พื้นที่เมือง", "#d7301f"),
    Zone(5, "industrial", "พื้นที่อุตสาหกรรม", "#7b3294"),
    Zone(6, "water", "แหล่งน้ำ", "#2b8cbe"),
    Zone(7, "other", "พื้นที่อื่น ๆ", "#bdbdbd"),
)

ZONE_BY_NAME: dict[str, Zone] = {z.name: z for z in ZONES}
ZONE_BY_CODE: dict[int, Zone] = {z.code: z for z in ZONES}

LAND_ZONES: tuple[str, ...] = ("forest", "agriculture", "rural", "urban", "industrial")
"""The five zones whose proportions the master plan speaks of."""

MAX_CODE = max(z.code for z in ZONES)


def zone_code(name: str) -> int:
    """Code of a zone given its English name; ``ValueError`` listing the valid names otherwise."""
    try:
        return ZONE_BY_NAME[name].code
    except KeyError:
        valid = ", ".join(ZONE_BY_NAME)
        raise ValueError(f"unknown zone {name!r}; valid zones: {valid}") from None


def colormap() -> dict[int, tuple[int, int, int, int]]:
    """A GDAL colour table for the zone raster: code -> RGBA (nodata transparent)."""
    cmap = {NODATA: (0, 0, 0, 0)}
    for z in ZONES:
        cmap[z.code] = (*z.rgb, 255)
    return cmap
