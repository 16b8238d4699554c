"""The ledger balances (contract sections 10 and 11), proven on the real database.

``LedgerMachine`` runs random sequences of what happens to a warehouse over four months:
events landing late (into open and closed hours) and deleted, pricebook corrections,
ratings and re-ratings of any hour, closes at any hour, invoice builds, and account
mapping changes. After every step, for every account: once every month not wholly closed
is built, the sum of ``amount_exact`` over all months' invoice lines equals the exact cost
of every window's latest output per the oracle; every invoice's residual is within 0.005
USD per line; and nothing closed has changed. RATING_LEDGER_EXAMPLES (default 30) scales
the run: ``RATING_LEDGER_EXAMPLES=300 ./dev test -s tests/test_ledger.py`` is the long one.
"""

from __future__ import annotations

import itertools
import os
from collections import defaultdict
from dataclasses import replace
from datetime import datetime
from decimal import Context, Decimal, Inexact, InvalidOperation, localcontext
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from rating_pipeline.pricebook.model import (
    LONG,
    SERVICE_TIERS,
    STANDARD,
    TOKEN_CLASSES,
    ModelRates,
    Pricebooks,
    PricebookVersion,
)
from rating_pipeline.warehouse.close_mark import lock_periods, month_of, wholly_closed
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.engine import rate_window
from rating_pipeline.warehouse.invoices import build_invoice, converge_month_lines, month_totals
from rating_pipeline.warehouse.outputs import stored_exceptions
from rating_pipeline.warehouse.periods import CloseRefused, close_period
from rating_pipeline.windows import HOUR, Window
from tests import oracle
from tests.conftest import delete_events, insert_events, stored_rollups, truncate_all, utc
from tests.factories import BillingEvent, derived, make_event, make_version, own, schedule
from tests.oracle import OracleRating
from tests.strategies import (
    AUTH_IDS,
    INVALID_AUTH_IDS,
    OPTIONAL_CLASSES,
    THRESHOLDS,
    TRUE_BASES,
    UNLISTED_MODELS,
    inside,
    multipliers,
    near_thresholds,
    pricebook_versions,
    rate_schedules,
    rates,
    token_counts,
)

# A few hours at the ends and starts of March to June: closes wholly close months, and a
# correction after one lands on the next month's invoice (July's, once June is closed).
HOURS = (
    utc(2026, 3, 31, 23), utc(2026, 4, 1, 0), utc(2026, 4, 30, 23), utc(2026, 5, 1, 0),
    utc(2026, 5, 31, 23), utc(2026, 6, 1, 0),
)  # fmt: skip
MONTHS = tuple(utc(2026, month, 1) for month in (3, 4, 5, 6, 7))
EFFECTIVE = (utc(2026, 3, 1), utc(2026, 5, 1))  # the two versions' effective_from
CLOSE_AT = tuple(sorted({*HOURS, *(hour + HOUR for hour in HOURS), *MONTHS}))
MISALIGNED, FUTURE = utc(2026, 4, 15, 12, 30), utc(2099, 1, 1)
# A step acts on one hour or month, or on several at once (a backfill, a monthly run).
SOME_HOURS = st.sets(st.sampled_from(HOURS), min_size=1)
SOME_MONTHS = st.sets(st.sampled_from(MONTHS), min_size=1)
ACCOUNTS = (None, "acct-A", "acct-B", AUTH_IDS[1])  # None: the auth_id is its own account
CORRECTIONS = ("rate", "class", "tier", "threshold", "drop", "add", "multiplier", "fresh")
BUILT_AT = utc(2026, 12, 1)
HALF_CENT, ZERO = Decimal("0.005"), Decimal(0)
# Sums of 12-place amounts of any size, exactly: an inexact result is an error.
EXACT = Context(prec=200, traps=[Inexact, InvalidOperation])
# CI runs EXAMPLES x up to STEPS steps; RATING_LEDGER_EXAMPLES=300 is the longer run.
EXAMPLES = int(os.environ.get("RATING_LEDGER_EXAMPLES", "30"))
STEPS = 30
LEDGER_SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

CLASS_SUMS = ", ".join(f"sum({c}_tokens)" for c in TOKEN_CLASSES)
ADJUSTED_CLASSES = ", ".join(
    f"CASE WHEN token_class = '{c}' THEN quantity_tokens ELSE 0 END" for c in TOKEN_CLASSES
)
# Per rollup key, a window's rated_usage rows plus all its adjustments, stamped or open.
NET_PER_KEY = f"""
SELECT auth_id, model_id, service_tier, context_tier, sum(event_count), {CLASS_SUMS},
    sum(cost_usd)
FROM (
    SELECT auth_id, model_id, service_tier, context_tier, event_count,
        {", ".join(f"{c}_tokens" for c in TOKEN_CLASSES)}, cost_usd
    FROM rated_usage WHERE window_start = %(start)s
    UNION ALL
    SELECT auth_id, model_id, service_tier, context_tier, event_count, {ADJUSTED_CLASSES},
        cost_usd
    FROM rating_adjustment WHERE window_start = %(start)s
) AS net
GROUP BY 1, 2, 3, 4
"""
WINDOW_COUNTS = """
SELECT (SELECT count(*) FROM rating_adjustment WHERE window_start = %(start)s),
    (SELECT coalesce(sum(event_count), 0) FROM rating_exception WHERE window_start = %(start)s),
    (SELECT events_read FROM rating_log WHERE window_start = %(start)s
     ORDER BY log_id DESC LIMIT 1)
"""
OPEN_BILL_MONTHS = "SELECT DISTINCT bill_month FROM rating_adjustment WHERE invoiced_by IS NULL"
ADJUSTMENT_COLUMNS = """
adjustment_id, window_start, window_end, auth_id, model_id, service_tier, context_tier,
token_class, unit_rate_per_mtok, event_count, quantity_tokens, cost_usd, bill_month,
pricebook_version, pricebook_sha256, rated_at, run_id"""
OPEN_ADJUSTMENTS = f"""
SELECT {ADJUSTMENT_COLUMNS} FROM rating_adjustment WHERE invoiced_by IS NULL
ORDER BY adjustment_id"""
STAMPED_BY = f"""
SELECT {ADJUSTMENT_COLUMNS} FROM rating_adjustment WHERE invoiced_by = %(close_id)s
ORDER BY adjustment_id"""
INVOICES = """
SELECT month, account_id, count(*), sum(amount_exact), sum(amount)
FROM invoice_line GROUP BY month, account_id
"""
# Per principal, what wholly closed months billed: their windows' rows and the adjustments
# billed on them.
BILLED_BEFORE = """
SELECT auth_id, sum(cost_usd) FROM (
    SELECT auth_id, cost_usd FROM rated_usage WHERE window_start < %(first_open)s
    UNION ALL
    SELECT auth_id, cost_usd FROM rating_adjustment WHERE bill_month < %(first_open)s
) AS closed
GROUP BY auth_id
"""
FROZEN_USAGE = """
SELECT xmin::text, * FROM rated_usage WHERE window_start < %(mark)s
ORDER BY window_start, auth_id, model_id, service_tier, context_tier
"""
STAMPED = (
    "SELECT xmin::text, * FROM rating_adjustment WHERE invoiced_by <= %(close_id)s "
    "ORDER BY adjustment_id"
)
MONTH_LINES = """
SELECT xmin::text, * FROM invoice_line WHERE month = %(month)s
ORDER BY account_id, kind, model_id, service_tier, context_tier, token_class,
    unit_rate_per_mtok
"""
MONTH_TOTAL = """
SELECT count(*), coalesce(sum(amount_exact), 0), coalesce(sum(amount), 0)
FROM invoice_line WHERE month = %(month)s
"""
RECORDED_TOTALS = """
SELECT account_id, line_count, amount_exact, amount, lines_sha256
FROM rating_period_close_total WHERE month = %(month)s
"""
# Everything a close writes, with row versions: a refused close must leave it all as it was.
WRITTEN_BY_A_CLOSE = (
    "SELECT xmin::text, * FROM rating_period_close ORDER BY close_id",
    "SELECT xmin::text, * FROM rating_period_close_total ORDER BY month, account_id",
    "SELECT xmin::text, * FROM rating_adjustment ORDER BY adjustment_id",
    "SELECT xmin::text, * FROM invoice_line ORDER BY month, account_id, kind, model_id, "
    "service_tier, context_tier, token_class, unit_rate_per_mtok",
)
UPSERT_ACCOUNT = """
INSERT INTO billing_account (auth_id, account_id) VALUES (%(auth_id)s, %(account_id)s)
ON CONFLICT (auth_id) DO UPDATE SET account_id = excluded.account_id
"""
DELETE_ACCOUNT = "DELETE FROM billing_account WHERE auth_id = %(auth_id)s"

Spec = ModelRates | dict[str, str]
Key = tuple[str, str, str, str]
Net = tuple[Any, ...]  # events, every class's tokens, then cost


def specs_of(version: PricebookVersion) -> dict[str, Spec]:
    """``version``'s models in the shape ``make_version`` takes."""
    return {
        model_id: entry.own_rates
        if entry.own_rates is not None
        else derived(str(entry.derived_from), str(entry.multiplier))
        for model_id, entry in version.models.items()
    }


def rebuilt(
    version: PricebookVersion, models: dict[str, Spec], fine_tune_multiplier: Decimal | None
) -> PricebookVersion:
    """A correction of ``version``: same name and effective_from, the sha256 of the new
    content (as a pricebook file fixed in place)."""
    return make_version(
        models,
        version=version.version,
        effective_from=version.effective_from,
        fine_tune_multiplier=None if fine_tune_multiplier is None else str(fine_tune_multiplier),
    )


def corrections(version: PricebookVersion) -> st.SearchStrategy[PricebookVersion]:
    """``version`` corrected one way, as a loader accepts it: no positive rate derives to 0
    (rule 6), so no rating ever prices by the correction otherwise."""
    return any_correction(version).filter(lambda corrected: not oracle.breaks_rule_6(corrected))


@st.composite
def any_correction(draw: st.DrawFn, version: PricebookVersion) -> PricebookVersion:
    """``version`` corrected one way: a rate changed, a class rate or a service tier that
    appears or disappears, a threshold moved, a model dropped (with the fine-tunes derived
    from it) or added, the fine_tune_multiplier changed, or everything replaced."""
    models, multiplier = specs_of(version), version.fine_tune_multiplier
    kind = draw(st.sampled_from(CORRECTIONS), label="correction")
    owned = sorted(m for m, spec in models.items() if isinstance(spec, ModelRates))
    if kind == "fresh" or not owned:
        fresh = draw(pricebook_versions())
        return rebuilt(version, specs_of(fresh), fresh.fine_tune_multiplier)
    if kind == "multiplier":
        return rebuilt(version, models, draw(st.one_of(st.none(), multipliers.map(Decimal))))
    if kind == "add":
        added = draw(st.sampled_from([*TRUE_BASES, "ft:own:9"]))
        return rebuilt(version, {**models, added: draw(rate_schedules())}, multiplier)
    model_id = draw(st.sampled_from(owned if kind != "drop" else sorted(models)))
    if kind == "drop":
        kept = {
            m: spec
            for m, spec in models.items()
            if m != model_id and not (isinstance(spec, dict) and spec["derived_from"] == model_id)
        }
        return rebuilt(version, kept or models, multiplier)  # events need a listed model
    own = models[model_id]
    assert isinstance(own, ModelRates)
    models[model_id] = draw(corrected_rates(own, kind))
    return rebuilt(version, models, multiplier)


@st.composite
def corrected_rates(draw: st.DrawFn, own: ModelRates, kind: str) -> ModelRates:
    """``own`` with one rate, class rate, service tier or threshold corrected."""
    sets = {key: {c: str(r) for c, r in s.rates.items()} for key, s in own.sets.items()}
    above = own.long_context_above_tokens
    key = draw(st.sampled_from(sorted(sets)))
    if kind == "rate":
        sets[key][draw(st.sampled_from(sorted(sets[key])))] = draw(rates)
    elif kind == "class":
        token_class = draw(st.sampled_from(OPTIONAL_CLASSES))
        if sets[key].pop(token_class, None) is None:
            sets[key][token_class] = draw(rates)
    elif kind == "tier":
        tier = draw(st.sampled_from(SERVICE_TIERS[1:]))
        if any(t == tier for t, _ in sets):
            sets = {k: v for k, v in sets.items() if k[0] != tier}
        else:
            sets[(tier, STANDARD)] = {"input": draw(rates), "output": draw(rates)}
        if not any(context == LONG for _, context in sets):
            above = None
    elif kind == "threshold" and above is not None:
        above = draw(st.sampled_from(THRESHOLDS))
    return schedule(sets, above)


def mostly(usual: tuple[Any, ...], rare: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    """One of ``usual`` four times in five (one_of would pick each branch alike)."""
    return st.sampled_from(usual * 4 * len(rare) + rare * len(usual) or rare)


# Mostly billable: a ledger of exceptions alone would balance trivially.
LEDGER_AUTH_IDS = ("org-1", "org-2", "org-3", *AUTH_IDS[2:4])
LEDGER_TOKENS = st.one_of(st.integers(0, 5000), st.integers(0, 5000), near_thresholds, token_counts)


@st.composite
def late_events(draw: st.DrawFn, version: PricebookVersion, hour: datetime) -> list[BillingEvent]:
    """A few events of ``hour``, late or not: most of them of the version's models in its
    standard tier with small counts, so they bill; some invalid, unlisted, of a tier or a
    class the version may not price, so they don't."""
    events = []
    for _ in range(draw(st.integers(0, 4))):
        model_id = draw(mostly(tuple(version.models), UNLISTED_MODELS))
        fine_tune = model_id.startswith("ft:")
        extra = draw(
            st.one_of(st.just(()), st.just(()), st.sets(st.sampled_from(OPTIONAL_CLASSES)))
        )
        events.append(
            BillingEvent(
                event_id="drawn",
                auth_id=draw(mostly(LEDGER_AUTH_IDS, INVALID_AUTH_IDS)),
                model_id=model_id,
                base_model=draw(st.sampled_from((None, *TRUE_BASES))) if fine_tune else None,
                input_tokens=draw(LEDGER_TOKENS),
                output_tokens=draw(LEDGER_TOKENS),
                occurred_at=hour + draw(inside),
                service_tier=draw(mostly((None, None, STANDARD), (*SERVICE_TIERS[1:], "Batch"))),
                **{f"{c}_tokens": draw(LEDGER_TOKENS) for c in extra},  # type: ignore[arg-type]
            )
        )
    return events


def net_of(rating: OracleRating) -> dict[Key, Net]:
    """The oracle's rollups per key: events, every class's tokens, cost."""
    return {
        (r.auth_id, r.model_id, r.service_tier, r.context_tier): (
            r.event_count,
            *(getattr(r, f"{c}_tokens") for c in TOKEN_CLASSES),
            r.cost_usd,
        )
        for r in rating.rollups
    }


def nonzero(amounts: dict[str, Decimal]) -> dict[str, Decimal]:
    return {key: amount for key, amount in amounts.items() if amount}


class LedgerMachine(RuleBasedStateMachine):
    """A warehouse over four months, and a model of it: every event inserted, the pricebook
    versions, each window's latest rating (its events and version), the close mark, the
    account mapping, and snapshots of what each close froze."""

    steps_run = 0
    examples_run = 0

    def __init__(self, url: str) -> None:
        super().__init__()
        LedgerMachine.examples_run += 1
        self.url = url
        truncate_all(url)
        self.conn = connect(url)
        self.reader = psycopg.connect(url, autocommit=True)
        self.reader.execute("SET TIME ZONE 'UTC'")
        self.events: dict[str, BillingEvent] = {}
        self.live: set[str] = set()
        self.versions: list[PricebookVersion] = [None, None]  # type: ignore[list-item]
        self.serials = [0, 0]  # which correction each slot of ``versions`` is
        self.by_serial: dict[int, PricebookVersion] = {}
        self.latest: dict[datetime, tuple[frozenset[str], int]] = {}
        self.mark: datetime | None = None
        self.close_id = 0  # the latest close's
        self.mapping: dict[str, str] = {}
        self.mapping_fixed = True  # unchanged since the first close
        self.remap_after_close = False
        self.frozen_usage: list[tuple[Any, ...]] = []
        self.stamped: list[tuple[Any, ...]] = []
        self.closed_lines: dict[datetime, list[tuple[Any, ...]]] = {}
        self.counter = itertools.count(1)
        self.oracle_cache: dict[tuple[datetime, frozenset[str], int], OracleRating] = {}

    # --- the model -----------------------------------------------------------------------

    def slot(self, hour: datetime) -> int:
        return 1 if hour >= EFFECTIVE[1] else 0

    def set_version(self, slot: int, version: PricebookVersion) -> None:
        """``version`` prices the slot's windows from now on, named for its effective_from."""
        named = replace(
            version, version=f"{EFFECTIVE[slot]:%Y-%m-%d}", effective_from=EFFECTIVE[slot]
        )
        version = rebuilt(named, specs_of(named), named.fine_tune_multiplier)  # its sha256
        serial = next(self.counter)
        self.by_serial[serial] = version
        self.versions[slot], self.serials[slot] = version, serial

    def events_in(self, hour: datetime) -> frozenset[str]:
        return frozenset(i for i in self.live if hour <= self.events[i].occurred_at < hour + HOUR)

    def latest_output(self, hour: datetime) -> OracleRating | None:
        """The oracle's output for ``hour``'s latest rating (None: never rated)."""
        if hour not in self.latest:
            return None
        ids, serial = self.latest[hour]
        key = (hour, ids, serial)
        if key not in self.oracle_cache:
            events = [self.events[i] for i in ids]
            self.oracle_cache[key] = oracle.rate_window(
                Window(hour), self.by_serial[serial], events
            )
        return self.oracle_cache[key]

    def rows(self, statement: str, **params: Any) -> list[tuple[Any, ...]]:
        return self.reader.execute(statement, params).fetchall()

    # --- rules ---------------------------------------------------------------------------

    @initialize(
        first=pricebook_versions(),
        second=pricebook_versions(),
        remap_after_close=st.sampled_from((False, False, False, True)),
        data=st.data(),
    )
    def start(
        self,
        first: PricebookVersion,
        second: PricebookVersion,
        remap_after_close: bool,
        data: st.DataObject,
    ) -> None:
        """The versions, and a history, so that the steps begin in a warehouse already in
        use: events in every hour, most hours with events rated, every month built."""
        self.set_version(0, first)
        self.set_version(1, second)
        self.remap_after_close = remap_after_close
        for hour in HOURS:
            self.land(data.draw(late_events(self.versions[self.slot(hour)], hour)))
            if self.events_in(hour) and data.draw(mostly((True,), (False,)), label="rated"):
                self.rate_hour(hour)
        self.build_months(set(MONTHS))

    @rule(hour=st.sampled_from(HOURS), rerate=st.booleans(), data=st.data())
    def land_events(self, hour: datetime, rerate: bool, data: st.DataObject) -> None:
        """Events land, late or not, in an open or a closed hour; the sensor re-rates it,
        or not yet."""
        LedgerMachine.steps_run += 1
        self.land(data.draw(late_events(self.versions[self.slot(hour)], hour), label="events"))
        if rerate:
            self.rate_hour(hour)

    def land(self, drawn: list[BillingEvent]) -> None:
        events = [replace(e, event_id=f"ev-{next(self.counter)}") for e in drawn]
        insert_events(self.url, events)
        self.events.update((e.event_id, e) for e in events)
        self.live.update(e.event_id for e in events)

    @rule(
        hour=st.sampled_from(HOURS), everything=st.booleans(), rerate=st.booleans(), data=st.data()
    )
    def withdraw_events(
        self, hour: datetime, everything: bool, rerate: bool, data: st.DataObject
    ) -> None:
        """Upstream withdraws some of an hour's events, or all of them; the sensor re-rates
        it, or not yet."""
        LedgerMachine.steps_run += 1
        ids = sorted(self.events_in(hour))
        if not everything and ids:
            ids = sorted(data.draw(st.sets(st.sampled_from(ids), min_size=1), label="ids"))
        delete_events(self.url, ids)
        self.live.difference_update(ids)
        if rerate:
            self.rate_hour(hour)

    @rule(slot=st.sampled_from((0, 1)), backfill=st.booleans(), data=st.data())
    def correct_pricebook(self, slot: int, backfill: bool, data: st.DataObject) -> None:
        """The version pricing some windows is corrected; a backfill re-rates the hours it
        prices that were rated before, or none is re-rated yet."""
        LedgerMachine.steps_run += 1
        self.set_version(slot, data.draw(corrections(self.versions[slot]), label="corrected"))
        for hour in sorted(self.latest) if backfill else ():
            if self.slot(hour) == slot:
                self.rate_hour(hour)

    @rule(hours=st.one_of(st.sampled_from(HOURS).map(lambda hour: {hour}), SOME_HOURS))
    def rate(self, hours: set[datetime]) -> None:
        """Rate an hour, or several (a backfill): an open one converges its rows, a closed
        one its open adjustments; an identical re-rating writes nothing."""
        LedgerMachine.steps_run += 1
        for hour in sorted(hours):
            self.rate_hour(hour)

    def rate_hour(self, hour: datetime) -> None:
        rating = rate_window(
            self.conn, Window(hour), Pricebooks(tuple(self.versions)), f"run-{next(self.counter)}"
        )
        latest = (self.events_in(hour), self.serials[self.slot(hour)])
        assert rating.events_read == len(latest[0])
        if self.latest.get(hour) == latest:
            assert rating.rows_written == 0, "an identical re-rating wrote rows"
        self.latest[hour] = latest

    @rule(months=SOME_MONTHS)
    def build(self, months: set[datetime]) -> None:
        """Build months' lines (frozen if wholly closed); an identical rebuild writes
        nothing."""
        LedgerMachine.steps_run += 1
        self.build_months(months)

    def build_months(self, months: set[datetime]) -> None:
        for month in sorted(months):
            built = build_invoice(self.conn, month, f"build-{next(self.counter)}")
            again = build_invoice(self.conn, month, f"build-{next(self.counter)}")
            assert again.written == 0, f"an identical rebuild of {month:%Y-%m} wrote lines"
            if wholly_closed(month, self.mark):
                assert built.frozen and built.written == 0
            stored = self.rows(MONTH_TOTAL, month=month)[0]
            assert (built.lines, built.amount_exact, built.amount) == stored, "build's report"

    @precondition(lambda self: self.mark is None or self.remap_after_close)
    @rule(auth_id=st.sampled_from(AUTH_IDS), account=st.sampled_from(ACCOUNTS))
    def map_account(self, auth_id: str, account: str | None) -> None:
        """The mapping changes before any close; after one only in some runs, and from then
        on the ledger is checked in total and, per account, in the months still open."""
        LedgerMachine.steps_run += 1
        with psycopg.connect(self.url) as conn:
            if account is None:
                conn.execute(DELETE_ACCOUNT, {"auth_id": auth_id})
                self.mapping.pop(auth_id, None)
            else:
                conn.execute(UPSERT_ACCOUNT, {"auth_id": auth_id, "account_id": account})
                self.mapping[auth_id] = account
        if self.mark is not None:
            self.mapping_fixed = False

    @rule(data=st.data(), rate_unrated_first=st.sampled_from((True, True, False)))
    def close(self, data: st.DataObject, rate_unrated_first: bool) -> None:
        """Close (first anywhere, then mostly soon after the mark), having rated every hour
        with unrated events first, or not: then the close is refused naming them. A close
        not after the mark, in the future or off the hour is refused too; a refused close
        writes nothing."""
        LedgerMachine.steps_run += 1
        later = tuple(t for t in CLOSE_AT if self.mark is None or t > self.mark)
        odd = (MISALIGNED, FUTURE, self.mark or CLOSE_AT[0])
        near = later if self.mark is None else later[:3] * 3 + later  # then mostly near
        through = data.draw(mostly(near, odd), label="through")
        if rate_unrated_first and not self.refusal(through):
            for hour in self.unrated_before(through):
                self.rate_hour(hour)
        fragments = self.refusal(through) or [
            hour.strftime("%Y-%m-%dT%H:%MZ") for hour in self.unrated_before(through)
        ]
        if fragments:
            self.assert_refused(through, fragments)
            return
        open_before = self.rows(OPEN_ADJUSTMENTS)
        done = close_period(self.conn, through, "ledger-machine")
        assert done.adjustments_stamped == len(open_before)
        assert self.rows(STAMPED_BY, close_id=done.close_id) == open_before
        self.nothing_closed_changed()
        self.mark, self.close_id = through, done.close_id
        self.snapshot_closed()

    def refusal(self, through: datetime) -> list[str]:
        if through == MISALIGNED:
            return ["is not on a whole hour"]
        if self.mark is not None and through <= self.mark:
            return ["not after the current mark"]
        return ["lies in the future"] if through == FUTURE else []

    def unrated_before(self, through: datetime) -> list[datetime]:
        return [h for h in HOURS if h < through and h not in self.latest and self.events_in(h)]

    def assert_refused(self, through: datetime, fragments: list[str]) -> None:
        before = [self.rows(statement) for statement in WRITTEN_BY_A_CLOSE]
        with pytest.raises(CloseRefused) as refused:
            close_period(self.conn, through, "ledger-machine")
        for fragment in fragments:
            assert fragment in str(refused.value)
        assert [self.rows(statement) for statement in WRITTEN_BY_A_CLOSE] == before

    def snapshot_closed(self) -> None:
        """What the close just froze: closed windows' rows, stamped adjustments, and the
        lines of every month now wholly closed."""
        self.frozen_usage = self.rows(FROZEN_USAGE, mark=self.mark)
        self.stamped = self.rows(STAMPED, close_id=self.close_id)
        for month in MONTHS:
            if wholly_closed(month, self.mark) and month not in self.closed_lines:
                self.closed_lines[month] = self.rows(MONTH_LINES, month=month)

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def the_ledger_balances(self) -> None:
        """Once every month not wholly closed is built: per account, the sum of amount_exact
        over all months = the exact cost of every window's latest output per the oracle
        (under a fixed mapping; in total under any); each invoice's residual is within
        0.005 USD per line. Under any mapping, the lines of months not wholly closed are
        the latest cost of their principals (by the current mapping) minus what wholly
        closed months billed of them: a mapping change moves only open months' lines."""
        first_open = MONTHS[0] if self.mark is None else month_of(self.mark)
        billed: dict[str, Decimal] = defaultdict(Decimal)
        billed_open: dict[str, Decimal] = defaultdict(Decimal)
        with localcontext(EXACT):
            for month, account, lines, exact, amount in self.invoices_built():
                assert abs(amount - exact) <= HALF_CENT * lines, f"{month:%Y-%m} {account}"
                billed[account] += exact
                billed_open[account] += exact if month >= first_open else 0
            latest = self.latest_cost_per_auth()
            assert sum(billed.values()) == sum(latest.values()), "the ledger's total"
            if self.mapping_fixed:
                assert nonzero(billed) == nonzero(self.per_account(latest)), "per account"
            closed = dict(self.rows(BILLED_BEFORE, first_open=first_open))
            unbilled = {a: latest.get(a, ZERO) - closed.get(a, ZERO) for a in {*latest, *closed}}
            assert nonzero(billed_open) == nonzero(self.per_account(unbilled)), "open months"

    def invoices_built(self) -> list[tuple[Any, ...]]:
        """Per month and account: lines, Σ amount_exact, Σ amount, once every month not
        wholly closed is built. The builds are rolled back, so stale lines stay for later
        steps to meet (a close, say)."""
        with self.conn.transaction(force_rollback=True):
            lock_periods(self.conn, exclusive=False)
            for month in MONTHS:
                if not wholly_closed(month, self.mark):
                    converge_month_lines(self.conn, month, "ledger-check", BUILT_AT)
            return self.conn.execute(INVOICES).fetchall()

    def latest_cost_per_auth(self) -> dict[str, Decimal]:
        latest: dict[str, Decimal] = defaultdict(Decimal)
        for hour in HOURS:
            output = self.latest_output(hour)
            for rollup in output.rollups if output else ():
                latest[rollup.auth_id] += rollup.cost_usd
        return latest

    def per_account(self, per_auth: dict[str, Decimal]) -> dict[str, Decimal]:
        accounts: dict[str, Decimal] = defaultdict(Decimal)
        for auth_id, cost in per_auth.items():
            accounts[self.mapping.get(auth_id, auth_id)] += cost
        return accounts

    @invariant()
    def nothing_closed_changed(self) -> None:
        """Closed windows' rows, stamped adjustments and wholly closed months' lines are as
        the close left them, and those lines total what the close recorded."""
        if self.mark is None:
            return
        assert self.rows(FROZEN_USAGE, mark=self.mark) == self.frozen_usage
        assert self.rows(STAMPED, close_id=self.close_id) == self.stamped
        for month, lines in self.closed_lines.items():
            assert self.rows(MONTH_LINES, month=month) == lines, f"{month:%Y-%m} changed"
            totals = {
                t.account_id: (t.line_count, t.amount_exact, t.amount, t.lines_sha256)
                for t in month_totals(self.reader, month)
            }
            recorded = {row[0]: row[1:] for row in self.rows(RECORDED_TOTALS, month=month)}
            assert totals == recorded, f"{month:%Y-%m}'s lines differ from its close's totals"

    @invariant()
    def every_window_holds_its_latest_output(self) -> None:
        """An open window's rows are its latest output; a closed window's rows plus its
        adjustments make it up per rollup key; exceptions are the latest either way; and
        in a closed window events read = billed + adjustments + exceptions."""
        for hour in HOURS:
            window, output = Window(hour), self.latest_output(hour)
            adjustments, excepted, read = self.rows(WINDOW_COUNTS, start=hour)[0]
            if output is None:
                assert (stored_rollups(self.reader, window), adjustments, excepted) == ((), 0, 0)
                continue
            assert stored_exceptions(self.reader, window) == output.exceptions
            assert read == output.events_read
            if self.mark is None or hour >= self.mark:
                assert adjustments == 0
                assert stored_rollups(self.reader, window) == output.rollups
                continue
            net = {
                tuple(row[:4]): tuple(row[4:])
                for row in self.rows(NET_PER_KEY, start=hour)
                if any(row[4:])
            }
            assert net == net_of(output), f"closed window {hour:%Y-%m-%dT%H:%MZ}"
            assert read == sum(n[0] for n in net.values()) + excepted

    @invariant()
    def open_adjustments_bill_on_the_next_invoice(self) -> None:
        months = [row[0] for row in self.rows(OPEN_BILL_MONTHS)]
        assert months == ([] if self.mark is None or not months else [month_of(self.mark)])

    def teardown(self) -> None:
        self.conn.close()
        self.reader.close()


def test_the_ledger_balances(database_url: str) -> None:
    LedgerMachine.steps_run = LedgerMachine.examples_run = 0
    # Annotated type[RuleBasedStateMachine]; documented and run as any zero-arg factory.
    run_state_machine_as_test(
        lambda: LedgerMachine(database_url),  # type: ignore[arg-type]
        settings=LEDGER_SETTINGS,
    )
    print(
        f"ledger: {LedgerMachine.steps_run} steps in {LedgerMachine.examples_run} examples "
        f"(max_examples={EXAMPLES}, stateful_step_count={STEPS})"
    )


# What the machine found, each as a plain test named after the check that caught it.


def test_a_wholly_closed_months_build_reports_its_lines_totals_exactly(database_url: str) -> None:
    """A build of a frozen month reports the sums of its lines: 2**62 input tokens at a
    rate just under 10**6 USD per million cost 31 significant digits, more than a default
    decimal context keeps."""
    version = make_version({"base-large": own("999999.999999", "10")}, effective_from=MONTHS[0])
    hour = Window(HOURS[0])
    insert_events(database_url, [make_event(input_tokens=2**62, occurred_at=hour.start)])
    with connect(database_url) as conn:
        rate_window(conn, hour, Pricebooks((version,)), "run-1")
        close_period(conn, MONTHS[1], "finance")
        built = build_invoice(conn, MONTHS[0], "build-1")
        lines = conn.execute("SELECT sum(amount_exact), sum(amount) FROM invoice_line").fetchone()
    assert built.frozen
    assert (built.amount_exact, built.amount) == lines
