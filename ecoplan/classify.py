"""Classification of land-cover class codes into zones by crosswalk.

The core is a pure function on numpy blocks (:func:`apply_lookup`, halo 0); the dask helpers
map it over a whole raster. A crosswalk may send a code to ``built_up`` (built-up land whose
urban or rural character is decided later by :mod:`ecoplan.settlement`): such pixels carry the
provisional value :data:`BUILT_UP` until :func:`refine_zones` splits them.

Text crosswalks (LDD ``LU_CODE`` values such as ``A101``) classify vector attributes with
:func:`text_zones`: exact match, or the longest listed prefix under ``match: prefix``.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from ecoplan.errors import CrosswalkError
from ecoplan.kernels import lookup
from ecoplan.rules import SPLIT_ZONE, Crosswalk
from ecoplan.zones import NODATA, zone_code

__all__ = [
    "BUILT_UP",
    "lookup_table",
    "apply_lookup",
    "code_histogram",
    "check_codes",
    "classify",
    "target_code",
    "text_zone",
    "text_zones",
]

UNMAPPED = 255
"""Lookup-table marker of a code the crosswalk does not list (``on_unmapped: error``)."""

BUILT_UP = 254
"""Provisional raster value of built-up land awaiting the urban/rural split (``zone: built_up``)."""


def target_code(zone: str) -> int:
    """Raster value of a crosswalk target: a zone code, or :data:`BUILT_UP` for ``built_up``."""
    return BUILT_UP if zone == SPLIT_ZONE else zone_code(zone)


def _raster_only(crosswalk: Crosswalk) -> None:
    if crosswalk.is_text:
        raise CrosswalkError(
            f"crosswalk {crosswalk.name!r} maps text codes of a vector attribute "
            f"({crosswalk.field or 'a field'}), not raster class codes; use it in a "
            "vector_zones rule of the rules file, and give landcover a raster crosswalk"
        )


def lookup_table(crosswalk: Crosswalk, *, max_code: int) -> np.ndarray:
    """A uint8 table ``lut[code] = zone code`` for codes ``0..max_code``.

    Codes the crosswalk lists as nodata map to 0; codes it does not list map to ``other`` (7)
    under ``on_unmapped: other`` and to :data:`UNMAPPED` under ``on_unmapped: error``.
    """
    _raster_only(crosswalk)
    size = max(max_code, max((c.code for c in crosswalk.classes), default=0)) + 1
    fill = zone_code("other") if crosswalk.on_unmapped == "other" else UNMAPPED
    lut = np.full(size, fill, dtype=np.uint8)
    for c in crosswalk.classes:
        if c.code >= 0:
            lut[c.code] = target_code(c.zone)
    for code in crosswalk.nodata:
        if 0 <= code < size:
            lut[code] = NODATA
    return lut


def apply_lookup(codes: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Zone codes for a block of class codes. Negative codes (no data) give 0. Halo: 0.

    One pass (:func:`ecoplan.kernels.lookup`); codes at or beyond the end of ``lut`` give 0.
    """
    return lookup(codes, lut)


BINCOUNT_MAX = 1 << 20
"""Above this largest code a block's histogram sorts (``np.unique``) instead of counting."""


def block_histogram(codes: np.ndarray, inside: np.ndarray) -> dict[int, int]:
    """Pixel count per class code in a block, where ``inside`` is non-zero. Halo: 0."""
    sel = codes[(inside > 0) & (codes >= 0)]
    if len(sel) == 0:
        return {}
    top = int(sel.max())
    if top <= BINCOUNT_MAX:
        counts = np.bincount(sel, minlength=top + 1)
        values = np.flatnonzero(counts)
        return dict(zip(values.tolist(), counts[values].tolist(), strict=True))
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
    _raster_only(crosswalk)
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


def _normalise(value: object) -> str:
    return str(value).strip().upper()


def text_zone(value: object, crosswalk: Crosswalk) -> str | None:
    """The target (zone name or ``built_up``) of one attribute value, or None if not listed.

    Values are compared without surrounding blanks and case. Under ``match: prefix`` the longest
    listed code that starts the value wins (``A208`` -> ``A2``); a mixed symbol such as
    ``A303/A405`` is read by its first code (``mixed_separators``).
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 12.0 read from a numeric field matches code 12
    text = _normalise(value)
    for sep in crosswalk.mixed_separators:
        text = text.split(sep, 1)[0].strip()
    table = {_normalise(c.code): c.zone for c in crosswalk.classes}
    if text in table:
        return table[text]
    if crosswalk.match == "prefix":
        for n in range(len(text) - 1, 0, -1):
            if text[:n] in table:
                return table[text[:n]]
    return None


def text_zones(values, crosswalk: Crosswalk, *, source: str) -> np.ndarray:
    """Raster values (zone codes, :data:`BUILT_UP`) of attribute values, through a crosswalk.

    Empty values give 0 (the feature is not burnt). Values the crosswalk does not list raise
    :class:`CrosswalkError` naming each value and its feature count under ``on_unmapped:
    error``, and give ``other`` under ``on_unmapped: other``.
    """
    values = list(values)
    out = np.zeros(len(values), dtype=np.uint8)
    unknown: dict[str, int] = {}
    cache: dict[object, str | None] = {}
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == "":
            continue
        if v not in cache:
            cache[v] = text_zone(v, crosswalk)
        target = cache[v]
        if target is None:
            unknown[str(v)] = unknown.get(str(v), 0) + 1
            if crosswalk.on_unmapped == "other":
                out[i] = zone_code("other")
            continue
        out[i] = target_code(target)
    if unknown and crosswalk.on_unmapped == "error":
        listed = ", ".join(
            f"{v!r} ({n:,} feature{'s' if n > 1 else ''})" for v, n in unknown.items()
        )
        raise CrosswalkError(
            f"{source}: value{'s' if len(unknown) > 1 else ''} {listed} not in crosswalk "
            f"{crosswalk.name!r}; add them to the crosswalk or set on_unmapped: other"
        )
    return out
