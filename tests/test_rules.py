"""Rules files: shipped defaults load, and every mistake is reported with its YAML key."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from ecoplan.cli.main import cli
from ecoplan.errors import RulesError
from ecoplan.rules import load_crosswalk, load_rules, shipped_crosswalk_names


def write(tmp_path, doc, name="rules.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def buffer(**over):
    rule = {
        "id": "riparian",
        "name_en": "Riparian buffer",
        "name_th": "แนวกันชนริมน้ำ",
        "source": {"zones": ["water"]},
        "distance_m": 30,
        "restricts": ["urban", "industrial"],
    }
    rule.update(over)
    return rule


def test_shipped_default_rules_load_with_sources_for_every_number():
    rules = load_rules("default")
    assert rules.buffers and rules.targets
    assert all(b.basis for b in rules.buffers)
    assert all(t.basis for t in rules.targets)
    forest = next(t for t in rules.targets if t.zone == "forest")
    assert forest.min_share == 0.40


@pytest.mark.parametrize("name", shipped_crosswalk_names())
def test_every_shipped_crosswalk_loads(name):
    cw = load_crosswalk(name)
    assert cw.name == name
    assert all(c.reason for c in cw.classes)


def test_negative_distance_is_reported_with_its_yaml_path(tmp_path):
    path = write(tmp_path, {"buffers": [buffer(), buffer(id="b2", distance_m=-5)]})
    with pytest.raises(RulesError) as err:
        load_rules(path)
    assert str(err.value) == f"{path}: buffers[1].distance_m: must be > 0 (got -5)"


def test_unknown_key_is_reported_with_its_yaml_path(tmp_path):
    path = write(tmp_path, {"buffers": [buffer(distnce_m=30)]})
    with pytest.raises(RulesError, match=r"buffers\[0\]\.distnce_m: unknown key"):
        load_rules(path)


def test_every_problem_is_listed_at_once(tmp_path):
    doc = {
        "buffers": [buffer(distance_m=0), buffer(id="Bad Id")],
        "targets": [{"zone": "jungle", "min_share": 0.2}],
    }
    path = write(tmp_path, doc)
    with pytest.raises(RulesError) as err:
        load_rules(path)
    text = str(err.value)
    assert "buffers[0].distance_m: must be > 0" in text
    assert "buffers[1].id: must match" in text
    assert "targets[0].zone: unknown zone 'jungle'" in text


def test_min_shares_adding_up_above_100_percent_are_refused(tmp_path):
    targets = [{"zone": "forest", "min_share": 0.7}, {"zone": "agriculture", "min_share": 0.4}]
    path = write(tmp_path, {"targets": targets})
    with pytest.raises(RulesError, match=r"targets: .*add up to 110 %"):
        load_rules(path)


def test_min_share_above_max_share_is_refused(tmp_path):
    path = write(tmp_path, {"targets": [{"zone": "urban", "min_share": 0.3, "max_share": 0.1}]})
    with pytest.raises(RulesError, match=r"targets\[0\]: .*min_share 0.3 is above max_share 0.1"):
        load_rules(path)


def test_rings_must_increase(tmp_path):
    path = write(tmp_path, {"buffers": [buffer(distance_m=None, rings_m=[100, 50])]})
    with pytest.raises(RulesError, match=r"buffers\[0\]\.rings_m: distances must increase"):
        load_rules(path)


def test_a_rule_gives_exactly_one_source(tmp_path):
    rule = buffer(source={"zones": ["water"], "layer": "rivers"})
    path = write(tmp_path, {"buffers": [rule]})
    with pytest.raises(RulesError, match=r"buffers\[0\]\.source: give exactly one of 'layer'"):
        load_rules(path)


def test_a_rule_gives_exactly_one_distance(tmp_path):
    path = write(tmp_path, {"buffers": [buffer(rings_m=[10, 20])]})
    with pytest.raises(RulesError, match=r"buffers\[0\]: give exactly one of 'distance_m' or"):
        load_rules(path)


def test_sections_a_user_file_leaves_out_take_the_shipped_defaults(tmp_path):
    path = write(tmp_path, {"targets": [{"zone": "forest", "min_share": 0.6}]})
    rules = load_rules(path)
    assert [t.min_share for t in rules.targets] == [0.6]
    assert [b.id for b in rules.buffers] == [b.id for b in load_rules("default").buffers]


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("buffers:\n  - id: a\n    name_en: [unclosed\n", encoding="utf-8")
    with pytest.raises(RulesError, match=r"rules.yaml: invalid YAML \(line \d+, column \d+\)"):
        load_rules(path)


def test_unknown_shipped_name_lists_the_valid_ones():
    with pytest.raises(RulesError, match=r"unknown crosswalk 'corine'.*modis_igbp.*worldcover"):
        load_crosswalk("corine")


def test_rings_are_disjoint_bands_from_zero_to_the_outer_distance(tmp_path):
    path = write(tmp_path, {"buffers": [buffer(distance_m=None, rings_m=[100, 500, 1000])]})
    rule = load_rules(path).buffers[0]
    assert rule.rings == ((0.0, 100.0), (100.0, 500.0), (500.0, 1000.0))
    assert rule.max_distance_m == 1000.0


def test_rules_check_command_accepts_good_and_refuses_bad_files(tmp_path):
    good = write(tmp_path, {"buffers": [buffer()]}, "good.yaml")
    bad = write(tmp_path, {"buffers": [buffer(distance_m=-1)]}, "bad.yaml")
    runner = CliRunner()
    ok = runner.invoke(cli, ["rules", "check", str(good)])
    assert ok.exit_code == 0, ok.output
    assert "good.yaml: ok (1 buffer rules" in ok.output
    res = runner.invoke(cli, ["rules", "check", str(bad)])
    assert res.exit_code == 2
    assert res.stderr.startswith(f"error: {bad}: buffers[0].distance_m: must be > 0")
    assert "Traceback" not in res.output
