"""``ecoplan register`` and ``ecoplan kpi`` through the real command group."""

from __future__ import annotations

import json
import sqlite3
from datetime import date

import geopandas
import pandas
import pyogrio
import pytest
from click.testing import CliRunner
from shapely.geometry import box

from ecoplan.cli.main import cli
from ecoplan.plan_types import PLAN_TYPES
from ecoplan.registry import Registry


def _run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


def _one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def make_run_output(path, *, empty=(), missing=(), metadata_region=None):
    """A small GeoPackage shaped like ``ecoplan run``'s output."""
    for pt in PLAN_TYPES:
        if pt.id in missing:
            continue
        frame = geopandas.GeoDataFrame(
            {"zone": [4, 1]}, geometry=[box(0, 0, 30, 30), box(30, 0, 60, 30)], crs="EPSG:32647"
        )
        if pt.id in empty:
            frame = frame.iloc[0:0]
        frame.to_file(path, layer=pt.layer, driver="GPKG")
    if metadata_region is not None:
        table = pandas.DataFrame({"key": ["region_id", "crs"], "value": [metadata_region, "x"]})
        pyogrio.write_dataframe(table, path, layer="run_metadata", driver="GPKG")
    return path


@pytest.fixture
def north(tmp_path):
    return make_run_output(tmp_path / "north.gpkg")


def test_register_and_kpi_are_subcommands_with_help():
    for name in ("register", "kpi"):
        result = _run(name, "--help")
        assert result.exit_code == 0
        assert "--registry" in result.output and "ECOPLAN_REGISTRY" in result.output


def test_register_records_every_nonempty_plan_layer(tmp_path, north):
    reg = tmp_path / "reg.sqlite"
    result = _run(
        "register", north, "--status", "approved", "--date", "2569-05-01", "--registry", reg
    )
    assert result.exit_code == 0, result.output
    assert "region north (from the file name)" in result.output
    assert "6 added, 0 updated, 0 unchanged; 0 not registered" in result.output
    with Registry(reg, create=False) as registry:
        plans = registry.plans()
    assert {p.plan_type for p in plans} == {pt.id for pt in PLAN_TYPES}
    assert {(p.region_id, p.status, p.status_date, p.feature_count) for p in plans} == {
        ("north", "approved", date(2026, 5, 1), 2)
    }
    assert plans[0].source_path == str(north.resolve())
    import hashlib

    assert plans[0].sha256 == hashlib.sha256(north.read_bytes()).hexdigest()


def test_missing_and_empty_plan_layers_are_not_registered_and_reported(tmp_path):
    gpkg = make_run_output(
        tmp_path / "south.gpkg", empty=("heritage",), missing=("eco_industrial",)
    )
    reg = tmp_path / "reg.sqlite"
    result = _run("register", gpkg, "--status", "draft", "--registry", reg)
    assert result.exit_code == 0, result.output
    assert (
        "missing    eco_industrial" in result.output
        and "no layer plan_eco_industrial" in result.output
    )
    assert "empty      heritage" in result.output
    assert "4 added, 0 updated, 0 unchanged; 2 not registered" in result.output
    with Registry(reg, create=False) as registry:
        assert {p.plan_type for p in registry.plans()} == {
            "livable_city",
            "secure_rural",
            "sustainable_agriculture",
            "natural_conservation",
        }
    report = json.loads(_run("kpi", "--registry", reg, "--json").output)
    south = next(r for r in report["regions"] if r["region_id"] == "south")
    assert {m["plan_type"]: m["status"] for m in south["missing"]} == {
        "livable_city": "draft",
        "secure_rural": "draft",
        "sustainable_agriculture": "draft",
        "eco_industrial": None,
        "natural_conservation": "draft",
        "heritage": None,
    }


def test_registering_the_same_file_twice_changes_nothing(tmp_path, north):
    reg = tmp_path / "reg.sqlite"
    args = ("register", north, "--status", "hearing", "--date", "2569-02-01", "--registry", reg)
    _run(*args)
    with Registry(reg, create=False) as registry:
        before = (registry.plans(), registry.history())
    result = _run(*args)
    assert result.exit_code == 0
    assert "0 added, 0 updated, 6 unchanged" in result.output
    assert "already hearing on 2569-02-01 (same file)" in result.output
    with Registry(reg, create=False) as registry:
        assert (registry.plans(), registry.history()) == before


def test_status_change_updates_plans_and_keeps_history(tmp_path, north):
    reg = tmp_path / "reg.sqlite"
    _run("register", north, "--status", "draft", "--date", "2568-11-01", "--registry", reg)
    result = _run(
        "register", north, "--status", "approved", "--date", "2569-06-15", "--registry", reg
    )
    assert "0 added, 6 updated, 0 unchanged" in result.output
    assert "was draft on 2568-11-01" in result.output
    with Registry(reg, create=False) as registry:
        assert {p.status for p in registry.plans()} == {"approved"}
        history = registry.history(plan_type="heritage")
    assert [(e.status, e.status_date) for e in history] == [
        ("draft", date(2025, 11, 1)),
        ("approved", date(2026, 6, 15)),
    ]


@pytest.mark.parametrize("given", ["2569-05-01", "2026-05-01", "01/05/2569", "พ.ศ. 2569-05-01"])
def test_be_and_ce_dates_are_stored_as_the_same_iso_date(tmp_path, north, given):
    reg = tmp_path / "reg.sqlite"
    assert (
        _run(
            "register", north, "--status", "approved", "--date", given, "--registry", reg
        ).exit_code
        == 0
    )
    conn = sqlite3.connect(reg)
    assert {r[0] for r in conn.execute("SELECT status_date FROM plan_history")} == {"2026-05-01"}
    conn.close()


def test_region_id_comes_from_run_metadata_when_present(tmp_path):
    gpkg = make_run_output(tmp_path / "output_v2.gpkg", metadata_region="north")
    reg = tmp_path / "reg.sqlite"
    result = _run("register", gpkg, "--status", "draft", "--registry", reg, "--json")
    data = json.loads(result.output)
    assert (data["region_id"], data["region_id_source"]) == ("north", "run_metadata")
    assert "region id 'north' from run_metadata (the file is named output_v2.gpkg)" in data["notes"]
    assert [p["action"] for p in data["plans"]] == ["added"] * 6


def test_register_json_lists_actions_missing_and_empty(tmp_path):
    gpkg = make_run_output(tmp_path / "east.gpkg", empty=("heritage",))
    reg = tmp_path / "reg.sqlite"
    data = json.loads(
        _run(
            "register",
            gpkg,
            "--status",
            "approved",
            "--date",
            "2570-12-31",
            "--registry",
            reg,
            "--json",
        ).output
    )
    assert data["date"] == "2027-12-31" and data["date_be"] == "2570-12-31"
    assert data["empty"] == ["heritage"] and data["missing"] == []
    assert len(data["plans"]) == 5 and data["plans"][0]["feature_count"] == 2


def test_unknown_region_is_registered_with_a_note(tmp_path):
    gpkg = make_run_output(tmp_path / "chiang_mai.gpkg")
    result = _run("register", gpkg, "--status", "draft", "--registry", tmp_path / "reg.sqlite")
    assert result.exit_code == 0
    assert "note: region 'chiang_mai' is not in the region table" in result.output


def test_geopackage_without_plan_layers_is_an_error_and_creates_no_registry(tmp_path):
    gpkg = make_run_output(
        tmp_path / "north.gpkg", empty=("heritage",), missing=[p.id for p in PLAN_TYPES][:5]
    )
    reg = tmp_path / "reg.sqlite"
    result = _run("register", gpkg, "--status", "draft", "--registry", reg)
    _one_line_error(result, str(gpkg), "no plan layer with features", "empty: plan_heritage")
    assert not reg.exists()


def test_register_bad_input_gives_one_line_error_and_exit_2(tmp_path, north):
    reg = tmp_path / "reg.sqlite"
    bad_date = _run(
        "register", north, "--status", "draft", "--date", "2569-02-30", "--registry", reg
    )
    _one_line_error(bad_date, "--date: '2569-02-30' is not a valid date")
    missing = _run("register", tmp_path / "none.gpkg", "--status", "draft", "--registry", reg)
    _one_line_error(missing, "none.gpkg: file not found")
    text = tmp_path / "notes.gpkg"
    text.write_text("not a geopackage", encoding="utf-8")
    _one_line_error(_run("register", text, "--status", "draft", "--registry", reg), "notes.gpkg")
    badly_named = make_run_output(tmp_path / "North Region.gpkg")
    _one_line_error(
        _run("register", badly_named, "--status", "draft", "--registry", reg),
        "region id 'North Region' (from the file name) is not [a-z0-9_]+",
    )
    assert not reg.exists()


def test_register_into_a_foreign_file_is_refused_and_it_stays_byte_identical(tmp_path, north):
    foreign = tmp_path / "budget.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE budget (year INTEGER, baht REAL)")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    result = _run("register", north, "--status", "draft", "--registry", foreign)
    _one_line_error(result, str(foreign), "not an ecoplan plan registry", "left untouched")
    assert foreign.read_bytes() == before
    # The run's GeoPackage given as the registry by mistake is refused too.
    gpkg_before = north.read_bytes()
    _one_line_error(_run("register", north, "--status", "draft", "--registry", north), "GeoPackage")
    assert north.read_bytes() == gpkg_before


def test_kpi_as_of_counts_only_what_was_reached_by_then(tmp_path, north):
    reg = tmp_path / "reg.sqlite"
    _run("register", north, "--status", "approved", "--date", "2570-12-31", "--registry", reg)
    before = json.loads(_run("kpi", "--registry", reg, "--as-of", "2570-12-30", "--json").output)
    on_day = json.loads(_run("kpi", "--registry", reg, "--as-of", "2027-12-31", "--json").output)
    after = json.loads(_run("kpi", "--registry", reg, "--as-of", "2571-01-01", "--json").output)

    def north_and_p1(data):
        region = next(r for r in data["regions"] if r["region_id"] == "north")
        ind = next(i for i in data["indicators"] if i["id"] == "060002")
        return region["qualifies"], region["period"], ind["periods"][0]["status"]

    assert north_and_p1(before) == (False, None, "in_progress")
    assert north_and_p1(on_day) == (True, "P1", "met")
    assert north_and_p1(after) == (True, "P1", "met")
    assert after["as_of_be"] == "2571-01-01"


def test_kpi_table_shows_targets_and_missing_plans_in_thai_and_english(tmp_path, north):
    reg = tmp_path / "reg.sqlite"
    _run("register", north, "--status", "approved", "--date", "2569-05-01", "--registry", reg)
    south = make_run_output(tmp_path / "south.gpkg", missing=("heritage",))
    _run("register", south, "--status", "hearing", "--date", "2569-04-01", "--registry", reg)
    result = _run("kpi", "--registry", reg, "--as-of", "2569-06-01")
    assert result.exit_code == 0
    out = result.output
    assert "Master-plan counters as of 2569-06-01 (2026-06-01)" in out
    assert "north           6/6  2569-05-01 (2026-05-01)     P1      Northern / ภาคเหนือ" in out
    assert "060002  Regional eco-landscape plans (regions)" in out
    assert "060202  Areas with an eco-landscape plan (plans)" in out
    assert "south (Southern / ภาคใต้): 6 of 6 missing" in out
    assert "hearing (รับฟังความคิดเห็น) since 2569-04-01" in out
    assert "not registered (ยังไม่ลงทะเบียน)" in out


def test_kpi_reads_the_registry_named_by_the_environment(tmp_path, north):
    reg = tmp_path / "env.sqlite"
    env = {"ECOPLAN_REGISTRY": str(reg)}
    assert (
        _run("register", north, "--status", "approved", "--date", "2569-05-01", env=env).exit_code
        == 0
    )
    data = json.loads(_run("kpi", "--json", "--as-of", "2569-06-01", env=env).output)
    assert data["registry"] == str(reg)
    assert data["approved_plans"] == 6


def test_kpi_with_observations(tmp_path, north):
    reg = tmp_path / "reg.sqlite"
    _run("register", north, "--status", "approved", "--date", "2569-05-01", "--registry", reg)
    obs = tmp_path / "obs.csv"
    obs.write_text("indicator,period,value,source\n060201,P1,31,ONEP\n", encoding="utf-8")
    result = _run("kpi", "--registry", reg, "--observations", obs, "--as-of", "2571-01-01")
    assert result.exit_code == 0
    assert "060201  Number of sustainable environmental cities (cumulative)" in result.output
    assert "31 cities  met" in result.output
    data = json.loads(_run("kpi", "--registry", reg, "--observations", obs, "--json").output)
    ind = next(i for i in data["indicators"] if i["id"] == "060201")
    assert ind["periods"][0]["observation"]["source"] == "ONEP"


def test_kpi_bad_input_gives_one_line_error_and_exit_2(tmp_path, north):
    reg = tmp_path / "reg.sqlite"
    _one_line_error(_run("kpi", "--registry", reg), "plan registry not found")
    assert not reg.exists()
    _run("register", north, "--status", "draft", "--registry", reg)
    _one_line_error(
        _run("kpi", "--registry", reg, "--as-of", "soon"), "--as-of: 'soon' is not a date"
    )
    obs = tmp_path / "obs.csv"
    obs.write_text("indicator,period,value\n060001,P1,3.9\n060003,P4,2\n", encoding="utf-8")
    _one_line_error(
        _run("kpi", "--registry", reg, "--observations", obs),
        str(obs),
        "row 3, column period: unknown period 'P4'",
    )
    targets = tmp_path / "targets.yaml"
    targets.write_text("id: x\nperiods: []\n", encoding="utf-8")
    _one_line_error(_run("kpi", "--registry", reg, "--targets", targets), str(targets))
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\x00" * 84 + b"garbage" * 100)
    before = corrupt.read_bytes()
    _one_line_error(
        _run("kpi", "--registry", corrupt), str(corrupt), "not an ecoplan plan registry"
    )
    assert corrupt.read_bytes() == before
