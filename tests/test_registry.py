"""The SQLite plan registry (ecoplan.registry)."""

from __future__ import annotations

import dataclasses
import multiprocessing
import sqlite3
import threading
from datetime import date
from pathlib import Path

import pytest

from ecoplan.errors import InputError
from ecoplan.registry import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    PlanSubmission,
    Registry,
    default_registry_path,
)

SHA_A = "a" * 64
SHA_B = "b" * 64


def _sub(
    region="north", plan_type="livable_city", status="draft", when=date(2026, 1, 15), sha=SHA_A
):
    return PlanSubmission(region, plan_type, status, when, f"/runs/{region}.gpkg", sha, 7)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_new_registry_is_marked_as_ecoplan_and_uses_wal(tmp_path):
    path = tmp_path / "reg.sqlite"
    with Registry(path) as reg:
        assert reg.plans() == []
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_first_registration_adds_plan_and_one_history_event(tmp_path):
    with Registry(tmp_path / "reg.sqlite") as reg:
        (result,) = reg.register([_sub()])
        assert result.action == "added"
        (plan,) = reg.plans()
        assert (plan.region_id, plan.plan_type, plan.status) == ("north", "livable_city", "draft")
        assert plan.status_date == date(2026, 1, 15)
        assert plan.sha256 == SHA_A and plan.feature_count == 7
        (event,) = reg.history()
        assert event.source_path == "/runs/north.gpkg"


def test_registering_the_same_file_twice_changes_nothing(tmp_path):
    path = tmp_path / "reg.sqlite"
    with Registry(path) as reg:
        reg.register([_sub()])
        plans, history = reg.plans(), reg.history()
        # Same file and status, even with another date or path: nothing is recorded.
        again = dataclasses.replace(_sub(), status_date=date(2026, 3, 1), source_path="/copy.gpkg")
        (result,) = reg.register([again])
        assert result.action == "unchanged"
        assert result.previous_status == "draft"
        assert result.previous_date == date(2026, 1, 15)
        assert reg.plans() == plans
        assert reg.history() == history


def test_newer_status_updates_the_plan_and_keeps_history(tmp_path):
    with Registry(tmp_path / "reg.sqlite") as reg:
        reg.register([_sub(status="draft", when=date(2026, 1, 15))])
        reg.register([_sub(status="hearing", when=date(2026, 3, 1))])
        (result,) = reg.register([_sub(status="approved", when=date(2026, 6, 30))])
        assert result.action == "updated"
        assert (result.previous_status, result.previous_date) == ("hearing", date(2026, 3, 1))
        (plan,) = reg.plans()
        assert (plan.status, plan.status_date) == ("approved", date(2026, 6, 30))
        history = reg.history(region_id="north", plan_type="livable_city")
        assert [(e.status, e.status_date) for e in history] == [
            ("draft", date(2026, 1, 15)),
            ("hearing", date(2026, 3, 1)),
            ("approved", date(2026, 6, 30)),
        ]


def test_backdated_registration_is_kept_in_history_but_not_the_current_state(tmp_path):
    with Registry(tmp_path / "reg.sqlite") as reg:
        reg.register([_sub(status="approved", when=date(2026, 6, 30))])
        (result,) = reg.register([_sub(status="hearing", when=date(2026, 3, 1))])
        assert result.action == "updated"
        (plan,) = reg.plans()
        assert (plan.status, plan.status_date) == ("approved", date(2026, 6, 30))
        assert len(reg.history()) == 2


def test_new_file_for_the_same_plan_becomes_the_current_source(tmp_path):
    with Registry(tmp_path / "reg.sqlite") as reg:
        reg.register([_sub(status="draft", sha=SHA_A)])
        (result,) = reg.register([_sub(status="draft", when=date(2026, 2, 1), sha=SHA_B)])
        assert result.action == "updated"
        (plan,) = reg.plans()
        assert plan.sha256 == SHA_B
        assert [e.sha256 for e in reg.history()] == [SHA_A, SHA_B]


def test_invalid_submission_is_refused_before_anything_is_written(tmp_path):
    with Registry(tmp_path / "reg.sqlite") as reg:
        bad = _sub(plan_type="parking_lots")
        with pytest.raises(InputError, match="plan_type 'parking_lots': must be one of"):
            reg.register([_sub(region="south"), bad])
        assert reg.history() == []


def _write_many(path: str, worker: int, count: int, barrier) -> None:
    barrier.wait()
    with Registry(path, timeout_s=120) as reg:
        for i in range(count):
            reg.register([_sub(region=f"r{worker}_{i:02d}", status="approved")])
            # Every worker also registers the same shared plan: it must be recorded once.
            reg.register([_sub(region="shared", status="approved")])


def test_concurrent_writer_processes_lose_no_record(tmp_path):
    path = tmp_path / "reg.sqlite"  # created by the racing writers themselves
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    workers = [ctx.Process(target=_write_many, args=(str(path), w, 25, barrier)) for w in range(4)]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(timeout=300)
    assert [proc.exitcode for proc in workers] == [0, 0, 0, 0]
    with Registry(path, create=False) as reg:
        regions = [p.region_id for p in reg.plans()]
        history = reg.history()
    expected = {f"r{w}_{i:02d}" for w in range(4) for i in range(25)}
    assert len(regions) == 101 and set(regions) == expected | {"shared"}
    assert len(history) == 101
    assert [e.region_id for e in history].count("shared") == 1


def _registry_in_rollback_mode(path: Path) -> sqlite3.Connection:
    """A registry switched back to rollback-journal mode, and a second connection to it."""
    with Registry(path) as reg:
        reg.register([_sub()])
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    assert conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    return conn


def _journal_mode(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()


def _read_during_wal_switch(monkeypatch, reader: sqlite3.Connection, *, release_after_s: float):
    """Make another connection hold a read lock from just before the WAL switch."""
    switch = Registry._switch_to_wal

    def switch_while_another_connection_reads(self):
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM plans").fetchone()  # a SHARED lock
        release = threading.Timer(release_after_s, lambda: reader.execute("COMMIT"))
        release.start()
        try:
            switch(self)
        finally:
            release.join()

    monkeypatch.setattr(Registry, "_switch_to_wal", switch_while_another_connection_reads)


def test_switch_to_wal_waits_for_a_reader_instead_of_failing(tmp_path, monkeypatch):
    # SQLite refuses the WAL switch at once while another connection reads: this was a
    # "database is locked" error for one of several writers opening a new registry together.
    path = tmp_path / "reg.sqlite"
    reader = _registry_in_rollback_mode(path)
    _read_during_wal_switch(monkeypatch, reader, release_after_s=0.3)
    try:
        with Registry(path, timeout_s=30) as reg:
            reg.register([_sub(region="south")])
    finally:
        reader.close()
    assert _journal_mode(path) == "wal"


def test_registry_stays_usable_when_the_wal_switch_stays_busy(tmp_path, monkeypatch):
    path = tmp_path / "reg.sqlite"
    reader = _registry_in_rollback_mode(path)
    _read_during_wal_switch(monkeypatch, reader, release_after_s=1.0)
    try:
        with Registry(path, timeout_s=0.3) as reg:  # gives the switch up after 0.3 s
            assert [r.action for r in reg.register([_sub(region="south")])] == ["added"]
            assert [p.region_id for p in reg.plans()] == ["north", "south"]
    finally:
        reader.close()
    assert _journal_mode(path) == "delete"  # a later writer switches it


def _assert_refused_untouched(path: Path, match: str, *, create: bool = True) -> None:
    before = _snapshot(path.parent)
    with pytest.raises(InputError, match=match) as info:
        Registry(path, create=create)
    assert str(info.value).startswith(f"{path}: ")
    assert _snapshot(path.parent) == before  # byte-identical, no journal or WAL left behind


def test_foreign_sqlite_file_is_refused_and_left_byte_identical(tmp_path):
    path = tmp_path / "customers.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers (name) VALUES ('Somchai')")
    conn.commit()
    conn.close()
    _assert_refused_untouched(path, r"not an ecoplan plan registry \(an SQLite database of another")


def test_geopackage_given_as_registry_is_refused_and_named(tmp_path):
    geopandas = pytest.importorskip("geopandas")
    from shapely.geometry import Point

    path = tmp_path / "north.gpkg"
    frame = geopandas.GeoDataFrame({"a": [1]}, geometry=[Point(0, 0)], crs="EPSG:32647")
    frame.to_file(path, layer="plan_livable_city")
    _assert_refused_untouched(path, "it is a GeoPackage")


def test_non_sqlite_file_is_refused_and_left_byte_identical(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_text("region,plans\nnorth,6\n", encoding="utf-8")
    _assert_refused_untouched(path, "not an SQLite database")


def test_corrupted_registry_is_refused_and_left_byte_identical(tmp_path):
    path = tmp_path / "reg.sqlite"
    with Registry(path) as reg:
        reg.register([_sub(region=f"r{i}") for i in range(40)])
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 3 * page
    data[page : 2 * page] = b"\xa5" * page  # garble page 2
    path.write_bytes(bytes(data))
    _assert_refused_untouched(path, "not an ecoplan plan registry")


def test_truncated_registry_is_refused(tmp_path):
    path = tmp_path / "reg.sqlite"
    with Registry(path) as reg:
        reg.register([_sub(region=f"r{i}") for i in range(40)])
    path.write_bytes(path.read_bytes()[:50])  # not even a whole header
    _assert_refused_untouched(path, "not an ecoplan plan registry")


def test_registry_of_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "reg.sqlite"
    Registry(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    _assert_refused_untouched(path, "newer than this ecoplan reads")


def test_reading_a_missing_registry_does_not_create_it(tmp_path):
    path = tmp_path / "none.sqlite"
    with pytest.raises(InputError, match="plan registry not found"):
        Registry(path, create=False)
    assert not path.exists()


def test_missing_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        Registry(tmp_path / "no" / "reg.sqlite")


def test_zero_byte_file_becomes_a_registry(tmp_path):
    path = tmp_path / "reg.sqlite"
    path.touch()
    with Registry(path) as reg:
        reg.register([_sub()])
        assert len(reg.plans()) == 1


def test_default_registry_path_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("ECOPLAN_REGISTRY", raising=False)
    assert default_registry_path() == Path("ecoplan_registry.sqlite")
    monkeypatch.setenv("ECOPLAN_REGISTRY", str(tmp_path / "shared.sqlite"))
    assert default_registry_path() == tmp_path / "shared.sqlite"
