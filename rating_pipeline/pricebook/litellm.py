"""Convert LiteLLM's ``model_prices_and_context_window.json`` into one pricebook version.

LiteLLM prices a token in USD as a JSON float (``"input_cost_per_token": 3e-06``). Each
price is read from its JSON text into a Decimal, never through a binary float, and scaled
exactly to USD per 1,000,000 tokens (``3``). Only models of mode ``chat`` or ``responses``
are imported: the requests whose usage ``billing_event`` counts in token classes.

A price with more than RATE_PLACES places per million tokens is float noise
(``2.9999900000000002e-06``): an error (``FloatNoiseError``) unless ``round_rates``, which
rounds it half-even and reports it. Every price the contract cannot hold is reported
(``Unmapped``), never guessed at: per-query, per-second and per-image prices, token
classes and tiers the contract does not know, multipliers, and sets without input and
output. A model is not imported where its per-token rates alone would bill it at prices not
its own: long-context thresholds that differ or that it cannot read (its long prompts would
bill at standard rates), prices by time of day, token prices of 0 beside prices it cannot
hold. Nothing is inherited: a tier or
long-context set without a cache rate in the source gets none. An entry keyed ``ft:<base>``
is imported as it is and noted: it prices only that exact id, never a served fine-tune's.
A name LiteLLM serves at an imported model's prices (an ``alias_of`` row, or a name in an
``aliases`` list) is derived from that model at multiplier 1. The YAML is written for the
loader, which checks it.
"""

from __future__ import annotations

import decimal
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rating_pipeline.errors import RatingPipelineError, first_named, shown
from rating_pipeline.money import (
    EXACT,
    RATE_LIMIT,
    RATE_PLACES,
    decimal_places,
    round_rate,
)
from rating_pipeline.pricebook.loader import (
    DERIVED_FROM,
    LONG_CONTEXT,
    LONG_CONTEXT_ABOVE,
    MAX_THRESHOLD,
    MULTIPLIER,
    RATE_KEYS,
    TIER_KEYS,
    PricebookLoadError,
    load_pricebooks,
    load_version_beside,
    parse_effective_from,
)
from rating_pipeline.pricebook.model import (
    CONTEXT_TIERS,
    LONG,
    SERVICE_TIERS,
    STANDARD,
    TOKEN_CLASSES,
    ModelRates,
    RateSet,
    is_fine_tune,
)
from rating_pipeline.records import BLANK_CHARACTERS, MAX_ID_LENGTH
from rating_pipeline.windows import WindowError

IMPORTED_MODES = ("chat", "responses")
MODELS_NAMED = 10  # how many dropped models the warning names
MODE = "mode"
PROVIDER = "litellm_provider"
TIERED_PRICING = "tiered_pricing"
OFF_PEAK = "off_peak_pricing"
RANGE = "range"
# LiteLLM bills these providers' long-context rates from the threshold itself (a prompt of
# N tokens or more); the contract's threshold is exclusive, so theirs is written as N - 1.
INCLUSIVE_THRESHOLD_PROVIDERS = frozenset({"xai"})
# LiteLLM's per-token price fields, by the token class each prices.
CLASS_FIELDS = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cache_read",
    "cache_creation_input_token_cost": "cache_write",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h",
    "output_cost_per_reasoning_token": "reasoning",
    "input_cost_per_audio_token": "audio_input",
    "output_cost_per_audio_token": "audio_output",
    "input_cost_per_image_token": "image_input",
}
FIELD_OF_CLASS = {token_class: name for name, token_class in CLASS_FIELDS.items()}
# A field's tier suffix, e.g. ``input_cost_per_token_batches``.
TIER_SUFFIXES = {"_batches": "batch", "_priority": "priority", "_flex": "flex"}
SUFFIX_OF_TIER = {tier: suffix for suffix, tier in TIER_SUFFIXES.items()}
# A field's long-context infix, before any tier suffix: ``..._above_200k_tokens``; at most
# 16 digits of thousands, past MAX_THRESHOLD and far below the 4300 digits int() converts.
_ABOVE = re.compile(r"(?P<field>.+)_above_(?P<thousands>[1-9][0-9]{0,15})k_tokens")
# A long-context price of a class in a spelling _ABOVE does not read (LiteLLM reads them):
# the tier before the threshold, or a threshold without its "k", of 0k, or of any other
# text between the last "_above_" and "_tokens" (LiteLLM reads any number there: "1.5k").
_ANY_ABOVE = re.compile(
    r"(?P<field>.+?)(_batches|_priority|_flex)?_above_(?:(?!_above_).)+?_tokens"
    r"(_batches|_priority|_flex)?"
)
_UNIT = re.compile(
    r"_per_(?P<unit>second|query|image|character|pixel|page|request|session|credit|"
    r"text_message|1k_calls|gb_per_day|unit)(_|$)"
)
# A field is a price when its name, or a name inside it, holds one of these.
PRICE_WORDS = ("cost", "pric", "per_token")
# LiteLLM serves other names at an entry's prices: a row ``{"alias_of": "<entry>"}``, and
# each name of an entry's ``aliases`` list.
ALIAS_OF = "alias_of"
ALIASES = "aliases"
# A long-context infix of a field name, in any spelling (``_above_128k_tokens``).
_THRESHOLD_INFIX = re.compile(r"_above_(?:(?!_above_).)+?_tokens")
# An older name of a price field, read as the newer one only where the entry lacks that.
_OLDER_NAMES = {"input_cost_per_token_cache_hit": "cache_read_input_token_cost"}
# LiteLLM keys a fine-tune's prices by its base (``ft:gpt-4o-2024-08-06``); a served
# fine-tune's id is its own, so the listed entry prices only an event of exactly that id.
FINE_TUNE_ENTRY = (
    "listed as it is, it prices only events whose model_id is exactly {}; a fine-tune's own "
    "id (OpenAI's ft:<base>:<org>:<suffix>:<id>) is another model, unpriced until listed with "
    "these rates or priced by fine_tune_multiplier"
)
# A file name made of the version: nothing that could leave the output directory.
_VERSION_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class LitellmFormatError(RatingPipelineError):
    """The file is not a LiteLLM price map this importer can read."""


class FloatNoiseError(RatingPipelineError):
    """Prices whose value per million tokens has more than RATE_PLACES places."""

    def __init__(self, noise: Iterable[Rounded]) -> None:
        self.noise = tuple(noise)
        super().__init__(
            f"{len(self.noise)} prices carry float noise; nothing written: rerun with --round "
            f"to round them half-even to {RATE_PLACES} places (each one is reported)"
        )

    def report_lines(self) -> list[str]:
        return [note.as_noise() for note in self.noise]


@dataclass(frozen=True)
class Unmapped:
    """A price the contract cannot hold, with why; ``value`` as the JSON writes it."""

    model: str
    field: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f"{shown(self.model)}: {shown(self.field)} {self.value}: {self.reason}"


@dataclass(frozen=True)
class Rounded:
    """A price whose value per million tokens (``rate``) had to be rounded to ``rounded``."""

    model: str
    field: str
    value: str
    rate: Decimal
    rounded: Decimal
    left_out: str | None = None  # why --round would not import it (its model, its set)

    def __str__(self) -> str:
        return (
            f"{shown(self.model)}: {shown(self.field)} {self.value} is {self.rate:f} per 1M "
            f"tokens, rounded half-even to {self.rounded:f}"
        )

    def as_noise(self) -> str:
        # Float noise mostly (2.9999900000000002e-06), but not always: 3.59375e-08 is exact.
        places = (
            f"{decimal_places(self.rate)} decimal places, more than the {RATE_PLACES} a rate holds"
        )
        if self.rounded.is_zero():  # a real price too small to hold
            outcome = "it rounds to 0, so --round would leave it out"
        elif self.left_out:
            outcome = f"--round would not import it: {self.left_out}"
        else:
            outcome = f"--round would import {self.rounded:f}"
        return (
            f"{shown(self.model)}: {shown(self.field)} {self.value} is {self.rate:f} per 1M "
            f"tokens, {places}; {outcome}"
        )


@dataclass(frozen=True)
class NotImported:
    """A chat model left out, and why: no usable per-token input or output price, or
    prices the contract cannot hold without billing some prompts at other rates."""

    model: str
    reason: str

    def __str__(self) -> str:
        return f"{shown(self.model)}: {self.reason}"


@dataclass(frozen=True)
class ImportedVersion:
    """One version's YAML text and the report of what it could not carry as is."""

    text: str
    models: int
    entries: int
    skipped_modes: Mapping[str, int]
    not_imported: tuple[NotImported, ...]
    rounded: tuple[Rounded, ...]
    unmapped: tuple[Unmapped, ...]
    notes: tuple[str, ...] = ()  # "<model>: <what an imported model will not bill>"

    def report_lines(self) -> list[str]:
        """Every model left out, rate rounded and price not mapped, and what an imported
        model will not bill (``_notes``), one line each."""
        skipped = ", ".join(f"{count} {mode}" for mode, count in self.skipped_modes.items())
        return [
            *(f"not imported: {note}" for note in self.not_imported),
            *(f"rounded: {note}" for note in self.rounded),
            *(f"not mapped: {note}" for note in self.unmapped),
            *(f"note: {note}" for note in self.notes),
            *([f"skipped: {skipped}"] if skipped else []),
        ]


@dataclass
class _Report:
    """What one conversion found, collected as it goes."""

    round_rates: bool
    not_imported: list[NotImported] = field(default_factory=list)
    rounded: list[Rounded] = field(default_factory=list)
    noise: list[Rounded] = field(default_factory=list)
    unmapped: list[Unmapped] = field(default_factory=list)
    # The model at hand's fields read under another name than the source's (a range's
    # prices, an older name): reports name each as the source does.
    source_names: dict[str, str] = field(default_factory=dict)

    def source_name(self, name: str) -> str:
        return self.source_names.get(name, name)

    def unmap(self, model: str, name: str, value: object, reason: str) -> None:
        self.unmapped.append(Unmapped(model, self.source_name(name), _shown(value), reason))


@dataclass(frozen=True)
class _Slot:
    """Where a field's price goes: service tier, long-context threshold, token class."""

    tier: str
    thousands: int | None
    token_class: str


class _JsonNumber(str):
    """A JSON number kept as its text (the JSON parser never builds a float)."""

    __slots__ = ()


class _JsonConstant(str):
    """NaN, Infinity or -Infinity, which Python's JSON parser reads (JSON has none): no
    price, reported where it stands as one."""

    __slots__ = ()


def convert_litellm(
    text: str, *, version: str, effective_from: str, round_rates: bool
) -> ImportedVersion:
    """The pricebook version of every chat or responses model of the LiteLLM map ``text``.

    Raises LitellmFormatError for a file that is not such a map (invalid JSON, a duplicated
    key), and FloatNoiseError when a price has float noise and ``round_rates`` is false.
    The text is not validated here: ``write_version`` loads it before it writes it.
    """
    if not effective_from.isprintable():
        raise LitellmFormatError(
            f"--effective-from {shown(effective_from)} is no instant such as 2026-10-01T00:00:00Z"
        )
    try:
        parse_effective_from(effective_from)
    except WindowError as exc:
        raise LitellmFormatError(f"--effective-from {effective_from!r}: {exc}") from exc
    entries = _parse(text)
    report = _Report(round_rates)
    skipped: Counter[str] = Counter()
    models: dict[str, ModelRates] = {}
    for model_id, entry in sorted(entries.items()):
        if _is_alias_row(entry):
            continue
        mode = entry.get(MODE)
        if mode not in IMPORTED_MODES:
            skipped[_mode_name(mode)] += 1
            continue
        if not _usable_id(model_id):
            report.not_imported.append(NotImported(model_id, "no usable model id"))
            continue
        noise, rounded, unmapped = len(report.noise), len(report.rounded), len(report.unmapped)
        rates = _model_rates(model_id, entry, report)
        if rates is not None:
            models[model_id] = rates
        # A price of a model, or of a rate set, left out imports no rate: it is not rounded.
        unmapped_fields = {u.field for u in report.unmapped[unmapped:]}
        report.rounded[rounded:] = [
            r for r in report.rounded[rounded:] if not _left_out(r, rates, unmapped_fields)
        ]
        report.noise[noise:] = [
            replace(n, left_out=_left_out(n, rates, unmapped_fields)) for n in report.noise[noise:]
        ]
    if report.noise:
        raise FloatNoiseError(report.noise)
    served_as = _aliases_served(entries, report)
    derived = _aliases_derived(served_as, entries, models, skipped, report)
    return ImportedVersion(
        text=_version_yaml(version, effective_from, models, derived),
        models=len(models) + len(derived),
        entries=len(models) + len(derived) + len(report.not_imported),
        skipped_modes=MappingProxyType(dict(sorted(skipped.items()))),
        not_imported=tuple(report.not_imported),
        rounded=tuple(report.rounded),
        unmapped=tuple(report.unmapped),
        notes=tuple(note for model_id, rates in models.items() for note in _notes(model_id, rates)),
    )


def _is_alias_row(entry: dict[str, Any]) -> bool:
    return _is_name(entry.get(ALIAS_OF))


def _is_name(value: object) -> bool:
    """A JSON string: a number is kept as its text (``_JsonNumber``) but names nothing."""
    return type(value) is str


def _aliases_served(entries: dict[str, dict[str, Any]], report: _Report) -> dict[str, str]:
    """Each name LiteLLM serves at another entry's prices, by that entry, resolved as its
    loader resolves them: a model's ``aliases`` claim names no model has, first claim
    first; then an ``alias_of`` row names a model, unless a list claimed it. A row naming
    no model is reported (LiteLLM drops it), as is any price beside ``alias_of``."""
    pointers = {name: entry[ALIAS_OF] for name, entry in entries.items() if _is_alias_row(entry)}
    served_as: dict[str, str] = {}
    for name, entry in entries.items():
        names = entry.get(ALIASES)
        if name in pointers or not isinstance(names, list):
            continue
        for alias in names:
            if _is_name(alias) and (alias not in entries or alias in pointers):
                served_as.setdefault(alias, name)
    for alias, target in pointers.items():
        if alias in served_as or (target in entries and target not in pointers):
            served_as.setdefault(alias, target)
            why = (
                f"beside {ALIAS_OF}: LiteLLM serves this name at {shown(served_as[alias])}'s prices"
            )
        else:
            reason = f"an alias of {shown(target)}, which is no model of the map (LiteLLM drops it)"
            report.not_imported.append(NotImported(alias, reason))
            why = f"beside {ALIAS_OF}, whose row LiteLLM drops"
        for name, value in entries[alias].items():
            if name != ALIAS_OF and (_slot(name) is not None or _looks_like_a_price(name, value)):
                report.unmap(alias, name, value, why)
    return served_as


def _aliases_derived(
    served_as: dict[str, str],
    entries: dict[str, dict[str, Any]],
    models: dict[str, ModelRates],
    skipped: Counter[str],
    report: _Report,
) -> dict[str, str]:
    """Each alias of an imported true base, by that base: derived from it at multiplier 1,
    one price for every name of the model, as LiteLLM has one entry for them. An alias of
    a model of a skipped mode is counted with it; any other is reported."""
    derived: dict[str, str] = {}
    for alias, target in sorted(served_as.items()):
        mode = entries[target].get(MODE)
        if mode not in IMPORTED_MODES:
            skipped[_mode_name(mode)] += 1
        elif not _usable_id(alias):
            report.not_imported.append(NotImported(alias, "no usable model id"))
        elif target not in models:
            reason = f"an alias of {shown(target)}, which is not imported"
            report.not_imported.append(NotImported(alias, reason))
        elif is_fine_tune(target):
            reason = (
                f"an alias of the fine-tune entry {shown(target)}: only a true base is derived from"
            )
            report.not_imported.append(NotImported(alias, reason))
        else:
            derived[alias] = target
    return derived


def _notes(model_id: str, rates: ModelRates) -> Iterator[str]:
    """What the imported model will not bill as its source might: an ``ft:<base>`` entry
    prices one exact id, and a tier priced flat beside a threshold is unpriced above it."""
    if is_fine_tune(model_id):
        yield f"{shown(model_id)}: {FINE_TUNE_ENTRY.format(shown(model_id))}"
    threshold = rates.long_context_above_tokens
    for tier, context in rates.sets:
        if threshold is None or context != STANDARD or (tier, LONG) in rates.sets:
            continue
        yield (
            f"{shown(model_id)}: its {tier} rates have no long-context set in the source: "
            f"{tier} requests whose prompt is above {threshold} tokens are unpriced until one "
            "is added (a model has one threshold, and nothing is inherited)"
        )


def _mode_name(mode: object) -> str:
    """A mode as the skipped line counts it: ``(no mode)`` for none, its text, or its JSON
    when it is no string, does not print, is padded, or holds the line's separator (a
    comma)."""
    if mode is None:
        return "(no mode)"
    if isinstance(mode, str) and mode.isprintable() and mode == mode.strip() and "," not in mode:
        return mode
    return _shown(mode)


def version_file_name(version: str) -> str:
    """``VERSION.yaml``; LitellmFormatError for a version that is no plain file name."""
    if not _VERSION_FILE_NAME.fullmatch(version):
        raise LitellmFormatError(
            f"version {version!r} must be a plain file name (letters, digits, '.', '_', '-')"
        )
    return f"{version}.yaml"


def _usable_id(model_id: str) -> bool:
    """An id a pricebook can list: printable, not blank, no blanks around it, no longer
    than an event's can be."""
    stripped = model_id.strip(BLANK_CHARACTERS)
    return (
        bool(stripped)
        and stripped == model_id
        and model_id.isprintable()
        and len(model_id) <= MAX_ID_LENGTH
    )


# --- reading the JSON ---------------------------------------------------------------------


def _parse(text: str) -> dict[str, dict[str, Any]]:
    """The map's entries; every number kept as its JSON text, every duplicate refused."""
    try:
        data = json.loads(
            text,
            parse_float=_JsonNumber,
            parse_int=_JsonNumber,
            parse_constant=_JsonConstant,
            object_pairs_hook=_object,
        )
    except json.JSONDecodeError as exc:
        raise LitellmFormatError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise LitellmFormatError(TOO_DEEP.format(where="the file")) from None
    if not isinstance(data, _Object):
        raise LitellmFormatError("expected a JSON object of models, as LiteLLM's price map is")
    if data.duplicate is not None:
        path, key = data.duplicate
        if not path:
            raise LitellmFormatError(f"model {key!r} is listed twice")
        inside = repr(path[0]) + "".join(f"[{place!r}]" for place in path[1:])
        raise LitellmFormatError(f"duplicated key {key!r} in {inside}")
    for model_id, entry in data.items():
        if not isinstance(entry, dict):
            raise LitellmFormatError(f"{model_id!r} is not a JSON object of fields")
        if _nesting(entry) > MAX_NESTING:
            raise LitellmFormatError(TOO_DEEP.format(where=f"model {model_id!r}"))
    return data


# LiteLLM's deepest price (a range's bound) is 3 levels inside its model's object.
MAX_NESTING = 16
TOO_DEEP = f"{{where}} holds values nested more than {MAX_NESTING} levels deep: no price map does"


def _nesting(value: Any) -> int:
    """How many objects and lists deep ``value`` goes (1 for a flat object), counted
    without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            inner = item.values() if isinstance(item, dict) else item
            stack.extend((nested, depth + 1) for nested in inner)
    return deepest


class _Object(dict[str, Any]):
    """A JSON object, and the first key written twice in it or in an object inside it (a
    JSON parser keeps the last), with the keys and list places down to that object."""

    duplicate: tuple[tuple[str | int, ...], str] | None = None


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    """A JSON object, carrying up the first duplicated key found in it or inside it
    (objects are built innermost first), for _parse to name it from the model down."""
    result = _Object()
    for key, value in pairs:
        if result.duplicate is None and key in result:
            result.duplicate = ((), key)
        if result.duplicate is None:
            for place, inner in _objects_within((key,), value):
                if inner.duplicate is not None:
                    path, duplicated = inner.duplicate
                    result.duplicate = (place + path, duplicated)
                    break
        result[key] = value
    return result


def _objects_within(
    place: tuple[str | int, ...], value: Any
) -> Iterator[tuple[tuple[str | int, ...], _Object]]:
    """``value`` if it is an object, or the objects of a list, of lists in it, with their
    place: the keys and list indexes down to each (``("tiered_pricing", 0)``)."""
    stack = [(place, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, _Object):
            yield where, item
        elif isinstance(item, list):
            stack.extend(reversed([((*where, i), inner) for i, inner in enumerate(item)]))


def write_version(directory: Path, version: str, text: str) -> Path:
    """Write ``text`` as ``directory/VERSION.yaml`` once the loader accepts it there, beside
    the versions already in it (else its PricebookLoadError, nothing written); never over
    an existing file."""
    path = Path(directory) / version_file_name(version)
    if path.exists() or path.is_symlink():  # a link to nothing is a name taken too
        raise LitellmFormatError(
            f"{path} already exists: a version file is never rewritten; choose another --version"
        )
    load_version_beside(text, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x", encoding="utf-8") as file:
        file.write(text)
    return path


def _left_out(note: Rounded, rates: ModelRates | None, unmapped: set[str]) -> str | None:
    """Why the price of ``note`` is not imported after all, or None: its model is left out
    (``rates`` None), or its rate set is (the price is reported not mapped)."""
    if rates is None:
        return "the model is left out (see its other prices)"
    return "it is not mapped (see its line)" if note.field in unmapped else None


def models_dropped(path: Path) -> str | None:
    """The warning for the version just written at ``path``: the models the version before
    it prices and it does not, whose events go unpriced from its effective_from (an
    imported version has no fine_tune_multiplier, so a dropped fine-tune goes unpriced
    too, if not as an unknown model). None when none, no version precedes it, or its
    directory does not load."""
    try:
        versions = load_pricebooks(path.parent).versions
    except PricebookLoadError:
        return None
    at = next(i for i, v in enumerate(versions) if v.source_file == str(path))
    if at == 0:
        return None
    before, written = versions[at - 1], versions[at]
    dropped = sorted(set(before.models) - set(written.models))
    if not dropped:
        return None
    return (
        f"warning: {len(dropped)} models of version {before.version} are not in "
        f"{written.version}: from {written.effective_from.isoformat()} their events are "
        f"unpriced: {first_named(dropped, MODELS_NAMED)}"
    )


# --- one model ----------------------------------------------------------------------------


def _model_rates(model_id: str, entry: dict[str, Any], report: _Report) -> ModelRates | None:
    """The model's rate sets, or None when it has no usable input and output price, or
    prices the contract cannot hold without billing some prompts at other rates."""
    report.source_names = {}
    for older, newer in _OLDER_NAMES.items():
        if older in entry and newer not in entry:
            entry = {newer if name == older else name: value for name, value in entry.items()}
            report.source_names[newer] = older
    ranged = TIERED_PRICING in entry
    flat = _flattened(model_id, entry, report)
    if isinstance(flat, NotImported):
        report.not_imported.append(flat)
        for name, value in entry.items():
            if _slot(name) is not None or name == TIERED_PRICING:
                report.unmap(model_id, name, value, f"model not imported: {flat.reason}")
            elif (reason := _why_not_a_price(name, value)) is not None:
                report.unmap(model_id, name, value, reason)
        return None
    entry = flat
    slots: dict[_Slot, tuple[str, Decimal]] = {}
    for name, value in entry.items():
        slot = _slot(name)
        if slot is None:
            reason = _why_not_a_price(name, value)
            if reason is not None:
                report.unmap(model_id, name, value, reason)
            continue
        rate = _rate(model_id, name, value, report)
        if rate is not None:
            slots[slot] = (name, rate)
    held_back = _prices_it_cannot_hold(entry, slots) or _threshold_it_cannot_hold(slots)
    if held_back is not None:
        why, told, causes = held_back
        _leave_out(model_id, entry, slots, report, why, told, causes)
        return None
    threshold = next((slot.thousands for slot in slots if slot.thousands is not None), None)
    sets = _complete_sets(model_id, entry, slots, report)
    if (STANDARD, STANDARD) not in sets:
        _not_imported(model_id, entry, slots, report)
        return None
    if threshold is None:
        return ModelRates(MappingProxyType(sets), None)
    if not any(context == LONG for _, context in sets):
        # Imported without it, its long prompts would bill at standard rates.
        why = f"long-context prices above {threshold}k tokens make no complete rate set"
        _leave_out(model_id, entry, slots, report, why, why)
        return None
    # Ranges are exclusive for every provider (start < prompt <= end).
    provider = entry.get(PROVIDER)
    inclusive = (
        not ranged and isinstance(provider, str) and provider in INCLUSIVE_THRESHOLD_PROVIDERS
    )
    return ModelRates(MappingProxyType(sets), threshold * 1000 - (1 if inclusive else 0))


# Why a model is left out, as its prices are told and as the list of models tells it, and
# the fields beside its per-token prices that are the cause.
_HeldBack = tuple[str, str, list[str]]


def _threshold_it_cannot_hold(slots: dict[_Slot, tuple[str, Decimal]]) -> _HeldBack | None:
    """Thresholds that differ within the model, or one past the largest a pricebook holds."""
    thresholds = sorted({slot.thousands for slot in slots if slot.thousands is not None})
    if len(thresholds) > 1:
        listed = ", ".join(f"{thousands}k" for thousands in thresholds)
        why = f"long-context thresholds differ within it ({listed} tokens)"
        return why, why.replace(" within it", ""), []
    if thresholds and thresholds[0] * 1000 > MAX_THRESHOLD:
        why = (
            f"a long-context threshold of {thresholds[0]}k tokens is past the largest a "
            f"pricebook holds ({MAX_THRESHOLD} tokens)"
        )
        return why, why, []
    return None


def _prices_it_cannot_hold(
    entry: dict[str, Any], slots: dict[_Slot, tuple[str, Decimal]]
) -> _HeldBack | None:
    """Why the model's per-token rates alone would bill it at prices not its own, and the
    fields that say so; None when they would not. Prices the contract cannot hold that come
    on top of the tokens' (per query, per image beside token prices) are only reported."""
    if OFF_PEAK in entry:
        why = "prices by time of day replace its per-token prices part of the time"
        return why, why, [OFF_PEAK]
    unread = [
        name
        for name in entry
        if (above := _ANY_ABOVE.fullmatch(name)) is not None
        and above["field"] in CLASS_FIELDS
        and _slot(name) is None
    ]
    if unread:
        why = f"a long-context price it cannot read ({', '.join(map(shown, unread))})"
        return why, why, unread
    beside = [
        name
        for name, value in entry.items()
        if _slot(name) is None
        and _why_not_a_price(name, value) is not None
        and _holds_a_positive_price(value)
    ]
    if beside and slots and all(rate == 0 for _, rate in slots.values()):
        why = "every per-token price is 0 and it has prices the contract cannot hold"
        return why, why, beside
    return None


def _holds_a_positive_price(value: object) -> bool:
    """A number above 0, or an object, list or text holding one (a per-query price object)."""
    if isinstance(value, _JsonNumber):
        return Decimal(value) > 0
    if isinstance(value, str):
        try:
            return Decimal(value.strip()) > 0
        except decimal.DecimalException:
            return False
    if isinstance(value, dict):
        return any(_holds_a_positive_price(inner) for inner in value.values())
    if isinstance(value, list):
        return any(_holds_a_positive_price(inner) for inner in value)
    return False


def _flattened(
    model_id: str, entry: dict[str, Any], report: _Report
) -> dict[str, Any] | NotImported:
    """The entry with two price ranges by prompt size read as one threshold: the first
    range's prices as the standard fields, the second's as ``_above_<N/1000>k_tokens``
    fields (LiteLLM bills a whole request at the range its prompt falls in, start < prompt
    <= end: the contract's exclusive threshold N). NotImported where ranges the contract
    cannot hold would bill some prompts at the flat prices; where a flat price differs from
    the range's price of the same prompts, using either would change a price silently. A
    flat price of another class or tier, at no threshold or the split, is reported and left
    out: whether LiteLLM charges it beside ranges depends on its code path, not the map."""
    ranges = entry.get(TIERED_PRICING)
    if ranges is None:
        return entry
    split = _split_at(ranges)
    if split is None:  # with flat prices or without, the ranges are where its prices are
        count = len(ranges) if isinstance(ranges, list) else "unreadable"
        return NotImported(
            model_id, f"price ranges by prompt size the contract cannot hold ({count} ranges)"
        )
    flat = {name: value for name, value in entry.items() if name != TIERED_PRICING}
    from_ranges: dict[str, Any] = {}
    for index, suffix in ((0, ""), (1, f"_above_{split // 1000}k_tokens")):
        for name, value in ranges[index].items():
            if name == RANGE:
                continue
            slot = _slot(name)
            if slot is None or slot != _Slot(STANDARD, None, slot.token_class):
                where = f"{TIERED_PRICING}[{index}].{name}"
                reason = (
                    f"an older name for {_OLDER_NAMES[name]}, not read inside a price range"
                    if name in _OLDER_NAMES
                    else _why_not_a_price(name, value) or "not a price"
                )
                report.unmap(model_id, where, value, reason)
                continue
            field = name + suffix
            if field in flat and not _same_price(flat[field], value):
                return NotImported(model_id, f"{field} differs from {TIERED_PRICING}[{index}]'s")
            from_ranges[field] = value
            report.source_names[field] = f"{TIERED_PRICING}[{index}].{name}"
    for name, value in list(flat.items()):
        slot = _slot(name)
        if slot is None or name in from_ranges or slot.thousands not in (None, split // 1000):
            continue
        del flat[name]
        report.unmap(
            model_id,
            name,
            value,
            f"beside {TIERED_PRICING}, whose ranges alone are read: left unpriced",
        )
    return {**flat, **from_ranges}


def _same_price(one: object, other: object) -> bool:
    """Both are JSON numbers of the same value."""
    numbers = isinstance(one, _JsonNumber) and isinstance(other, _JsonNumber)
    return numbers and Decimal(one) == Decimal(other)  # type: ignore[arg-type]


def _split_at(ranges: object) -> int | None:
    """N for exactly two ranges [0, N] and [N, M], M > N, with N a multiple of 1000 tokens
    (how thresholds are written) from 1000 to MAX_THRESHOLD, else None. Bounds are JSON
    numbers, compared exactly: no decimal context rounds or traps on the way."""
    if not isinstance(ranges, list) or len(ranges) != 2:
        return None
    bounds = [r.get(RANGE) if isinstance(r, dict) else None for r in ranges]
    if not all(isinstance(b, list) and len(b) == 2 for b in bounds):
        return None
    numbers = [v for b in bounds for v in b]  # type: ignore[union-attr]
    if not all(isinstance(v, _JsonNumber) for v in numbers):
        return None
    try:
        low, split, again, end = (Decimal(v) for v in numbers)
    except decimal.DecimalException:
        return None
    if low != 0 or again != split or not 0 < split <= MAX_THRESHOLD or end <= split:
        return None
    whole = int(split)  # at most MAX_THRESHOLD: exact
    return whole if whole == split and whole % 1000 == 0 else None


def _slot(name: str) -> _Slot | None:
    """Where the price named ``name`` goes, or None when it is not one the contract knows."""
    tier, rest = STANDARD, name
    for suffix, suffix_tier in TIER_SUFFIXES.items():
        if name.endswith(suffix):
            tier, rest = suffix_tier, name[: -len(suffix)]
            break
    thousands = None
    above = _ABOVE.fullmatch(rest)
    if above is not None:
        rest, thousands = above["field"], int(above["thousands"])
    token_class = CLASS_FIELDS.get(rest)
    return None if token_class is None else _Slot(tier, thousands, token_class)


def _looks_like_a_price(name: str, value: object) -> bool:
    """A price by its name, or a structure with one inside: LiteLLM's map grows new price
    fields, and one the importer does not know must be reported, never dropped."""
    if any(word in name for word in PRICE_WORDS):
        return True
    if isinstance(value, dict):
        return any(_looks_like_a_price(key, inner) for key, inner in value.items())
    if isinstance(value, list):
        return any(_looks_like_a_price("", item) for item in value)
    return False


def _why_not_a_price(name: str, value: object) -> str | None:
    """Why a field that is no contract price is reported, or None for a non-price field."""
    if name in _OLDER_NAMES:
        return f"an older name for {_OLDER_NAMES[name]}, which is read instead"
    if name == OFF_PEAK:
        return "prices by time of day: the contract has none"
    if name == "provider_specific_entry":
        return "price multipliers by region or speed: the contract has none"
    if "multiplier" in name:
        return "a price multiplier: the contract has none"
    if not _looks_like_a_price(name, value):
        return None
    unit = _UNIT.search(name)
    per_token = "token" in _THRESHOLD_INFIX.sub("", name)
    if unit is not None and not per_token:
        return f"priced per {unit['unit'].replace('_', ' ')}: the contract prices tokens only"
    if per_token:
        return "a per-token price of a class, tier or threshold the contract does not know"
    return "not a per-token price the contract knows"


def _rate(model_id: str, name: str, value: object, report: _Report) -> Decimal | None:
    """USD per 1,000,000 tokens, exactly, from the JSON text; None (reported) if unusable."""
    if isinstance(value, _JsonConstant):
        report.unmap(model_id, name, value, "not a finite number")
        return None
    if not isinstance(value, _JsonNumber):
        report.unmap(model_id, name, value, "not a number")
        return None
    try:
        rate = Decimal(value).scaleb(6, context=EXACT)
    except decimal.DecimalException:
        report.unmap(model_id, name, value, "too many digits to scale exactly")
        return None
    if rate < 0:
        report.unmap(model_id, name, value, "a negative price")
        return None
    if decimal_places(rate) > RATE_PLACES:
        rounded = _rounded(model_id, name, value, rate, report)
        if rounded is None:
            return None
        rate = rounded
    if rate >= RATE_LIMIT:
        report.unmap(model_id, name, value, f"not below {RATE_LIMIT:f} per 1M tokens")
        return None
    return Decimal(0) if rate.is_zero() else rate.normalize(EXACT)  # -0 and 0E-12 are 0


def _rounded(
    model_id: str, name: str, value: str, rate: Decimal, report: _Report
) -> Decimal | None:
    """Float noise: rounded half-even to RATE_PLACES places when asked, always reported.
    A positive price that rounds to 0 is never imported: it would bill a class free."""
    rounded = round_rate(rate)
    note = Rounded(model_id, report.source_name(name), value, rate, rounded.normalize(EXACT))
    if not report.round_rates:
        # Nothing is written while any noise stands; the model is followed as --round
        # would import it, so that noise of a model it would leave out is not told.
        report.noise.append(note)
        return None if rounded.is_zero() else rounded
    if rounded.is_zero():
        reason = (
            f"{rate:f} per 1M tokens rounds to 0 at {RATE_PLACES} places: "
            "a priced class is never imported free"
        )
        report.unmap(model_id, name, value, reason)
        return None
    report.rounded.append(note)
    return rounded


def _complete_sets(
    model_id: str, entry: dict[str, Any], slots: dict[_Slot, tuple[str, Decimal]], report: _Report
) -> dict[tuple[str, str], RateSet]:
    """Every set with its input and output, in the order tiers and contexts are listed;
    the prices of an incomplete set, or of a long-context set whose tier has no set, are
    reported."""
    sets: dict[tuple[str, str], RateSet] = {}
    for tier in SERVICE_TIERS:
        for context in CONTEXT_TIERS:
            members = {
                slot.token_class: name_rate
                for slot, name_rate in slots.items()
                if slot.tier == tier and (slot.thousands is not None) == (context == LONG)
            }
            if not members:
                continue
            problem = _incomplete(tier, context, members, sets, report)
            if problem is not None and tier == STANDARD and (STANDARD, STANDARD) not in sets:
                return sets  # the model is not imported: _not_imported reports its prices
            if problem is None:
                rates = {cls: members[cls][1] for cls in TOKEN_CLASSES if cls in members}
                sets[(tier, context)] = RateSet(MappingProxyType(rates))
                continue
            for name, _ in members.values():
                report.unmap(model_id, name, entry[name], problem)
    return sets


def _incomplete(
    tier: str,
    context: str,
    members: dict[str, tuple[str, Decimal]],
    sets: dict[tuple[str, str], RateSet],
    report: _Report,
) -> str | None:
    """Why a set cannot be imported, or None."""
    label = ("" if tier == STANDARD else f"{tier} ") + ("long-context " if context == LONG else "")
    if context == LONG and (tier, STANDARD) not in sets and tier != STANDARD:
        return f"{label}rates without {tier} rates to belong to"
    missing = [cls for cls in ("input", "output") if cls not in members]
    if not missing:
        return None
    some = next(iter(members.values()))[0]
    names = [_missing_field(some, cls, report) for cls in missing]
    return f"{label}rates lack {', '.join(names)}: a rate set needs input and output"


def _missing_field(example: str, token_class: str, report: _Report) -> str:
    """The field the source would price ``token_class`` with, beside ``example``: in the
    same range when ``example`` was read from one (``tiered_pricing[1].output_cost_per_token``)."""
    source = report.source_name(example)
    if source.startswith(f"{TIERED_PRICING}["):
        return f"{source.split('.')[0]}.{FIELD_OF_CLASS[token_class]}"
    return _field_like(example, token_class)


def _field_like(example: str, token_class: str) -> str:
    """The field that would price ``token_class`` in the same tier and context as ``example``."""
    slot = _slot(example)
    assert slot is not None  # only slot fields are members of a set
    above = "" if slot.thousands is None else f"_above_{slot.thousands}k_tokens"
    suffix = SUFFIX_OF_TIER.get(slot.tier, "")
    return FIELD_OF_CLASS[token_class] + above + suffix


def _leave_out(
    model_id: str,
    entry: dict[str, Any],
    slots: dict[_Slot, tuple[str, Decimal]],
    report: _Report,
    why: str,
    told: str,
    causes: Iterable[str] = (),
) -> None:
    """A model whose prices the contract cannot hold without billing some prompts at other
    rates: left out (``told`` in the list of models not imported), each of its prices and
    the fields that ``causes`` it reported once, for ``why``, in place of any note on them
    so far."""
    report.not_imported.append(NotImported(model_id, told))
    named = [
        *(name for name, _ in slots.values()),
        *causes,
        *_unread_older_names(model_id, entry, report),
    ]
    told_of = {report.source_name(name) for name in named}
    report.unmapped = [
        note for note in report.unmapped if note.model != model_id or note.field not in told_of
    ]
    for name in named:
        report.unmap(model_id, name, entry[name], f"model not imported: {why}")


def _not_imported(
    model_id: str, entry: dict[str, Any], slots: dict[_Slot, tuple[str, Decimal]], report: _Report
) -> None:
    """A model without a usable standard input and output: left out, all its prices told."""
    standard = {
        slot.token_class for slot in slots if slot.tier == STANDARD and slot.thousands is None
    }
    missing = tuple(FIELD_OF_CLASS[c] for c in ("input", "output") if c not in standard)
    report.not_imported.append(NotImported(model_id, f"no usable {', '.join(missing)}"))
    unread_older_names = _unread_older_names(model_id, entry, report)
    reported = {note.field for note in report.unmapped if note.model == model_id}
    reason = f"model not imported: it has no usable {', '.join(missing)}"
    for name in [*(name for name, _ in slots.values()), *unread_older_names]:
        if report.source_name(name) not in reported:
            report.unmap(model_id, name, entry[name], reason)


def _unread_older_names(model_id: str, entry: dict[str, Any], report: _Report) -> list[str]:
    """The older names in ``entry`` (beside their newer ones: never read), their notes so
    far withdrawn: the model is left out, so nothing is read instead of them."""
    older = [name for name in _OLDER_NAMES if name in entry]
    report.unmapped = [
        note for note in report.unmapped if note.model != model_id or note.field not in older
    ]
    return older


def _shown(value: object) -> str:
    """A JSON value as a report line shows it, whole, on one line: every number its own
    text (an object of per-query prices, a list of price ranges), every string as JSON
    writes it, with \\u escapes when a character of it does not print."""
    text = _json_text(value, ascii_only=False)
    return text if text.isprintable() else _json_text(value, ascii_only=True)


def _json_text(value: object, *, ascii_only: bool) -> str:
    if isinstance(value, _JsonNumber | _JsonConstant):
        return str(value)
    if isinstance(value, dict):
        members = (
            f"{json.dumps(k, ensure_ascii=ascii_only)}: {_json_text(v, ascii_only=ascii_only)}"
            for k, v in value.items()
        )
        return "{" + ", ".join(members) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_json_text(item, ascii_only=ascii_only) for item in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


# --- writing the YAML ---------------------------------------------------------------------


def _version_yaml(
    version: str, effective_from: str, models: dict[str, ModelRates], derived: dict[str, str]
) -> str:
    lines = [
        "# Imported from LiteLLM's model_prices_and_context_window.json by",
        "# `rating-pipeline pricebook import litellm`: chat and responses models with",
        "# per-token input and output prices, USD per 1,000,000 tokens, and each name",
        "# LiteLLM serves at one's prices, derived from it at multiplier 1. What it could",
        "# not map, and every rate it rounded, is listed in the import's report.",
        f"version: {_quoted(version)}",
        f"effective_from: {_quoted(effective_from)}",
        "currency: USD",
        "models:",
    ]
    for model_id in sorted([*models, *derived]):
        lines.append(f"  {_quoted(model_id)}:")
        if model_id in derived:
            lines += [f"    {DERIVED_FROM}: {_quoted(derived[model_id])}", f'    {MULTIPLIER}: "1"']
        else:
            lines.extend(_model_lines(models[model_id]))
    return "\n".join(lines) + "\n"


def _model_lines(rates: ModelRates) -> list[str]:
    lines = _set_lines(rates.sets[(STANDARD, STANDARD)], "    ")
    if rates.long_context_above_tokens is not None:
        lines.append(f"    {LONG_CONTEXT_ABOVE}: {rates.long_context_above_tokens}")
    for tier in (STANDARD, *TIER_KEYS):
        indent = "    "
        tier_set = rates.rate_set(tier, STANDARD)
        if tier != STANDARD and tier_set is not None:
            lines.append(f"    {tier}:")
            lines.extend(_set_lines(tier_set, "      "))
            indent = "      "
        long_set = rates.rate_set(tier, LONG)
        if long_set is not None:
            lines.append(f"{indent}{LONG_CONTEXT}:")
            lines.extend(_set_lines(long_set, indent + "  "))
    return lines


def _set_lines(rate_set: RateSet, indent: str) -> list[str]:
    return [
        f'{indent}{key}: "{rate_set.rates[token_class]:f}"'
        for token_class, key in zip(TOKEN_CLASSES, RATE_KEYS, strict=True)
        if token_class in rate_set.rates
    ]


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is a subset of it)."""
    return json.dumps(text, ensure_ascii=False)
