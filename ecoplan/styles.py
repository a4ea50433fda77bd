"""QGIS styles for the outputs: QML (and SLD) text for each GeoPackage layer and the zone raster.

Pure functions: GeoDataFrames and rules in, style text out. :mod:`ecoplan.export` stores them in
the GeoPackage's ``layer_styles`` table (the convention QGIS reads on opening a layer) and
writes the raster's ``.qml`` beside the GeoTIFF.

- ``zones``: categorized on ``zone`` with the DESIGN.md colours, labels "forest · พื้นที่ป่า".
- ``plan_<id>``: categorized on ``subcategory``: zone sub-categories take their zone's colour,
  vector sub-categories the plan's colour, buffer sub-categories a light tint with a dashed
  outline. Labels "Forest · พื้นที่ป่าไม้".
- ``buffer_zones``: categorized on ``rule_id`` and ``ring`` (outer rings lighter), labels
  "Forest-edge buffer · แนวกันชนขอบป่า 0–500 m".
- ``conflicts``: red diagonal hatching over a faint red fill.

Every value present in a layer gets a category (QGIS draws nothing for a value without one);
an empty layer lists the categories its rules foresee.
"""

from __future__ import annotations

import colorsys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from ecoplan.plan_types import PLAN_TYPE_BY_ID, PLAN_TYPES
from ecoplan.rules import BufferRule, PlanRule
from ecoplan.zones import NODATA, ZONE_BY_CODE, ZONE_BY_NAME, ZONES

__all__ = [
    "LayerStyle",
    "PLAN_COLORS",
    "CONFLICT_COLOR",
    "vector_styles",
    "zones_style",
    "plan_style",
    "buffers_style",
    "conflicts_style",
    "zone_raster_qml",
    "category_names",
]

QGIS_VERSION = "3.22.16-Białowieża"
"""The QGIS version written into the QML (the oldest LTR the styles are tested with)."""

PLAN_COLORS: dict[str, str] = {
    "livable_city": ZONE_BY_NAME["urban"].color,
    "secure_rural": ZONE_BY_NAME["rural"].color,
    "sustainable_agriculture": ZONE_BY_NAME["agriculture"].color,
    "eco_industrial": ZONE_BY_NAME["industrial"].color,
    "natural_conservation": ZONE_BY_NAME["forest"].color,
    "heritage": "#8c510a",
}
"""Base colour of each plan layer (the colour of its main zone; heritage brown)."""

CONFLICT_COLOR = "#e31a1c"
CONSTRAINT_COLOR = "#525252"
OUTLINE = "#4d4d4d"


@dataclass(frozen=True)
class Category:
    value: str
    label: str
    fill: str  # "#rrggbb"
    alpha: int = 255  # fill opacity 0-255
    dashed: bool = False
    filter: tuple[tuple[str, str], ...] = ()  # (field, value) pairs for the SLD filter


@dataclass(frozen=True)
class LayerStyle:
    """A layer's default style: QML for QGIS, SLD for other clients, and a description."""

    qml: str
    sld: str
    description: str


# --- colours --------------------------------------------------------------------------------


def _rgb(color: str) -> tuple[int, int, int]:
    h = color.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def _hex(rgb: Iterable[float]) -> str:
    return "#" + "".join(f"{max(0, min(255, round(c))):02x}" for c in rgb)


def _tint(color: str, amount: float) -> str:
    """Mix ``color`` with white: 0 = unchanged, 1 = white."""
    return _hex(c + (255 - c) * amount for c in _rgb(color))


def _shade(color: str, k: int) -> str:
    """The k-th variation of a colour (k = 0 the colour itself): lightness steps."""
    if k == 0:
        return color
    r, g, b = (c / 255 for c in _rgb(color))
    h, light, s = colorsys.rgb_to_hls(r, g, b)
    light = 0.25 + ((light - 0.25 + 0.17 * k) % 0.6)
    return _hex(c * 255 for c in colorsys.hls_to_rgb(h, light, s))


def _label(en: str, th: str) -> str:
    return f"{en} · {th}" if th else en


# --- QML ------------------------------------------------------------------------------------


def _options(parent: ET.Element, props: Mapping[str, str]) -> None:
    opt = ET.SubElement(parent, "Option", type="Map")
    for k, v in props.items():
        ET.SubElement(opt, "Option", name=k, type="QString", value=v)
    for k, v in props.items():  # QGIS < 3.16 reads <prop>; 3.22 reads the Option map
        ET.SubElement(parent, "prop", k=k, v=v)


def _fill_layer(parent: ET.Element, props: Mapping[str, str]) -> None:
    layer = ET.SubElement(
        parent, "layer", {"class": "SimpleFill", "enabled": "1", "locked": "0", "pass": "0"}
    )
    base = {
        "border_width_map_unit_scale": "3x:0,0,0,0,0,0",
        "color": "0,0,0,0",
        "joinstyle": "bevel",
        "offset": "0,0",
        "offset_map_unit_scale": "3x:0,0,0,0,0,0",
        "offset_unit": "MM",
        "outline_color": "0,0,0,0",
        "outline_style": "solid",
        "outline_width": "0.1",
        "outline_width_unit": "MM",
        "style": "solid",
    }
    _options(layer, {**base, **props})


def _rgba(color: str, alpha: int = 255) -> str:
    r, g, b = _rgb(color)
    return f"{r},{g},{b},{alpha}"


def _symbol(parent: ET.Element, name: str, cat: Category) -> None:
    sym = ET.SubElement(
        parent,
        "symbol",
        {"type": "fill", "name": name, "alpha": "1", "clip_to_extent": "1", "force_rhr": "0"},
    )
    _fill_layer(
        sym,
        {
            "color": _rgba(cat.fill, cat.alpha),
            "outline_color": _rgba(_darker(cat.fill) if cat.dashed else OUTLINE),
            "outline_style": "dash" if cat.dashed else "solid",
            "outline_width": "0.3" if cat.dashed else "0.1",
        },
    )


def _darker(color: str) -> str:
    return _hex(c * 0.6 for c in _rgb(color))


def _qgis_root() -> ET.Element:
    return ET.Element(
        "qgis",
        {
            "version": QGIS_VERSION,
            "styleCategories": "AllStyleCategories",
            "hasScaleBasedVisibilityFlag": "0",
            "minScale": "100000000",
            "maxScale": "0",
        },
    )


def _to_text(root: ET.Element) -> str:
    ET.indent(root, space=" ")
    body = ET.tostring(root, encoding="unicode")
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + body + "\n"


def _finish_vector(root: ET.Element, renderer: ET.Element, aliases: Mapping[str, str]) -> str:
    ET.SubElement(renderer, "rotation")
    ET.SubElement(renderer, "sizescale")
    ET.SubElement(root, "blendMode").text = "0"
    ET.SubElement(root, "featureBlendMode").text = "0"
    ET.SubElement(root, "layerOpacity").text = "1"
    ET.SubElement(root, "legend", {"type": "default-vector", "showLabelLegend": "0"})
    al = ET.SubElement(root, "aliases")
    for i, (fieldname, alias) in enumerate(aliases.items()):
        ET.SubElement(al, "alias", {"field": fieldname, "index": str(i), "name": alias})
    ET.SubElement(root, "layerGeometryType").text = "2"
    return _to_text(root)


def _categorized_qml(attr: str, cats: Sequence[Category], aliases: Mapping[str, str]) -> str:
    root = _qgis_root()
    r = ET.SubElement(
        root,
        "renderer-v2",
        {
            "type": "categorizedSymbol",
            "attr": attr,
            "symbollevels": "0",
            "enableorderby": "0",
            "forceraster": "0",
            "referencescale": "-1",
        },
    )
    cel = ET.SubElement(r, "categories")
    for i, c in enumerate(cats):
        ET.SubElement(
            cel,
            "category",
            {"symbol": str(i), "value": c.value, "label": c.label, "render": "true"},
        )
    sel = ET.SubElement(r, "symbols")
    for i, c in enumerate(cats):
        _symbol(sel, str(i), c)
    src = ET.SubElement(r, "source-symbol")
    _symbol(src, "0", Category("", "", "#bdbdbd"))
    return _finish_vector(root, r, aliases)


def _single_hatch_qml(color: str, aliases: Mapping[str, str]) -> str:
    root = _qgis_root()
    r = ET.SubElement(
        root,
        "renderer-v2",
        {
            "type": "singleSymbol",
            "symbollevels": "0",
            "enableorderby": "0",
            "forceraster": "0",
            "referencescale": "-1",
        },
    )
    symbols = ET.SubElement(r, "symbols")
    sym = ET.SubElement(
        symbols,
        "symbol",
        {"type": "fill", "name": "0", "alpha": "1", "clip_to_extent": "1", "force_rhr": "0"},
    )
    _fill_layer(sym, {"color": _rgba(color, 60), "outline_style": "no"})
    _fill_layer(
        sym,
        {
            "color": _rgba(color),
            "style": "b_diagonal",
            "outline_color": _rgba(color),
            "outline_width": "0.4",
        },
    )
    return _finish_vector(root, r, aliases)


# --- SLD ------------------------------------------------------------------------------------

_SLD_NS = {
    "xmlns": "http://www.opengis.net/sld",
    "xmlns:se": "http://www.opengis.net/se",
    "xmlns:ogc": "http://www.opengis.net/ogc",
    "xmlns:xlink": "http://www.w3.org/1999/xlink",
    "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
    "xsi:schemaLocation": "http://www.opengis.net/sld "
    "http://schemas.opengis.net/sld/1.1.0/StyledLayerDescriptor.xsd",
    "version": "1.1.0",
}


def _sld(layer: str, cats: Sequence[Category], *, hatch: str | None = None) -> str:
    root = ET.Element("StyledLayerDescriptor", _SLD_NS)
    nl = ET.SubElement(root, "NamedLayer")
    ET.SubElement(nl, "se:Name").text = layer
    us = ET.SubElement(nl, "UserStyle")
    ET.SubElement(us, "se:Name").text = layer
    fts = ET.SubElement(us, "se:FeatureTypeStyle")
    items = list(cats) if hatch is None else [Category("", layer, hatch, 60)]
    for c in items:
        rule = ET.SubElement(fts, "se:Rule")
        ET.SubElement(rule, "se:Name").text = c.label
        desc = ET.SubElement(rule, "se:Description")
        ET.SubElement(desc, "se:Title").text = c.label
        if c.filter:
            flt = ET.SubElement(rule, "ogc:Filter")
            parent = ET.SubElement(flt, "ogc:And") if len(c.filter) > 1 else flt
            for fieldname, value in c.filter:
                eq = ET.SubElement(parent, "ogc:PropertyIsEqualTo")
                ET.SubElement(eq, "ogc:PropertyName").text = fieldname
                ET.SubElement(eq, "ogc:Literal").text = value
        ps = ET.SubElement(rule, "se:PolygonSymbolizer")
        fill = ET.SubElement(ps, "se:Fill")
        ET.SubElement(fill, "se:SvgParameter", name="fill").text = c.fill
        if c.alpha < 255:
            ET.SubElement(
                fill, "se:SvgParameter", name="fill-opacity"
            ).text = f"{c.alpha / 255:.2f}"
        stroke = ET.SubElement(ps, "se:Stroke")
        ET.SubElement(stroke, "se:SvgParameter", name="stroke").text = c.fill if hatch else OUTLINE
        ET.SubElement(stroke, "se:SvgParameter", name="stroke-width").text = "1"
        if c.dashed:
            ET.SubElement(stroke, "se:SvgParameter", name="stroke-dasharray").text = "4 2"
    ET.indent(root, space=" ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


# --- layer styles ---------------------------------------------------------------------------

_COMMON_ALIASES = {
    "area_ha": "area (ha) · พื้นที่ (เฮกตาร์)",
    "unit_id": "unit · หน่วยพื้นที่",
}


def zones_style(values: Iterable[int] = ()) -> LayerStyle:
    """Categorized on ``zone``: every zone of the table, plus any other value present."""
    codes = sorted({z.code for z in ZONES} | {int(v) for v in values})
    cats = []
    for code in codes:
        z = ZONE_BY_CODE.get(code)
        if z is None:
            cats.append(Category(str(code), f"code {code} (not a zone)", "#000000"))
        else:
            cats.append(Category(str(code), _label(z.name, z.name_th), z.color))
    cats = [
        Category(c.value, c.label, c.fill, c.alpha, c.dashed, (("zone", c.value),)) for c in cats
    ]
    aliases = {"zone": "zone · รหัสเขต", "zone_en": "zone", "zone_th": "เขต", **_COMMON_ALIASES}
    return LayerStyle(
        _categorized_qml("zone", cats, aliases),
        _sld("zones", cats),
        "ecoplan: zones by DESIGN.md colour, English and Thai labels",
    )


def plan_style(
    plan_id: str,
    present: Iterable[tuple[str, str]] = (),
    *,
    rules: Sequence[PlanRule] = (),
) -> LayerStyle:
    """Categorized on ``subcategory``; ``present`` = (subcategory, subcategory_th) in the data.

    Categories are the sub-categories present; a layer with no feature lists those its
    ``rules`` foresee, so its legend still says what the plan would hold.
    """
    plan = PLAN_TYPE_BY_ID[plan_id]
    base = PLAN_COLORS[plan_id]
    subs: dict[str, dict] = {}
    for r in rules:
        if r.plan != plan_id:
            continue
        kind = "zones" if r.source.zones else "layer" if r.source.layer else "buffers"
        entry = subs.setdefault(r.subcategory, {"th": r.subcategory_th, "kinds": [], "zones": []})
        entry["kinds"].append(kind)
        entry["zones"] += r.source.zones or []
        entry["th"] = entry["th"] or r.subcategory_th
    present = [(str(sub), th) for sub, th in present]
    present_subs = {sub for sub, _ in present}
    for sub, th in present:
        subs.setdefault(sub, {"th": th or "", "kinds": [], "zones": []})
    cats = []
    others = 0
    for sub, e in subs.items():
        kinds = set(e["kinds"])
        if "zones" in kinds:
            color, alpha, dashed = ZONE_BY_NAME[e["zones"][0]].color, 255, False
        elif kinds == {"buffers"}:
            color, alpha, dashed = _tint(base, 0.45), 170, True
        elif kinds == {"layer"}:
            color, alpha, dashed = _darker(base), 255, False
        else:
            color, alpha, dashed = _shade(base, others + 1), 255, False
            others += 1
        if present_subs and sub not in present_subs:
            continue
        cats.append(
            Category(sub, _label(sub, e["th"]), color, alpha, dashed, (("subcategory", sub),))
        )
    aliases = {
        "plan_type": "plan type · ประเภทผัง",
        "name_en": "plan",
        "name_th": "ผัง",
        "subcategory": "sub-category",
        "subcategory_th": "ประเภทย่อย",
        **_COMMON_ALIASES,
        "region_id": "region · ภาค",
        "rule_ids": "rules · กฎ",
    }
    return LayerStyle(
        _categorized_qml("subcategory", cats, aliases),
        _sld(plan.layer, cats),
        f"ecoplan: {plan.name_en} · {plan.name_th}, by sub-category",
    )


_BUFFER_PALETTE = (
    "#1b9e77",
    "#2b8cbe",
    "#8c510a",
    "#e7298a",
    "#66a61e",
    "#e6ab02",
    "#7570b3",
    "#a6761d",
    "#d95f02",
    "#666666",
)


def buffers_style(
    rings: Iterable[tuple[str, int]] = (), *, rules: Sequence[BufferRule] = ()
) -> LayerStyle:
    """Categorized on ``rule_id`` + ``ring``: one colour per rule, outer rings lighter.

    ``rings``: the (rule_id, ring) pairs present in the data (when there are none, the rings
    of every rule). Colours follow the order of ``rules``, so a rule keeps its colour.
    """
    by_id = {r.id: r for r in rules}
    pairs = {(str(i), int(k)) for i, k in rings}
    if not pairs:
        pairs = {(r.id, k) for r in rules for k in range(1, len(r.rings) + 1)}
    order = {r.id: n for n, r in enumerate(rules)}
    cats = []
    ids = sorted({i for i, _ in pairs}, key=lambda i: (order.get(i, len(order)), i))
    for n, rid in enumerate(ids):
        color = _BUFFER_PALETTE[order.get(rid, len(order) + n) % len(_BUFFER_PALETTE)]
        rule = by_id.get(rid)
        ks = sorted(k for i, k in pairs if i == rid)
        for k in ks:
            if rule is not None and k <= len(rule.rings):
                inner, outer = rule.rings[k - 1]
                label = f"{_label(rule.name_en, rule.name_th)} {inner:g}–{outer:g} m"
            else:
                label = f"{rid} ring {k}"
            n_rings = len(rule.rings) if rule is not None else max(ks)
            tint = 0.55 * (k - 1) / max(1, n_rings)
            cats.append(
                Category(
                    f"{rid}/{k}",
                    label,
                    _tint(color, tint),
                    150,
                    True,
                    (("rule_id", rid), ("ring", str(k))),
                )
            )
    aliases = {
        "rule_id": "rule · กฎ",
        "rule_name": "buffer",
        "rule_name_th": "แนวกันชน",
        "distance_m": "outer distance (m) · ระยะ (ม.)",
        "inner_m": "inner distance (m)",
        "restricts": "zones not allowed · เขตที่ห้าม",
        **_COMMON_ALIASES,
    }
    return LayerStyle(
        _categorized_qml('concat("rule_id", \'/\', "ring")', cats, aliases),
        _sld("buffer_zones", cats),
        "ecoplan: buffer zones by rule and ring",
    )


def conflicts_style() -> LayerStyle:
    """Red diagonal hatching: land used in a way a buffer forbids."""
    aliases = {
        "rule_id": "rule · กฎ",
        "zone_en": "zone in conflict",
        "zone_th": "เขตที่ขัดแย้ง",
        "distance_m": "buffer distance (m)",
        **_COMMON_ALIASES,
    }
    return LayerStyle(
        _single_hatch_qml(CONFLICT_COLOR, aliases),
        _sld("conflicts", [], hatch=CONFLICT_COLOR),
        "ecoplan: conflicts (land use a buffer forbids), red hatching",
    )


def constraints_style() -> LayerStyle:
    """Dark grey hatching: exclusion areas (protected areas, flood-prone land, steep slopes)."""
    aliases = {
        "rule_id": "constraint · ข้อจำกัด",
        "rule_name": "constraint name",
        "rule_name_th": "ชื่อข้อจำกัด",
        "forbids": "zones not allowed · เขตที่ห้าม",
        **_COMMON_ALIASES,
    }
    return LayerStyle(
        _single_hatch_qml(CONSTRAINT_COLOR, aliases),
        _sld("constraint_zones", [], hatch=CONSTRAINT_COLOR),
        "ecoplan: constraint zones (exclusion layers), grey hatching",
    )


def vector_styles(
    layers: Mapping[str, pd.DataFrame],
    *,
    plan_rules: Sequence[PlanRule] = (),
    buffer_rules: Sequence[BufferRule] = (),
) -> dict[str, LayerStyle]:
    """Default styles for the spatial layers ecoplan writes, keyed by layer name.

    Tables without geometry and layers ecoplan does not know get no style.
    """
    out: dict[str, LayerStyle] = {}
    plan_layers = {p.layer: p.id for p in PLAN_TYPES}
    for name, df in layers.items():
        if not hasattr(df, "geometry"):
            continue
        if name in ("zones", "proposed_zones"):
            out[name] = zones_style(df["zone"].astype(int).unique() if len(df) else ())
        elif name in plan_layers:
            present = (
                df[["subcategory", "subcategory_th"]].drop_duplicates().itertuples(index=False)
                if len(df)
                else ()
            )
            out[name] = plan_style(plan_layers[name], list(present), rules=plan_rules)
        elif name == "buffer_zones":
            present = zip(df["rule_id"], df["ring"].astype(int), strict=True) if len(df) else ()
            out[name] = buffers_style(list(present), rules=buffer_rules)
        elif name == "conflicts":
            out[name] = conflicts_style()
        elif name == "constraint_zones":
            out[name] = constraints_style()
    return out


# --- zone raster ----------------------------------------------------------------------------


def category_names() -> list[str]:
    """GDAL category names of the zone raster, index = code: ``forest | พื้นที่ป่า`` …"""
    names = ["" for _ in range(max(ZONE_BY_CODE) + 1)]
    names[NODATA] = "nodata / outside the region | นอกพื้นที่"
    for z in ZONES:
        names[z.code] = f"{z.name} | {z.name_th}"
    return names


def zone_raster_qml() -> str:
    """A paletted renderer for the zone GeoTIFF: 8 classes (0 = outside, transparent)."""
    root = _qgis_root()
    pipe = ET.SubElement(root, "pipe")
    prov = ET.SubElement(pipe, "provider")
    ET.SubElement(
        prov,
        "resampling",
        {
            "enabled": "false",
            "zoomedInResamplingMethod": "nearestNeighbour",
            "zoomedOutResamplingMethod": "nearestNeighbour",
            "maxOversampling": "2",
        },
    )
    r = ET.SubElement(
        pipe,
        "rasterrenderer",
        {
            "type": "paletted",
            "band": "1",
            "opacity": "1",
            "alphaBand": "-1",
            "nodataColor": "",
        },
    )
    ET.SubElement(r, "rasterTransparency")
    mmo = ET.SubElement(r, "minMaxOrigin")
    for tag, text in (
        ("limits", "None"),
        ("extent", "WholeRaster"),
        ("statAccuracy", "Estimated"),
        ("cumulativeCutLower", "0.02"),
        ("cumulativeCutUpper", "0.98"),
        ("stdDevFactor", "2"),
    ):
        ET.SubElement(mmo, tag).text = text
    pal = ET.SubElement(r, "colorPalette")
    ET.SubElement(
        pal,
        "paletteEntry",
        {
            "value": str(NODATA),
            "color": "#ffffff",
            "alpha": "0",
            "label": "nodata / outside the region · นอกพื้นที่",
        },
    )
    for z in ZONES:
        ET.SubElement(
            pal,
            "paletteEntry",
            {
                "value": str(z.code),
                "color": z.color,
                "alpha": "255",
                "label": _label(z.name, z.name_th),
            },
        )
    ET.SubElement(pipe, "brightnesscontrast", {"brightness": "0", "contrast": "0", "gamma": "1"})
    ET.SubElement(
        pipe,
        "huesaturation",
        {
            "saturation": "0",
            "grayscaleMode": "0",
            "invertColors": "0",
            "colorizeOn": "0",
            "colorizeRed": "255",
            "colorizeGreen": "128",
            "colorizeBlue": "128",
            "colorizeStrength": "100",
        },
    )
    ET.SubElement(pipe, "rasterresampler", {"maxOversampling": "2"})
    ET.SubElement(pipe, "resamplingStage").text = "resamplingFilter"
    ET.SubElement(root, "blendMode").text = "0"
    return _to_text(root)
