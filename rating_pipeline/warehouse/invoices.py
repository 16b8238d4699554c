"""Invoice lines (contract section 11): one month's usage and adjustment lines per account.

A line is (account, kind, model, tiers, token class, rate) with a non-zero quantity; its
``amount_exact`` is exact and its ``amount`` is that rounded half-even to cents, the one
rounding point of an invoice. Building a month converges its lines like a rating converges
a window (an identical rebuild writes nothing). A wholly closed month is frozen: its lines
were built by the close that closed it, and a build leaves them as they are.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import itertools
import os
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg.pq import TransactionStatus

from rating_pipeline.errors import RatingPipelineError, first_named, shown
from rating_pipeline.money import EXACT, exact_sum
from rating_pipeline.warehouse.close_mark import (
    begin_read_committed,
    close_mark,
    lock_periods,
    next_month,
    wholly_closed,
)
from rating_pipeline.warehouse.database import database_clock
from rating_pipeline.warehouse.sqlfiles import load_sql

# Ratings never take it: builds of one month serialize on (INVOICE_NAMESPACE, month key).
INVOICE_NAMESPACE = 0x494E5643  # "INVC"
EXPORT_NAMESPACE = 0x45585054  # "EXPT"
LOCK_MONTH = "SELECT pg_advisory_xact_lock(%(namespace)s, %(key)s)"
STILL_CONNECTED = "SELECT 1"  # fails once the session, and with it the export lock, is gone
LINE_COLUMNS = (
    "month", "account_id", "kind", "model_id", "service_tier", "context_tier", "token_class",
    "unit_rate_per_mtok", "quantity_tokens", "amount_exact", "amount", "built_at", "run_id",
)  # fmt: skip
SELECT_LINES = (
    f"SELECT {', '.join(LINE_COLUMNS)} FROM invoice_line WHERE month = %(month)s "
    'ORDER BY account_id COLLATE "C", kind COLLATE "C", model_id COLLATE "C", '
    'service_tier COLLATE "C", context_tier COLLATE "C", token_class COLLATE "C", '
    "unit_rate_per_mtok"
)
MONTH_TEXT = re.compile(r"(?P<year>[0-9]{4})-(?P<month>0[1-9]|1[0-2])")
TOTAL_KIND = "total"
RESIDUAL = "residual"  # on the total row only: the invoice total minus the exact sum
CSV_LINE_END = "\r\n"
FILE_COLUMNS = (*LINE_COLUMNS, RESIDUAL)
MONTH_AT, ACCOUNT_AT, KIND_AT = (LINE_COLUMNS.index(c) for c in ("month", "account_id", "kind"))
EXACT_AT, AMOUNT_AT = LINE_COLUMNS.index("amount_exact"), LINE_COLUMNS.index("amount")
LINES_PER_FETCH = 10_000
FILES_NAMED = 10  # how many of a month's standing files a refusal names
# A file name holds 255 bytes; a longer percent-encoded account id keeps this much of its
# encoding, then the sha256 of the whole id.
MAX_FILE_NAME_BYTES = 255
ENCODED_PREFIX_BYTES = 96


class NotAMonth(RatingPipelineError, ValueError):
    """A month given that is not the first instant of a UTC calendar month."""


class ExportFailed(RatingPipelineError):
    """An invoice file could not be written (the directory, or the file system, refused)."""


def parse_month(text: str) -> datetime:
    """``YYYY-MM`` (years 1000 to 9998: every month has a next one) as the first instant of
    that UTC month; NotAMonth otherwise."""
    match = MONTH_TEXT.fullmatch(text)
    if match is None:
        raise NotAMonth(f"not a month: {text!r}; expected YYYY-MM, e.g. 2026-06")
    if not 1000 <= int(match["year"]) < 9999:
        raise NotAMonth(f"month {text!r} is outside the years 1000 to 9998 invoices cover")
    return datetime(int(match["year"]), int(match["month"]), 1, tzinfo=UTC)


def new_run_id() -> str:
    return f"invoice-{uuid.uuid4()}"


@dataclass(frozen=True)
class MonthTotal:
    """One account's invoice of one month: its line count, exact sum, total (the sum of its
    rounded lines) and the sha256 of its lines. A close records these for every month it
    wholly closes; the closed-month check compares the lines with them."""

    month: datetime
    account_id: str
    line_count: int
    amount_exact: Decimal
    amount: Decimal
    lines_sha256: str

    @property
    def residual(self) -> Decimal:
        """The invoice's total minus its exact sum: within 0.005 USD per line."""
        return self.amount - self.amount_exact


@dataclass(frozen=True)
class LinesBuilt:
    """What building one month's lines did, and the lines' totals after it."""

    month: datetime
    inserted: int
    updated: int
    deleted: int
    lines: int
    amount_exact: Decimal
    amount: Decimal
    frozen: bool = False
    # In a frozen month: the invoices whose lines differ from what its close recorded.
    differing: tuple[Mismatch, ...] = ()
    # Each account's invoice, read in the build's transaction (build_invoice's only).
    accounts: tuple[MonthTotal, ...] = ()

    @property
    def written(self) -> int:
        return self.inserted + self.updated + self.deleted

    @property
    def unchanged(self) -> int:
        """Lines neither inserted nor updated (all of them in a frozen month)."""
        return self.lines - self.inserted - self.updated

    @property
    def residual(self) -> Decimal:
        """The sum of the rounded lines minus the sum of their exact amounts."""
        return self.amount - self.amount_exact

    def __str__(self) -> str:
        month = self.month.strftime("%Y-%m")
        if self.differing:
            return (
                f"{month}: wholly closed, but {len(self.differing)} invoice(s) differ from "
                f"what its close recorded ({listed(self.differing)}). Neither a build nor a close "
                "rewrites a closed month, so its lines were written outside them: what was "
                "invoiced is what the close recorded; find the write before billing from them"
            )
        if self.frozen and self.lines == 0:
            return f"{month}: wholly closed with nothing billed in it: no lines"
        if self.frozen:
            return (
                f"{month}: wholly closed, {self.lines} lines frozen as its close built them; "
                f"total {self.amount:f} USD (exact {self.amount_exact:f}, "
                f"residual {self.residual:f})"
            )
        return (
            f"{month}: invoice_line +{self.inserted} inserted, ~{self.updated} updated, "
            f"-{self.deleted} deleted, ={self.unchanged} unchanged; "
            f"{self.lines} lines, total {self.amount:f} USD "
            f"(exact {self.amount_exact:f}, residual {self.residual:f})"
        )


def converge_month_lines(
    conn: psycopg.Connection, month: datetime, run_id: str, built_at: datetime
) -> LinesBuilt:
    """Converge ``month``'s lines in the caller's transaction, which holds the periods
    lock (shared or exclusive). Does not look at whether the month is closed."""
    row = conn.execute(
        load_sql("reconcile_invoice_line"),
        {"month": month, "next_month": next_month(month), "built_at": built_at, "run_id": run_id},
    ).fetchone()
    assert row is not None
    inserted, updated, deleted, lines, amount_exact, amount = row
    return LinesBuilt(
        month, int(inserted), int(updated), int(deleted), int(lines), amount_exact, amount
    )


def month_totals(conn: psycopg.Connection, month: datetime) -> list[MonthTotal]:
    """Per account, ``month``'s invoice as its lines stand now, with the lines' sha256."""
    return [
        MonthTotal(month, account_id, int(count), exact, amount, digest)
        for account_id, count, exact, amount, digest in conn.execute(
            load_sql("select_invoice_totals"), {"month": month}
        )
    ]


@dataclass(frozen=True)
class RecordedTotal:
    """What close ``close_id`` recorded of one month's invoice to one account."""

    month: datetime
    account_id: str
    close_id: int
    line_count: int
    amount_exact: Decimal
    amount: Decimal
    lines_sha256: str


def recorded_totals(
    conn: psycopg.Connection, start: datetime, end: datetime
) -> list[RecordedTotal]:
    """Every month and account of [start, end) a close recorded, in order."""
    return [
        RecordedTotal(row[0].astimezone(UTC), row[1], int(row[2]), int(row[3]), *row[4:])
        for row in conn.execute(
            load_sql("select_recorded_month_totals"), {"start": start, "end": end}
        )
    ]


@dataclass(frozen=True)
class Mismatch:
    """A wholly closed month's invoice to one account that differs from its close's record
    (``recorded`` None: the close recorded nothing; ``now`` None: no lines now)."""

    month: datetime
    account_id: str
    recorded: RecordedTotal | None
    now: MonthTotal | None

    @property
    def why(self) -> str:
        if self.recorded is None:
            return "lines the close recorded nothing for"
        if self.now is None:
            return f"close {self.recorded.close_id} recorded lines; there are none"
        differ = [
            name
            for name, before, after in zip(
                TOTAL_NAMES, _totals(self.recorded), _totals(self.now), strict=True
            )
            if before != after
        ]
        return f"{', '.join(differ)} differ from what close {self.recorded.close_id} recorded"


def listed(differing: Sequence[Mismatch]) -> str:
    """The first three mismatches as ``account: why``, and how many more there are."""
    return first_named([f"{shown(m.account_id)}: {m.why}" for m in differing], 3, "; ")


def mismatches(
    months: Sequence[datetime],
    now: Mapping[datetime, Sequence[MonthTotal]],
    recorded: Iterable[RecordedTotal],
) -> list[Mismatch]:
    """Every (month, account) whose lines now and whose close's record are not the same."""
    found = []
    records = {(r.month, r.account_id): r for r in recorded}
    for month in months:
        current = {t.account_id: t for t in now.get(month, ())}
        held = {account for (m, account) in records if m == month}
        for account in sorted(held | current.keys()):
            before, after = records.get((month, account)), current.get(account)
            if before is None or after is None or _totals(before) != _totals(after):
                found.append(Mismatch(month, account, before, after))
    return found


# What a close records of an invoice and a build compares: the names, then the values.
TOTAL_NAMES = ("line count", "amount_exact", "amount", "lines_sha256")


def _totals(total: RecordedTotal | MonthTotal) -> tuple[object, ...]:
    return total.line_count, total.amount_exact, total.amount, total.lines_sha256


def draft_totals(conn: psycopg.Connection, month: datetime, built_at: datetime) -> list[MonthTotal]:
    """``month``'s invoices as a build now would make them, in the caller's transaction
    (which holds the periods lock, and rolls back to write nothing): the month's invoice
    lock taken, as a build takes it, and its lines converged."""
    conn.execute(LOCK_MONTH, {"namespace": INVOICE_NAMESPACE, "key": _month_key(month)})
    converge_month_lines(conn, month, "draft", built_at)
    return month_totals(conn, month)


def build_invoice(conn: psycopg.Connection, month: datetime, run_id: str) -> LinesBuilt:
    """Build ``month``'s lines in a transaction of its own: converge them, or, for a
    wholly closed month, write nothing and report the lines its close froze, and those
    that differ from what it recorded; with each account's invoice as it then stands."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise RatingPipelineError(
            f"building {month:%Y-%m} needs a connection outside any transaction"
        )
    with conn.transaction():
        begin_read_committed(conn)
        lock_periods(conn, exclusive=False)
        conn.execute(LOCK_MONTH, {"namespace": INVOICE_NAMESPACE, "key": _month_key(month)})
        if wholly_closed(month, close_mark(conn)):
            totals = month_totals(conn, month)
            recorded = recorded_totals(conn, month, next_month(month))
            return LinesBuilt(
                month, 0, 0, 0,
                lines=sum(t.line_count for t in totals),
                amount_exact=exact_sum(t.amount_exact for t in totals),
                amount=exact_sum(t.amount for t in totals),
                frozen=True,
                differing=tuple(mismatches([month], {month: totals}, recorded)),
                accounts=tuple(totals),
            )  # fmt: skip
        built = converge_month_lines(conn, month, run_id, database_clock(conn))
        return replace(built, accounts=tuple(month_totals(conn, month)))


def _month_key(month: datetime) -> int:
    return month.year * 12 + month.month - 1


def lines_by_account(conn: psycopg.Connection, month: datetime) -> Iterator[list[tuple]]:
    """``month``'s lines (every column of ``invoice_line``, amounts ``Decimal``), one
    account's at a time in SELECT_LINES' order, through a server-side cursor: the export
    holds one account's lines, never the month's. Inside a transaction."""
    with conn.cursor(name="invoice_lines_by_account") as cursor:
        cursor.itersize = LINES_PER_FETCH
        cursor.execute(SELECT_LINES, {"month": month})
        for _, lines in itertools.groupby(cursor, key=lambda line: line[ACCOUNT_AT]):
            yield list(lines)


@dataclass(frozen=True)
class Exported:
    """An export's files: ``written``, one per account, and ``removed``, the month's files
    that are no account's invoice now (an account without lines, or a name its account no
    longer takes); and whether the month is wholly ``closed``."""

    written: tuple[Path, ...]
    removed: tuple[Path, ...]
    closed: bool = False

    @property
    def draft(self) -> bool:
        """The files are the draft of a month not wholly closed: its lines as last built."""
        return bool(self.written) and not self.closed


def lock_export(conn: psycopg.Connection, month: datetime) -> None:
    """Hold ``month``'s export lock until the transaction ends: exports of a month
    serialize, so none sweeps another's partial files or removes a file another wrote from
    lines it read before they were built."""
    conn.execute(LOCK_MONTH, {"namespace": EXPORT_NAMESPACE, "key": _month_key(month)})


def export_invoice(conn: psycopg.Connection, month: datetime, out_dir: Path) -> Exported:
    """Write one CSV per account of ``month`` into ``out_dir``: a header, one row per line,
    then a ``total`` row (the exact sum, the invoice total: the sum of the rounded lines,
    and their difference in ``residual``). Amounts are written as exact decimal text.

    The month's files in ``out_dir`` (``YYYY-MM_*.csv``) are the export's: each is replaced
    whole (written and synced aside, then renamed over it), and those of accounts without
    lines now are removed, so the directory holds exactly the month's invoices. A month
    without any line (not built yet, or another database) writes and removes nothing, and
    raises ExportFailed if the directory holds files of it. The files of a month not wholly
    closed are its draft: its lines as last built.
    Exports of one month serialize on its export lock, each reading the lines once it holds
    it (READ COMMITTED whatever the session's default, so its snapshot follows the lock);
    a close in flight commits first (the periods lock, shared as a build holds it)."""
    _require_a_directory_or_none(out_dir)
    with conn.transaction():
        begin_read_committed(conn)
        lock_periods(conn, exclusive=False)  # a close in flight, which freezes lines, first
        lock_export(conn, month)
        closed = wholly_closed(month, close_mark(conn))
        if closed:
            require_as_recorded(conn, month)
        accounts = lines_by_account(conn, month)
        first = next(accounts, None)
        if first is None:
            _require_no_month_files(month, out_dir, closed)
            return Exported((), (), closed=closed)
        accounts = itertools.chain([first], accounts)
        exported = _write_month(accounts, month, out_dir, lambda: conn.execute(STILL_CONNECTED))
        return replace(exported, closed=closed)


def _require_a_directory_or_none(out_dir: Path) -> None:
    """ExportFailed unless ``out_dir`` is a directory or nothing yet (the export makes it)."""
    try:
        out_dir.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ExportFailed(f"cannot write invoices into {out_dir}: {exc.strerror}") from exc
    if not out_dir.is_dir():
        raise ExportFailed(f"cannot write invoices into {out_dir}: it is not a directory")


def require_as_recorded(conn: psycopg.Connection, month: datetime) -> None:
    """ExportFailed unless every invoice of the wholly closed ``month`` is what its close
    recorded (contract 11): what was invoiced is never exported changed."""
    differing = mismatches(
        [month], {month: month_totals(conn, month)}, recorded_totals(conn, month, next_month(month))
    )
    if differing:
        raise ExportFailed(
            f"{month:%Y-%m} is wholly closed, but {len(differing)} invoice(s) differ from what "
            f"its close recorded ({listed(differing)}); nothing written or removed: the "
            "closed_months_match_their_close check lists them"
        )


def _write_month(
    accounts: Iterable[list[tuple]],
    month: datetime,
    out_dir: Path,
    still_locked: Callable[[], object],
) -> Exported:
    """export_invoice's files, from ``month``'s lines, each account's in turn: every
    account's file written and synced aside, then, ``still_locked()`` raising nothing (the
    export lock goes with a lost connection), all renamed into place in one run. Stopped
    before that, it replaced nothing and leaves nothing aside."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportFailed(f"cannot write invoices into {out_dir}: {exc.strerror}") from exc
    pending: list[tuple[Path, str]] = []  # each account's file, written aside, and its id
    try:
        for lines in accounts:
            account_id = str(lines[0][ACCOUNT_AT])
            aside = out_dir / f".{month:%Y-%m}_{uuid.uuid4().hex}.partial"
            pending.append((aside, account_id))
            try:
                _write_synced(_invoice_rows(lines), aside)
            except OSError as exc:
                raise ExportFailed(
                    f"cannot write the invoice of {shown(account_id)} into {out_dir}: "
                    f"{exc.strerror}; no file of {month:%Y-%m} was replaced"
                ) from exc
        still_locked()
    except BaseException:
        for aside, _ in pending:
            aside.unlink(missing_ok=True)
        raise
    names = invoice_file_names(month, [account_id for _, account_id in pending])
    placed = [(aside, out_dir / name) for (aside, _), name in zip(pending, names, strict=True)]
    _rename_into_place(placed)
    written = [path for _, path in placed]
    for partial in out_dir.glob(f".{month:%Y-%m}_*.partial"):  # a killed export's
        partial.unlink(missing_ok=True)
    stale = _remove_stale(month, out_dir, written)
    _sync_directory(out_dir)
    return Exported(tuple(written), stale)


def _remove_stale(month: datetime, out_dir: Path, written: list[Path]) -> tuple[Path, ...]:
    """Remove ``month``'s files in ``out_dir`` that are none of the ``written`` ones: told
    apart as files (device and inode), not by name, which a case-insensitive filesystem
    may list in an earlier file's spelling."""
    kept = {_file_identity(path) for path in written}
    stale = sorted(
        path
        for path in out_dir.glob(f"{month:%Y-%m}_*.csv")
        if (path.is_symlink() or path.is_file()) and _file_identity(path) not in kept
    )
    for path in stale:
        try:
            path.unlink()
        except OSError as exc:
            raise ExportFailed(
                f"cannot remove {path}, a file of {month:%Y-%m} that no account's invoice "
                f"is now: {exc.strerror}; every account's file is written"
            ) from exc
    return tuple(stale)


def _file_identity(path: Path) -> tuple[int, int]:
    status = path.lstat()
    return status.st_dev, status.st_ino


def _invoice_rows(lines: list[tuple]) -> Iterator[list[object]]:
    """One account's lines as its CSV holds them (FILE_COLUMNS): the lines, then its
    ``total`` row."""
    exact = exact_sum(line[EXACT_AT] for line in lines)
    amount = exact_sum(line[AMOUNT_AT] for line in lines)
    total: list[object] = [""] * len(LINE_COLUMNS)
    total[MONTH_AT], total[ACCOUNT_AT], total[KIND_AT] = (
        lines[0][MONTH_AT],
        lines[0][ACCOUNT_AT],
        TOTAL_KIND,
    )
    total[EXACT_AT], total[AMOUNT_AT] = exact, amount
    rows = itertools.chain(
        ([*line, ""] for line in lines), [[*total, EXACT.subtract(amount, exact)]]
    )
    return ([_field_text(value) for value in row] for row in rows)


def _require_no_month_files(month: datetime, out_dir: Path, closed: bool) -> None:
    """ExportFailed, removing nothing, when ``out_dir`` holds files of a month without
    lines: an open month not built yet (or another database) looks the same as one whose
    every line went, and only the second's files are invoices to withdraw. A wholly
    ``closed`` month without lines billed nothing (its close built its lines)."""
    standing = sorted(path.name for path in out_dir.glob(f"{month:%Y-%m}_*.csv"))
    if standing:
        count = f"{len(standing)} file{'s' * (len(standing) > 1)}"
        way_out = (
            "The month is wholly closed and billed nothing: they are no invoice of this "
            "warehouse (remove them)"
            if closed
            else "If the month was built and its lines are gone, remove them; if it is not "
            "built yet (or this is another warehouse), `invoice build` it first"
        )
        raise ExportFailed(
            f"{month:%Y-%m} has no invoice lines, but {out_dir} holds {count} of it from an "
            f"earlier export: {first_named(standing, FILES_NAMED)}; nothing written or "
            f"removed. {way_out}"
        )


def _write_synced(rows: Iterable[list[object]], path: Path) -> None:
    """Write FILE_COLUMNS, then ``rows``, to ``path`` (a new file, aside) and sync it:
    renamed into place only then, no reader, failed export or crash ever sees half a file."""
    with path.open("x", encoding="utf-8", newline="") as file:
        # CRLF ends a record (RFC 4180); the csv module quotes a field holding any
        # character of it, so an id with a lone CR or LF stays one field.
        writer = csv.writer(file, lineterminator=CSV_LINE_END)
        writer.writerow(FILE_COLUMNS)
        writer.writerows(rows)
        file.flush()
        os.fsync(file.fileno())


def _rename_into_place(pending: list[tuple[Path, Path]]) -> None:
    """Rename each file written aside over its name, in one run. Stopped (a refused
    rename, Ctrl-C), it leaves nothing aside."""
    done = 0
    try:
        for aside, path in pending:
            aside.replace(path)
            done += 1
    except BaseException as exc:
        for left, _ in pending[done:]:
            left.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ExportFailed(
                f"cannot replace {pending[done][1]}: {exc.strerror}; {done} of the month's "
                f"{len(pending)} files replaced before it: export the month again once it can be"
            ) from exc
        raise


def _sync_directory(path: Path) -> None:
    """Sync ``path``'s entries, so that the renames and removals outlive a power loss as the
    files do; where the filesystem cannot sync a directory (EINVAL or ENOTSUP: some network
    and FUSE ones), the files alone are synced."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise ExportFailed(
                f"every file of the export is in {path}, but syncing the directory failed: "
                f"{exc.strerror}; export the month again"
            ) from exc
    finally:
        os.close(descriptor)


def invoice_file_name(month: datetime, account_id: str, digested: bool = False) -> str:
    """``YYYY-MM_<account_id percent-encoded>.csv``; where that passes the 255 bytes of a
    file name, or ``digested``, the encoding's first ENCODED_PREFIX_BYTES and
    ``+sha256-<hex>`` of the id. Percent-encoding leaves no ``+``, so no id's name is
    another's digest name."""
    name = f"{month:%Y-%m}_{quote(account_id, safe='')}.csv"
    if len(name.encode()) <= MAX_FILE_NAME_BYTES and not digested:
        return name
    prefix = ""
    for character in account_id:
        encoded = prefix + quote(character, safe="")
        if len(encoded) > ENCODED_PREFIX_BYTES:
            break
        prefix = encoded
    digest = hashlib.sha256(account_id.encode()).hexdigest()
    return f"{month:%Y-%m}_{prefix}+sha256-{digest}.csv"


def invoice_file_names(month: datetime, account_ids: Sequence[str]) -> list[str]:
    """Each account's ``invoice_file_name``, those of ids whose names differ only in case
    (ORG-A, org-a: one file on APFS or NTFS) in the digest form: no two of the month's
    names are one where case is ignored (the names are ASCII; the digest is lowercase)."""
    plain = [invoice_file_name(month, account_id) for account_id in account_ids]
    spellings = Counter(name.casefold() for name in plain)
    return [
        invoice_file_name(month, account_id, digested=spellings[name.casefold()] > 1)
        for account_id, name in zip(account_ids, plain, strict=True)
    ]


def _field_text(value: object) -> object:
    """A Decimal as its exact digits, never in exponent notation (str() writes 0.00000015
    as 1.50000E-7, and 0 at 12 places as 0E-12); an instant whole, in RFC 3339 UTC
    (microseconds when it has them); anything else as it is."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value
