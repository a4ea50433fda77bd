"""Classification of land-cover class codes into zones by crosswalk.

The core is a pure function on numpy blocks (:func:`apply_lookup`, halo 0); the dask helpers
map it over a whole raster.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from ecoplan.errors import CrosswalkError
from ecoplan.rules import Crosswalk
from ecoplan.zones import NODATA, zone_code

__all__ = ["lookup_table", "apply_lookup", "code_histogram", "check_codes", "classify"]

UNMAPPED = 255
"""Lookup-table marker of a code the crosswalk does not list (``on_unmapped: error``)."""


def lookup_table(crosswalk: Crosswalk, *, max_code: int) -> np.ndarray:
    """A uint8 table ``lut[code] = zone code`` for codes ``0..max_code``.

    Codes the crosswalk lists as nodata map to 0; codes it does not list map to ``other`` (7)
    under ``on_unmapped: other`` and to :data:`UNMAPPED` under ``on_unmapped: error``.
    """
    size = max(max_code, max((c.code for c in crosswalk.classes), default=0)) + 1
    fill = zone_code("other") if crosswalk.on_unmapped == "other" else UNMAPPED
    lut = np.full(size, fill, dtype=np.uint8)
    for c in crosswalk.classes:
        if c.code >= 0:
            lut[c.code] = zone_code(c.zone)
    for code in crosswalk.nodata:
        if 0 <= code < size:
            lut[code] = NODATA
    return lut


def apply_lookup(codes: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Zone codes for a block of class codes. Negative codes (no data) give 0. Halo: 0."""
    out = np.zeros(codes.shape, dtype=np.uint8)
    valid = (codes >= 0) & (codes < len(lut))
    out[valid] = lut[codes[valid]]
    return out


def block_histogram(codes: np.ndarray, inside: np.ndarray) -> dict[int, int]:
    """Pixel count per class code in a block, where ``inside`` is non-zero. Halo: 0."""
    sel = codes[(inside > 0) & (codes >= 0)]
    values, counts = np.unique(sel, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


def code_histogram(codes: da.Array, inside: da.Array) -> dict[int, int]:
    """Pixel count of every class code found where ``inside`` is non-zero."""
    import dask

    parts = [
        dask.delayed(block_histogram)(c, i)
        for c, i in zip(codes.to_delayed().ravel(), inside.to_delayed().ravel(), strict=True)
    ]
    total: dict[int, int] = {}
    for part in dask.compute(*parts):
        for code, n in part.items():
            total[code] = total.get(code, 0) + n
    return dict(sorted(total.items()))


def check_codes(histogram: dict[int, int], crosswalk: Crosswalk, *, source: str) -> None:
    """Refuse codes the crosswalk does not list (under ``on_unmapped: error``)."""
    if crosswalk.on_unmapped != "error":
        return
    known = {c.code for c in crosswalk.classes} | set(crosswalk.nodata)
    unknown = {c: n for c, n in sorted(histogram.items()) if c not in known}
    if unknown:
        listed = ", ".join(f"{c} ({n:,} pixels)" for c, n in unknown.items())
        raise CrosswalkError(
            f"{source}: class code{'s' if len(unknown) > 1 else ''} {listed} not in crosswalk "
            f"{crosswalk.name!r}; add them to the crosswalk or set on_unmapped: other"
        )


def classify(codes: da.Array, lut: np.ndarray) -> da.Array:
    """Map :func:`apply_lookup` over a dask array of class codes."""
    return codes.map_blocks(apply_lookup, lut, dtype=np.uint8)
