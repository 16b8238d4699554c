"""The records a benchmark case is made of, and the one runner that measures any case.

A case names the hours it works on, the steps it times in each round (in order, each after
its untimed preparation), the figures it derives round by round (a `rate` call less that
call on an empty hour), and its goals: bounds on ratios of medians taken in the same run.
Rounds interleave every step of a case, so that each ratio compares figures taken seconds
apart on a machine whose speed drifts over minutes. The cases are in ``suite.py``.
"""

from __future__ import annotations

import statistics
import tempfile
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import steps
from benchmarks.data import Layout, Loaded, Scale, layout_for, load_all
from benchmarks.measure import Samples
from benchmarks.steps import Span, Taken
from rating_pipeline.orchestration.instance import local_instance, open_instance
from rating_pipeline.pricebook.model import Pricebooks
from rating_pipeline.warehouse.database import connect

# The Dagster cases' instance storage: a database of its own next to the benchmark's.
DAGSTER_STORAGE_DATABASE = "rating_bench_dagster"

AT_MOST = "at most"  # measured <= limit x the sum of the bases
AT_LEAST = "at least"  # measured >= limit x the sum of the bases
AT_MOST_PLUS = "at most plus"  # measured <= the sum of the bases + limit, in the step's unit
# After loading: hint bits and the visibility map set and dirty pages written out, so that
# no figure pays for the load's writeback (a table of billed events is at rest).
VACUUM_EVENTS = "VACUUM (ANALYZE) billing_event"


@dataclass(frozen=True)
class Step:
    """One figure a case takes in each round: ``prepare`` (untimed), then ``measure``."""

    name: str
    label: str
    measure: Callable[[Bench, Span], Taken]
    prepare: Callable[[Bench, Span], None] | None = None
    unit: str = "s"


@dataclass(frozen=True)
class Net:
    """A figure derived round by round: step ``gross`` less step ``less``."""

    name: str
    label: str
    gross: str
    less: str


@dataclass(frozen=True)
class Goal:
    """A bound on the median of ``measured`` against the sum of the medians of ``base``.

    ``clean``: and every run of ``measured`` proved that it wrote and locked nothing.
    """

    text: str
    measured: str
    base: tuple[str, ...]
    limit: float
    kind: str = AT_MOST
    clean: bool = False


@dataclass(frozen=True)
class Case:
    """A named measurement: where (``span``), what each round times, and what must hold.

    ``alternate``: odd rounds take the steps in reverse order (steps that do not depend on
    one another, so that neither always runs first). ``setup`` and ``teardown`` run once,
    untimed, around the rounds. ``facts`` says what the span held (by default its events,
    rollups and exceptions), before the teardown.
    """

    name: str
    what: str
    span: Callable[[Layout], Span]
    steps: tuple[Step, ...]
    goals: tuple[Goal, ...]
    nets: tuple[Net, ...] = ()
    setup: Callable[[Bench, Span], None] | None = None
    teardown: Callable[[Bench, Span], None] | None = None
    min_rounds: int = 3
    alternate: bool = False
    facts: Callable[[Bench, Span], str] | None = None


@dataclass(frozen=True)
class Figure:
    """One line of the results table: a step's or a net figure's values, round by round."""

    case: str
    name: str
    label: str
    samples: Samples
    note: str = ""


@dataclass(frozen=True)
class Verdict:
    """One goal as this run measured it."""

    case: str
    text: str
    target: str
    observed: str
    passed: bool


@dataclass
class Results:
    """Everything one run measured."""

    scale: Scale
    rounds: int
    loaded: Loaded | None = None
    figures: list[Figure] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)  # case: what its span holds
    details: list[str] = field(default_factory=list)


@dataclass
class Bench:
    """One benchmark run's setting: the database, the data layout, the pricebooks."""

    url: str
    scale: Scale
    rounds: int
    pricebook_dir: Path
    pricebooks: Pricebooks
    say: Callable[[str], None]
    results: Results
    layout: Layout = field(init=False)
    runs: int = 0
    changes: int = 0  # 1% changes applied to the hot hour's events (steps.CHANGE_ONE_PERCENT)
    instance: Any = None
    closing: ExitStack = field(default_factory=ExitStack)  # closed when the run ends

    def __post_init__(self) -> None:
        self.layout = layout_for(self.scale)

    def run_id(self, label: str) -> str:
        self.runs += 1
        return f"bench-{label}-{self.runs}-{uuid.uuid4().hex[:8]}"

    def execute(self, statement: Any, params: dict[str, object] | None = None,
                autocommit: bool = False) -> None:  # fmt: skip
        with connect(self.url) as conn:
            conn.autocommit = autocommit
            conn.execute(statement, params)
            if not autocommit:
                conn.commit()

    def dagster_instance(self) -> Any:
        """The production Dagster instance, as users run on it: ``dagster.yaml`` in a
        DAGSTER_HOME of its own, runs and event log in PostgreSQL on the benchmark's server
        (DAGSTER_STORAGE_DATABASE); opened once, closed with ``closing``."""
        if self.instance is None:
            home = self.closing.enter_context(tempfile.TemporaryDirectory(prefix="bench-dg-"))
            local = local_instance(self.url, Path(home), DAGSTER_STORAGE_DATABASE)
            self.instance = self.closing.enter_context(open_instance(local))
        return self.instance


def run_case(bench: Bench, case: Case) -> None:
    """Measure ``case`` in rounds and add its figures, facts and verdicts to the results."""
    span = case.span(bench.layout)
    rounds = bench.rounds if bench.rounds == 1 else max(bench.rounds, case.min_rounds)
    bench.say(f"{case.name}: {case.what}; {rounds} round(s) of {len(case.steps)} steps")
    taken: dict[str, list[Taken]] = {step.name: [] for step in case.steps}
    if case.setup is not None:
        case.setup(bench, span)
    try:
        for index in range(rounds):
            order = case.steps[::-1] if case.alternate and index % 2 else case.steps
            for step in order:
                if step.prepare is not None:
                    step.prepare(bench, span)
                taken[step.name].append(step.measure(bench, span))
        bench.results.facts[case.name] = (case.facts or span_facts)(bench, span)
    finally:
        if case.teardown is not None:
            case.teardown(bench, span)
    record(bench.results, case, taken)


def span_facts(bench: Bench, span: Span) -> str:
    """The span's events, rollups and exceptions."""
    events, rollups, exceptions = steps.span_facts(bench, span)
    return (
        f"{events:,} events in {span.hours:,} hour(s), {rollups:,} rollups and "
        f"{exceptions:,} exceptions"
    )


def record(results: Results, case: Case, taken: dict[str, list[Taken]]) -> None:
    """The case's figures, its goals judged on their medians, and the details behind them."""
    values = {name: [t.value for t in runs] for name, runs in taken.items()}
    for net in case.nets:
        values[net.name] = [g - s for g, s in zip(values[net.gross], values[net.less], strict=True)]
    units = {step.name: step.unit for step in case.steps}
    for step in case.steps:
        proofs = [t.proof for t in taken[step.name] if t.proof is not None]
        note = "" if not proofs else _proof_note(proofs)
        results.figures.append(
            Figure(case.name, step.name, step.label, Samples(tuple(values[step.name]), step.unit),
                   note)
        )  # fmt: skip
        results.details.extend(_detail_lines(case.name, step.name, taken[step.name]))
    for net in case.nets:
        results.figures.append(
            Figure(case.name, net.name, net.label, Samples(tuple(values[net.name])),
                   f"{net.gross} less {net.less}, round by round")
        )  # fmt: skip
    gross = {net.name: net.gross for net in case.nets}
    for goal in case.goals:
        runs = taken[gross.get(goal.measured, goal.measured)]
        proofs = [t.proof for t in runs if t.proof is not None]
        unit = units.get(goal.measured, "s")
        results.verdicts.append(judge(case.name, goal, values, unit, proofs))
        results.details.append(_round_by_round(case.name, goal, values))


def judge(
    case: str,
    goal: Goal,
    values: dict[str, list[float]],
    unit: str,
    proofs: Sequence[steps.WriteProof],
) -> Verdict:
    """``goal`` on the medians of ``values``: its target, what was observed, whether it holds."""
    measured = statistics.median(values[goal.measured])
    base = sum(statistics.median(values[name]) for name in goal.base)
    if goal.kind == AT_MOST_PLUS:
        target = f"<= +{goal.limit:g} {unit}"
        observed = f"{measured - base:+.1f} {unit}"
        passed = measured - base <= goal.limit
    else:
        ratio = measured / base
        target = f"{'<=' if goal.kind == AT_MOST else '>='} {goal.limit:g} x"
        observed = f"{ratio:.2f} x ({measured:.3f} against {base:.3f} {unit})"
        passed = ratio <= goal.limit if goal.kind == AT_MOST else ratio >= goal.limit
    if goal.clean:
        clean = bool(proofs) and all(proof.clean for proof in proofs)
        target += "; nothing written or locked"
        observed += "; " + ("nothing written or locked" if clean else _proof_note(proofs))
        passed = passed and clean
    return Verdict(case, goal.text, target, observed, passed)


def _proof_note(proofs: Sequence[steps.WriteProof]) -> str:
    if all(proof.clean for proof in proofs):
        return f"nothing written or locked in each of {len(proofs)} runs"
    return "WROTE: " + "; ".join(proof.describe() for proof in proofs if not proof.clean)


def _detail_lines(case: str, step: str, runs: list[Taken]) -> list[str]:
    lines = []
    proofs = [t.proof for t in runs if t.proof is not None]
    if proofs:
        said = sorted({proof.describe() for proof in proofs})
        lines.append(
            f"{case} / {step}: {'; '.join(said)}"
            + (f", in each of {len(proofs)} runs" if len(said) == 1 else "")
            + "; WAL written in all (its log rows, temp tables' catalog entries, commits): "
            + ", ".join(f"{proof.wal_bytes:,}" for proof in proofs)
            + " bytes"
        )
    parts: dict[str, list[float]] = {}
    for run in runs:
        for part, seconds in run.parts:
            parts.setdefault(part, []).append(seconds)
    if parts:
        lines.append(
            f"{case} / {step}, median seconds of each part: "
            + ", ".join(f"{part} {statistics.median(s):.2f}" for part, s in sorted(parts.items()))
        )
    return lines


def _round_by_round(case: str, goal: Goal, values: dict[str, list[float]]) -> str:
    measured = values[goal.measured]
    bases = [sum(round_) for round_ in zip(*(values[name] for name in goal.base), strict=True)]
    if goal.kind == AT_MOST_PLUS:
        each = ", ".join(f"{m - b:+.1f}" for m, b in zip(measured, bases, strict=True))
    else:
        each = ", ".join(f"{m / b:.2f}" for m, b in zip(measured, bases, strict=True))
    return f"{case} / {goal.text}, round by round: {each}"


def warm(bench: Bench, span: Span) -> None:
    """The aggregate floor once, untimed: the span's events in the caches."""
    steps.aggregate_floor(bench, span)


def settle(bench: Bench) -> None:
    """VACUUM the events and CHECKPOINT (where allowed)."""
    bench.execute(VACUUM_EVENTS, autocommit=True)
    steps.checkpoint(bench)


def run(bench: Bench, cases: Sequence[Case], load: bool = True) -> Results:
    """Load the data (unless told not to), then measure ``cases`` in order."""
    if load:
        bench.say(f"loading the {bench.scale.name} data set ...")
        with connect(bench.url) as conn:
            bench.results.loaded = load_all(conn, bench.scale)
        loaded = bench.results.loaded
        bench.say(f"loaded {loaded.events:,} events in {loaded.seconds:.1f} s; settling")
        settle(bench)
    steps.empty_outputs(bench, Span.of(bench.layout.hot))
    for case in cases:
        run_case(bench, case)
    steps.empty_outputs(bench, Span.of(bench.layout.hot))
    return bench.results
