"""The plan registry: one SQLite file recording which plans exist and their status over time.

Several people and scripts may write to the same registry at once. Each registration is one
``BEGIN IMMEDIATE`` transaction (the write lock is taken before anything is read, so two writers
never both decide a record is new), the file is in WAL mode, and a busy writer waits up to
``timeout_s`` seconds for the lock instead of failing. Keep the file on a local disk: SQLite's
locking, WAL mode in particular, is not reliable on network file systems.

A registry file is recognised by its SQLite header, ``PRAGMA application_id``
(:data:`APPLICATION_ID`) and ``PRAGMA user_version`` (the schema version,
:data:`SCHEMA_VERSION`). Any other file — not
SQLite, another application's SQLite database (a GeoPackage, say), a newer schema, or a damaged
file — is refused with an :class:`~ecoplan.errors.InputError` naming it, before anything is
written: the registry never overwrites a file it does not own.

Model
-----
A *plan* is one plan type of one region (``region_id``, ``plan_type``). Every registration is an
*event* in ``plan_history``: status (``draft`` → ``hearing`` → ``approved``), the date of that
status (stored as an ISO C.E. date), the source GeoPackage's path and SHA-256, its feature count.
``plans`` holds the current state of each plan: its latest event by status date (ties broken by
status order, then by recording order).

Registering the same file (same SHA-256) with a status it already has is a no-op, whatever its
path or date; a new status or a new file for the same plan adds an event and updates ``plans``.
Nothing is ever deleted, so the history of every plan is kept.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal, get_args

from ecoplan.errors import InputError
from ecoplan.plan_types import PLAN_TYPE_BY_ID

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "DEFAULT_REGISTRY",
    "REGISTRY_ENV",
    "STATUSES",
    "Status",
    "PlanSubmission",
    "PlanEvent",
    "PlanState",
    "Registration",
    "Registry",
    "default_registry_path",
]

log = logging.getLogger(__name__)

APPLICATION_ID = 0x45434F50
"""``PRAGMA application_id`` of an ecoplan registry: the bytes ``ECOP``."""

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of the schema this module writes and reads."""

DEFAULT_REGISTRY = "ecoplan_registry.sqlite"
"""Registry file used when neither ``--registry`` nor :data:`REGISTRY_ENV` is given."""

REGISTRY_ENV = "ECOPLAN_REGISTRY"
"""Environment variable naming the registry file."""

Status = Literal["draft", "hearing", "approved"]
STATUSES: tuple[str, ...] = get_args(Status)
"""Plan statuses in the order a plan passes through them."""

_STATUS_RANK = {s: i for i, s in enumerate(STATUSES)}
_WAL_SWITCH_WAIT_S = 5.0
_SQLITE_MAGIC = b"SQLite format 3\x00"
_REGION_ID = re.compile(r"^[a-z0-9_]+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KNOWN_APPLICATION_IDS = {
    0x47504B47: "it is a GeoPackage: give the run's .gpkg as OUT.gpkg, not as --registry",
    0x47503130: "it is a GeoPackage 1.0 file",
    0x47503131: "it is a GeoPackage 1.1 file",
    0x4D424B31: "it is an MBTiles file",
}

_SCHEMA = f"""
CREATE TABLE plans (
    plan_id       INTEGER PRIMARY KEY,
    region_id     TEXT NOT NULL,
    plan_type     TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN {STATUSES!r}),
    status_date   TEXT NOT NULL,  -- ISO 8601 date, Common Era
    source_path   TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    feature_count INTEGER,
    updated_at    TEXT NOT NULL,  -- ISO 8601 UTC timestamp
    UNIQUE (region_id, plan_type)
);
CREATE TABLE plan_history (
    event_id      INTEGER PRIMARY KEY,
    plan_id       INTEGER NOT NULL REFERENCES plans (plan_id),
    region_id     TEXT NOT NULL,
    plan_type     TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN {STATUSES!r}),
    status_date   TEXT NOT NULL,  -- ISO 8601 date, Common Era
    source_path   TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    feature_count INTEGER,
    recorded_at   TEXT NOT NULL,  -- ISO 8601 UTC timestamp
    recorded_by   TEXT NOT NULL,
    UNIQUE (region_id, plan_type, sha256, status)
);
CREATE INDEX plan_history_plan ON plan_history (plan_id);
CREATE TABLE registry_info (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def default_registry_path() -> Path:
    """``$ECOPLAN_REGISTRY`` if set, else ``./ecoplan_registry.sqlite``."""
    return Path(os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY)


@dataclass(frozen=True)
class PlanSubmission:
    """One plan to record: a plan type of a region, with its status and source file."""

    region_id: str
    plan_type: str
    status: Status
    status_date: date
    source_path: str
    sha256: str
    feature_count: int | None = None

    def validate(self) -> None:
        """Raise :class:`InputError` listing every field that is wrong."""
        problems = []
        if not _REGION_ID.match(self.region_id or ""):
            problems.append(f"region_id {self.region_id!r}: use lower-case letters, digits, _")
        if self.plan_type not in PLAN_TYPE_BY_ID:
            problems.append(
                f"plan_type {self.plan_type!r}: must be one of {', '.join(PLAN_TYPE_BY_ID)}"
            )
        if self.status not in _STATUS_RANK:
            problems.append(f"status {self.status!r}: must be one of {', '.join(STATUSES)}")
        if not isinstance(self.status_date, date) or isinstance(self.status_date, datetime):
            problems.append(f"status_date {self.status_date!r}: must be a datetime.date")
        if not _SHA256.match(self.sha256 or ""):
            problems.append(f"sha256 {self.sha256!r}: must be 64 lower-case hex digits")
        if problems:
            raise InputError("invalid plan record: " + "; ".join(problems))


@dataclass(frozen=True)
class PlanEvent:
    """One row of the history: a status a plan reached, on a date, from a source file."""

    event_id: int
    region_id: str
    plan_type: str
    status: Status
    status_date: date
    source_path: str
    sha256: str
    feature_count: int | None
    recorded_at: str
    recorded_by: str

    def to_dict(self) -> dict:
        d = asdict(self)
        d["status_date"] = self.status_date.isoformat()
        return d


@dataclass(frozen=True)
class PlanState:
    """The current state of one plan (its latest event)."""

    region_id: str
    plan_type: str
    status: Status
    status_date: date
    source_path: str
    sha256: str
    feature_count: int | None
    updated_at: str

    def to_dict(self) -> dict:
        d = asdict(self)
        d["status_date"] = self.status_date.isoformat()
        return d


@dataclass(frozen=True)
class Registration:
    """What registering one plan did.

    ``action``: ``added`` (first record of this plan), ``updated`` (a new status or a new source
    file; ``previous_status`` is the status before) or ``unchanged`` (this file already had this
    status; ``previous_status`` and ``previous_date`` say what is recorded).
    """

    submission: PlanSubmission
    action: Literal["added", "updated", "unchanged"]
    previous_status: str | None = None
    previous_date: date | None = None


def _event_key(status: str, status_date: str, event_id: int) -> tuple:
    return (status_date, _STATUS_RANK[status], event_id)


class Registry:
    """A plan registry file. Use as a context manager, or call :meth:`close`.

    ``create``: make the file (and its schema) if it does not exist; otherwise a missing file is
    an :class:`InputError`. ``timeout_s``: how long a writer waits for another writer's lock.
    The file is checked on opening; a foreign or damaged file raises :class:`InputError`.
    """

    def __init__(self, path: str | os.PathLike, *, create: bool = True, timeout_s: float = 60.0):
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._create = create
        self._check_file(create=create)
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as err:
            raise InputError(f"{self.path}: cannot open the plan registry: {err}") from err
        try:
            self._open_schema()
        except BaseException:
            self._conn.close()
            raise

    # -- opening and checking ------------------------------------------------------------------

    def _check_file(self, *, create: bool) -> None:
        p = self.path
        if p.is_dir():
            raise InputError(f"{p}: is a folder; --registry needs a file name")
        if not p.exists():
            if not create:
                raise InputError(
                    f"{p}: plan registry not found; register plans first with "
                    f"`ecoplan register OUT.gpkg --status … --registry {p}`"
                )
            if not p.parent.exists():
                raise InputError(f"{p}: folder {p.parent} does not exist")
            return
        try:
            with p.open("rb") as fh:
                header = fh.read(100)
        except OSError as err:
            raise InputError(f"{p}: cannot read the plan registry: {err}") from err
        # A zero-byte file is an empty SQLite database (another writer may just have created it).
        if header and not header.startswith(_SQLITE_MAGIC):
            raise InputError(
                f"{p}: not an ecoplan plan registry (not an SQLite database: corrupted or a "
                f"different kind of file); left untouched — give another --registry file"
            )

    def _refuse(self, why: str) -> InputError:
        return InputError(
            f"{self.path}: not an ecoplan plan registry ({why}); left untouched — "
            f"give another --registry file"
        )

    def _open_schema(self) -> None:
        try:
            # A writer takes the write lock first, so two processes creating the schema of a new
            # file at once cannot both do it; a reader (create=False) never writes.
            self._conn.execute("BEGIN IMMEDIATE" if self._create else "BEGIN")
            try:
                self._check_or_create()
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            if self._create:
                self._switch_to_wal()
        except sqlite3.DatabaseError as err:
            raise self._database_error(err) from err

    def _switch_to_wal(self) -> None:
        """Put the file in WAL mode (once; the mode is stored in the file).

        The switch needs the file to itself, and SQLite refuses it at once ("database is locked")
        rather than waiting while another connection reads or writes, so it is retried for up
        to ``timeout_s`` (5 s at most: a long reader must not hold up a writer that can work
        without it). If the file stays busy the registry still works, in SQLite's rollback
        journal mode, which is just as safe for concurrent writers; a later writer switches it.
        """
        deadline = time.monotonic() + min(self.timeout_s, _WAL_SWITCH_WAIT_S)
        pause = 0.005
        while True:
            try:
                mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
                if mode.lower() == "wal":
                    return
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err):
                    raise
                if time.monotonic() + pause > deadline:
                    log.debug("%s: stays busy; left in rollback journal mode", self.path)
                    return
                time.sleep(pause)
                pause = min(pause * 2, 0.2)

    def _check_or_create(self) -> None:
        conn = self._conn
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
        if app_id == 0 and version == 0 and not tables:
            if not self._create:
                raise self._refuse("the file is empty; register plans first")
            # One statement at a time: executescript() would commit the open transaction.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute(
                "INSERT INTO registry_info (key, value) VALUES ('created_at', ?), "
                "('created_by', 'ecoplan')",
                (_now(),),
            )
            log.info("%s: created a new plan registry", self.path)
            return
        if app_id != APPLICATION_ID:
            if app_id in _KNOWN_APPLICATION_IDS:
                raise self._refuse(_KNOWN_APPLICATION_IDS[app_id])
            shown = ", ".join(sorted(tables)[:5]) + (" …" if len(tables) > 5 else "")
            raise self._refuse(
                f"an SQLite database of another application (application_id {app_id:#x}"
                + (f", tables {shown}" if tables else "")
                + ")"
            )
        if version > SCHEMA_VERSION:
            raise self._refuse(
                f"schema version {version} is newer than this ecoplan reads ({SCHEMA_VERSION}); "
                f"upgrade ecoplan"
            )
        if version != SCHEMA_VERSION or not {"plans", "plan_history"} <= set(tables):
            raise self._refuse(f"schema version {version} without the expected tables")
        problems = [r[0] for r in conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise self._refuse("the file is damaged: " + "; ".join(problems[:3]))

    def _database_error(self, err: sqlite3.Error) -> InputError:
        if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
            return InputError(
                f"{self.path}: the plan registry stayed locked by another writer for more than "
                f"{self.timeout_s:g} s; try again"
            )
        if isinstance(err, sqlite3.OperationalError) and "readonly" in str(err):
            return InputError(f"{self.path}: the plan registry is read-only ({err})")
        return self._refuse(f"SQLite says: {err}")

    # -- context manager -----------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        try:
            self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.DatabaseError as err:
            raise self._database_error(err) from err

    # -- writing -------------------------------------------------------------------------------

    def register(self, submissions: Iterable[PlanSubmission]) -> list[Registration]:
        """Record plans, all in one transaction; return what happened to each.

        Raises :class:`InputError` for an invalid submission (before anything is written).
        """
        subs = list(submissions)
        for sub in subs:
            sub.validate()
        user = _user()
        results = []
        with self._transaction(write=True) as conn:
            for sub in subs:
                results.append(self._register_one(conn, sub, user))
        return results

    def _register_one(self, conn: sqlite3.Connection, sub: PlanSubmission, user: str):
        row = conn.execute(
            "SELECT plan_id, status, status_date FROM plans WHERE region_id = ? AND plan_type = ?",
            (sub.region_id, sub.plan_type),
        ).fetchone()
        if row is not None:
            same = conn.execute(
                "SELECT status_date FROM plan_history WHERE region_id = ? AND plan_type = ? "
                "AND sha256 = ? AND status = ?",
                (sub.region_id, sub.plan_type, sub.sha256, sub.status),
            ).fetchone()
            if same is not None:
                return Registration(sub, "unchanged", sub.status, date.fromisoformat(same[0]))
        now = _now()
        if row is None:
            plan_id = conn.execute(
                "INSERT INTO plans (region_id, plan_type, status, status_date, source_path, "
                "sha256, feature_count, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sub.region_id,
                    sub.plan_type,
                    sub.status,
                    sub.status_date.isoformat(),
                    sub.source_path,
                    sub.sha256,
                    sub.feature_count,
                    now,
                ),
            ).lastrowid
        else:
            plan_id = row[0]
        event_id = conn.execute(
            "INSERT INTO plan_history (plan_id, region_id, plan_type, status, status_date, "
            "source_path, sha256, feature_count, recorded_at, recorded_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                plan_id,
                sub.region_id,
                sub.plan_type,
                sub.status,
                sub.status_date.isoformat(),
                sub.source_path,
                sub.sha256,
                sub.feature_count,
                now,
                user,
            ),
        ).lastrowid
        if row is None:
            return Registration(sub, "added")
        # The current state is the latest event by status date, then status order, then order.
        events = conn.execute(
            "SELECT status, status_date, event_id, source_path, sha256, feature_count "
            "FROM plan_history WHERE plan_id = ?",
            (plan_id,),
        ).fetchall()
        latest = max(events, key=lambda e: _event_key(e[0], e[1], e[2]))
        if latest[2] == event_id:
            conn.execute(
                "UPDATE plans SET status = ?, status_date = ?, source_path = ?, sha256 = ?, "
                "feature_count = ?, updated_at = ? WHERE plan_id = ?",
                (latest[0], latest[1], latest[3], latest[4], latest[5], now, plan_id),
            )
        return Registration(sub, "updated", row[1], date.fromisoformat(row[2]))

    # -- reading -------------------------------------------------------------------------------

    def plans(self) -> list[PlanState]:
        """The current state of every plan, ordered by region and plan type."""
        with self._transaction(write=False) as conn:
            rows = conn.execute(
                "SELECT region_id, plan_type, status, status_date, source_path, sha256, "
                "feature_count, updated_at FROM plans ORDER BY region_id, plan_type"
            ).fetchall()
        return [PlanState(r[0], r[1], r[2], date.fromisoformat(r[3]), *r[4:]) for r in rows]

    def history(
        self, *, region_id: str | None = None, plan_type: str | None = None
    ) -> list[PlanEvent]:
        """Every recorded event (optionally of one region and/or plan type), in recording order."""
        sql = (
            "SELECT event_id, region_id, plan_type, status, status_date, source_path, sha256, "
            "feature_count, recorded_at, recorded_by FROM plan_history"
        )
        where, args = [], []
        if region_id is not None:
            where.append("region_id = ?")
            args.append(region_id)
        if plan_type is not None:
            where.append("plan_type = ?")
            args.append(plan_type)
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._transaction(write=False) as conn:
            rows = conn.execute(sql + " ORDER BY event_id", args).fetchall()
        return [PlanEvent(*r[:4], date.fromisoformat(r[4]), *r[5:]) for r in rows]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return ""
