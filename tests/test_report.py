"""The HTML report: self-contained, Thai and English, optional sections shown when present."""

from __future__ import annotations

import base64
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from affine import Affine
from rasterio.crs import CRS

from ecoplan import report as report_mod
from ecoplan.grid import Grid
from ecoplan.report import ReportData, render_report, thai_font, write_report
from ecoplan.rules import load_rules
from ecoplan.zones import ZONES

GRID = Grid(CRS.from_epsg(32647), Affine(100.0, 0, 500000.0, 0, -100.0, 2000400.0), 4, 4)
ZONE_ARRAY = np.array([[1, 1, 2, 2], [1, 1, 2, 4], [6, 1, 2, 4], [6, 2, 2, 2]], np.uint8)


def proportions(shares: dict[str, float]) -> pd.DataFrame:
    rows = []
    for z in ZONES:
        share = shares.get(z.name, 0.0)
        rows.append(
            {
                "level": "region",
                "unit_id": "r",
                "zone": z.code,
                "zone_en": z.name,
                "zone_th": z.name_th,
                "area_ha": share * 100,
                "share": np.nan if z.name == "water" else share,
                "target_min": 0.4 if z.name == "forest" else np.nan,
                "target_max": 0.05 if z.name == "industrial" else np.nan,
                "status": "ok",
                "denominator": "area of land",
            }
        )
    return pd.DataFrame(rows)


def data(**kw) -> ReportData:
    base = dict(
        region_id="r",
        name_en="Test region",
        name_th="ภาคทดสอบ",
        grid=GRID,
        zones=ZONE_ARRAY,
        proportions=proportions({"forest": 0.36, "agriculture": 0.5, "urban": 0.14}),
        buffers=pd.DataFrame(
            {
                "rule_id": ["forest_edge"],
                "rule_name": ["Forest-edge buffer"],
                "ring": [1],
                "inner_m": [0.0],
                "distance_m": [500.0],
                "area_ha": [3.0],
            }
        ),
        conflicts=pd.DataFrame(
            {
                "rule_id": ["forest_edge"],
                "zone_en": ["urban"],
                "zone_th": ["พื้นที่เมือง"],
                "ring": [1],
                "distance_m": [500.0],
                "area_ha": [2.0],
            }
        ),
        metadata=pd.DataFrame(
            {
                "key": ["input:landcover", "rules", "crs"],
                "value": ["lc.tif", "default", "EPSG"],
                "path": ["", "", ""],
                "sha256": ["ab" * 32, "cd" * 32, ""],
            }
        ),
        plan_areas=pd.DataFrame(
            {
                "plan_type": ["livable_city", "heritage"],
                "layer": ["plan_livable_city", "plan_heritage"],
                "name_en": ["Livable city", "Heritage"],
                "name_th": ["เมืองน่าอยู่", "มรดก"],
                "features": [1, 0],
                "area_ha": [2.0, 0.0],
            }
        ),
        warnings=["plan heritage: no features (no 'heritage_sites' layer)"],
    )
    return ReportData(**{**base, **kw})


def images(html: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r"base64,([A-Za-z0-9+/=]+)'", html)]


def test_report_is_self_contained_html_in_thai_and_english():
    html = render_report(data())
    assert html.startswith("<!DOCTYPE html>") and "<meta charset='utf-8'>" in html
    assert not re.search(r"(src|href)=['\"]?(https?:|file:|/)", html)  # nothing external
    pngs = images(html)
    assert len(pngs) == 3  # zones map, proportions chart, plans chart
    assert all(p.startswith(b"\x89PNG") for p in pngs)
    for text in (
        "ผังภูมินิเวศ ภาคทดสอบ",
        "Proportions and targets · สัดส่วนและเป้าหมาย",
        "The six plans",
        "no proposed plan · ไม่มีผังที่เสนอ",
        "not computed",  # accuracy without an ML step
        "ab" * 32,  # input checksum
        "cd" * 32,  # rules checksum
        "2 ha</b>",  # conflict total
        "plan heritage: no features",
        "class='status-missing'",
    ):
        assert text in html, text


def test_proposed_plan_adds_its_map_before_after_and_changes():
    after = proportions({"forest": 0.40, "agriculture": 0.48, "urban": 0.12})
    changes = pd.DataFrame({"from": ["agriculture"], "to": ["forest"], "area_ha": [4.0]})
    html = render_report(
        data(
            proposed=np.where(ZONE_ARRAY == 2, 1, ZONE_ARRAY).astype(np.uint8),
            proportions_after=after,
            zone_changes=changes,
        )
    )
    assert len(images(html)) == 4
    assert "map of the proposed plan" in html
    assert "proposed share · สัดส่วนที่เสนอ" in html and "40.0%" in html
    assert "Zone changes" in html and "<td>agriculture</td><td>forest</td>" in html
    assert "no proposed plan" not in html


def test_a_proposed_plan_that_is_todays_zones_is_not_mapped_twice():
    report = data()
    report = replace(report, proposed=report.zones, proportions_after=report.proportions)
    html = render_report(report)
    assert len(images(html)) == 3  # zones map, proportions chart, plans chart
    assert "map of the proposed plan" not in html and "no proposed plan" not in html
    assert "the proposed plan is today's zones" in html


def test_accuracy_from_an_ml_step_is_shown():
    html = render_report(data(accuracy={"overall_accuracy": 0.875, "kappa": 0.8}))
    assert "<td>overall_accuracy</td><td>0.875</td>" in html
    table = pd.DataFrame({"zone": ["forest"], "precision": [0.9], "recall": [0.8]})
    assert "<td>forest</td><td>0.9</td><td>0.8</td>" in render_report(data(accuracy=table))


def test_report_is_written_atomically(tmp_path):
    path = write_report(tmp_path / "r_report.html", data())
    assert path.read_text(encoding="utf-8").endswith("</html>")
    assert [p.name for p in tmp_path.iterdir()] == ["r_report.html"]


def test_thai_font_has_thai_glyphs():
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    font = thai_font()
    if font is None:
        pytest.skip("no Thai font installed (apt install fonts-tlwg-loma-otf)")
    path = font_manager.findfont(font, fallback_to_default=False)
    ft = FT2Font(path)
    for ch in "ภาคเหนือป่าน้ำ":
        assert ft.get_char_index(ord(ch)) != 0, ch  # a real glyph, not the empty box


def test_missing_thai_font_warns_and_still_renders(monkeypatch):
    monkeypatch.setattr(report_mod, "THAI_FONTS", ("No Such Font",))
    report_mod.thai_font.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="fonts-tlwg-loma-otf"):
            html = render_report(data())
        assert len(images(html)) == 3
    finally:
        report_mod.thai_font.cache_clear()


def test_demo_run_writes_the_report(tmp_path):
    from ecoplan.pipeline import run_region, sample_region_path

    result = run_region(sample_region_path("north"), tmp_path)
    assert result.report == tmp_path / "north_report.html"
    html = result.report.read_text(encoding="utf-8")
    assert "ภาคเหนือ" in html and "plan_natural_conservation" in html
    assert set(result.summary()["plans_ha"]) == {r.plan for r in load_rules("default").plans}
    assert result.summary()["plans_ha"]["heritage"] == 0.0
