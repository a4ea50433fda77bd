"""Master-plan counters (ecoplan.counters): targets, regions, observations, KPI computation."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest
import yaml

from ecoplan.counters import (
    Region,
    _width,
    compute_kpi,
    load_regions,
    load_targets,
    read_observations,
    shipped_file,
)
from ecoplan.dates import parse_date
from ecoplan.errors import InputError, RulesError
from ecoplan.plan_types import PLAN_TYPES
from ecoplan.registry import PlanEvent

SEED = Path(__file__).resolve().parents[2] / "shared/seed/master_plan_06_smart_livable_cities.txt"
TARGETS = load_targets()
REGIONS = load_regions()


class _Events:
    """Builds PlanEvents with increasing event ids."""

    def __init__(self):
        self.events: list[PlanEvent] = []

    def add(self, region, plan_type, status, when):
        d = parse_date(when)
        self.events.append(
            PlanEvent(
                len(self.events) + 1,
                region,
                plan_type,
                status,
                d,
                f"/runs/{region}.gpkg",
                "c" * 64,
                3,
                "2026-01-01T00:00:00+00:00",
                "tester",
            )
        )
        return self

    def all_six(self, region, status, when):
        for pt in PLAN_TYPES:
            self.add(region, pt.id, status, when)
        return self


def _kpi(events, as_of, **kw):
    return compute_kpi(events.events, as_of=parse_date(as_of), **kw)


def _period(report, indicator, period):
    ind = next(i for i in report.indicators if i.id == indicator)
    return next(p for p in ind.periods if p.period == period)


def _region(report, region_id):
    return next(r for r in report.regions if r.region_id == region_id)


# -- periods and qualification -----------------------------------------------------------------


def test_plan_approved_on_last_day_of_be_2570_counts_in_the_first_period():
    events = _Events().all_six("north", "approved", "2570-12-31")
    report = _kpi(events, "2570-12-31")
    assert _region(report, "north").period == "P1"
    assert _region(report, "north").qualified_on == date(2027, 12, 31)
    p1 = _period(report, "060002", "P1")
    assert (p1.achieved, p1.status, p1.regions) == (1, "met", ("north",))
    assert _period(report, "060002", "P2").achieved == 0


def test_plan_approved_on_first_day_of_be_2571_counts_in_the_second_period():
    events = _Events().all_six("north", "approved", "2571-01-01")
    report = _kpi(events, "2571-01-01")
    assert _region(report, "north").period == "P2"
    p1, p2 = _period(report, "060002", "P1"), _period(report, "060002", "P2")
    assert (p1.achieved, p1.state, p1.status) == (0, "ended", "not_met")
    assert (p2.achieved, p2.state, p2.status) == (1, "in_progress", "in_progress")
    assert (p2.cumulative_target, p2.cumulative_achieved) == (3, 1)


def test_ce_and_be_dates_give_the_same_counts():
    be = _kpi(_Events().all_six("north", "approved", "2570-12-31"), "2570-12-31")
    ce = _kpi(_Events().all_six("north", "approved", "2027-12-31"), "2027-12-31")
    assert be.to_dict() == ce.to_dict()


def test_region_qualifies_on_the_latest_of_its_six_approvals():
    events = _Events()
    for i, pt in enumerate(PLAN_TYPES):
        events.add("south", pt.id, "approved", f"2568-0{i + 1}-10")
    report = _kpi(events, "2569-01-01")
    south = _region(report, "south")
    assert south.qualified_on == date(2025, 6, 10)
    assert south.approved_on["livable_city"] == date(2025, 1, 10)


def test_events_after_the_as_of_date_are_ignored():
    events = _Events().all_six("north", "approved", "2569-05-01")
    before = _kpi(events, "2569-04-30")
    assert not _region(before, "north").qualifies
    assert _period(before, "060002", "P1").achieved == 0
    assert _kpi(events, "2569-05-01").regions[0].qualifies


def test_draft_and_hearing_do_not_count_and_are_listed_as_missing():
    events = _Events().all_six("east", "approved", "2569-01-10")
    events.events = [e for e in events.events if e.plan_type not in ("heritage", "eco_industrial")]
    events.add("east", "heritage", "draft", "2569-01-05").add(
        "east", "heritage", "hearing", "2569-02-01"
    )
    report = _kpi(events, "2569-06-01")
    east = _region(report, "east")
    assert not east.qualifies and len(east.approved) == 4
    missing = {m.plan_type: (m.status, m.status_date) for m in east.missing}
    assert missing == {"eco_industrial": (None, None), "heritage": ("hearing", date(2026, 2, 1))}
    assert report.approved_plans == 4


def test_later_draft_of_a_revision_does_not_undo_an_approval():
    events = _Events().all_six("north", "approved", "2569-05-01")
    events.add("north", "livable_city", "draft", "2572-01-01")
    report = _kpi(events, "2573-01-01")
    assert _region(report, "north").qualified_on == date(2026, 5, 1)


def test_region_won_early_counts_toward_later_cumulative_targets():
    events = _Events()
    for region in ("north", "central", "south"):
        events.all_six(region, "approved", "2568-03-01")
    report = _kpi(events, "2576-01-01")  # P2 has ended with nothing added in it
    p1, p2, p3 = (_period(report, "060002", p) for p in ("P1", "P2", "P3"))
    assert (p1.achieved, p1.status) == (3, "met")
    assert (p2.achieved, p2.cumulative_achieved, p2.cumulative_target, p2.status) == (
        0,
        3,
        3,
        "met",
    )
    assert (p3.cumulative_achieved, p3.cumulative_target, p3.status) == (3, 5, "in_progress")


def test_060202_counts_six_plans_per_qualifying_region_and_the_regions():
    events = _Events().all_six("north", "approved", "2569-01-01")
    events.all_six("west", "approved", "2572-01-01").all_six("east", "approved", "2573-01-01")
    events.add("south", "livable_city", "approved", "2572-01-01")  # alone: not counted
    report = _kpi(events, "2581-01-01")
    p1, p2, p3 = (_period(report, "060202", p) for p in ("P1", "P2", "P3"))
    assert (p1.target, p1.achieved, p1.regions_target, p1.regions_achieved) == (6, 6, 1, 1)
    assert (p2.target, p2.achieved, p2.regions_target, p2.regions_achieved) == (12, 12, 2, 2)
    assert (p2.cumulative_target, p2.cumulative_achieved, p2.status) == (18, 18, "met")
    assert (p3.cumulative_target, p3.cumulative_achieved, p3.status) == (30, 18, "not_met")
    assert (p3.cumulative_regions_target, p3.cumulative_regions_achieved) == (5, 3)
    assert report.approved_plans == 19


def test_periods_not_started_are_reported_as_such():
    report = _kpi(_Events(), "2565-06-01")
    assert [p.state for p in next(i for i in report.indicators if i.id == "060002").periods] == [
        "not_started"
    ] * 3


def test_qualification_before_the_first_period_is_a_baseline_not_counted():
    events = _Events().all_six("north", "approved", "2565-12-31")
    report = _kpi(events, "2566-06-01")
    assert _region(report, "north").period == "baseline"
    assert report.baseline_regions == ("north",)
    assert _period(report, "060002", "P1").cumulative_achieved == 0
    assert any("baseline" in n for n in report.notes)


def test_region_not_in_the_region_table_is_reported_and_not_counted():
    events = _Events().all_six("chiang_mai", "approved", "2569-01-01")
    report = _kpi(events, "2569-06-01")
    assert report.unknown_regions == ("chiang_mai",)
    assert _period(report, "060002", "P1").achieved == 0
    assert any(
        "'chiang_mai' is in the registry but not in the region table" in n for n in report.notes
    )


def test_custom_region_table_changes_which_regions_count():
    events = _Events().all_six("chiang_mai", "approved", "2569-01-01")
    regions = [Region("chiang_mai", "Chiang Mai", "เชียงใหม่")]
    report = _kpi(events, "2569-06-01", regions=regions)
    assert [r.region_id for r in report.regions] == ["chiang_mai"]
    assert _period(report, "060002", "P1").status == "met"


# -- output -------------------------------------------------------------------------------------


def test_report_serialises_to_json_with_thai_text():
    events = (
        _Events()
        .all_six("north", "approved", "2569-05-01")
        .add("central", "heritage", "draft", "2569-01-01")
    )
    data = json.loads(json.dumps(_kpi(events, "2569-06-01").to_dict(), ensure_ascii=False))
    assert data["as_of"] == "2026-06-01" and data["as_of_be"] == "2569-06-01"
    north = next(r for r in data["regions"] if r["region_id"] == "north")
    assert north["qualifies"] is True and north["qualified_on"] == "2026-05-01"
    central = next(r for r in data["regions"] if r["region_id"] == "central")
    heritage = next(m for m in central["missing"] if m["plan_type"] == "heritage")
    assert heritage["status"] == "draft" and heritage["status_date"] == "2026-01-01"
    assert central["name_th"] == "ภาคกลาง"
    ind = next(i for i in data["indicators"] if i["id"] == "060002")
    assert ind["name_th"] == "แผนผังภูมินิเวศระดับภาค (ผัง)"
    assert ind["periods"][0]["status"] == "met"


def test_text_report_names_regions_and_plans_in_thai_and_english():
    events = _Events().add("central", "heritage", "hearing", "2569-01-01")
    text = str(_kpi(events, "2569-06-01"))
    assert "Central / ภาคกลาง" in text
    assert "Regional eco-landscape plans" in text and "แผนผังภูมินิเวศระดับภาค" in text
    assert "hearing (รับฟังความคิดเห็น) since 2569-01-01" in text
    assert "Livable city / เมืองน่าอยู่" in text


def test_thai_marks_take_no_column_when_aligning():
    assert _width("ชนบทมั่นคง") == 8  # 10 code points, 2 of them combining marks
    report_lines = str(_kpi(_Events(), "2569-06-01")).splitlines()
    header = next(line for line in report_lines if line.strip().startswith("region "))
    rows = [line for line in report_lines if line.startswith("  northeast ")]
    assert header.index("name") == rows[0].index("Northeastern")


# -- targets YAML -------------------------------------------------------------------------------


def test_targets_cover_every_indicator_of_the_seed_tables():
    ids = [i.id for i in TARGETS.indicators]
    assert ids == [
        "060001",
        "060002",
        "060003",
        "060101a",
        "060101b",
        "060101c",
        "060201",
        "060202",
    ]
    values = {i.id: [i.targets[p] for p in ("P1", "P2", "P3")] for i in TARGETS.indicators}
    assert values == {
        "060001": [3.6, 4, 5],
        "060002": [1, 2, 2],
        "060003": [2.3, 2.4, 2.5],
        "060101a": [5.3, 5.4, 5.5],
        "060101b": [0.5, 0.5, 0.5],
        "060101c": [105, 155, 205],
        "060201": [30, 60, 90],
        "060202": [6, 12, 12],
    }
    assert TARGETS.indicator("060202").regions == {"P1": 1, "P2": 2, "P3": 2}
    assert {i.id for i in TARGETS.indicators if i.source == "registry"} == {"060002", "060202"}
    assert [(p.id, p.start, p.end) for p in TARGETS.periods] == [
        ("P1", date(2023, 1, 1), date(2027, 12, 31)),
        ("P2", date(2028, 1, 1), date(2032, 12, 31)),
        ("P3", date(2033, 1, 1), date(2037, 12, 31)),
    ]


@pytest.mark.skipif(not SEED.is_file(), reason="shared/seed not beside the repository")
def test_thai_indicator_names_and_targets_are_the_seeds_text():
    def squash(text):
        return re.sub(r"[\s*]", "", text)

    seed = squash(SEED.read_text(encoding="utf-8"))
    for ind in TARGETS.indicators:
        assert squash(ind.name_th) in seed, ind.id
        for text in ind.targets_th.values():
            assert squash(text) in seed, (ind.id, text)


def test_lists_hold_the_14_economic_centres_and_27_target_provinces():
    centres = TARGETS.lists["economic_centres"]
    assert len(centres.provinces) == 14
    target = TARGETS.lists["target_provinces"]
    assert [len(g.provinces) for g in target.groups] == [6, 8, 6, 7]
    assert len(target.provinces) == 27
    known = {p for r in REGIONS for p in r.provinces}
    for ref in centres.provinces + target.provinces:
        assert ref.th in known, ref.en
        if ref.alternative:
            assert ref.alternative.th in known


def test_the_documents_two_discrepancies_keep_the_documents_text_as_default():
    centres = {p.en: p for p in TARGETS.lists["economic_centres"].provinces}
    assert "Samut Songkhram" in centres and "Samut Sakhon" not in centres
    assert centres["Samut Songkhram"].alternative.en == "Samut Sakhon"
    north = TARGETS.lists["target_provinces"].groups[0]
    assert north.provinces[0].en == "Chiang Mai"
    assert north.provinces[0].alternative.th == "เชียงราย"


def _write_targets(tmp_path, edit):
    data = yaml.safe_load(shipped_file("targets/master_plan_06.yaml").read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "targets.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_corrected_list_in_a_copy_of_the_targets_is_used(tmp_path):
    def edit(data):
        group = data["lists"]["economic_centres"]["groups"][0]["provinces"]
        group[2] = {"th": "สมุทรสาคร", "en": "Samut Sakhon"}

    targets = load_targets(_write_targets(tmp_path, edit))
    names = [p.en for p in targets.lists["economic_centres"].provinces]
    assert "Samut Sakhon" in names and "Samut Songkhram" not in names


def test_targets_with_an_unknown_key_name_the_file_and_key(tmp_path):
    path = _write_targets(tmp_path, lambda d: d["indicators"][1].update(target=3))
    with pytest.raises(RulesError, match=r"indicators\[1\]\.target: unknown key") as info:
        load_targets(path)
    assert str(info.value).startswith(f"{path}: ")


def test_targets_missing_a_period_value_are_refused(tmp_path):
    path = _write_targets(tmp_path, lambda d: d["indicators"][0]["targets"].pop("P3"))
    with pytest.raises(RulesError, match=r"060001\)\.targets: needs one value for each period"):
        load_targets(path)


def test_targets_file_not_found_and_bad_yaml(tmp_path):
    with pytest.raises(RulesError, match="targets file not found"):
        load_targets(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("periods: [\n", encoding="utf-8")
    with pytest.raises(RulesError, match=r"invalid YAML \(line"):
        load_targets(bad)


# -- regions CSV --------------------------------------------------------------------------------


def test_default_regions_are_thailands_six_regions():
    assert [(r.id, r.name_en, len(r.provinces)) for r in REGIONS] == [
        ("north", "Northern", 9),
        ("central", "Central", 22),
        ("northeast", "Northeastern", 20),
        ("west", "Western", 5),
        ("east", "Eastern", 7),
        ("south", "Southern", 14),
    ]
    assert REGIONS[0].name_th == "ภาคเหนือ"
    assert "ตาก" in next(r for r in REGIONS if r.id == "west").provinces


def test_region_table_problems_name_file_and_row(tmp_path):
    path = tmp_path / "regions.csv"
    path.write_text(
        "region_id,region_en,region_th\nnorth,Northern,ภาคเหนือ\nNorth East,NE,อีสาน\n"
        "north,North,ภาคเหนือ\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError) as info:
        load_regions(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "row 3, column region_id: 'North East' is not [a-z0-9_]+" in message
    assert "row 4: region 'north' is named" in message
    missing_column = tmp_path / "cols.csv"
    missing_column.write_text("region_id,name\nnorth,Northern\n", encoding="utf-8")
    with pytest.raises(InputError, match="missing column"):
        load_regions(missing_column)


# -- observations CSV ---------------------------------------------------------------------------


def _obs_file(tmp_path, text, name="obs.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_observations_are_compared_with_the_targets(tmp_path):
    path = _obs_file(
        tmp_path,
        "indicator,period,value,date,source\n"
        "060001,P1,3.9%,2570-12-31,NESDC\n"
        "060003,P1,2.1,2570-12-31,NESDC\n"
        "060201,P1,31,,ONEP\n",
    )
    obs = read_observations(path, TARGETS)
    report = _kpi(_Events(), "2571-06-01", observations=obs, observations_file=str(path))
    assert (_period(report, "060001", "P1").achieved, _period(report, "060001", "P1").status) == (
        3.9,
        "met",
    )
    assert _period(report, "060003", "P1").status == "not_met"
    assert _period(report, "060201", "P1").status == "met"
    assert _period(report, "060201", "P2").status == "no_data"  # P2 has started, no figure
    assert _period(report, "060201", "P3").status == "not_started"
    assert any(f"{path}: no row for indicator 060101a" in n for n in report.notes)
    assert any(f"{path}: no observation for 060001 in P2" in n for n in report.notes)


def test_latest_observation_by_date_counts_and_later_ones_are_ignored(tmp_path):
    path = _obs_file(
        tmp_path,
        "indicator,period,value,date\n"
        "060101c,P1,80,2567-12-31\n"
        "060101c,P1,95,2568-12-31\n"
        "060101c,P1,110,2570-12-31\n",
    )
    obs = read_observations(path, TARGETS)
    mid = _period(_kpi(_Events(), "2569-01-01", observations=obs), "060101c", "P1")
    assert (mid.achieved, mid.status) == (95, "in_progress")
    end = _period(_kpi(_Events(), "2571-01-01", observations=obs), "060101c", "P1")
    assert (end.achieved, end.status) == (110, "met")
    early = _kpi(_Events(), "2567-06-01", observations=obs, observations_file="obs.csv")
    assert _period(early, "060101c", "P1").status == "no_data"
    assert (
        "obs.csv: no observation for 060101c in P1 by the as-of date (3 later row(s) ignored)"
        in (early.notes)
    )


def test_spreadsheet_friendly_values_are_accepted(tmp_path):
    path = _obs_file(
        tmp_path,
        '\ufeffIndicator, Period ,Value\n60001,p1,๓.๖\n60101C,P2,"1,250"\n\n',
    )
    obs = read_observations(path, TARGETS)
    assert [(o.indicator, o.period, o.value, o.row) for o in obs] == [
        ("060001", "P1", 3.6, 2),
        ("060101c", "P2", 1250.0, 3),
    ]


def test_malformed_observation_rows_are_all_reported_with_file_row_and_column(tmp_path):
    path = _obs_file(
        tmp_path,
        "indicator,period,value,date\n"
        "060001,P1,3.9,2570-12-31\n"
        "069999,P1,1,\n"
        "060003,P9,2,\n"
        "060003,P1,abc,\n"
        "060201,P1,,\n"
        "060201,P2,40,2570-13-01\n"
        "060002,P1,1,\n"
        "060001,P1,4.0,2570-12-31\n",
    )
    with pytest.raises(InputError) as info:
        read_observations(path, TARGETS)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "row 3, column indicator: unknown indicator '069999'; one of 060001" in message
    assert "row 4, column period: unknown period 'P9'; one of P1 (B.E. 2566–2570)" in message
    assert "row 5, column value: 'abc' is not a number" in message
    assert "row 6, column value: empty" in message
    assert "row 7, column date: '2570-13-01' is not a valid date" in message
    assert "row 8, column indicator: 060002 is counted from the plan registry" in message
    assert "row 9: same indicator, period and date as row 2" in message
    assert "\n" not in message


def test_observation_file_with_unknown_or_missing_columns_is_refused(tmp_path):
    path = _obs_file(tmp_path, "indicator,period,vaule\n060001,P1,3\n")
    with pytest.raises(InputError, match="row 1: missing column.s. value; unknown column.s. vaule"):
        read_observations(path, TARGETS)


def test_observation_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "obs.csv"
    path.write_bytes("indicator,period,value,note\n060001,P1,3,ภาค\n".encode("cp874"))
    with pytest.raises(InputError, match="not UTF-8 text.*save the observations file as CSV UTF-8"):
        read_observations(path, TARGETS)


def test_missing_observation_file_is_named(tmp_path):
    with pytest.raises(InputError, match="observations file not found"):
        read_observations(tmp_path / "none.csv", TARGETS)


def test_without_observations_the_report_says_which_indicators_need_figures():
    report = _kpi(_Events(), "2569-06-01")
    assert any(
        "060001, 060003, 060101a, 060101b, 060101c, 060201 need outside" in n for n in report.notes
    )
    assert _period(report, "060001", "P1").status == "no_data"


def test_counters_and_the_kpi_command_import_nothing_spatial():
    import subprocess
    import sys

    code = (
        "import sys, ecoplan.counters, ecoplan.cli.kpi; "
        "loaded = [m for m in ('pyogrio', 'geopandas', 'shapely', 'rasterio', 'osgeo') "
        "if m in sys.modules]; print(loaded)"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True
    )
    assert done.stdout.strip() == "[]"
