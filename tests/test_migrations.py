"""The schema's Alembic revisions, run on live PostgreSQL databases (contract 3 and 9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import UTC, datetime
from types import SimpleNamespace

import psycopg
import pytest
import sqlalchemy
from alembic import command
from psycopg import sql
from psycopg.conninfo import make_conninfo
from sqlalchemy.pool import NullPool

from rating_pipeline import cli
from rating_pipeline.errors import RatingPipelineError, Terminated
from rating_pipeline.pricebook.model import Pricebooks
from rating_pipeline.settings import DATABASE_URL_VARIABLE
from rating_pipeline.warehouse import database, migrations, online_ddl
from rating_pipeline.warehouse.engine import rate_window
from rating_pipeline.warehouse.periods import PeriodClose, close_period
from rating_pipeline.windows import Window
from tests.factories import make_version, own

PROJECT_TABLES = {
    "rated_usage",
    "rating_exception",
    "rated_usage_archive",
    "rating_exception_archive",
    "rating_log",
    "late_window",
    "rating_period_close",
    "rating_period_close_total",
    "rating_adjustment",
    "rating_adjustment_archive",
    "billing_account",
    "invoice_line",
}
NEW_CLASSES = (
    "cache_read", "cache_write", "cache_write_1h", "reasoning", "audio_input", "audio_output",
    "image_input",
)  # fmt: skip
OUTPUT_TABLES = (
    "rated_usage", "rating_exception", "rated_usage_archive", "rating_exception_archive",
)  # fmt: skip
TABLES = """
SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'
"""
SCHEMA_SNAPSHOT = """
SELECT c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = 'public'
ORDER BY 1, 3
"""
CONSTRAINTS = """
SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2
"""


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute(TABLES)}


def _snapshot(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(SCHEMA_SNAPSHOT).fetchall() + conn.execute(CONSTRAINTS).fetchall()


def test_upgrade_downgrade_upgrade_runs_clean_and_keeps_billing_event(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    assert "not migrated" in migrations.current(url)
    head = migrations.head_revision()
    assert f"upgraded from base to revision {head} (head)" in migrations.upgrade(url)
    assert _tables(url) == PROJECT_TABLES | {"billing_event"}
    assert migrations.revision_of(url) == head
    upgraded = _snapshot(url)
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO billing_event (event_id, auth_id, model_id, input_tokens, "
            "output_tokens, occurred_at) VALUES ('e1', 'a', 'm', 1, 2, now())"
        )

    assert "billing_event kept" in migrations.downgrade(url)
    assert _tables(url) == {"billing_event"}
    assert migrations.revision_of(url) is None
    with psycopg.connect(url) as conn:
        indexes = {row[0] for row in conn.execute("SELECT indexname FROM pg_indexes")}
    assert "billing_event_negative_tokens_idx" not in indexes
    assert "billing_event_occurred_at_idx" in indexes

    migrations.upgrade(url)
    assert _snapshot(url) == upgraded
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT event_id FROM billing_event").fetchall() == [("e1",)]


def test_second_downgrade_is_harmless(empty_database_url: str) -> None:
    migrations.upgrade(empty_database_url)
    migrations.downgrade(empty_database_url)
    assert "already at base" in migrations.downgrade(empty_database_url)
    assert _tables(empty_database_url) == {"billing_event"}


def test_downgrade_of_a_never_migrated_database_is_harmless(empty_database_url: str) -> None:
    assert "already at base" in migrations.downgrade(empty_database_url)
    assert _tables(empty_database_url) == set()


def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    before = _snapshot(database_url)
    head = migrations.head_revision()
    assert f"already at revision {head} (head)" in migrations.upgrade(database_url)
    assert _snapshot(database_url) == before


def test_upgrade_keeps_an_upstream_billing_event_with_extra_columns_and_indexes(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    with psycopg.connect(url) as conn:
        conn.execute(
            """
            CREATE TABLE billing_event (
                event_id text PRIMARY KEY,
                request_id uuid,
                auth_id text NOT NULL,
                model_id text NOT NULL,
                base_model text,
                input_tokens bigint NOT NULL,
                output_tokens bigint NOT NULL,
                cached_tokens bigint NOT NULL DEFAULT 0,
                occurred_at timestamptz NOT NULL,
                ingested_at timestamptz NOT NULL DEFAULT now(),
                region text
            )
            """
        )
        conn.execute("CREATE INDEX upstream_occurred ON billing_event (occurred_at, auth_id)")
        conn.execute(
            "INSERT INTO billing_event (event_id, auth_id, model_id, input_tokens, "
            "output_tokens, occurred_at, region) VALUES ('e1', 'a', 'm', 1, 2, now(), 'eu')"
        )
    migrations.upgrade(url)
    migrations.downgrade(url)
    migrations.upgrade(url)
    with psycopg.connect(url) as conn:
        columns = [
            row[0]
            for row in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'billing_event'::regclass "
                "AND attnum > 0 ORDER BY attnum"
            )
        ]
        indexes = {
            row[0]
            for row in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'billing_event'"
            )
        }
        region = conn.execute("SELECT region FROM billing_event").fetchall()
    assert "cached_tokens" in columns and "region" in columns
    # upstream's index already leads with occurred_at: no second one is built
    assert indexes == {
        "billing_event_pkey",
        "upstream_occurred",
        "billing_event_ingested_at_idx",
        "billing_event_negative_tokens_idx",
    }
    assert region == [("eu",)]


def test_money_and_token_columns_are_numeric_never_float(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        floats = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type IN ('real', 'double precision')"
        ).fetchall()
        types: dict[str, str] = dict(
            conn.execute(
                "SELECT column_name, format_type(atttypid, atttypmod) FROM pg_attribute "
                "JOIN information_schema.columns ON table_name = 'rated_usage' "
                "AND column_name = attname WHERE attrelid = 'rated_usage'::regclass"
            ).fetchall()
        )
        usd: dict[str, str] = {
            f"{table}.{column}": shown
            for table, column, shown in conn.execute(
                "SELECT attrelid::regclass::text, attname, format_type(atttypid, atttypmod) "
                "FROM pg_attribute WHERE attname LIKE '%%cost_usd' AND attnum > 0 "
                "AND NOT attisdropped AND attrelid IN (SELECT oid FROM pg_class "
                "WHERE relnamespace = 'public'::regnamespace AND relkind = 'r')"
            )
        }
    assert floats == []
    assert usd == {  # every exact USD amount, at the cost's 12 places
        column: "numeric(50,12)"
        for column in (
            "rated_usage.cost_usd", "rated_usage_archive.cost_usd", "rating_adjustment.cost_usd",
            "rating_adjustment_archive.cost_usd", "rating_log.total_cost_usd",
            "rating_log.open_adjustment_cost_usd",
        )
    }  # fmt: skip
    assert types["cost_usd"] == "numeric(50,12)"
    assert types["input_rate_per_mtok"] == "numeric(24,6)"
    assert types["input_tokens"] == "numeric(30,0)"
    assert types["multiplier"] == "numeric"


OUTPUT_COLUMN_TYPES = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid
WHERE c.relname IN ('rated_usage', 'rated_usage_archive', 'rating_exception',
    'rating_exception_archive')
  AND a.attname ~ '_(tokens|rate_per_mtok)$'
  AND a.attnum > 0 AND NOT a.attisdropped
"""


def test_every_class_sum_and_rate_has_the_exact_type_of_input_and_output(
    database_url: str,
) -> None:
    """Every class's sum is numeric(30, 0) and its frozen rate numeric(24, 6), as input's
    and output's: a narrower rate would round the price the row was billed at."""
    with psycopg.connect(database_url) as conn:
        columns = conn.execute(OUTPUT_COLUMN_TYPES).fetchall()
    classes = ("input", "output", *NEW_CLASSES)
    expected = {
        (table, f"{c}_tokens", "numeric(30,0)") for table in OUTPUT_TABLES for c in classes
    } | {
        (table, f"{c}_rate_per_mtok", "numeric(24,6)")
        for table in ("rated_usage", "rated_usage_archive")
        for c in classes
    }
    assert set(columns) == expected


TIER_DEFAULTS = """
SELECT table_name, column_name, column_default FROM information_schema.columns
WHERE table_schema = 'public' AND column_name IN ('service_tier', 'context_tier')
  AND table_name <> 'billing_event'
ORDER BY 1, 2
"""


def test_the_outputs_tiers_have_no_default_so_every_writer_states_them(
    database_url: str,
) -> None:
    """'standard' is only what rows that existed before 0008 became: a row written since
    without its tier is refused, never billed silently as standard."""
    with psycopg.connect(database_url) as conn:
        defaults = conn.execute(TIER_DEFAULTS).fetchall()
    assert {table for table, _, _ in defaults} >= set(OUTPUT_TABLES)
    assert [row for row in defaults if row[2] is not None] == []


def test_the_rollup_key_is_window_auth_model_and_both_tiers(database_url: str) -> None:
    """Contract 6: the primary key of rated_usage."""
    with psycopg.connect(database_url) as conn:
        key = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'rated_usage_pkey'"
        ).fetchone()
    assert key == ("PRIMARY KEY (window_start, auth_id, model_id, service_tier, context_tier)",)


def test_db_commands_print_one_line_each(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RATING_DATABASE_URL", empty_database_url)
    head = migrations.head_revision()
    for action, expected in (
        ("current", "not migrated"),
        ("upgrade", f"revision {head} (head)"),
        ("current", f"at revision {head} (head)"),
        ("downgrade", "billing_event kept"),
    ):
        assert cli.main(["db", action]) == 0
        out = capsys.readouterr().out
        assert out.count("\n") == 1 and expected in out, out


def test_schema_at_head_has_no_triggers_and_downgrades_to_0006_and_back(
    empty_database_url: str,
) -> None:
    """Contract 7: no triggers. Revision 0007 drops those of 0004 and restores them on
    downgrade, so the history stays walkable both ways."""
    url = empty_database_url
    triggers = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1"
    migrations.upgrade(url)
    upgraded = _snapshot(url)
    with psycopg.connect(url) as conn:
        assert conn.execute(triggers).fetchall() == []
    migrations.downgrade(url, "0006")
    with psycopg.connect(url) as conn:
        assert [name for (name,) in conn.execute(triggers)] == [
            "rated_usage_count_edit",
            "rating_exception_count_edit",
        ]
    migrations.upgrade(url)
    assert _snapshot(url) == upgraded


def test_a_downgrade_to_each_revision_leaves_the_schema_an_upgrade_to_it_builds(
    empty_database_url: str,
) -> None:
    """Every downgrade restores its revision's schema exactly: columns, types, nullability,
    constraints and their definitions. Two differences are by design: billing_event's
    columns (from 0008 on they are upstream's, never dropped), and 0007's restored
    ``output_checksum``, nullable (the log rows it is restored for have none)."""
    url = empty_database_url
    shipped = sorted(p.name[:4] for p in database.MIGRATION_VERSIONS.glob("[0-9]*_*.py"))

    def ours(restored: bool) -> list[tuple[object, ...]]:
        rows = []
        for row in _snapshot(url):
            if row[0] == "billing_event" or row[1] == "rating_log_output_checksum_not_null":
                continue
            if restored and row[:3] == ("rating_log", "r", "output_checksum"):
                row = (*row[:4], True)  # as a fresh upgrade to 0002-0006 declares it
            rows.append(row)
        return sorted(rows, key=repr)

    upgraded = {}
    for revision in shipped:
        migrations.upgrade(url, revision)
        upgraded[revision] = ours(restored=False)
    for revision in reversed(shipped[:-1]):
        migrations.downgrade(url, revision)
        assert ours(restored=True) == upgraded[revision], f"downgraded to {revision}"


ROWS_AT_0007 = """
INSERT INTO rated_usage (
    window_start, window_end, auth_id, model_id, event_count, input_tokens, output_tokens,
    rate_source, derivation_base, multiplier, input_rate_per_mtok, output_rate_per_mtok,
    cost_usd, pricebook_version, pricebook_sha256, rated_at, run_id
) VALUES (
    '2026-06-15 10:00Z', '2026-06-15 11:00Z', 'org-1', 'base-large', 3, 1000, 100, 'own',
    NULL, NULL, 2.5, 10, 0.0035, 'v1', 'sha', now(), 'run-1'
);
INSERT INTO rating_exception (
    window_start, window_end, auth_id, model_id, reason, detail, event_count, input_tokens,
    output_tokens, pricebook_version, rated_at, run_id
) VALUES
    ('2026-06-15 10:00Z', '2026-06-15 11:00Z', 'org-1', 'mystery', 'unpriced', 'unknown',
     1, 5, 6, 'v1', now(), 'run-1'),
    ('2026-06-15 10:00Z', '2026-06-15 11:00Z', '', 'base-large', 'invalid_event',
     'blank auth_id', 2, 7, 8, 'v1', now(), 'run-1')
"""
OUTPUT_ROWS = """
SELECT 'usage', auth_id, model_id, event_count, input_tokens, output_tokens, cost_usd
FROM rated_usage
UNION ALL
SELECT reason, auth_id, model_id, event_count, input_tokens, output_tokens, NULL
FROM rating_exception
ORDER BY 1, 2, 3
"""
TIERS_AT_HEAD = """
SELECT 'usage', service_tier, context_tier, cache_read_tokens, cache_read_rate_per_mtok
FROM rated_usage
UNION ALL
SELECT reason, service_tier, context_tier, cache_read_tokens, NULL FROM rating_exception
ORDER BY 1
"""


def test_rows_migrate_losslessly_to_standard_tiers_and_back(empty_database_url: str) -> None:
    url = empty_database_url
    migrations.upgrade(url, "0007")
    with psycopg.connect(url) as conn:
        conn.execute(ROWS_AT_0007)
        before = conn.execute(OUTPUT_ROWS).fetchall()
    migrations.upgrade(url)
    with psycopg.connect(url) as conn:
        assert conn.execute(OUTPUT_ROWS).fetchall() == before
        assert conn.execute(TIERS_AT_HEAD).fetchall() == [
            ("invalid_event", "-", "-", 0, None),
            ("unpriced", "standard", "standard", 0, None),
            ("usage", "standard", "standard", 0, None),
        ]
    migrations.downgrade(url, "0007")
    with psycopg.connect(url) as conn:
        assert conn.execute(OUTPUT_ROWS).fetchall() == before
    migrations.upgrade(url)
    with psycopg.connect(url) as conn:
        assert conn.execute(OUTPUT_ROWS).fetchall() == before


@pytest.mark.parametrize(
    "beyond",
    [
        "UPDATE rated_usage SET service_tier = 'batch'",
        "UPDATE rated_usage SET context_tier = 'long'",
        "UPDATE rating_exception SET cache_read_tokens = 4 WHERE reason = 'unpriced'",
        # invalid usage keeps its negative sums: they are lost as surely as positive ones
        "UPDATE rating_exception SET cache_read_tokens = -3 WHERE reason = 'invalid_event'",
    ],
)
def test_a_downgrade_that_would_lose_rows_refuses_and_says_so(
    empty_database_url: str, beyond: str
) -> None:
    url = empty_database_url
    migrations.upgrade(url, "0007")
    with psycopg.connect(url) as conn:
        conn.execute(ROWS_AT_0007)
    migrations.upgrade(url)
    with psycopg.connect(url) as conn:
        conn.execute(beyond)
    with pytest.raises(Exception, match=r"below revision 0008: 1 \w+ row would be lost"):
        migrations.downgrade(url, "0007")
    assert migrations.revision_of(url) == migrations.head_revision()


ARCHIVES_AT_0007 = """
INSERT INTO rated_usage_archive (
    window_start, window_end, auth_id, model_id, event_count, input_tokens, output_tokens,
    rate_source, derivation_base, multiplier, input_rate_per_mtok, output_rate_per_mtok,
    cost_usd, pricebook_version, pricebook_sha256, rated_at, run_id, change, superseded_at,
    superseded_by_run_id
)
SELECT window_start, window_end, auth_id, model_id, event_count, input_tokens, output_tokens,
    rate_source, derivation_base, multiplier, input_rate_per_mtok, output_rate_per_mtok,
    cost_usd, pricebook_version, pricebook_sha256, rated_at, run_id, 'updated', now(), 'run-2'
FROM rated_usage;
INSERT INTO rating_exception_archive (
    window_start, window_end, auth_id, model_id, reason, detail, event_count, input_tokens,
    output_tokens, pricebook_version, rated_at, run_id, change, superseded_at,
    superseded_by_run_id
)
SELECT window_start, window_end, auth_id, model_id, reason, detail, event_count, input_tokens,
    output_tokens, pricebook_version, rated_at, run_id, 'deleted', now(), 'run-2'
FROM rating_exception WHERE reason = 'unpriced'
"""
# What revision 0007 cannot hold, in each output table: every tier but standard, the long
# context, and tokens of each new class (with a rate where the table has one).
BEYOND_0007 = [
    *(("rated_usage", f"service_tier = '{tier}'") for tier in ("batch", "priority", "flex")),
    *((table, "service_tier = 'flex'") for table in OUTPUT_TABLES[1:]),
    *((table, "context_tier = 'long'") for table in OUTPUT_TABLES),
    *((table, f"{c}_tokens = 1") for table in OUTPUT_TABLES for c in NEW_CLASSES),
]
BACK_TO_0007 = "service_tier = 'standard', context_tier = 'standard', " + ", ".join(
    f"{c}_tokens = 0" for c in NEW_CLASSES
)


def _set_priced_rows(url: str, table: str, assignments: str) -> None:
    """Set ``assignments`` on the table's one rated row, or its unpriced exception."""
    rated = table.startswith("rated_usage")
    if rated and "_tokens = 1" in assignments:
        assignments += ", " + assignments.replace("_tokens = 1", "_rate_per_mtok = 0")
    where = "" if rated else " WHERE reason = 'unpriced'"
    with psycopg.connect(url) as conn:
        conn.execute(
            sql.SQL("UPDATE {} SET {}{}").format(
                sql.Identifier(table), sql.SQL(assignments), sql.SQL(where)
            )
        )


def test_a_downgrade_below_0008_refuses_for_every_tier_and_class_in_every_output_and_archive(
    empty_database_url: str,
) -> None:
    """Archived rows are history too (contract 6, audit): another tier, a long context or
    tokens of any new class, in any of the four tables, refuses the downgrade, naming each
    table that would lose rows."""
    url = empty_database_url
    migrations.upgrade(url, "0007")
    with psycopg.connect(url) as conn:
        conn.execute(ROWS_AT_0007)
        conn.execute(ARCHIVES_AT_0007)
    migrations.upgrade(url)
    for table, beyond in BEYOND_0007:
        _set_priced_rows(url, table, beyond)
        with pytest.raises(
            RatingPipelineError, match=rf"below revision 0008: 1 {table} row would be lost"
        ):
            migrations.downgrade(url, "0007")
        _set_priced_rows(url, table, BACK_TO_0007)
    beyond_in_two = (("rated_usage", "service_tier = 'batch'"),
                     ("rating_exception_archive", "context_tier = 'long'"))  # fmt: skip
    for table, beyond in beyond_in_two:
        _set_priced_rows(url, table, beyond)
    both = "1 rated_usage row, 1 rating_exception_archive row would be lost"
    with pytest.raises(RatingPipelineError, match=both):  # every table named, not the first
        migrations.downgrade(url, "0007")
    for table, _ in beyond_in_two:
        _set_priced_rows(url, table, BACK_TO_0007)
    assert migrations.revision_of(url) == migrations.head_revision()
    assert "to 0007" in migrations.downgrade(url, "0007")


def test_a_refused_downgrade_below_0008_counts_the_rows_each_table_would_lose(
    database_url: str,
) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(ROW_AT_HEAD.replace("'standard', 'standard'", "'batch', 'standard'"))
        conn.execute(ROW_AT_HEAD.replace("'standard', 'standard'", "'flex', 'long'"))
    with pytest.raises(RatingPipelineError, match=r"0008: 2 rated_usage rows would be lost"):
        migrations.downgrade(database_url, "0007")


EVENT_STORAGE = """
SELECT c.relfilenode, a.attname, a.atthasmissing
FROM pg_class AS c
JOIN pg_attribute AS a ON a.attrelid = c.oid
WHERE c.relname = 'billing_event' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


def test_token_classes_are_added_to_billing_event_without_rewriting_it(
    empty_database_url: str,
) -> None:
    """Contract 3: constant defaults are catalog-only (PostgreSQL 11+). The table keeps its
    file, and existing rows read the defaults from the catalog (atthasmissing)."""
    url = empty_database_url
    migrations.upgrade(url, "0007")
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO billing_event (event_id, auth_id, model_id, input_tokens, "
            "output_tokens, occurred_at) VALUES ('e1', 'a', 'm', 1, 2, now())"
        )
        before = conn.execute(EVENT_STORAGE).fetchall()
    migrations.upgrade(url)
    with psycopg.connect(url) as conn:
        after = conn.execute(EVENT_STORAGE).fetchall()
        row = conn.execute("SELECT cache_read_tokens, service_tier FROM billing_event").fetchone()
    assert {filenode for filenode, _, _ in after} == {before[0][0]}
    added = {name: missing for _, name, missing in after[len(before) :]}
    assert set(added) == {
        "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens",
        "audio_input_tokens", "audio_output_tokens", "image_input_tokens", "service_tier",
    }  # fmt: skip
    assert all(added[c] for c in added if c.endswith("_tokens"))
    assert row == (0, None)
    migrations.downgrade(url)
    with psycopg.connect(url) as conn:
        kept = {name for _, name, _ in conn.execute(EVENT_STORAGE)}
    assert set(added) <= kept


EVENT_COLUMN_TYPES = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
    pg_get_expr(d.adbin, d.adrelid)
FROM pg_attribute AS a
LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = 'billing_event'::regclass AND a.attname = ANY(%(names)s)
ORDER BY a.attnum
"""


def test_the_class_columns_added_to_billing_event_are_the_contracts_types(
    empty_database_url: str,
) -> None:
    """Contract 3: each class bigint, not null, default 0; service_tier text, null."""
    url = empty_database_url
    with psycopg.connect(url) as conn:
        conn.execute(UPSTREAM_BILLING_EVENT)
    migrations.upgrade(url)
    with psycopg.connect(url) as conn:
        names = [f"{c}_tokens" for c in NEW_CLASSES] + ["service_tier"]
        columns = conn.execute(EVENT_COLUMN_TYPES, {"names": names}).fetchall()
    assert columns == [(f"{c}_tokens", "bigint", True, "0") for c in NEW_CLASSES] + [
        ("service_tier", "text", False, None)
    ]


def test_no_lock_is_taken_on_a_billing_event_that_already_has_every_class_column(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upstream added the columns itself: 0008 needs no ACCESS EXCLUSIVE lock on its table,
    so a long reader of billing_event never holds the upgrade back."""
    url = empty_database_url
    monkeypatch.setattr(online_ddl, "LOCK_TIMEOUT", "50ms")
    monkeypatch.setattr(online_ddl, "LOCK_ATTEMPTS", 2)
    monkeypatch.setattr(online_ddl, "FIRST_BACKOFF_SECONDS", 0.01)
    migrations.upgrade(url, "0007")
    with psycopg.connect(url) as conn:
        conn.execute(
            "ALTER TABLE billing_event "
            + ", ".join(f"ADD COLUMN {c}_tokens bigint NOT NULL DEFAULT 0" for c in NEW_CLASSES)
            + ", ADD COLUMN service_tier text NULL"
        )
    reader = psycopg.connect(url)
    reader.execute("SELECT count(*) FROM billing_event")  # ACCESS SHARE until it ends
    with ThreadPoolExecutor(1) as pool:
        upgrade = pool.submit(migrations.upgrade, url, "0008")
        try:
            upgrade.result(timeout=GUARD_SECONDS)
        finally:
            reader.rollback()
    reader.close()
    assert migrations.revision_of(url) == "0008"


ROW_AT_HEAD = """
INSERT INTO rated_usage (
    window_start, window_end, auth_id, model_id, service_tier, context_tier, event_count,
    input_tokens, output_tokens, rate_source, input_rate_per_mtok, output_rate_per_mtok,
    cost_usd, pricebook_version, pricebook_sha256, rated_at, run_id
) VALUES (
    '2026-06-15 10:00Z', '2026-06-15 11:00Z', 'org-1', 'base-large', 'standard', 'standard',
    3, 1000, 100, 'own', 2.5, 10, 0.0035, 'v1', 'sha', now(), 'run-1'
)
"""


def test_db_downgrade_refuses_while_the_outputs_hold_rows_and_says_what_would_be_lost(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RATING_DATABASE_URL", database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute(ROW_AT_HEAD)
    assert cli.main(["db", "downgrade"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "refusing" in err and "1 rated_usage row" in err and "--drop-rated-data" in err
    assert migrations.revision_of(database_url) == migrations.head_revision()

    assert cli.main(["db", "downgrade", "--drop-rated-data"]) == 0
    assert migrations.revision_of(database_url) is None


@pytest.mark.parametrize("action", [["current"], ["upgrade"], ["downgrade"]])
def test_db_commands_on_a_url_that_does_not_parse_print_one_line_without_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], action: list[str]
) -> None:
    monkeypatch.setenv("RATING_DATABASE_URL", "postgresql://bob:S3cret@[bad/rating")
    assert cli.main(["db", *action]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "S3cret" not in err and "RATING_DATABASE_URL" in err


def test_the_schema_check_knows_the_head_alembic_knows() -> None:
    assert database.shipped_revision() == migrations.head_revision()


@pytest.mark.parametrize("action", [["current"], ["upgrade"], ["downgrade"]])
def test_db_commands_on_a_warehouse_of_a_newer_release_say_so_in_one_line(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    action: list[str],
) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    monkeypatch.setenv("RATING_DATABASE_URL", database_url)
    assert cli.main(["db", *action]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "revision 9999" in err and "newer" in err, err


def test_a_revision_the_database_refuses_fails_in_one_line_naming_it_and_where_it_stopped(
    empty_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = empty_database_url
    migrations.upgrade(url, "0001")
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE rated_usage (in_the_way integer)")
    monkeypatch.setenv("RATING_DATABASE_URL", url)
    assert cli.main(["db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "revision 0002" in err and "rated_usage" in err and "at revision 0001" in err, err


def test_an_upgrade_onto_a_billing_event_no_rating_can_read_warns_at_once(
    empty_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Upstream keeps a count in a type that can hold a fraction: the upgrade succeeds (the
    schema is the project's), but every rating will refuse; the person migrating hears it
    now, not from the first hourly run. Found by a review of upstream's types."""
    url = empty_database_url
    with psycopg.connect(url) as conn:
        conn.execute(UPSTREAM_BILLING_EVENT)
        conn.execute("ALTER TABLE billing_event ALTER COLUMN input_tokens TYPE numeric")
    monkeypatch.setenv("RATING_DATABASE_URL", url)
    assert cli.main(["db", "upgrade"]) == 0
    captured = capsys.readouterr()
    assert "upgraded from base" in captured.out
    (warning,) = captured.err.splitlines()
    assert warning.startswith("warning: every rating will refuse this billing_event: "), warning
    assert "billing_event.input_tokens is numeric" in warning


@pytest.mark.parametrize(("action", "stops_at"), [("upgrade", "0005"), ("downgrade", "0009")])
def test_an_interrupted_db_command_says_where_the_warehouse_stopped_and_exits_130(
    empty_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    action: str,
    stops_at: str,
) -> None:
    """Ctrl-C in a migration (an index build on a large billing_event takes minutes): the
    revisions before the interrupted one stay committed, and the person is told which."""
    url = empty_database_url
    if action == "downgrade":
        migrations.upgrade(url)
    run = migrations._run

    def interrupted_after(url: str, alembic_command, revision: str, *args: object) -> list[str]:  # type: ignore[no-untyped-def]
        run(url, alembic_command, stops_at, *args)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    monkeypatch.setattr(migrations, "_run", interrupted_after)
    monkeypatch.setenv("RATING_DATABASE_URL", url)
    assert cli.main(["db", action]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("interrupted: "), err
    assert f"at revision {stops_at}" in err and f"`db {action}`" in err, err


REVISION_FAILED = (
    "revision 0012 failed on the warehouse: AdminShutdown: terminating connection; the "
    "warehouse is at revision 0012, the revisions before it committed"
)
REVISION_REFUSED = "refusing to downgrade below revision 0011: 1 billing_account row"


@pytest.mark.parametrize(
    ("stop", "code"),
    [
        (KeyboardInterrupt, 130),
        (lambda: migrations.MigrationFailed(REVISION_FAILED), 1),
        (lambda: migrations.DowngradeRefused(REVISION_REFUSED), 1),
        (lambda: psycopg.OperationalError("connection is bad"), 1),
    ],
    ids=["interrupted", "failed", "refused", "server gone"],
)
@pytest.mark.parametrize("when", ["after emptying", "as the emptying commits", "while emptying"])
def test_a_downgrade_dropping_rated_data_stopped_after_emptying_says_the_data_is_gone(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stop: Callable[[], BaseException],
    code: int,
    when: str,
) -> None:
    """--drop-rated-data empties the tables (and commits) before it undoes any revision,
    some of which take minutes: stopped there (Ctrl-C, a revision's failure or refusal, the
    server gone), the command named only where the warehouse is, as if nothing were lost,
    though every rating, close and invoice line was gone (and `db upgrade` brings none
    back); so too when stopped as the emptying committed. Stopped before it committed, it
    says nothing of the kind. Found by an audit of interruptions, and second readings."""
    with psycopg.connect(database_url) as conn:
        conn.execute(ROW_AT_HEAD)
    truncate = migrations._truncate

    def stopped(*args: object) -> None:
        raise stop()

    def stopped_as_it_commits(url: str, tables: list[str]) -> None:
        truncate(url, tables)
        raise stop()

    replaced = {
        "after emptying": ("_run", stopped),
        "as the emptying commits": ("_truncate", stopped_as_it_commits),
        "while emptying": ("_truncate", stopped),
    }[when]
    monkeypatch.setattr(migrations, *replaced)
    monkeypatch.setenv("RATING_DATABASE_URL", database_url)
    got = cli.main(["db", "downgrade", "--drop-rated-data"])
    err = capsys.readouterr().err
    assert got == code and err.count("\n") == 1, err
    gone = when != "while emptying"
    said = "--drop-rated-data emptied the rating tables first: every rating, close and "
    assert (said in err) == gone, err
    assert migrations.rated_rows(database_url)["rated_usage"] == (0 if gone else 1)


WAITING_INDEX_DDL = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND state = 'active' AND query ILIKE '%INDEX CONCURRENTLY%'"
    " AND wait_event_type IS NOT NULL AND pid <> pg_backend_pid()"
)


def test_ctrl_c_inside_a_concurrent_index_statement_says_where_it_stopped_and_exits_130(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The interrupt lands while 0012's DROP INDEX CONCURRENTLY waits for a reader: the
    statement runs in an autocommit block, and Alembic's commit at its end raised an error
    of its own in place of the KeyboardInterrupt (a traceback, exit 1). Found by an audit
    of the migrations."""
    monkeypatch.setenv("RATING_DATABASE_URL", database_url)
    main_thread = threading.get_ident()
    with (
        psycopg.connect(database_url) as reader,
        psycopg.connect(database_url, autocommit=True) as watcher,
    ):
        reader.execute("LOCK TABLE billing_event IN ACCESS SHARE MODE")
        returned, heard = threading.Event(), threading.Event()

        def ctrl_c_once_it_waits() -> None:
            deadline = time.monotonic() + 30  # only against a hang
            while watcher.execute(WAITING_INDEX_DDL).fetchone() == (0,):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            # Once; again only if it was not heard 5 s later, never into a hang.
            for _ in range(6):
                signal.pthread_kill(main_thread, signal.SIGINT)
                if heard.wait(5) or returned.is_set():
                    return
            # Never heard: end the reader, so that the command ends and the test fails.
            watcher.execute("SELECT pg_terminate_backend(%s)", [reader.info.backend_pid])

        def ctrl_c(signum: int, frame: object) -> None:  # once, and only while it runs
            if not returned.is_set() and not heard.is_set():
                heard.set()
                raise KeyboardInterrupt

        # As at a terminal: a non-interactive shell starts a `&` job with SIGINT ignored, and
        # Python then keeps it ignored (the command would wait for the reader for ever).
        ignored_or_not = signal.signal(signal.SIGINT, ctrl_c)
        pressing = threading.Thread(target=ctrl_c_once_it_waits)
        pressing.start()
        try:
            code = cli.main(["db", "downgrade"])
        finally:
            returned.set()
            pressing.join(timeout=30)
            signal.signal(signal.SIGINT, ignored_or_not)
            with suppress(psycopg.OperationalError):  # the reader ended, if never heard
                reader.rollback()
    err = capsys.readouterr().err
    assert code == 130 and err.count("\n") == 1, err
    assert err.startswith("interrupted: ") and "at revision 0012" in err, err


def test_a_downgrade_to_any_revision_refuses_to_drop_tables_that_hold_rows(
    database_url: str,
) -> None:
    """Not only a downgrade to base: one to 0001 drops the outputs and the log too."""
    with psycopg.connect(database_url) as conn:
        conn.execute(ROW_AT_HEAD)
    with pytest.raises(migrations.DowngradeRefused, match="1 rated_usage row"):
        migrations.downgrade(database_url, "0001")
    assert migrations.revision_of(database_url) == migrations.head_revision()

    assert "to 0009" in migrations.downgrade(database_url, "0009")  # drops nothing held
    assert "to 0001" in migrations.downgrade(database_url, "0001", drop_rated_data=True)
    assert _tables(database_url) == {"billing_event"}


def test_log_rows_from_before_the_closes_read_as_open_windows_without_adjustments(
    database_url: str,
) -> None:
    """Revision 0011 adds the close and adjustment figures to rating_log: the rows it finds
    were ratings of open windows (no close existed) and adjusted nothing."""
    with psycopg.connect(database_url) as conn:
        conn.execute(INSERT_EVENT, {"event_id": "e1", "tokens": 1000})
    with database.connect(database_url) as conn:
        version = make_version({"m": own("1", "1")})
        rate_window(conn, Window.from_key("2026-06-15-10:00"), Pricebooks((version,)), "r")
    migrations.downgrade(database_url, "0010")
    migrations.upgrade(database_url)
    with psycopg.connect(database_url) as conn:
        figures = conn.execute(
            "SELECT window_closed, adjustments_inserted, adjustments_updated, "
            "adjustments_deleted, adjustments_unchanged, open_adjustment_cost_usd FROM rating_log"
        ).fetchall()
    assert figures == [(False, 0, 0, 0, 0, 0)]


def test_a_downgrade_below_the_closes_names_the_close_figures_the_log_would_lose(
    database_url: str,
) -> None:
    """Revision 0011's downgrade drops rating_log's close and adjustment columns too: the
    refusal named only 0011's tables. Found by an audit of the migrations."""
    with psycopg.connect(database_url) as conn:
        conn.execute(INSERT_EVENT, {"event_id": "e1", "tokens": 1000})
    with database.connect(database_url) as conn:
        version = make_version({"m": own("1", "1")})
        rate_window(conn, Window.from_key("2026-06-15-10:00"), Pricebooks((version,)), "r")
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO rating_period_close (closed_through, closed_at, closed_by) "
            "VALUES ('2026-06-15 11:00Z', now(), 'test')"
        )
        conn.execute("UPDATE rating_log SET window_closed = true")  # a closed window's rating

    with pytest.raises(
        migrations.DowngradeRefused,
        match=r"1 rating_period_close row, and the close and adjustment figures of 1 "
        r"rating_log row;",
    ):
        migrations.downgrade(database_url, "0010")


def test_a_warehouse_at_an_earlier_revision_counts_its_own_tables_before_a_downgrade(
    empty_database_url: str,
) -> None:
    """At 0011 (not the head), a downgrade to 0010 undoes 0011's own tables: it counts them
    up front, refusing with their rows named, or drops them with --drop-rated-data."""
    url = empty_database_url
    migrations.upgrade(url, "0011")
    with psycopg.connect(url) as conn:
        conn.execute(CLOSE_ROW)
    with pytest.raises(
        migrations.DowngradeRefused, match="it would drop 1 rating_period_close row"
    ):
        migrations.downgrade(url, "0010")
    assert "to 0010" in migrations.downgrade(url, "0010", drop_rated_data=True)
    assert "rating_period_close" not in _tables(url)


def test_a_refused_downgrade_empties_nothing_even_with_drop_rated_data(
    database_url: str,
) -> None:
    """To 0007, with drop_rated_data, the tables of 0010 and 0011 would go, but 0008 refuses
    to drop a batch rollup: the close must still be there, or its hours would reopen."""
    with psycopg.connect(database_url) as conn:
        conn.execute(ROW_AT_HEAD.replace("'standard', 'standard'", "'batch', 'standard'"))
        conn.execute(
            "INSERT INTO rating_period_close (closed_through, closed_at, closed_by) "
            "VALUES ('2026-06-15 12:00Z', now(), 'test')"
        )
    with pytest.raises(RatingPipelineError, match="revision 0007 cannot"):
        migrations.downgrade(database_url, "0007", drop_rated_data=True)
    assert migrations.rated_rows(database_url)["rating_period_close"] == 1
    assert migrations.revision_of(database_url) == migrations.head_revision()


LATE_WINDOW_ROW = """
INSERT INTO late_window (window_start, events_now, events_read, log_id, found_at)
VALUES ('2026-06-15 10:00Z', 3, 2, 1, now())
"""


def test_a_downgrade_from_the_revision_that_created_a_table_refuses_to_drop_its_rows(
    empty_database_url: str,
) -> None:
    """At 0010, late_window is the newest revision's table: a downgrade to base drops it."""
    url = empty_database_url
    migrations.upgrade(url, "0010")
    with psycopg.connect(url) as conn:
        conn.execute(LATE_WINDOW_ROW)
    with pytest.raises(migrations.DowngradeRefused, match="1 late_window row"):
        migrations.downgrade(url)
    assert migrations.revision_of(url) == "0010"
    assert migrations.rated_rows(url)["late_window"] == 1


def test_a_downgrade_to_the_revision_that_created_a_table_keeps_it_and_its_rows(
    database_url: str,
) -> None:
    """To 0010, late_window stays: its rows are neither lost nor a reason to refuse."""
    with psycopg.connect(database_url) as conn:
        conn.execute(LATE_WINDOW_ROW)
    assert "to 0010" in migrations.downgrade(database_url, "0010")
    assert migrations.rated_rows(database_url)["late_window"] == 1


def test_a_refused_downgrade_to_base_counts_the_rows_each_table_would_lose(
    database_url: str,
) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(ROW_AT_HEAD)
        conn.execute(ROW_AT_HEAD.replace("'standard', 'standard'", "'batch', 'standard'"))
        conn.execute(LATE_WINDOW_ROW)
    with pytest.raises(migrations.DowngradeRefused) as refused:
        migrations.downgrade(database_url)
    assert "2 rated_usage rows" in str(refused.value)
    assert "1 late_window row;" in str(refused.value) or "1 late_window row," in str(refused.value)
    assert migrations.revision_of(database_url) == migrations.head_revision()


def test_a_downgrade_to_a_later_revision_than_the_warehouses_says_so_in_one_line(
    empty_database_url: str,
) -> None:
    migrations.upgrade(empty_database_url, "0005")
    with pytest.raises(migrations.UnknownRevision, match=r"at revision 0005.*0010 is not earlier"):
        migrations.downgrade(empty_database_url, "0010")
    assert migrations.revision_of(empty_database_url) == "0005"


def test_a_downgrade_to_the_warehouses_own_revision_is_harmless(database_url: str) -> None:
    """Only a later target is refused: the warehouse's own revision is not later."""
    before = _snapshot(database_url)
    head = migrations.head_revision()
    said = migrations.downgrade(database_url, head)
    assert said.startswith(f"warehouse already at revision {head} on ")
    assert said.endswith("; nothing downgraded")
    assert migrations.revision_of(database_url) == head
    assert _snapshot(database_url) == before


def test_revision_0008_refuses_on_its_own_a_downgrade_that_would_lose_rows(
    database_url: str,
) -> None:
    """0008's downgrade checks again, in its own transaction, as it drops the columns: a
    batch row is kept even where the downgrade reached it without the checks beforehand."""
    with psycopg.connect(database_url) as conn:
        conn.execute(ROW_AT_HEAD.replace("'standard', 'standard'", "'batch', 'standard'"))
    with pytest.raises(RatingPipelineError, match="1 rated_usage row would be lost"):
        migrations._run(database_url, command.downgrade, "0007")
    assert migrations.revision_of(database_url) == "0008"
    with psycopg.connect(database_url) as conn:
        tiers = conn.execute("SELECT service_tier FROM rated_usage").fetchall()
    assert tiers == [("batch",)]


def test_a_downgrade_target_must_be_a_revision_this_release_ships(database_url: str) -> None:
    with pytest.raises(migrations.UnknownRevision, match="'-1'"):
        migrations.downgrade(database_url, "-1")
    assert migrations.revision_of(database_url) == migrations.head_revision()


def test_drop_rated_data_empties_tables_that_reference_a_held_one_even_when_they_are_empty(
    database_url: str,
) -> None:
    """A close that wholly closed no month leaves its totals and adjustments empty; the
    tables that reference the close must be emptied with it, or TRUNCATE refuses."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO rating_period_close (closed_through, closed_at, closed_by) "
            "VALUES ('2026-06-15 12:00Z', now(), 'test')"
        )
    assert "to base" in migrations.downgrade(database_url, drop_rated_data=True)
    assert _tables(database_url) == {"billing_event"}


@pytest.mark.parametrize(
    "dropped_by_hand",
    [
        "DROP TABLE rating_log",
        "DROP TABLE rated_usage_archive",
        "DROP INDEX billing_event_negative_tokens_idx",
        "ALTER TABLE rating_log DROP COLUMN events_digest",
    ],
)
def test_downgrade_finishes_when_an_object_was_already_dropped_by_hand(
    empty_database_url: str, dropped_by_hand: str
) -> None:
    url = empty_database_url
    migrations.upgrade(url)
    with psycopg.connect(url) as conn:
        conn.execute(dropped_by_hand)
    migrations.downgrade(url, drop_rated_data=True)
    assert _tables(url) == {"billing_event"}


def put_on_search_path(conn: psycopg.Connection, schema: str) -> None:
    """The database's search path, for its next sessions: public, then ``schema``."""
    name = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
    conn.execute(
        sql.SQL("ALTER DATABASE {} SET search_path = public, {}").format(
            sql.Identifier(name), sql.Identifier(schema)
        )
    )


def _another_teams_invoice_line(url: str, on_search_path: bool) -> None:
    """finance.invoice_line, two rows, on the database's search path after public or not."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA finance")
        conn.execute("CREATE TABLE finance.invoice_line (id int)")
        conn.execute("INSERT INTO finance.invoice_line VALUES (1), (2)")
        if on_search_path:
            put_on_search_path(conn, "finance")


def _finance_rows(url: str) -> int | None:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('finance.invoice_line')").fetchone() == (None,):
            return None
        return conn.execute("SELECT count(*) FROM finance.invoice_line").fetchone()[0]  # type: ignore[index]


@pytest.mark.parametrize("on_search_path", [True, False])
def test_a_downgrade_never_counts_or_empties_another_schemas_table_of_a_revision_not_applied(
    empty_database_url: str, on_search_path: bool
) -> None:
    """At 0010, invoice_line is not the project's (0011 creates it): another team's table of
    that name is neither counted, nor emptied, nor dropped."""
    url = empty_database_url
    migrations.upgrade(url, "0010")
    _another_teams_invoice_line(url, on_search_path)

    migrations.downgrade(url, drop_rated_data=True)

    assert _finance_rows(url) == 2


def test_a_downgrade_refuses_when_a_project_table_name_finds_another_schemas_table(
    empty_database_url: str,
) -> None:
    """The project's invoice_line was dropped by hand, so its name now finds finance's on
    the search path: a revision's DROP would drop that one. Refused; nothing is dropped."""
    url = empty_database_url
    migrations.upgrade(url)
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE invoice_line")
    _another_teams_invoice_line(url, on_search_path=True)

    with pytest.raises(migrations.DowngradeRefused, match=r"finance\.invoice_line"):
        migrations.downgrade(url, drop_rated_data=True)

    assert _finance_rows(url) == 2
    assert migrations.revision_of(url) == migrations.head_revision()


def test_a_downgrade_refuses_when_a_table_it_alters_finds_another_schemas_table(
    empty_database_url: str,
) -> None:
    """To 0007, rated_usage is altered, not dropped: its name finding finance.rated_usage
    (the project's dropped by hand) is refused the same way, before any revision runs."""
    url = empty_database_url
    migrations.upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE rated_usage CASCADE")
        conn.execute("CREATE SCHEMA finance")
        conn.execute("CREATE TABLE finance.rated_usage (id int)")
        put_on_search_path(conn, "finance")

    with pytest.raises(migrations.DowngradeRefused, match=r"finance\.rated_usage"):
        migrations.downgrade(url, "0007", drop_rated_data=True)

    assert migrations.revision_of(url) == migrations.head_revision()


# --- Migrations on upstream's live billing_event (issue 13, item 5; docs/warehouse.md) ---

GUARD_SECONDS = 60.0  # only against a hang: no assertion is ever made on elapsed time
UPSTREAM_BILLING_EVENT = """
CREATE TABLE billing_event (
    event_id text PRIMARY KEY,
    auth_id text NOT NULL,
    model_id text NOT NULL,
    base_model text,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    occurred_at timestamptz NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now()
)
"""
INSERT_EVENT = """
INSERT INTO billing_event (event_id, auth_id, model_id, input_tokens, output_tokens, occurred_at)
VALUES (%(event_id)s, 'a', 'm', %(tokens)s, 1, '2026-06-15 10:00Z')
"""
SHORT_LOCK_TIMEOUT = "SET lock_timeout = '2s'"
# The migration is at work on billing_event: building an index on it, or waiting for a lock
# on it (only a plain CREATE INDEX, DROP INDEX or ALTER TABLE waits there).
AT_WORK_ON_BILLING_EVENT = """
SELECT EXISTS (
    SELECT 1 FROM pg_stat_progress_create_index
    WHERE relid = 'billing_event'::regclass
      AND datid = (SELECT oid FROM pg_database WHERE datname = current_database())
) OR EXISTS (
    SELECT 1 FROM pg_locks
    WHERE relation = 'billing_event'::regclass AND NOT granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
)
"""
TRY_MIGRATION_LOCK = "SELECT pg_try_advisory_lock(1296651090, 0)"
RELEASE_MIGRATION_LOCK = "SELECT pg_advisory_unlock(1296651090, 0)"
# A second upgrade has reached the migration lock (waiting on it, or polling for it).
SECOND_UPGRADE_AT_THE_LOCK = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND query LIKE '%advisory%lock(1296651090%'
"""
BILLING_EVENT_INDEXES = """
SELECT c.relname, i.indisvalid, i.indisunique, pg_get_indexdef(i.indexrelid)
FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
WHERE i.indrelid = 'billing_event'::regclass ORDER BY 1
"""


def _wait_until(url: str, query: str) -> None:
    """Poll ``query`` from an autocommit session (no snapshot held) until it is true."""
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(int(GUARD_SECONDS / 0.02)):
            if conn.execute(query).fetchone()[0]:  # type: ignore[index]
                return
            time.sleep(0.02)
    raise AssertionError(f"never true: {query}")


def test_rating_refuses_a_project_table_found_in_another_schema_ahead_on_the_search_path(
    empty_database_url: str,
) -> None:
    """A rated_usage in a schema put ahead of the warehouse's after it was migrated would
    take the ratings while rating_log and the invoices stay behind (audit: every command
    exited 0). Every command that needs the schema refuses, naming both."""
    url = empty_database_url
    migrations.upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA up")
        conn.execute("CREATE TABLE up.rated_usage (LIKE public.rated_usage INCLUDING ALL)")
        name = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET search_path = up, public").format(sql.Identifier(name))
        )

    with database.connect(url) as conn, pytest.raises(database.SchemaNotMigrated) as refused:
        database.require_schema(conn)

    assert "up.rated_usage" in str(refused.value) and "public" in str(refused.value)


def test_sigterm_inside_a_concurrent_index_build_stays_sigterm(empty_database_url: str) -> None:
    """An interrupt in an autocommit block surfaces as Alembic's PendingRollbackError; the
    migration raises the interrupt again, and a SIGTERM (errors.Terminated) must stay one,
    or the command exits 130 where SIGTERM exits 143. Found by a second reading."""

    def interrupted_build(config: object, revision: str) -> None:
        try:
            raise Terminated
        except Terminated:
            raise sqlalchemy.exc.PendingRollbackError("can't reconnect", None, None) from None

    with pytest.raises(Terminated):
        migrations._run(empty_database_url, interrupted_build, "head")


def test_an_upstream_billing_event_in_another_schema_on_the_search_path_is_the_one_used(
    empty_database_url: str,
) -> None:
    """Found through the search path, as every statement finds it: the upgrade must not
    create an empty billing_event in the first schema of the path, where rating would
    then read no event at all."""
    url = empty_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA upstream")
        conn.execute(UPSTREAM_BILLING_EVENT.replace("billing_event", "upstream.billing_event", 1))
        put_on_search_path(conn, "upstream")
    migrations.upgrade(url)
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT schemaname FROM pg_tables WHERE tablename = 'billing_event'"
        ).fetchall()
        columns = {
            name
            for (name,) in conn.execute(
                "SELECT attname FROM pg_attribute "
                "WHERE attrelid = 'upstream.billing_event'::regclass"
            )
        }
    assert tables == [("upstream",)]
    assert {"cache_read_tokens", "service_tier"} <= columns


@pytest.mark.parametrize("upstream_revision", ["3f9a1c2b7d4e", None])
def test_upstreams_own_alembic_version_on_the_search_path_is_never_the_warehouses(
    empty_database_url: str, upstream_revision: str | None
) -> None:
    """Upstream may migrate its schema with Alembic too: its alembic_version, found along
    the search path, is neither read as the warehouse's revision nor stamped by it; the
    warehouse keeps its own beside its tables, and rates, upgrades and downgrades."""
    url = empty_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA upstream")
        conn.execute("CREATE TABLE upstream.alembic_version (version_num varchar(32) PRIMARY KEY)")
        if upstream_revision is not None:
            conn.execute("INSERT INTO upstream.alembic_version VALUES (%s)", (upstream_revision,))
        conn.execute(UPSTREAM_BILLING_EVENT.replace("billing_event", "upstream.billing_event", 1))
        put_on_search_path(conn, "upstream")

    migrations.upgrade(url)

    assert migrations.revision_of(url) == migrations.head_revision()
    with database.connect(url) as conn:
        database.require_schema(conn)
        assert conn.execute("SELECT version_num FROM public.alembic_version").fetchall() == [
            (migrations.head_revision(),)
        ]
        upstream = conn.execute("SELECT version_num FROM upstream.alembic_version").fetchall()
    assert upstream == ([] if upstream_revision is None else [(upstream_revision,)])
    migrations.downgrade(url, "0011")
    assert migrations.revision_of(url) == "0011"


def test_a_role_whose_own_schema_leads_its_search_path_finds_the_warehouses_revision(
    database_url: str,
) -> None:
    """A rater role with a schema of its own name ("$user", public: PostgreSQL's default
    path) creates nothing there; the warehouse's revision is beside its rating_log. Found
    by a second reading."""
    role = f"rater_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        admin.execute(sql.SQL("CREATE SCHEMA {0} AUTHORIZATION {0}").format(sql.Identifier(role)))
        admin.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(
                sql.Identifier(role)
            )
        )
    try:
        with database.connect(make_conninfo(database_url, user=role)) as conn:
            assert conn.execute("SELECT current_schema()").fetchone() == (role,)
            database.require_schema(conn)
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_warehouse_whose_revision_an_earlier_release_stamped_upstream_is_refused_with_the_fix(
    empty_database_url: str,
) -> None:
    """Upstream's empty alembic_version on the path took the warehouse's revision before
    it was kept beside its tables: an upgrade would run 0001 again and fail halfway at
    0002. It refuses in one line saying where the revision is and what to do."""
    url = empty_database_url
    migrations.upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA upstream")
        conn.execute("ALTER TABLE public.alembic_version SET SCHEMA upstream")
        put_on_search_path(conn, "upstream")

    with pytest.raises(migrations.MigrationFailed, match=r"upstream\.alembic_version") as refused:
        migrations.upgrade(url)

    assert "public.alembic_version" in str(refused.value)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('public.alembic_version')").fetchone() == (None,)


PARTITIONED_BILLING_EVENT = (
    """
    CREATE TABLE billing_event (
        event_id text NOT NULL,
        auth_id text NOT NULL,
        model_id text NOT NULL,
        base_model text,
        input_tokens bigint NOT NULL,
        output_tokens bigint NOT NULL,
        occurred_at timestamptz NOT NULL,
        ingested_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (event_id, occurred_at)
    ) PARTITION BY RANGE (occurred_at)
    """,
    "CREATE TABLE billing_event_2026_06 PARTITION OF billing_event "
    "FOR VALUES FROM ('2026-06-01Z') TO ('2026-07-01Z') PARTITION BY RANGE (occurred_at)",
    "CREATE TABLE billing_event_2026_06_a PARTITION OF billing_event_2026_06 "
    "FOR VALUES FROM ('2026-06-01Z') TO ('2026-06-16Z')",
    "CREATE TABLE billing_event_2026_06_b PARTITION OF billing_event_2026_06 "
    "FOR VALUES FROM ('2026-06-16Z') TO ('2026-07-01Z')",
    "CREATE TABLE billing_event_2026_07 PARTITION OF billing_event "
    "FOR VALUES FROM ('2026-07-01Z') TO ('2026-08-01Z')",
)
PARTITION_INDEXES = """
SELECT count(*) FILTER (WHERE NOT i.indisvalid), count(*)
FROM pg_inherits AS h
JOIN pg_index AS i ON i.indrelid = h.inhrelid
WHERE h.inhparent IN ('billing_event'::regclass, 'billing_event_2026_06'::regclass)
"""


def test_a_partitioned_upstream_billing_event_is_migrated_and_indexed_partition_by_partition(
    empty_database_url: str,
) -> None:
    """An events table this size is often partitioned by time; an index cannot be built
    concurrently on a partitioned table, so each partition's is, then attached."""
    url = empty_database_url
    with psycopg.connect(url) as conn:
        for statement in PARTITIONED_BILLING_EVENT:
            conn.execute(statement)
        conn.execute(INSERT_EVENT, {"event_id": "e1", "tokens": -1})
    migrations.upgrade(url)
    with psycopg.connect(url) as conn:
        indexes = {name: valid for name, valid, *_ in conn.execute(BILLING_EVENT_INDEXES)}
        invalid, built = conn.execute(PARTITION_INDEXES).fetchone()  # type: ignore[misc]
    assert set(indexes) >= {
        "billing_event_occurred_at_idx",
        "billing_event_ingested_at_idx",
        "billing_event_negative_tokens_idx",
    }
    assert all(indexes.values()) and invalid == 0 and built > 0, (indexes, invalid, built)
    with psycopg.connect(url) as conn:
        conn.execute(INSERT_EVENT, {"event_id": "e2", "tokens": 1000})
    with database.connect(url) as conn:
        version = make_version({"m": own("1", "1")})
        rating = rate_window(conn, Window.from_key("2026-06-15-10:00"), Pricebooks((version,)), "r")
    assert (rating.events_read, rating.events_rated, rating.events_excepted) == (2, 1, 1)

    assert "to base" in migrations.downgrade(url, drop_rated_data=True)
    migrations.upgrade(url)
    assert migrations.revision_of(url) == migrations.head_revision()


def test_a_partitioned_build_interrupted_midway_is_cleaned_up_and_built_again(
    empty_database_url: str,
) -> None:
    """Left by a killed upgrade: the parent index made ON ONLY (invalid) and one partition's
    index built but never attached, which every insert into that partition still pays."""
    url = empty_database_url
    with psycopg.connect(url) as conn:
        for statement in PARTITIONED_BILLING_EVENT:
            conn.execute(statement)
    migrations.upgrade(url, "0002")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE INDEX billing_event_negative_tokens_idx ON ONLY billing_event (occurred_at) "
            "WHERE input_tokens < 0 OR output_tokens < 0"
        )
        parent, partition = conn.execute(
            "SELECT 'billing_event_negative_tokens_idx'::regclass::oid, "
            "'billing_event_2026_07'::regclass::oid"
        ).fetchone()  # type: ignore[misc]
        conn.execute(
            f"CREATE INDEX rating_idx_{parent}_{partition} ON billing_event_2026_07 "
            "(occurred_at) WHERE input_tokens < 0 OR output_tokens < 0"
        )
    migrations.upgrade(url, "0003")
    with psycopg.connect(url) as conn:
        leftover = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname = %s",
            (f"rating_idx_{parent}_{partition}",),
        ).fetchone()
        indexes = {name: valid for name, valid, *_ in conn.execute(BILLING_EVENT_INDEXES)}
        invalid, _ = conn.execute(PARTITION_INDEXES).fetchone()  # type: ignore[misc]
    assert leftover == (0,) and invalid == 0
    assert indexes["billing_event_negative_tokens_idx"] is True


def test_partitions_named_with_a_colon_word_are_indexed_and_cleaned_up_by_name(
    empty_database_url: str,
) -> None:
    """SQLAlchemy's text() read ``:june`` in a quoted catalog name as a bind parameter, and
    the upgrade failed on every try. Found by an audit."""
    url = empty_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(BILLING_EVENT_BY_RANGE)
        conn.execute('CREATE SCHEMA "ops-:x"')
        conn.execute(
            'CREATE TABLE "ops-:x"."be-:june" PARTITION OF billing_event '
            "FOR VALUES FROM ('2026-06-01Z') TO ('2026-07-01Z')"
        )
    migrations.upgrade(url, "0002")
    with psycopg.connect(url, autocommit=True) as conn:  # an interrupted build's leftovers
        conn.execute(
            "CREATE INDEX billing_event_negative_tokens_idx ON ONLY billing_event (occurred_at) "
            "WHERE input_tokens < 0 OR output_tokens < 0"
        )
        parent, partition = conn.execute(
            "SELECT 'billing_event_negative_tokens_idx'::regclass::oid, "
            """'"ops-:x"."be-:june"'::regclass::oid"""
        ).fetchone()  # type: ignore[misc]
        conn.execute(
            f'CREATE INDEX rating_idx_{parent}_{partition} ON "ops-:x"."be-:june" '
            "(occurred_at) WHERE input_tokens < 0 OR output_tokens < 0"
        )
    migrations.upgrade(url)
    with psycopg.connect(url) as conn:
        indexes = {name: valid for name, valid, *_ in conn.execute(BILLING_EVENT_INDEXES)}
        on_partition = conn.execute(
            "SELECT count(*) FILTER (WHERE NOT indisvalid), count(*) FROM pg_index "
            """WHERE indrelid = '"ops-:x"."be-:june"'::regclass"""
        ).fetchone()
    assert all(indexes.values()) and on_partition is not None
    assert on_partition[0] == 0 and on_partition[1] >= 3, on_partition


# No primary key: a foreign table cannot be a partition under a unique index.
BILLING_EVENT_BY_RANGE = """
CREATE TABLE billing_event (
    event_id text NOT NULL,
    auth_id text NOT NULL,
    model_id text NOT NULL,
    base_model text,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    occurred_at timestamptz NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (occurred_at)
"""
A_FOREIGN_SERVER = (
    "CREATE FOREIGN DATA WRAPPER archive_wrapper",
    "CREATE SERVER archive FOREIGN DATA WRAPPER archive_wrapper",
)
# A foreign partition of billing_event itself, or of one of its partitions.
FOREIGN_PARTITION_AT_THE_TOP = (
    "CREATE TABLE billing_event_2026_06 PARTITION OF billing_event "
    "FOR VALUES FROM ('2026-06-01Z') TO ('2026-07-01Z')",
    "CREATE FOREIGN TABLE billing_event_2026_05 PARTITION OF billing_event "
    "FOR VALUES FROM ('2026-05-01Z') TO ('2026-06-01Z') SERVER archive",
)
FOREIGN_PARTITION_BELOW = (
    "CREATE TABLE billing_event_2026 PARTITION OF billing_event "
    "FOR VALUES FROM ('2026-01-01Z') TO ('2027-01-01Z') PARTITION BY RANGE (occurred_at)",
    "CREATE TABLE billing_event_2026_06 PARTITION OF billing_event_2026 "
    "FOR VALUES FROM ('2026-06-01Z') TO ('2026-07-01Z')",
    "CREATE FOREIGN TABLE billing_event_2026_05 PARTITION OF billing_event_2026 "
    "FOR VALUES FROM ('2026-05-01Z') TO ('2026-06-01Z') SERVER archive",
)
INDEXES_OF_BILLING_EVENT = """
SELECT count(*) FROM pg_index
WHERE indrelid IN (SELECT relid FROM pg_partition_tree('billing_event'))
"""
IS_SUPERUSER = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"


@pytest.mark.parametrize(
    "partitions", [FOREIGN_PARTITION_AT_THE_TOP, FOREIGN_PARTITION_BELOW], ids=["top", "below"]
)
def test_a_billing_event_with_a_foreign_partition_is_refused_in_one_line_before_any_index(
    empty_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    partitions: tuple[str, ...],
) -> None:
    """A foreign table takes no index: the upgrade names it and says what to do by hand,
    having built nothing on the other partitions or the parent, at whatever depth it is."""
    url = empty_database_url
    with psycopg.connect(url) as conn:
        if conn.execute(IS_SUPERUSER).fetchone() != (True,):
            pytest.skip("creating a foreign data wrapper takes a superuser")
        for statement in (BILLING_EVENT_BY_RANGE, *A_FOREIGN_SERVER, *partitions):
            conn.execute(statement)
    monkeypatch.setenv(DATABASE_URL_VARIABLE, url)
    assert cli.main(["db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("error: index billing_event_occurred_at_idx: billing_event has "), err
    assert "foreign-table partitions (billing_event_2026_05)" in err and "by hand" in err, err
    with psycopg.connect(url) as conn:
        assert conn.execute(INDEXES_OF_BILLING_EVENT).fetchone() == (0,)


def _upstream_table_with_a_writer_in_flight(url: str) -> psycopg.Connection:
    """An open transaction that inserted into billing_event: a concurrent index build waits
    for it; a plain CREATE INDEX queues behind it, and every later insert behind that."""
    writer = psycopg.connect(url)
    writer.execute(INSERT_EVENT, {"event_id": "in-flight", "tokens": 1})
    return writer


def _insert_with_short_lock_timeout(url: str, event_id: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SHORT_LOCK_TIMEOUT)
        conn.execute(INSERT_EVENT, {"event_id": event_id, "tokens": 1})


def _insert_during_upgrade(
    url: str, target: str, holder: psycopg.Connection, at_work: str, event_id: str
) -> set[str]:
    """Upgrade to ``target`` while ``holder``'s transaction is open on billing_event; once
    ``at_work`` is true, insert ``event_id`` (short lock timeout), end ``holder``; return
    the event ids billing_event holds after the upgrade."""
    with ThreadPoolExecutor(1) as pool:
        upgrade = pool.submit(migrations.upgrade, url, target)
        try:
            _wait_until(url, at_work)
            _insert_with_short_lock_timeout(url, event_id)
        finally:
            holder.commit()
        upgrade.result(timeout=GUARD_SECONDS)
    holder.close()
    with psycopg.connect(url) as conn:
        return {event for (event,) in conn.execute("SELECT event_id FROM billing_event")}


@pytest.mark.parametrize(
    "start, target", [(None, "0001"), ("0002", "0003"), ("0008", "0009"), ("0011", "0012")]
)
def test_inserts_into_billing_event_proceed_while_an_index_on_it_is_built(
    empty_database_url: str, start: str | None, target: str
) -> None:
    url = empty_database_url
    with psycopg.connect(url) as conn:
        conn.execute(UPSTREAM_BILLING_EVENT)
    if start:
        migrations.upgrade(url, start)
    writer = _upstream_table_with_a_writer_in_flight(url)
    events = _insert_during_upgrade(
        url, target, writer, AT_WORK_ON_BILLING_EVENT, "during-the-build"
    )
    assert migrations.revision_of(url) == target
    with psycopg.connect(url) as conn:
        indexes = conn.execute(BILLING_EVENT_INDEXES).fetchall()
    assert events == {"in-flight", "during-the-build"}
    assert all(valid for _, valid, _, _ in indexes)


DROPPING_AN_INDEX_OF_BILLING_EVENT = """
SELECT EXISTS (
    SELECT 1 FROM pg_stat_activity
    WHERE datname = current_database() AND wait_event IS NOT NULL
      AND query ILIKE 'DROP INDEX%%billing_event%%'
)
"""


def test_inserts_into_billing_event_proceed_while_an_index_on_it_is_dropped(
    empty_database_url: str,
) -> None:
    """Revision 0012 replaces an index: its drop waits for upstream's readers as its build
    waits for writers, and no insert queues behind it (DROP INDEX CONCURRENTLY)."""
    url = empty_database_url
    migrations.upgrade(url, "0011")
    reader = psycopg.connect(url)
    reader.execute(HOLD_BILLING_EVENT)
    dropping = DROPPING_AN_INDEX_OF_BILLING_EVENT
    assert _insert_during_upgrade(url, "0012", reader, dropping, "during-the-drop") == {
        "during-the-drop"
    }


def test_the_upgrade_lock_is_held_by_its_session_across_revisions_and_released_at_the_end(
    empty_database_url: str,
) -> None:
    """Each revision commits on its own (a build runs in no transaction at all), yet no
    second upgrade can take the lock until the last revision is done."""
    url = empty_database_url
    with psycopg.connect(url) as conn:
        conn.execute(UPSTREAM_BILLING_EVENT)
    writer = _upstream_table_with_a_writer_in_flight(url)
    with ThreadPoolExecutor(1) as pool, psycopg.connect(url, autocommit=True) as other:
        upgrade = pool.submit(migrations.upgrade, url)
        try:
            _wait_until(url, AT_WORK_ON_BILLING_EVENT)
            taken_mid_upgrade = other.execute(TRY_MIGRATION_LOCK).fetchone()[0]  # type: ignore[index]
            if taken_mid_upgrade:
                other.execute(RELEASE_MIGRATION_LOCK)
        finally:
            writer.commit()
        upgrade.result(timeout=GUARD_SECONDS)
        taken_after = other.execute(TRY_MIGRATION_LOCK).fetchone()[0]  # type: ignore[index]
    writer.close()
    assert not taken_mid_upgrade
    assert taken_after
    assert migrations.revision_of(url) == migrations.head_revision()


def test_an_upgrade_started_during_another_waits_for_it_and_says_it_applied_nothing(
    empty_database_url: str,
) -> None:
    """A concurrent build waits for every transaction with an older snapshot; the second
    upgrade must not sit in one while it waits for the first's lock (a deadlock). It then
    finds the first's work done, and says so rather than claim it. The second is another
    process: Alembic's ``op`` and ``context`` are globals of the process."""
    url = empty_database_url
    with psycopg.connect(url) as conn:
        conn.execute(UPSTREAM_BILLING_EVENT)
    writer = _upstream_table_with_a_writer_in_flight(url)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(migrations.upgrade, url)
        try:
            _wait_until(url, AT_WORK_ON_BILLING_EVENT)
            second = subprocess.Popen(
                [sys.executable, "-m", "rating_pipeline", "db", "upgrade"],
                env={**os.environ, DATABASE_URL_VARIABLE: url},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            _wait_until(url, SECOND_UPGRADE_AT_THE_LOCK)
        finally:
            writer.commit()
        assert "upgraded from base" in first.result(timeout=GUARD_SECONDS)
        out, err = second.communicate(timeout=GUARD_SECONDS)
    writer.close()
    head = migrations.head_revision()
    assert second.returncode == 0 and f"already at revision {head} (head)" in out, (out, err)
    with psycopg.connect(url) as conn:
        assert all(valid for _, valid, _, _ in conn.execute(BILLING_EVENT_INDEXES))


def test_a_failed_revision_leaves_the_revisions_before_it_committed(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE rating_log (in_the_way integer)")
    with pytest.raises(Exception, match="rating_log"):
        migrations.upgrade(url)
    assert migrations.revision_of(url) == "0001"
    assert _tables(url) == {"billing_event", "rating_log"}


# A concurrent build that failed (here on a uniqueness it could not have) leaves its index
# behind, INVALID: never used by a query, yet still paid for by every insert.
FAILED_BUILDS = {
    "billing_event_occurred_at_idx": (
        None,
        "0001",
        "CREATE UNIQUE INDEX CONCURRENTLY billing_event_occurred_at_idx "
        "ON billing_event (occurred_at)",
        "USING btree (occurred_at)",
    ),
    "billing_event_negative_tokens_idx": (
        "0002",
        "0003",
        "CREATE UNIQUE INDEX CONCURRENTLY billing_event_negative_tokens_idx "
        "ON billing_event (occurred_at) WHERE input_tokens < 0",
        "WHERE ((input_tokens < 0) OR (output_tokens < 0))",
    ),
    "billing_event_negative_tokens_next_idx": (
        "0008",
        "0009",
        "CREATE UNIQUE INDEX CONCURRENTLY billing_event_negative_tokens_next_idx "
        "ON billing_event (occurred_at) WHERE input_tokens < 0",
        "OR (image_input_tokens < 0))",
    ),
}
OUR_INDEXES = {
    "billing_event_pkey",
    "billing_event_occurred_at_idx",
    "billing_event_ingested_at_idx",
    "billing_event_negative_tokens_idx",
}


@pytest.mark.parametrize("left_by_a_failed_build", sorted(FAILED_BUILDS))
def test_an_invalid_index_left_by_a_failed_concurrent_build_is_dropped_and_built_again(
    empty_database_url: str, left_by_a_failed_build: str
) -> None:
    url = empty_database_url
    start, target, failed_build, definition = FAILED_BUILDS[left_by_a_failed_build]
    with psycopg.connect(url) as conn:
        conn.execute(UPSTREAM_BILLING_EVENT)
    if start:
        migrations.upgrade(url, start)
    with psycopg.connect(url, autocommit=True) as conn:
        for event_id in ("e1", "e2"):
            conn.execute(INSERT_EVENT, {"event_id": event_id, "tokens": -1})
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(failed_build)
    migrations.upgrade(url, target)
    with psycopg.connect(url) as conn:
        indexes = {name: rest for name, *rest in conn.execute(BILLING_EVENT_INDEXES)}
    assert set(indexes) <= OUR_INDEXES, indexes
    assert all(valid for valid, _, _ in indexes.values()), indexes
    built = "billing_event_negative_tokens_idx" if target == "0009" else left_by_a_failed_build
    _, unique, built_as = indexes[built]
    assert not unique and built_as.endswith(definition), built_as


def test_an_invalid_upstream_index_does_not_stand_in_for_one_leading_with_the_column(
    empty_database_url: str,
) -> None:
    """Upstream's own failed build is not ours to drop, and serves no query."""
    url = empty_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(UPSTREAM_BILLING_EVENT)
        for event_id in ("e1", "e2"):
            conn.execute(INSERT_EVENT, {"event_id": event_id, "tokens": 1})
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "CREATE UNIQUE INDEX CONCURRENTLY upstream_occurred ON billing_event (occurred_at)"
            )
    migrations.upgrade(url, "0001")
    with psycopg.connect(url) as conn:
        indexes = {name: valid for name, valid, _, _ in conn.execute(BILLING_EVENT_INDEXES)}
    assert indexes == {
        "billing_event_pkey": True,
        "upstream_occurred": False,
        "billing_event_occurred_at_idx": True,
        "billing_event_ingested_at_idx": True,
    }


@pytest.mark.parametrize(
    "upstream_index",
    [
        "CREATE INDEX upstream_occurred ON billing_event (occurred_at) "
        "WHERE occurred_at > '2030-01-01'",
        "CREATE INDEX upstream_occurred ON billing_event USING hash (occurred_at)",
    ],
)
def test_an_upstream_index_no_window_read_can_use_does_not_stand_in_for_ours(
    empty_database_url: str, upstream_index: str
) -> None:
    """A partial index serves only the rows of its predicate and a hash index no range: a
    window's read of [start, end) can use neither, so with either standing in every rating
    scanned the whole table. Found by a review of upstream's shapes."""
    url = empty_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(UPSTREAM_BILLING_EVENT)
        conn.execute(upstream_index)
    migrations.upgrade(url, "0001")
    with psycopg.connect(url) as conn:
        indexes = {name: valid for name, valid, _, _ in conn.execute(BILLING_EVENT_INDEXES)}
    assert indexes.get("billing_event_occurred_at_idx") is True, indexes


def test_adding_the_class_columns_gives_up_cleanly_while_billing_event_is_locked(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ALTER waits at most lock_timeout per attempt (inserts queue behind it only that
    long), a bounded number of times; giving up leaves the database at 0007, untouched."""
    url = empty_database_url
    monkeypatch.setattr(online_ddl, "LOCK_TIMEOUT", "50ms")
    monkeypatch.setattr(online_ddl, "LOCK_ATTEMPTS", 3)
    monkeypatch.setattr(online_ddl, "FIRST_BACKOFF_SECONDS", 0.01)
    migrations.upgrade(url, "0007")
    before = _snapshot(url)
    reader = psycopg.connect(url)
    reader.execute("SELECT count(*) FROM billing_event")  # ACCESS SHARE until it ends
    with ThreadPoolExecutor(1) as pool:
        upgrade = pool.submit(migrations.upgrade, url)
        try:
            with pytest.raises(online_ddl.LockNotGranted) as refused:
                upgrade.result(timeout=GUARD_SECONDS)
        finally:
            reader.rollback()
    reader.close()
    message = str(refused.value)
    assert "billing_event" in message and "3 attempts" in message
    assert "nothing was changed" in message and "0007" in message
    assert migrations.revision_of(url) == "0007"
    assert _snapshot(url) == before

    migrations.upgrade(url)
    assert migrations.revision_of(url) == migrations.head_revision()


def test_adding_the_class_columns_takes_the_lock_freed_before_its_last_attempt(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LOCK_ATTEMPTS attempts, with a pause between each two: a reader that ends during the
    last pause holds the upgrade back no further."""
    url = empty_database_url
    monkeypatch.setattr(online_ddl, "LOCK_TIMEOUT", "50ms")
    monkeypatch.setattr(online_ddl, "LOCK_ATTEMPTS", 3)
    migrations.upgrade(url, "0007")
    reader = psycopg.connect(url)
    reader.execute("SELECT count(*) FROM billing_event")  # ACCESS SHARE until it ends
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == online_ddl.LOCK_ATTEMPTS - 1:
            reader.rollback()

    monkeypatch.setattr(online_ddl, "time", SimpleNamespace(sleep=pause))
    with ThreadPoolExecutor(1) as pool:
        upgrade = pool.submit(migrations.upgrade, url, "0008")
        try:
            upgrade.result(timeout=GUARD_SECONDS)
        finally:
            reader.rollback()
    reader.close()
    assert pauses == [online_ddl.FIRST_BACKOFF_SECONDS, 2 * online_ddl.FIRST_BACKOFF_SECONDS]
    assert migrations.revision_of(url) == "0008"


HOLD_BILLING_EVENT = "SELECT count(*) FROM billing_event"  # ACCESS SHARE until it ends
# Refused at once while any lock is held: one lock timeout, without waiting one out.
LOCK_BILLING_EVENT_NOWAIT = "LOCK TABLE billing_event IN ACCESS EXCLUSIVE MODE NOWAIT"


def test_a_lock_never_granted_is_given_up_after_the_documented_attempts_and_pauses(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/warehouse.md: lock_timeout 2 s, up to 6 attempts, pausing 1, 2, 4, 8 and 16 s
    between them; inserts wait at most 2 s at a time, the revision gives up within 43 s."""
    pauses: list[float] = []
    monkeypatch.setattr(online_ddl, "time", SimpleNamespace(sleep=pauses.append))
    engine = sqlalchemy.create_engine(
        "postgresql+psycopg://",
        creator=lambda: psycopg.connect(database_url),
        poolclass=NullPool,
    )
    with psycopg.connect(database_url) as reader:
        reader.execute(HOLD_BILLING_EVENT)
        with engine.connect() as bind, pytest.raises(online_ddl.LockNotGranted) as refused:
            online_ddl.with_lock_timeout(
                bind.execution_options(isolation_level="AUTOCOMMIT"),
                LOCK_BILLING_EVENT_NOWAIT,
                "billing_event",
                "locking billing_event",
            )
    engine.dispose()
    assert pauses == [1, 2, 4, 8, 16]
    assert str(refused.value).startswith(
        "locking billing_event: 6 attempts under lock_timeout 2s each found another "
        "transaction holding a lock on billing_event"
    )


WAITING_ON_RATED_USAGE = """
SELECT EXISTS (
    SELECT 1 FROM pg_locks
    WHERE relation = to_regclass('rated_usage') AND NOT granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
)
"""


def test_the_lock_timeout_on_billing_event_binds_its_own_statement_alone(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lock_timeout is set for the billing_event ALTER's own transaction: the outputs' DDL
    of the same revision, on the project's own tables, waits out a reader of them."""
    url = empty_database_url
    monkeypatch.setattr(online_ddl, "LOCK_TIMEOUT", "50ms")
    migrations.upgrade(url, "0007")
    reader = psycopg.connect(url)
    reader.execute("SELECT count(*) FROM rated_usage")  # ACCESS SHARE until it ends
    with ThreadPoolExecutor(1) as pool, psycopg.connect(url, autocommit=True) as watcher:
        upgrade = pool.submit(migrations.upgrade, url, "0008")
        try:
            for _ in range(int(GUARD_SECONDS / 0.02)):
                if upgrade.done() or watcher.execute(WAITING_ON_RATED_USAGE).fetchone()[0]:  # type: ignore[index]
                    break
                time.sleep(0.02)
            time.sleep(0.2)  # past the lock_timeout: it must wait on, not fail
        finally:
            reader.rollback()
        upgrade.result(timeout=GUARD_SECONDS)
    reader.close()
    assert migrations.revision_of(url) == "0008"


NEGATIVE_TOKENS_INDEX = "SELECT pg_get_indexdef('billing_event_negative_tokens_idx'::regclass)"


def _negative_tokens_index(url: str) -> str:
    with psycopg.connect(url) as conn:
        return str(conn.execute(NEGATIVE_TOKENS_INDEX).fetchone()[0])  # type: ignore[index]


def test_the_negative_tokens_index_covers_every_class_at_head_and_below_0012(
    empty_database_url: str,
) -> None:
    """0012's covers null counts of every class too; 0009's, which 0012's downgrade
    restores exactly, negative counts of every class."""
    url = empty_database_url
    migrations.upgrade(url, "0011")
    built = _negative_tokens_index(url)
    migrations.upgrade(url)
    at_head = _negative_tokens_index(url)
    assert at_head.endswith("IS NOT TRUE)"), at_head
    for token_class in ("input", "output", *NEW_CLASSES):
        assert f"({token_class}_tokens >= 0)" in at_head, at_head
    migrations.downgrade(url, "0011")
    assert _negative_tokens_index(url) == built
    assert "IS NOT TRUE" not in built
    for token_class in ("input", "output", *NEW_CLASSES):
        assert f"({token_class}_tokens < 0)" in built, built


def test_an_upstream_billing_event_with_some_class_columns_gets_only_the_absent_ones(
    empty_database_url: str,
) -> None:
    """Contract 3: on an existing table only the absent class columns and service_tier are
    added. Upstream's own cache_read_tokens and service_tier, and their values, are kept."""
    url = empty_database_url
    with psycopg.connect(url) as conn:
        conn.execute(UPSTREAM_BILLING_EVENT)
        conn.execute(
            "ALTER TABLE billing_event ADD COLUMN cache_read_tokens bigint NOT NULL DEFAULT 0, "
            "ADD COLUMN service_tier text NULL"
        )
        conn.execute(
            "INSERT INTO billing_event (event_id, auth_id, model_id, input_tokens, "
            "output_tokens, cache_read_tokens, service_tier, occurred_at) "
            "VALUES ('e1', 'a', 'm', 1, 2, 7, 'batch', now())"
        )
    migrations.upgrade(url)
    assert migrations.revision_of(url) == migrations.head_revision()
    with psycopg.connect(url) as conn:
        names = [f"{c}_tokens" for c in NEW_CLASSES] + ["service_tier"]
        columns = conn.execute(EVENT_COLUMN_TYPES, {"names": names}).fetchall()
        row = conn.execute(
            "SELECT cache_read_tokens, cache_write_tokens, image_input_tokens, service_tier "
            "FROM billing_event"
        ).fetchone()
    assert sorted(columns) == sorted(
        [(f"{c}_tokens", "bigint", True, "0") for c in NEW_CLASSES]
        + [("service_tier", "text", False, None)]
    )
    assert row == (7, 0, 0, "batch")


def test_0008_gathers_statistics_on_billing_events_service_tier_at_once(
    empty_database_url: str,
) -> None:
    """docs/warehouse.md: the ANALYZE billing_event (service_tier) that follows the ALTER
    gives the planner the new column's statistics before the first rating groups by it."""
    url = empty_database_url
    migrations.upgrade(url, "0007")
    with psycopg.connect(url) as conn:
        for event_id in ("e1", "e2", "e3"):
            conn.execute(INSERT_EVENT, {"event_id": event_id, "tokens": 1})
    migrations.upgrade(url, "0008")
    with psycopg.connect(url) as conn:
        stats = conn.execute(
            "SELECT null_frac FROM pg_stats "
            "WHERE tablename = 'billing_event' AND attname = 'service_tier'"
        ).fetchall()
    assert stats == [(1.0,)]


def test_revision_0011_refuses_on_its_own_a_downgrade_that_would_drop_a_close(
    database_url: str,
) -> None:
    """0011's downgrade checks again, in its own transaction, before it drops its tables: a
    close is history, kept even where the downgrade reached it without the checks first."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO rating_period_close (closed_through, closed_at, closed_by) "
            "VALUES ('2026-06-15 12:00Z', now(), 'test')"
        )
    with pytest.raises(
        RatingPipelineError, match="below revision 0011: 1 rating_period_close row;"
    ):
        migrations._run(database_url, command.downgrade, "0010")
    assert migrations.revision_of(database_url) == "0011"
    assert migrations.rated_rows(database_url)["rating_period_close"] == 1


def test_a_downgrade_below_0009_restores_the_negative_tokens_index_of_0003(
    empty_database_url: str,
) -> None:
    """0009's downgrade restores exactly 0003's narrower index, as 0012's restores 0009's."""
    url = empty_database_url
    migrations.upgrade(url, "0008")
    built = _negative_tokens_index(url)
    migrations.upgrade(url)
    migrations.downgrade(url, "0008")
    assert _negative_tokens_index(url) == built
    assert built.endswith("WHERE ((input_tokens < 0) OR (output_tokens < 0))"), built


# One row the docs' checks on rated_usage rule out, each breaking one check alone.
RATED_USAGE_RULED_OUT = [
    ("cache_read_tokens = 5", "rated_usage_priced_classes_have_rates"),
    (
        "image_input_tokens = 1000000, image_input_rate_per_mtok = 1",
        "rated_usage_cost_reconstructs",
    ),
    ("cache_read_rate_per_mtok = -1", "rated_usage_classes_not_negative"),
    (
        "audio_output_tokens = -1000000, audio_output_rate_per_mtok = 0",
        "rated_usage_classes_not_negative",
    ),
    ("context_tier = 'short'", "rated_usage_tiers_known"),
    ("event_count = 0", "rated_usage_amounts_not_negative"),  # a rollup holds an event
]


def test_a_close_through_an_instant_after_it_was_made_is_refused(database_url: str) -> None:
    """No close reaches past its own moment (contract 10): the table refuses it too."""
    with (
        psycopg.connect(database_url) as conn,
        pytest.raises(
            psycopg.errors.CheckViolation, match="rating_period_close_before_it_was_made"
        ),
    ):
        conn.execute(
            "INSERT INTO rating_period_close (closed_through, closed_at, closed_by) "
            "VALUES ('2030-01-01 00:00Z', '2026-06-15 12:00Z', 'ops')"
        )


@pytest.mark.parametrize("ruled_out, check", RATED_USAGE_RULED_OUT)
def test_rated_usage_refuses_a_row_its_documented_checks_rule_out(
    database_url: str, ruled_out: str, check: str
) -> None:
    """docs/warehouse.md: tiers are known; tokens and rates are not negative; a class with
    tokens has a rate; cost_usd * 1000000 is the sum over every class of tokens * rate."""
    with psycopg.connect(database_url) as conn:
        conn.execute(ROW_AT_HEAD)
        with pytest.raises(psycopg.errors.CheckViolation, match=check):
            conn.execute(sql.SQL("UPDATE rated_usage SET {}").format(sql.SQL(ruled_out)))


EXCEPTION_AT_HEAD = """
INSERT INTO rating_exception (
    window_start, window_end, auth_id, model_id, service_tier, context_tier, reason, detail,
    event_count, input_tokens, output_tokens, pricebook_version, rated_at, run_id
) VALUES (
    '2026-06-15 10:00Z', '2026-06-15 11:00Z', 'org-1', %(model)s, %(service)s, %(context)s,
    %(reason)s, 'x', 1, 5, 6, 'v1', now(), 'run-1'
)
"""


@pytest.mark.parametrize(
    "reason, service, context",
    [("invalid_event", "standard", "-"), ("invalid_event", "-", "standard"),
     ("unpriced", "-", "-")],
)  # fmt: skip
def test_only_invalid_event_exceptions_carry_the_dash_tiers(
    database_url: str, reason: str, service: str, context: str
) -> None:
    """docs/warehouse.md: an invalid_event row carries '-' for both tiers; any other row
    carries its rollup's known tiers."""
    refused = pytest.raises(psycopg.errors.CheckViolation, match="rating_exception_tiers_known")
    with psycopg.connect(database_url) as conn, refused:
        conn.execute(
            EXCEPTION_AT_HEAD,
            {"model": "m", "service": service, "context": context, "reason": reason},
        )


def test_the_exception_key_is_window_auth_model_both_tiers_and_reason(database_url: str) -> None:
    """An unpriced rollup of the standard context and one of the long context are two rows."""
    with psycopg.connect(database_url) as conn:
        for context in ("standard", "long"):
            conn.execute(
                EXCEPTION_AT_HEAD,
                {"model": "m", "service": "batch", "context": context, "reason": "unpriced"},
            )
        key = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conname = 'rating_exception_pkey'"
        ).fetchone()
    assert key == (
        "PRIMARY KEY (window_start, auth_id, model_id, service_tier, context_tier, reason)",
    )


def test_our_invalid_index_left_by_a_failed_build_goes_even_where_upstreams_stands_in(
    empty_database_url: str,
) -> None:
    """0001: upstream's valid index leads with occurred_at, so none of ours is built; the
    invalid one a failed build of ours left, paid for by every insert, is dropped all the
    same."""
    url = empty_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(UPSTREAM_BILLING_EVENT)
        conn.execute("CREATE INDEX upstream_occurred ON billing_event (occurred_at)")
        for event_id in ("e1", "e2"):
            conn.execute(INSERT_EVENT, {"event_id": event_id, "tokens": 1})
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(FAILED_BUILDS["billing_event_occurred_at_idx"][2])
    migrations.upgrade(url, "0001")
    with psycopg.connect(url) as conn:
        indexes = {name: valid for name, valid, _, _ in conn.execute(BILLING_EVENT_INDEXES)}
    assert indexes == {
        "billing_event_pkey": True,
        "upstream_occurred": True,
        "billing_event_ingested_at_idx": True,
    }


def test_a_downgrade_never_drops_rows_a_rating_committed_while_it_was_under_way(
    database_url: str,
) -> None:
    """`db downgrade` refuses "while any table it would drop holds rows" (docs/warehouse.md).
    It counts them once, before its first revision, yet the warehouse stays at the head until
    that revision commits: 0012's downgrade first rebuilds the negative-tokens index
    concurrently (minutes on a large billing_event), and the hourly rating goes on meanwhile.
    Rows it commits then must stop the downgrade, not be dropped with rated_usage."""
    url = database_url
    _insert_with_short_lock_timeout(url, "arrived-before-the-downgrade")
    writer = _upstream_table_with_a_writer_in_flight(url)
    with ThreadPoolExecutor(1) as pool:
        downgrade = pool.submit(migrations.downgrade, url)
        try:
            _wait_until(url, AT_WORK_ON_BILLING_EVENT)
            with database.connect(url) as conn:
                database.require_schema(conn)  # still at the head: ratings are not refused
                version = make_version({"m": own("1", "1")})
                window = Window.from_key("2026-06-15-10:00")
                rating = rate_window(conn, window, Pricebooks((version,)), "mid-downgrade")
            assert rating.usage.inserted == 1
        finally:
            writer.commit()
        with pytest.raises(migrations.DowngradeRefused, match="1 rated_usage row"):
            downgrade.result(timeout=GUARD_SECONDS)
    writer.close()
    with psycopg.connect(url) as conn:
        kept = conn.execute("SELECT count(*) FROM rated_usage").fetchone()[0]  # type: ignore[index]
    assert kept == 1


@pytest.mark.parametrize(
    "command",
    [
        ["db", "current"],
        ["db", "upgrade"],
        ["db", "downgrade"],
        ["rate", "--from", "2026-06-15T10:00Z", "--to", "2026-06-15T11:00Z"],
    ],
)
def test_a_statement_the_database_refuses_before_any_revision_fails_in_one_line(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    """Each command "prints one line, a failure too" (docs/warehouse.md), and the CLI turns
    expected failures into one clean line. A role that may not read the warehouse's tables
    (a read-only or monitoring role, or a rater role before its grants) is refused by the
    database in the checks that run before any revision or window: the refusal, naming the
    table, must be that one line, not a traceback."""
    role = f"no_grants_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        monkeypatch.setenv(DATABASE_URL_VARIABLE, make_conninfo(database_url, user=role))
        assert cli.main(command) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and "permission denied" in err
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


CLOSE_ROW = """
INSERT INTO rating_period_close (closed_through, closed_at, closed_by)
VALUES ('2026-06-15 11:00Z', now(), 'ops')
"""
WAITING_ON = """
SELECT count(*) FROM pg_locks
WHERE NOT granted AND locktype = 'relation' AND relation = to_regclass(%s)
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


WAITING_FOR_TABLES = """
SELECT count(DISTINCT pid) FROM pg_locks
WHERE NOT granted AND locktype = 'relation'
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def downgrade_past_a_commit(database_url: str, write: str, table: str, target: str) -> str:
    """``migrations.downgrade`` to ``target`` with ``write`` in flight, committed once the
    downgrade waits for a lock on ``table``: what the downgrade returns, or raises."""
    writing = psycopg.connect(database_url)
    writing.execute(write)
    with ThreadPoolExecutor(1) as pool, psycopg.connect(database_url, autocommit=True) as look:
        downgrading = pool.submit(migrations.downgrade, database_url, target)
        deadline = time.monotonic() + GUARD_SECONDS  # only against a hang
        try:
            while look.execute(WAITING_ON, (table,)).fetchone() == (0,):
                assert not downgrading.done() and time.monotonic() < deadline, "never waited"
                time.sleep(0.05)
        finally:
            writing.commit()
            writing.close()
        return downgrading.result(timeout=120)


def test_a_close_committed_while_a_downgrade_runs_is_counted_under_its_lock_and_kept(
    database_url: str,
) -> None:
    """Contract 10, no reopen: the downgrade below 0011 counts its tables again under the
    lock its drop takes. A close in flight when the downgrade first counted, committed
    while it waited, was dropped with the downgrade reporting success. Found by a review."""
    with pytest.raises(RatingPipelineError, match="1 rating_period_close row"):
        downgrade_past_a_commit(database_url, CLOSE_ROW, "rating_period_close", "0010")
    assert migrations.rated_rows(database_url)["rating_period_close"] == 1
    assert migrations.revision_of(database_url) == "0011"


def test_a_batch_row_committed_while_a_downgrade_to_0007_runs_is_counted_and_kept(
    database_url: str,
) -> None:
    """The same for 0008's refusal: a rating committing a batch rollup while the downgrade
    waited for its lock would lose its tier unseen."""
    batch_row = ROW_AT_HEAD.replace("'standard', 'standard'", "'batch', 'standard'")
    with pytest.raises(RatingPipelineError, match="1 rated_usage row"):
        downgrade_past_a_commit(database_url, batch_row, "rated_usage", "0007")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT service_tier FROM rated_usage").fetchall() == [("batch",)]


def test_a_late_window_row_committed_while_a_downgrade_to_0009_runs_is_counted_and_kept(
    database_url: str,
) -> None:
    """Revision 0010's own refusal, under the lock its drop takes."""
    with pytest.raises(RatingPipelineError, match="1 late_window row"):
        downgrade_past_a_commit(database_url, LATE_WINDOW_ROW, "late_window", "0009")
    assert migrations.rated_rows(database_url)["late_window"] == 1


def test_a_rating_log_row_committed_while_a_downgrade_to_base_runs_is_counted_and_kept(
    database_url: str,
) -> None:
    """Revision 0002's refusal covers every table it drops, the log as much as the rows."""
    with psycopg.connect(database_url) as conn:
        conn.execute(INSERT_EVENT, {"event_id": "e1", "tokens": 1000})
    with database.connect(database_url) as conn:
        version = make_version({"m": own("1", "1")})
        rate_window(conn, Window.from_key("2026-06-15-10:00"), Pricebooks((version,)), "r")
    with psycopg.connect(database_url) as conn:  # the log row, set aside as in flight
        conn.execute("CREATE TABLE logged AS SELECT * FROM rating_log")
        conn.execute("TRUNCATE rated_usage, rating_exception, rating_log")
    in_flight = "INSERT INTO rating_log SELECT * FROM logged"
    with pytest.raises(RatingPipelineError, match="1 rating_log row"):
        downgrade_past_a_commit(database_url, in_flight, "rating_log", migrations.BASE)
    assert migrations.rated_rows(database_url)["rating_log"] == 1


def test_a_downgrade_locks_the_close_mark_first_as_closes_and_builds_read_it_first(
    database_url: str,
) -> None:
    """A close or an invoice build reads rating_period_close, then writes the tables 0011
    creates: a downgrade locking it last held those while it waited for it, a deadlock.
    Found by an audit of the locks."""
    engine = sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(database_url), poolclass=NullPool
    )
    statements: list[str] = []
    with engine.connect() as bind, bind.begin():
        sqlalchemy.event.listen(
            bind, "before_cursor_execute", lambda *args: statements.append(args[2])
        )
        locked = migrations.lock_tables(
            bind, ("invoice_line", "rating_adjustment", "rating_period_close")
        )

    assert locked[0] == "rating_period_close"
    assert [s for s in statements if s.startswith("LOCK")] == [
        "LOCK TABLE rating_period_close, invoice_line, rating_adjustment IN ACCESS EXCLUSIVE MODE"
    ]


def test_a_downgrade_dropping_rated_data_waits_for_a_close_in_flight_instead_of_deadlocking(
    database_url: str,
) -> None:
    """--drop-rated-data empties the tables before it undoes any revision. Its TRUNCATEs
    locked rating_period_close last: a close in flight (which read the mark, and writes
    late_window and the rest next) waited for a table the downgrade held while the
    downgrade waited for the mark, a deadlock. Found by an audit of interrupted closes."""
    with psycopg.connect(database_url) as conn:
        conn.execute(INSERT_EVENT, {"event_id": "e1", "tokens": 1000})
    with database.connect(database_url) as conn:
        version = make_version({"m": own("1", "1")})
        rate_window(conn, Window.from_key("2026-06-15-10:00"), Pricebooks((version,)), "r")
    with psycopg.connect(database_url) as conn:  # a late event: the close records its window
        conn.execute(INSERT_EVENT, {"event_id": "e2", "tokens": 1000})

    def close() -> PeriodClose:
        with database.connect(database_url) as conn:
            return close_period(conn, datetime(2026, 6, 15, 11, tzinfo=UTC), "ops")

    def wait_until_waiting(sessions: int, look: psycopg.Connection) -> None:
        deadline = time.monotonic() + GUARD_SECONDS  # only against a hang
        while look.execute(WAITING_FOR_TABLES).fetchone() != (sessions,):
            assert time.monotonic() < deadline, f"never {sessions} session(s) waiting"
            time.sleep(0.05)

    blocker = psycopg.connect(database_url)
    blocker.execute("LOCK TABLE late_window IN SHARE MODE")  # holds the close at its insert
    with ThreadPoolExecutor(2) as pool, psycopg.connect(database_url, autocommit=True) as look:
        try:
            closing = pool.submit(close)
            wait_until_waiting(1, look)
            downgrading = pool.submit(migrations.downgrade, database_url, migrations.BASE, True)
            wait_until_waiting(2, look)  # on late_window, or on the mark the close holds
        finally:
            blocker.rollback()
            blocker.close()
        assert closing.result(timeout=120).closed_through == datetime(2026, 6, 15, 11, tzinfo=UTC)
        assert "to base" in downgrading.result(timeout=120)


@pytest.mark.parametrize(
    ("upstream", "told"),
    [
        (
            "CREATE TABLE billing_event (event_id text PRIMARY KEY, auth_id text NOT NULL,"
            " model_id text NOT NULL, base_model text, input_tokens text NOT NULL,"
            " output_tokens bigint NOT NULL, occurred_at timestamptz NOT NULL,"
            " ingested_at timestamptz NOT NULL DEFAULT now())",
            "billing_event.input_tokens is text",
        ),
        (
            "CREATE VIEW billing_event AS SELECT 'e'::text AS event_id, 'a'::text AS auth_id,"
            " 'm'::text AS model_id, NULL::text AS base_model, 1::bigint AS input_tokens,"
            " 1::bigint AS output_tokens, now() AS occurred_at, now() AS ingested_at",
            "views",
        ),
    ],
)
def test_an_upgrade_stopped_by_upstreams_billing_event_says_what_of_it(
    empty_database_url: str, upstream: str, told: str
) -> None:
    """Found by an audit: the revision's bare database error was all a user saw, and the
    refusal that names the column came only after an upgrade that succeeded."""
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute(upstream)
    with pytest.raises(migrations.MigrationFailed) as failed:
        migrations.upgrade(empty_database_url)
    assert told in str(failed.value)


def test_an_upgrade_failing_before_any_billing_event_exists_says_nothing_of_one(
    empty_database_url: str,
) -> None:
    """A role that may not create tables fails the first revision: no billing_event exists,
    so the error must not say it lacks every column. Found by a second reading."""
    role = f"rating_no_create_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(empty_database_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}")
    try:
        with pytest.raises(migrations.MigrationFailed) as failed:
            migrations.upgrade(make_conninfo(empty_database_url, user=role))
        assert "InsufficientPrivilege" in str(failed.value)
        assert "billing_event" not in str(failed.value)
    finally:
        with psycopg.connect(empty_database_url, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def test_an_upgrade_against_a_read_only_session_says_so_and_where_to_go(
    empty_database_url: str,
) -> None:
    """A standby, or a role with default_transaction_read_only: the first revision's own
    message names a statement (`cannot execute CREATE TABLE`), not the cause."""
    read_only = make_conninfo(empty_database_url, options="-c default_transaction_read_only=on")
    with pytest.raises(migrations.MigrationFailed) as failed:
        migrations.upgrade(read_only)
    assert "the session is read-only" in str(failed.value), failed.value
    assert "the warehouse is at revision base" in str(failed.value)
