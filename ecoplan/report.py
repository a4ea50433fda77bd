"""The planner's report ``<region>_report.html``: one self-contained page in Thai and English.

Maps and charts are drawn with matplotlib (Agg) in a Thai font and embedded as base64 PNG, so
the file opens anywhere without its folder. The report shows what the run has: a proposed plan,
before/after proportions, zone changes and classification accuracy appear when an allocation
or ML step provides them (fields of :class:`ReportData` left ``None`` say "not computed").

:func:`render_report` is pure (data in, HTML text out); :func:`write_report` writes it atomically.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from ecoplan.grid import Grid
from ecoplan.zones import LAND_ZONES, ZONE_BY_NAME, ZONES

__all__ = ["ReportData", "render_report", "write_report", "thai_font", "THAI_FONTS"]

log = logging.getLogger(__name__)

THAI_FONTS = (
    "Loma",
    "Noto Sans Thai",
    "Noto Sans Thai UI",
    "Garuda",
    "Sarabun",
    "TH Sarabun New",
    "Kinnari",
    "Norasi",
    "Waree",
    "Tahoma",
)
"""Font families with Thai glyphs, in order of preference (fonts-tlwg-loma-otf gives Loma)."""

MAX_MAP_PIXELS = 900
"""Longest side, in cells, of the zone array drawn in a map (larger arrays are subsampled)."""


@dataclass(frozen=True)
class ReportData:
    """What the report shows. Tables use the column names of the GeoPackage layers.

    ``proportions`` (and ``proportions_after``) as written in the ``proportions`` table;
    ``buffers`` and ``conflicts`` the attribute tables of ``buffer_zones`` and ``conflicts``;
    ``plan_areas`` as :meth:`ecoplan.plans.PlanLayers.areas`; ``metadata`` the ``run_metadata``
    table (key, value, path, sha256). ``proposed`` is the proposed plan's zone array,
    ``zone_changes`` any table of changes (from → to, area), ``accuracy`` metric → value or a
    table (e.g. per-class precision and recall) from an ML classification.
    """

    region_id: str
    name_en: str
    name_th: str
    grid: Grid
    zones: np.ndarray  # or a dask array
    proportions: pd.DataFrame
    buffers: pd.DataFrame
    conflicts: pd.DataFrame
    metadata: pd.DataFrame
    boundary: gpd.GeoDataFrame | None = None
    plan_areas: pd.DataFrame | None = None
    warnings: Sequence[str] = field(default_factory=tuple)
    # filled by later steps when they run (allocation, ML classification)
    proposed: np.ndarray | None = None  # or a dask array
    proportions_after: pd.DataFrame | None = None
    zone_changes: pd.DataFrame | None = None
    accuracy: Mapping[str, float] | pd.DataFrame | None = None


# --- fonts and figures ----------------------------------------------------------------------


@lru_cache(maxsize=1)
def thai_font() -> str | None:
    """The family name of an installed font with Thai glyphs, or None (with a warning)."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    for name in THAI_FONTS:
        if name in names:
            return name
    warnings.warn(
        "no Thai font found for the report's images (install fonts-tlwg-loma-otf or "
        "fonts-noto-core); Thai text in the maps and charts will show as boxes",
        RuntimeWarning,
        stacklevel=2,
    )
    return None


def _rc() -> dict:
    font = thai_font()
    family = [font, "DejaVu Sans"] if font else ["DejaVu Sans"]
    return {"font.family": family, "font.size": 9, "axes.titlesize": 10, "svg.fonttype": "none"}


def _figure(width_in: float, height_in: float):
    """A matplotlib figure and axes outside pyplot (no global state, no GUI backend)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in))
    return fig, fig.subplots()


def _png(fig) -> str:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # without a Thai font, thai_font() has warned once; not once per missing glyph
        warnings.filterwarnings(
            "ignore", message="Glyph .* missing from font", category=UserWarning
        )
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _label(en: str, th: str) -> str:
    return f"{en} · {th}" if th else en


def _zone_rgba() -> np.ndarray:
    """RGBA of every zone code, as bytes (an 8th of float RGBA's memory in the map)."""
    lut = np.zeros((256, 4), dtype=np.uint8)
    for z in ZONES:
        lut[z.code] = [*z.rgb, 255]
    return lut


def _map_png(zones: np.ndarray, grid: Grid, boundary, *, title: str) -> str:
    import matplotlib
    from matplotlib.patches import Patch

    step = max(1, math.ceil(max(zones.shape) / MAX_MAP_PIXELS))
    shown = np.asarray(zones[::step, ::step])  # numpy, or dask (computes the sample only)
    left, bottom, right, top = grid.bounds
    with matplotlib.rc_context(_rc()):
        fig, ax = _figure(7.5, 6.5)
        ax.imshow(
            _zone_rgba()[shown],
            extent=(left / 1e3, right / 1e3, bottom / 1e3, top / 1e3),
            interpolation="nearest",
        )
        if boundary is not None and len(boundary):
            b = boundary.boundary.scale(1e-3, 1e-3, origin=(0, 0))
            b.plot(ax=ax, color="#333333", linewidth=0.5)
        present = set(np.unique(shown).tolist())
        handles = [
            Patch(facecolor=z.color, edgecolor="#555555", label=_label(z.name, z.name_th))
            for z in ZONES
            if z.code in present
        ]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
        ax.set_title(title)
        ax.set_xlabel(f"x (km, {grid.crs.to_string()})")
        ax.set_ylabel("y (km)")
        ax.set_aspect("equal")
        return _png(fig)


def _region_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table[(table["level"] == "region") & (table["zone_en"].isin(LAND_ZONES + ("other",)))]


def _proportions_png(before: pd.DataFrame, after: pd.DataFrame | None) -> str:
    import matplotlib

    rows = _region_rows(before).reset_index(drop=True)
    rows = rows[rows["share"].notna()].reset_index(drop=True)
    after_rows = None
    if after is not None:
        a = _region_rows(after).set_index("zone_en")
        after_rows = [float(a["share"].get(z, np.nan)) for z in rows["zone_en"]]
    with matplotlib.rc_context(_rc()):
        fig, ax = _figure(7.5, 0.55 * len(rows) + 1.3)
        y = np.arange(len(rows))
        h = 0.38 if after_rows is not None else 0.6
        colors = [ZONE_BY_NAME[z].color for z in rows["zone_en"]]
        off = h / 2 if after_rows is not None else 0
        ax.barh(
            y - off,
            rows["share"] * 100,
            height=h,
            color=colors,
            edgecolor="#333333",
            label="today · ปัจจุบัน",
        )
        if after_rows is not None:
            ax.barh(
                y + off,
                np.array(after_rows) * 100,
                height=h,
                color=colors,
                alpha=0.55,
                edgecolor="#333333",
                hatch="//",
                label="proposed · ที่เสนอ",
            )
        for i, r in rows.iterrows():
            if not np.isnan(r["target_min"]):
                ax.plot([r["target_min"] * 100] * 2, [i - 0.45, i + 0.45], color="#000000", lw=2)
                ax.annotate(
                    f"≥ {r['target_min']:.0%}",
                    (r["target_min"] * 100, i - 0.45),
                    fontsize=8,
                    ha="center",
                    va="bottom",
                )
            if not np.isnan(r["target_max"]):
                ax.plot(
                    [r["target_max"] * 100] * 2,
                    [i - 0.45, i + 0.45],
                    color="#b2182b",
                    lw=2,
                    ls="--",
                )
                ax.annotate(
                    f"≤ {r['target_max']:.0%}",
                    (r["target_max"] * 100, i - 0.45),
                    fontsize=8,
                    ha="center",
                    va="bottom",
                    color="#b2182b",
                )
            ax.annotate(
                f"{r['share']:.1%}",
                (r["share"] * 100, i - off),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        ax.set_yticks(
            y, [_label(z, th) for z, th in zip(rows["zone_en"], rows["zone_th"], strict=True)]
        )
        ax.invert_yaxis()
        ax.set_xlim(0, 105)
        ax.set_xlabel("share of the land area (%) · สัดส่วนของพื้นที่ (%)")
        ax.set_title("Proportions against targets · สัดส่วนเทียบกับเป้าหมาย")
        if after_rows is not None:
            ax.legend(loc="lower right")
        return _png(fig)


def _plans_png(plan_areas: pd.DataFrame) -> str:
    import matplotlib

    from ecoplan.styles import PLAN_COLORS

    with matplotlib.rc_context(_rc()):
        fig, ax = _figure(7.5, 3.2)
        y = np.arange(len(plan_areas))
        ax.barh(
            y, plan_areas["area_ha"] / 100, color=[PLAN_COLORS[p] for p in plan_areas["plan_type"]]
        )
        ax.set_yticks(
            y,
            [
                f"{en}\n{th}" if len(th) < 40 else f"{en[:40]}…\n{th[:38]}…"
                for en, th in zip(plan_areas["name_en"], plan_areas["name_th"], strict=True)
            ],
            fontsize=7.5,
        )
        ax.invert_yaxis()
        ax.set_xlabel("area (km²) · พื้นที่ (ตร.กม.)")
        ax.set_title("The six plans · ผังทั้ง 6 ประเภท")
        for i, v in enumerate(plan_areas["area_ha"] / 100):
            ax.annotate(
                "none · ไม่มี" if v == 0 else f"{v:,.0f}",
                (v, i),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        return _png(fig)


# --- HTML -----------------------------------------------------------------------------------

_CSS = """
body{font-family:Loma,'Noto Sans Thai',Sarabun,Tahoma,'DejaVu Sans',sans-serif;margin:2em auto;
max-width:1100px;color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.1em}h2{border-bottom:2px solid #1b7837;padding-bottom:.2em;
margin-top:1.6em}table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#666}.warn{color:#8a4b00}.status-below,.status-above{color:#b2182b;font-weight:bold}
.status-ok{color:#1b7837}.status-missing{color:#b2182b}img{max-width:100%}code{font-size:.9em;word-break:break-all}
"""


def _e(v) -> str:
    return html.escape(str(v))


def _blank(v):
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else v


def _num(v, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:,.{digits}f}"


def _table(df: pd.DataFrame, columns: Mapping[str, str], *, nums=()) -> str:
    if df is None or len(df) == 0:
        return "<p class='muted'>none · ไม่มี</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in columns.values())
    body = []
    for _, row in df.iterrows():
        cells = []
        for col in columns:
            v = row.get(col, "")
            if col in nums:
                cells.append(
                    f"<td class='num'>{_num(v, nums[col] if isinstance(nums, dict) else 0)}</td>"
                )
            elif col == "status":
                cells.append(f"<td class='status-{_e(v)}'>{_e(v)}</td>")
            else:
                cells.append(f"<td>{_e(_blank(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _img(b64: str, alt: str) -> str:
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{b64}'>"


def _pct(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1%}"


def _proportions_section(data: ReportData) -> str:
    rows = _region_rows(data.proportions).copy()
    if data.proportions_after is not None:
        after = _region_rows(data.proportions_after).set_index("zone_en")
        rows["share_after"] = [after["share"].get(z, np.nan) for z in rows["zone_en"]]
        rows["status_after"] = [after["status"].get(z, "") for z in rows["zone_en"]]
    for col in ("share", "target_min", "target_max", "share_after"):
        if col in rows:
            rows[col] = rows[col].map(_pct)
    cols = {
        "zone_en": "zone",
        "zone_th": "เขต",
        "area_ha": "area (ha) · พื้นที่ (เฮกตาร์)",
        "share": "share · สัดส่วน",
        "target_min": "min · ขั้นต่ำ",
        "target_max": "max · สูงสุด",
        "status": "status · สถานะ",
    }
    if "share_after" in rows:
        cols.update(
            {"share_after": "proposed share · สัดส่วนที่เสนอ", "status_after": "proposed status"}
        )
    denom = data.proportions["denominator"].iloc[0] if "denominator" in data.proportions else ""
    out = [
        "<h2>Proportions and targets · สัดส่วนและเป้าหมาย</h2>",
        _img(_proportions_png(data.proportions, data.proportions_after), "proportions chart"),
        _table(rows, cols, nums={"area_ha": 0}),
        f"<p class='muted'>Shares are of the {_e(denom)}. สัดส่วนคิดจากพื้นที่ตามที่กำหนดในกฎ</p>",
    ]
    if data.proportions_after is None:
        out.append(
            "<p class='muted'>No proposed plan in this run, so no before/after "
            "comparison · ไม่มีผังที่เสนอในการประมวลผลนี้</p>"
        )
    units = data.proportions[data.proportions["level"] == "unit"]
    if len(units):
        pivot = units.pivot_table(
            index="unit_id", columns="zone_en", values="share", sort=False
        ).reindex(columns=[z for z in LAND_ZONES + ("other",)])
        pivot = pivot.map(_pct).reset_index()
        out += [
            "<h3>Per unit · รายหน่วยพื้นที่</h3>",
            _table(pivot, {"unit_id": "unit · หน่วย", **{z: z for z in LAND_ZONES + ("other",)}}),
        ]
    return "\n".join(out)


def render_report(data: ReportData) -> str:
    """The whole report as one HTML document (UTF-8 text, images embedded)."""
    md = data.metadata
    meta = dict(zip(md["key"], md["value"], strict=False)) if len(md) else {}
    title_en = data.name_en or data.region_id
    parts = [
        "<!DOCTYPE html><html lang='th'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{_e(title_en)} — eco-landscape plan · ผังภูมินิเวศ {_e(data.name_th)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>ผังภูมินิเวศ {_e(data.name_th)} · Eco-landscape plan, {_e(title_en)}</h1>",
        f"<p class='muted'>region <code>{_e(data.region_id)}</code> · ecoplan "
        f"{_e(meta.get('ecoplan_version', ''))} · {_e(meta.get('crs', ''))}, "
        f"{_e(meta.get('pixel_size_m', ''))} m cells · run {_e(meta.get('started_at', ''))} → "
        f"{_e(meta.get('finished_at', ''))}</p>",
    ]
    # maps
    parts.append("<h2>Zones · เขตการใช้ประโยชน์ที่ดิน</h2>")
    parts.append(
        _img(
            _map_png(
                data.zones,
                data.grid,
                data.boundary,
                title=f"Zones today · เขตปัจจุบัน — {data.name_th or title_en}",
            ),
            "map of zones",
        )
    )
    parts.append("<h2>Proposed plan · ผังที่เสนอ</h2>")
    if data.proposed is not None and data.proposed is data.zones:  # no second, identical map
        parts.append(
            "<p class='muted'>the proposed plan is today's zones (no zone changes), mapped "
            "above · ผังที่เสนอคือเขตปัจจุบัน (ไม่มีการเปลี่ยนเขต) ตามแผนที่ข้างบน</p>"
        )
    elif data.proposed is not None:
        parts.append(
            _img(
                _map_png(data.proposed, data.grid, data.boundary, title="Proposed plan · ผังที่เสนอ"),
                "map of the proposed plan",
            )
        )
    if data.proposed is not None:
        if data.zone_changes is not None:
            parts.append("<h3>Zone changes · การเปลี่ยนแปลงเขต</h3>")
            parts.append(
                _table(
                    data.zone_changes,
                    {c: c for c in data.zone_changes.columns},
                    nums={c: 0 for c in data.zone_changes.columns if c.endswith("_ha")},
                )
            )
    else:
        parts.append(
            "<p class='muted'>no proposed plan · ไม่มีผังที่เสนอ (this run did not "
            "allocate zones to meet the targets)</p>"
        )
    parts.append(_proportions_section(data))
    # plans
    parts.append("<h2>The six plans · ผังทั้ง 6 ประเภท</h2>")
    if data.plan_areas is not None and len(data.plan_areas):
        parts.append(_img(_plans_png(data.plan_areas), "plan areas chart"))
        pa = data.plan_areas.copy()
        pa["status"] = ["ok" if n else "missing" for n in pa["features"]]
        parts.append(
            _table(
                pa,
                {
                    "layer": "layer",
                    "name_en": "plan",
                    "name_th": "ผัง",
                    "features": "features",
                    "area_ha": "area (ha) · พื้นที่ (เฮกตาร์)",
                    "status": "status",
                },
                nums={"area_ha": 0, "features": 0},
            )
        )
    else:
        parts.append("<p class='muted'>no plan layers in this run · ไม่มีชั้นข้อมูลผัง</p>")
    # buffers and conflicts
    parts.append("<h2>Buffer zones · แนวกันชน</h2>")
    parts.append(
        _table(
            data.buffers,
            {
                "rule_id": "rule",
                "rule_name": "buffer",
                "rule_name_th": "แนวกันชน",
                "ring": "ring",
                "inner_m": "from (m)",
                "distance_m": "to (m)",
                "restricts": "zones not allowed · เขตที่ห้าม",
                "area_ha": "area (ha)",
            },
            nums={"area_ha": 0, "inner_m": 0, "distance_m": 0},
        )
    )
    parts.append("<h2>Conflicts · พื้นที่ขัดแย้ง</h2>")
    if len(data.conflicts):
        total = float(data.conflicts["area_ha"].sum())
        parts.append(
            f"<p><b>{total:,.0f} ha</b> of land is used in a way a buffer forbids · "
            f"พื้นที่ {total:,.0f} เฮกตาร์ ถูกใช้ประโยชน์ขัดกับแนวกันชน</p>"
        )
    parts.append(
        _table(
            data.conflicts,
            {
                "rule_id": "rule",
                "rule_name": "buffer",
                "zone_en": "zone in conflict",
                "zone_th": "เขต",
                "ring": "ring",
                "distance_m": "within (m)",
                "area_ha": "area (ha)",
            },
            nums={"area_ha": 0, "distance_m": 0},
        )
    )
    # accuracy
    parts.append("<h2>Classification accuracy · ความถูกต้องของการจำแนก</h2>")
    if data.accuracy is None:
        parts.append(
            "<p class='muted'>not computed: zones come from a crosswalk of the land-cover "
            "classes, not a trained model · จำแนกด้วยตารางเทียบชั้นข้อมูล</p>"
        )
    elif isinstance(data.accuracy, pd.DataFrame):
        parts.append(_table(data.accuracy, {c: c for c in data.accuracy.columns}))
    else:
        acc = pd.DataFrame(
            {
                "metric": list(data.accuracy),
                "value": [
                    f"{v:.3f}" if isinstance(v, float) else v for v in data.accuracy.values()
                ],
            }
        )
        parts.append(_table(acc, {"metric": "metric · ตัวชี้วัด", "value": "value · ค่า"}))
    # inputs
    parts.append("<h2>Inputs and rules · ข้อมูลนำเข้าและกฎ</h2>")
    inputs = md[md["key"].str.startswith(("input:", "region_file", "rules", "crosswalk"))]
    parts.append(_table(inputs, {"key": "what", "value": "name", "sha256": "SHA-256"}))
    others = md[~md.index.isin(inputs.index) & (md["key"] != "warning")]
    parts.append(_table(others, {"key": "setting", "value": "value"}))
    if data.warnings:
        parts.append("<h2>Warnings · คำเตือน</h2><ul>")
        parts += [f"<li class='warn'>{_e(w)}</li>" for w in data.warnings]
        parts.append("</ul>")
    parts.append(
        "<p class='muted'>Generated by ecoplan. Areas are ground areas in hectares "
        "(1 ha = 6.25 rai · 1 เฮกตาร์ = 6.25 ไร่).</p></body></html>"
    )
    return "\n".join(parts)


def write_report(path: str | Path, data: ReportData) -> Path:
    """Render the report and write it atomically to ``path``."""
    from ecoplan.export import write_text

    return write_text(path, render_report(data))
