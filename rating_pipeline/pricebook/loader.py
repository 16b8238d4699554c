"""Load and validate a directory of pricebook versions (contract section 4, rules 1-7).

Every rule is checked in every file; all violations are collected, each naming its file,
line and model, and reported together as one PricebookLoadError. Nothing loads while any
stands. Numbers are read from the YAML source text (``yaml_nodes``), never through a float.
"""

from __future__ import annotations

import decimal
import difflib
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

from yaml.nodes import MappingNode, ScalarNode

from rating_pipeline.errors import RatingPipelineError, shown
from rating_pipeline.money import RATE_LIMIT, RATE_PLACES, decimal_places, derive_rate
from rating_pipeline.pricebook.model import (
    CONTEXT_TIERS,
    LONG,
    REQUIRED_CLASSES,
    SERVICE_TIERS,
    STANDARD,
    TOKEN_CLASSES,
    ModelEntry,
    ModelRates,
    Pricebooks,
    PricebookVersion,
    RateSet,
    is_derivation_base,
    is_fine_tune,
)
from rating_pipeline.pricebook.yaml_nodes import (
    NULL_TAG,
    Entry,
    MappingEntries,
    NodeValueError,
    YamlDocumentError,
    compose_document,
    decimal_value,
    describe,
    is_mapping,
    line_of,
    mapping_entries,
    plain_integer,
    shown_text,
    text_value,
)
from rating_pipeline.records import BLANK_CHARACTERS, MAX_ID_LENGTH
from rating_pipeline.windows import WindowError, parse_instant, require_hour_aligned_utc

VERSION_SUFFIXES = (".yaml", ".yml")
CURRENCY = "USD"

VERSION = "version"
EFFECTIVE_FROM = "effective_from"
CURRENCY_KEY = "currency"
FINE_TUNE_MULTIPLIER = "fine_tune_multiplier"
MODELS = "models"
TOP_KEYS = (VERSION, EFFECTIVE_FROM, CURRENCY_KEY, FINE_TUNE_MULTIPLIER, MODELS)
REQUIRED_TOP_KEYS = (VERSION, EFFECTIVE_FROM, CURRENCY_KEY, MODELS)

RATE_SUFFIX = "_per_mtok"
RATE_KEYS = tuple(token_class + RATE_SUFFIX for token_class in TOKEN_CLASSES)
INPUT, OUTPUT = (token_class + RATE_SUFFIX for token_class in REQUIRED_CLASSES)
TIER_KEYS = tuple(tier for tier in SERVICE_TIERS if tier != STANDARD)  # batch, priority, flex
LONG_CONTEXT = "long_context"
LONG_CONTEXT_ABOVE = "long_context_above_tokens"
DERIVED_FROM = "derived_from"
MULTIPLIER = "multiplier"
OWN_RATE_KEYS = (*RATE_KEYS, LONG_CONTEXT_ABOVE, LONG_CONTEXT, *TIER_KEYS)
DERIVATION_KEYS = (DERIVED_FROM, MULTIPLIER)
MODEL_KEYS = OWN_RATE_KEYS + DERIVATION_KEYS
TIER_SET_KEYS = (*RATE_KEYS, LONG_CONTEXT)
# A prompt size is compared with the threshold in SQL, as a bigint.
MAX_THRESHOLD = 2**63 - 1


@dataclass(frozen=True)
class PricebookError:
    """One rule violation: where (file, line, model) and what."""

    file: str
    line: int | None
    model: str | None
    message: str

    def __str__(self) -> str:
        where = shown(self.file) if self.line is None else f"{shown(self.file)}:{self.line}"
        if self.model is None:
            return f"{where}: {self.message}"
        # An id with a line break or surrounding blanks is quoted: one error, one line.
        clean = self.model.isprintable() and self.model == self.model.strip() and self.model
        return f"{where}: {self.model if clean else repr(self.model)}: {self.message}"


def _report_order(error: PricebookError) -> tuple[str, int]:
    return (error.file, error.line or 0)


class PricebookLoadError(RatingPipelineError):
    """The pricebooks did not load; ``errors`` holds every violation, sorted by file and line."""

    def __init__(self, errors: Iterable[PricebookError]) -> None:
        self.errors: tuple[PricebookError, ...] = tuple(sorted(errors, key=_report_order))
        lines = self.report_lines()
        count = f"{len(lines)} pricebook error" + ("" if len(lines) == 1 else "s")
        super().__init__(f"{count}: " + "; ".join(lines))

    def report_lines(self) -> list[str]:
        """One line per error, ``FILE:LINE: MODEL: message``, sorted by file then line."""
        return [str(error) for error in self.errors]


@dataclass
class _FileErrors:
    """The errors of one file, collected as the checks go."""

    file: str
    errors: list[PricebookError] = field(default_factory=list)

    def add(self, line: int | None, model: str | None, message: str) -> None:
        self.errors.append(PricebookError(self.file, line, model, message))


@dataclass(frozen=True)
class _Declared:
    """A model that names a ``derived_from``, whether or not the rest of it is valid (a
    second listing of a model too), with its multiplier if that read cleanly."""

    model_id: str
    line: int
    base: str
    multiplier: Decimal | None


@dataclass(frozen=True)
class _FileResult:
    """One file checked alone: its version if clean, and what rule 7 compares across files."""

    version: PricebookVersion | None
    errors: tuple[PricebookError, ...]
    version_name: tuple[str, int] | None = None
    effective_from: tuple[datetime, int] | None = None


def load_pricebooks(directory: Path) -> Pricebooks:
    """Every ``*.yaml``/``*.yml`` file directly in ``directory`` (hidden ones aside),
    validated as one set.

    Returns the versions ordered by ``effective_from``, or raises PricebookLoadError with
    every error of every file (a missing, unreadable or empty directory is one error).
    """
    directory = Path(directory)
    where = str(directory)
    try:
        if not directory.exists():
            raise _directory_error(where, "pricebook directory does not exist")
        if not directory.is_dir():
            raise _directory_error(where, "is not a directory; expected a pricebook directory")
        paths = sorted(path for path in directory.iterdir() if _is_version_file(path))
    except OSError as exc:  # a parent it may not search, a name too long to look up
        raise _directory_error(where, f"cannot read pricebook directory: {exc.strerror}") from exc
    if not paths:
        raise _directory_error(
            where, "no pricebook version files (*.yaml, *.yml) in this directory"
        )

    results = [_check_file(path) for path in paths]
    errors = [error for result in results for error in result.errors]
    errors.extend(_cross_file_errors(paths, results))
    if errors:
        raise PricebookLoadError(errors)
    versions = [result.version for result in results if result.version is not None]
    return Pricebooks(versions=tuple(sorted(versions, key=lambda v: v.effective_from)))


def _is_version_file(path: Path) -> bool:
    """A ``*.yaml``/``*.yml`` name, not hidden, that is no directory: a file or a link to
    one, and anything else by that name (a FIFO, a dangling link: a version gone missing),
    which ``_check_file`` reports as unreadable rather than skip."""
    if path.name.startswith(".") or path.suffix.lower() not in VERSION_SUFFIXES:
        return False
    return path.is_symlink() or not path.is_dir()


def load_version_text(text: str, source_file: str) -> PricebookVersion:
    """One version from its YAML text (rules 1-6 and rule 7's hour alignment).

    ``sha256`` is of the text's UTF-8 bytes. Raises PricebookLoadError with every error.
    """
    result = _check_text(text, source_file, hashlib.sha256(text.encode("utf-8")).hexdigest())
    if result.version is None:
        raise PricebookLoadError(result.errors)
    return result.version


def load_version_beside(text: str, path: Path) -> PricebookVersion:
    """``text`` as the new version file ``path``, beside the version files already in its
    directory (which may not exist yet): rules 1-6, and rule 7 against the others (whose
    own errors are not its). Raises PricebookLoadError with every error of the new file."""
    directory = path.parent
    new = _check_text(text, str(path), hashlib.sha256(text.encode("utf-8")).hexdigest())
    try:
        listed = list(directory.iterdir()) if directory.is_dir() else []
    except OSError as exc:
        raise _directory_error(str(directory), f"cannot list: {exc.strerror}") from exc
    present = sorted(p for p in listed if _is_version_file(p) and p != path)
    clashes = _cross_file_errors([*present, path], [*map(_check_file, present), new])
    errors = [*new.errors, *(error for error in clashes if error.file == str(path))]
    if errors or new.version is None:
        raise PricebookLoadError(errors)
    return new.version


def _directory_error(directory: str, reason: str) -> PricebookLoadError:
    return PricebookLoadError([PricebookError(directory, None, None, reason)])


def _check_file(path: Path) -> _FileResult:
    source = str(path)
    if path.exists() and not path.is_file():  # reading a FIFO would wait for a writer
        kind = "a directory" if path.is_dir() else "a FIFO, socket or device"
        message = f"cannot read: not a regular file ({kind})"
        return _FileResult(None, (PricebookError(source, None, None, message),))
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _FileResult(None, (PricebookError(source, None, None, f"cannot read: {exc}"),))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        message = f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be decoded"
        return _FileResult(None, (PricebookError(source, line, None, message),))
    return _check_text(text, source, hashlib.sha256(data).hexdigest())


def _cross_file_errors(paths: list[Path], results: list[_FileResult]) -> list[PricebookError]:
    """Rule 7 across files: each version name and each effective instant appears once."""
    errors: list[PricebookError] = []
    names: dict[str, tuple[str, int]] = {}
    instants: dict[datetime, tuple[str, int]] = {}
    for path, result in zip(paths, results, strict=True):
        source = str(path)
        if result.version_name is not None:
            name, line = result.version_name
            if name in names:
                other, other_line = names[name]
                errors.append(
                    PricebookError(
                        source,
                        line,
                        None,
                        f"version {name!r} is also declared in {shown(other)}:{other_line}; "
                        "each version name must be unique",
                    )
                )
            else:
                names[name] = (source, line)
        if result.effective_from is not None:
            instant, line = result.effective_from
            if instant in instants:
                other, other_line = instants[instant]
                errors.append(
                    PricebookError(
                        source,
                        line,
                        None,
                        f"effective_from {instant.isoformat()} is also the effective_from of "
                        f"{shown(other)}:{other_line}; one instant starts exactly one version",
                    )
                )
            else:
                instants[instant] = (source, line)
    return errors


def _check_text(text: str, source: str, sha256: str) -> _FileResult:
    """Rules 1-6 and the per-file part of rule 7 for one version file."""
    errors = _FileErrors(source)
    for line, message in _hidden_characters(text):
        errors.add(line, None, message)
    if errors.errors:
        return _FileResult(None, tuple(errors.errors))
    try:
        root = compose_document(text)
    except YamlDocumentError as exc:
        errors.add(exc.line, None, exc.message)
        return _FileResult(None, tuple(errors.errors))
    if root is None:
        errors.add(None, None, "empty file: expected " + ", ".join(REQUIRED_TOP_KEYS))
        return _FileResult(None, tuple(errors.errors))
    if not isinstance(root, MappingNode) or not is_mapping(root):
        errors.add(
            line_of(root),
            None,
            f"the top level must be a mapping of {', '.join(TOP_KEYS)}, got {describe(root)}",
        )
        return _FileResult(None, tuple(errors.errors))

    top = _known_entries(root, TOP_KEYS, None, errors)
    for key in REQUIRED_TOP_KEYS:
        if top.get(key) is None:
            errors.add(line_of(root), None, f"missing required key {key!r}")

    version_name = _version_name(top.get(VERSION), errors)
    effective_from = _effective_from(top.get(EFFECTIVE_FROM), errors)
    currency = _currency(top.get(CURRENCY_KEY), errors)
    ft_entry = top.get(FINE_TUNE_MULTIPLIER)
    ft_multiplier = _multiplier(ft_entry, None, errors) if ft_entry else None
    models, declared = _models(top.get(MODELS), errors)

    # Placeholders stand in for header values that failed; such a candidate carries
    # errors and is never returned.
    candidate = PricebookVersion(
        version=version_name[0] if version_name else "",
        effective_from=effective_from[0] if effective_from else datetime.min.replace(tzinfo=UTC),
        currency=currency or "",
        models=MappingProxyType(models),
        source_file=source,
        sha256=sha256,
        fine_tune_multiplier=ft_multiplier,
    )
    _check_derivations(candidate, declared, errors)
    if ft_entry is not None and ft_multiplier is not None:
        _check_projection(candidate, ft_multiplier, line_of(ft_entry.value), errors)

    return _FileResult(
        version=None if errors.errors else candidate,
        errors=tuple(errors.errors),
        version_name=version_name,
        effective_from=effective_from,
    )


# Line breaks to YAML 1.1 that editors, grep and diffs show inside a line (a lone CR as
# ^M): text after one in a comment would be read as a key, a price nobody reviewing the
# file saw. A CR before a LF is a Windows line end, and stays.
HIDDEN_LINE_BREAKS = {
    "\r": "CARRIAGE RETURN without a line feed",
    "\x85": "NEXT LINE",
    "\u2028": "LINE SEPARATOR",
    "\u2029": "PARAGRAPH SEPARATOR",
}
HIDDEN_LINE_BREAK = re.compile("\r(?!\n)|[\x85\u2028\u2029]")
BYTE_ORDER_MARK = re.compile("\ufeff")


def _hidden_characters(text: str) -> list[tuple[int, str]]:
    """Each hidden line break, and each byte order mark past the start of the file, on its
    line as an editor counts lines."""
    breaks = [
        (
            found.start(),
            f"character U+{ord(found.group()):04X} ({HIDDEN_LINE_BREAKS[found.group()]}) is a "
            "line break to YAML but not to editors or diffs: what follows it could price "
            "unseen; remove it",
        )
        for found in HIDDEN_LINE_BREAK.finditer(text)
    ]
    marks = [
        (
            found.start(),
            "character U+FEFF (BYTE ORDER MARK) past the start of the file: libyaml skips it "
            "at the start of a line, PyYAML's own reader does not, so whether the file loads "
            "would depend on the install; remove it",
        )
        for found in BYTE_ORDER_MARK.finditer(text, 1)
    ]
    return [(text.count("\n", 0, at) + 1, message) for at, message in sorted(breaks + marks)]


def _known_entries(
    node: MappingNode,
    allowed: tuple[str, ...],
    model: str | None,
    errors: _FileErrors,
    where: str = "",
) -> MappingEntries:
    """``node``'s pairs, with rule 1 (duplicated keys) and rule 2 (unknown keys) checked.

    ``where`` names the rate set the mapping is (``batch long_context``) in each message.
    """
    prefix = f"{where}: " if where else ""
    entries = mapping_entries(node)
    for bad in entries.bad_keys:
        errors.add(
            line_of(bad), model, f"{prefix}a key must be a plain string, got {describe(bad)}"
        )
    for duplicate in entries.duplicates:
        errors.add(
            duplicate.entry.line,
            model,
            f"{prefix}duplicated key {duplicate.entry.key!r} "
            f"(first at line {duplicate.first.line})",
        )
    for entry in entries.entries:
        if entry.key not in allowed:
            errors.add(entry.line, model, prefix + _unknown_key_message(entry.key, allowed))
    return entries


def _unknown_key_message(key: str, allowed: tuple[str, ...]) -> str:
    message = f"unknown key {key!r}"
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    return message + "; allowed: " + ", ".join(allowed)


def _version_name(entry: Entry | None, errors: _FileErrors) -> tuple[str, int] | None:
    if entry is None:
        return None
    try:
        name = text_value(entry.value, VERSION)
    except NodeValueError as exc:
        errors.add(exc.line, None, exc.message)
        return None
    if not name.strip(BLANK_CHARACTERS) or not name.isprintable():
        errors.add(line_of(entry.value), None, f"version must be printable, not blank: {name!r}")
        return None
    if name != name.strip(BLANK_CHARACTERS):
        errors.add(
            line_of(entry.value), None, f"version must not start or end with blanks: {name!r}"
        )
        return None
    return name, line_of(entry.value)


def _effective_from(entry: Entry | None, errors: _FileErrors) -> tuple[datetime, int] | None:
    """Rule 7: an ISO-8601 instant, UTC (``Z`` or ``+00:00``), on a whole hour."""
    if entry is None:
        return None
    line = line_of(entry.value)
    try:
        text = text_value(entry.value, EFFECTIVE_FROM)
    except NodeValueError as exc:
        errors.add(exc.line, None, exc.message)
        return None
    try:
        return parse_effective_from(text), line
    except WindowError as exc:
        errors.add(line, None, str(exc))
        return None


def parse_effective_from(text: str) -> datetime:
    """Rule 7 on ``text``: the instant, else WindowError saying what is wrong with it."""
    try:
        instant = parse_instant(text)
    except WindowError as exc:
        raise WindowError(f"effective_from {exc}") from exc
    except ValueError as exc:
        raise WindowError(
            f"effective_from {text!r} is not an ISO-8601 instant such as 2026-06-01T00:00:00Z"
        ) from exc
    return require_hour_aligned_utc(instant, EFFECTIVE_FROM)


def _currency(entry: Entry | None, errors: _FileErrors) -> str | None:
    if entry is None:
        return None
    try:
        currency = text_value(entry.value, CURRENCY_KEY)
    except NodeValueError as exc:
        errors.add(exc.line, None, exc.message)
        return None
    if currency != CURRENCY:
        errors.add(
            line_of(entry.value),
            None,
            f"currency must be {CURRENCY} (rates are USD per 1,000,000 tokens), got {currency!r}",
        )
        return None
    return currency


def _multiplier(entry: Entry, model: str | None, errors: _FileErrors) -> Decimal | None:
    """Rule 3: a multiplier is an exact decimal > 0, with any number of places."""
    try:
        value = decimal_value(entry.value, entry.key)
    except NodeValueError as exc:
        errors.add(exc.line, model, exc.message)
        return None
    if value <= 0:
        errors.add(line_of(entry.value), model, f"{entry.key} must be > 0, got {value:f}")
        return None
    return value


def _rate(entry: Entry, name: str, model: str, errors: _FileErrors) -> Decimal | None:
    """Rule 3: a rate is an exact decimal >= 0 with at most RATE_PLACES places.

    ``name`` is the rate as messages name it, with its set: ``batch cache_read_per_mtok``.
    Float noise (``0.30000000000000004``) is an error at the rate's own line.
    """
    line = line_of(entry.value)
    try:
        value = decimal_value(entry.value, name)
    except NodeValueError as exc:
        errors.add(exc.line, model, exc.message)
        return None
    if value < 0:
        errors.add(line, model, f"{name} must be >= 0, got {value:f}")
        return None
    if decimal_places(value) > RATE_PLACES:
        errors.add(
            line,
            model,
            f"{name} {shown_text(entry.value.value)} has {decimal_places(value)} decimal places; "
            f"a rate has at most {RATE_PLACES}",
        )
        return None
    if value >= RATE_LIMIT:
        errors.add(line, model, f"{name} must be below {RATE_LIMIT:f}")
        return None
    return value


def _models(
    entry: Entry | None, errors: _FileErrors
) -> tuple[dict[str, ModelEntry], list[_Declared]]:
    """Every model by id (with what of its price read cleanly: see ``_model``), and every
    derived_from."""
    models: dict[str, ModelEntry] = {}
    declared: list[_Declared] = []
    if entry is None:
        return models, declared
    node = entry.value
    if not isinstance(node, MappingNode) or not is_mapping(node):
        errors.add(
            line_of(node), None, f"models must be a mapping of model ids, got {describe(node)}"
        )
        return models, declared
    entries = mapping_entries(node)
    for bad in entries.bad_keys:
        errors.add(line_of(bad), None, f"a model id must be a string, got {describe(bad)}")
    for duplicate in entries.duplicates:
        errors.add(
            duplicate.entry.line,
            duplicate.entry.key,
            f"model listed twice (first at line {duplicate.first.line})",
        )
        model, base = _model(duplicate.entry, errors)  # its own errors too, in this run
        if base is not None:
            declared.append(
                _Declared(duplicate.entry.key, duplicate.entry.line, base, model.multiplier)
            )
    if not entries.entries and not entries.bad_keys:
        errors.add(line_of(entry.key_node), None, "models is empty: list at least one model")
    for model_entry in entries.entries:
        _check_model_id(model_entry, errors)
        model, base = _model(model_entry, errors)
        models[model_entry.key] = model
        if base is not None:
            declared.append(_Declared(model_entry.key, model_entry.line, base, model.multiplier))
    return models, declared


def _check_model_id(entry: Entry, errors: _FileErrors) -> None:
    """A model id is an id a valid event can carry (contract 6): a non-blank string without
    surrounding blanks, at most MAX_ID_LENGTH characters."""
    try:
        model_id = text_value(entry.key_node, "a model id")
    except NodeValueError as exc:
        errors.add(exc.line, None, exc.message)
        return
    if not model_id.strip(BLANK_CHARACTERS) or not model_id.isprintable():
        errors.add(entry.line, None, f"a model id must be printable, not blank: {model_id!r}")
    elif model_id != model_id.strip(BLANK_CHARACTERS):
        errors.add(entry.line, model_id, "a model id must not start or end with blanks")
    elif len(model_id) > MAX_ID_LENGTH:
        errors.add(
            entry.line,
            None,
            f"a model id must be at most {MAX_ID_LENGTH} characters, as an event's is (an "
            f"event with a longer one is an invalid_event, so this model would never bill): "
            f"{model_id[:40]!r}... has {len(model_id)} characters",
        )


def _model(entry: Entry, errors: _FileErrors) -> tuple[ModelEntry, str | None]:
    """One model checked by rules 1-4, and its valid derived_from if it names one.

    The entry carries what of its price read cleanly even when another part of it has an
    error (an unknown key, a missing multiplier, an invalid id), so that rules 5 and 6,
    which look across models, report in the same run; a version with any error never loads.
    A model that mixes own rates with a derivation carries neither, which one was meant
    being unknown, so rule 6 skips it; the base it names is still returned for rule 5.
    """
    model_id = entry.key
    broken = ModelEntry(model_id=model_id, line=entry.line)
    fields = _model_fields(entry, errors)
    if fields is None:
        return broken, None
    own_rates = _own_rates(fields, model_id, errors)
    base_entry, multiplier_entry = fields.get(DERIVED_FROM), fields.get(MULTIPLIER)
    multiplier = _multiplier(multiplier_entry, model_id, errors) if multiplier_entry else None
    derived_from = _derived_from(base_entry, model_id, errors) if base_entry else None
    if _check_own_or_derived(entry, fields, errors):
        return broken, derived_from
    if own_rates is not None:
        return ModelEntry(model_id, entry.line, own_rates=own_rates), None
    model = ModelEntry(model_id, entry.line, derived_from=derived_from, multiplier=multiplier)
    return model, derived_from


def _model_fields(entry: Entry, errors: _FileErrors) -> MappingEntries | None:
    """A model's keys, rules 1 and 2 checked; None when it is no mapping at all."""
    node = entry.value
    if isinstance(node, ScalarNode) and node.tag == NULL_TAG:
        errors.add(entry.line, entry.key, _no_price_message())
        return None
    if not isinstance(node, MappingNode) or not is_mapping(node):
        errors.add(
            line_of(node),
            entry.key,
            f"a model must be a mapping of {', '.join(MODEL_KEYS)}, got {describe(node)}",
        )
        return None
    return _known_entries(node, MODEL_KEYS, entry.key, errors)


def _check_own_or_derived(entry: Entry, fields: MappingEntries, errors: _FileErrors) -> bool:
    """Rule 4: own rates (a standard set with input and output) or a whole derivation.

    True when the model mixes the two.
    """
    own_keys = [key for key in OWN_RATE_KEYS if fields.get(key) is not None]
    derivation_keys = [key for key in DERIVATION_KEYS if fields.get(key) is not None]
    if own_keys and derivation_keys:
        errors.add(
            entry.line,
            entry.key,
            f"mixes own rates ({', '.join(own_keys)}) with a derivation "
            f"({', '.join(derivation_keys)}): give own rates or derived_from "
            "plus multiplier, not both",
        )
        return True
    if not own_keys and not derivation_keys:
        errors.add(entry.line, entry.key, _no_price_message())
        return False
    present, expected = (
        (own_keys, (INPUT, OUTPUT)) if own_keys else (derivation_keys, DERIVATION_KEYS)
    )
    missing = [key for key in expected if key not in present]
    if missing:
        errors.add(
            entry.line,
            entry.key,
            f"has {', '.join(present)} but is missing {', '.join(missing)}",
        )
    return False


@dataclass
class _SetsRead:
    """A model's rate sets as they are read, and where each long_context set was written."""

    sets: dict[tuple[str, str], RateSet] = field(default_factory=dict)
    long_context_lines: list[tuple[str, int]] = field(default_factory=list)


def _own_rates(fields: MappingEntries, model_id: str, errors: _FileErrors) -> ModelRates | None:
    """Every rate set of a model (its standard set: the top-level rate keys; a set per tier;
    each one's long_context) and its threshold; None when it writes no own rate key.

    Nothing is inherited: each set holds exactly the rates written in it. A set that lacks
    input or output (an error, reported) still holds the rates it has, so that rule 6
    checks them in the same run; a version with any error never loads.
    """
    if all(fields.get(key) is None for key in OWN_RATE_KEYS):
        return None
    read = _SetsRead()
    standard = _rate_values(fields, "", model_id, errors)
    read.sets[(STANDARD, STANDARD)] = RateSet(MappingProxyType(standard))
    _long_context(fields, STANDARD, model_id, errors, read)
    for tier in TIER_KEYS:
        tier_entry = fields.get(tier)
        if tier_entry is None:
            continue
        tier_set, tier_fields = _rate_set(tier_entry, tier, TIER_SET_KEYS, model_id, errors)
        if tier_set is not None:
            read.sets[(tier, STANDARD)] = tier_set
        if tier_fields is not None:
            _long_context(tier_fields, tier, model_id, errors, read)
    threshold = _threshold(fields.get(LONG_CONTEXT_ABOVE), read, model_id, errors)
    return ModelRates(MappingProxyType(read.sets), threshold)


def _long_context(
    fields: MappingEntries, tier: str, model_id: str, errors: _FileErrors, read: _SetsRead
) -> None:
    """The ``long_context`` set written in ``fields`` (a model's or a tier's), if any."""
    entry = fields.get(LONG_CONTEXT)
    if entry is None:
        return
    where = set_name(tier, LONG)
    rate_set, _ = _rate_set(entry, where, RATE_KEYS, model_id, errors)
    read.long_context_lines.append((where, entry.line))
    if rate_set is not None:
        read.sets[(tier, LONG)] = rate_set


def _rate_set(
    entry: Entry, where: str, allowed: tuple[str, ...], model_id: str, errors: _FileErrors
) -> tuple[RateSet | None, MappingEntries | None]:
    """A tier's or a long_context's set (``where`` names it): a mapping of known keys, every
    rate valid, input and output present. Returns its valid rates (complete or not: a
    missing rate is reported here) and its keys; neither when it is no mapping."""
    if not isinstance(entry.value, MappingNode) or not is_mapping(entry.value):
        message = f"{where} must be a mapping of rates, got {describe(entry.value)}"
        errors.add(entry.line, model_id, message)
        return None, None
    fields = _known_entries(entry.value, allowed, model_id, errors, where)
    rates = _rate_values(fields, where, model_id, errors)
    present = [e.key for e in fields.entries if e.key in allowed]
    missing = [key for key in (INPUT, OUTPUT) if key not in present]
    if not entry.value.value:  # no key at all, refused ones included
        errors.add(entry.line, model_id, f"{where} is empty: a rate set needs {INPUT} and {OUTPUT}")
    elif missing:
        has = f" has {', '.join(present)} but" if present else ""
        errors.add(entry.line, model_id, f"{where}{has} is missing {', '.join(missing)}")
    return RateSet(MappingProxyType(rates)), fields


def _rate_values(
    fields: MappingEntries, where: str, model_id: str, errors: _FileErrors
) -> dict[str, Decimal]:
    """Every valid rate written in ``fields``, by token class."""
    rates: dict[str, Decimal] = {}
    for token_class, key in zip(TOKEN_CLASSES, RATE_KEYS, strict=True):
        entry = fields.get(key)
        if entry is None:
            continue
        value = _rate(entry, f"{where} {key}".lstrip(), model_id, errors)
        if value is not None:
            rates[token_class] = value
    return rates


def _threshold(
    entry: Entry | None, read: _SetsRead, model_id: str, errors: _FileErrors
) -> int | None:
    """Rules 3 and 4: a positive integer threshold, with at least one long_context set, and
    every long_context set with a threshold."""
    if entry is None:
        for where, line in read.long_context_lines:
            errors.add(line, model_id, f"{where} needs {LONG_CONTEXT_ABOVE} on the model")
        return None
    value = plain_integer(entry.value)
    if value is None or not 0 < value <= MAX_THRESHOLD:
        value = None
        errors.add(
            line_of(entry.value),
            model_id,
            f"{LONG_CONTEXT_ABOVE} must be a positive integer (a prompt size in tokens, at "
            f"most {MAX_THRESHOLD}), got {describe(entry.value)}",
        )
    if not read.long_context_lines:
        written = LONG_CONTEXT_ABOVE if value is None else f"{LONG_CONTEXT_ABOVE} {value}"
        message = f"{written} has no {LONG_CONTEXT} rate set to price above it"
        errors.add(entry.line, model_id, message)
    return value


def set_name(service_tier: str, context_tier: str) -> str:
    """A rate set as the YAML nests it and messages name it: ``""`` for the standard set,
    ``batch``, ``long_context``, ``batch long_context``."""
    tier = "" if service_tier == STANDARD else service_tier
    context = LONG_CONTEXT if context_tier == LONG else ""
    return f"{tier} {context}".strip()


def named_rates(rates: ModelRates) -> Iterator[tuple[str, Decimal]]:
    """Every rate of every set, named as its YAML key within its set
    (``batch long_context cache_read_per_mtok``): tiers, contexts and classes in order."""
    for tier in SERVICE_TIERS:
        for context in CONTEXT_TIERS:
            rate_set = rates.rate_set(tier, context)
            if rate_set is None:
                continue
            where = set_name(tier, context)
            for token_class, key in zip(TOKEN_CLASSES, RATE_KEYS, strict=True):
                rate = rate_set.rate(token_class)
                if rate is not None:
                    yield f"{where} {key}".lstrip(), rate


def _no_price_message() -> str:
    return "has no price: give input_per_mtok and output_per_mtok, or derived_from and multiplier"


def _derived_from(entry: Entry, model: str, errors: _FileErrors) -> str | None:
    try:
        base = text_value(entry.value, DERIVED_FROM)
    except NodeValueError as exc:
        errors.add(exc.line, model, exc.message)
        return None
    if not base.strip(BLANK_CHARACTERS):
        errors.add(line_of(entry.value), model, "derived_from must not be blank")
        return None
    return base


def _check_derivations(
    candidate: PricebookVersion, declared: list[_Declared], errors: _FileErrors
) -> None:
    """Rule 5 for every derived_from written; rule 6 for every complete derivation."""
    for declaration in declared:
        base = declaration.base
        if not is_derivation_base(candidate, base):
            reason = _why_not_a_base(candidate, base)
            if reason is not None:
                errors.add(declaration.line, declaration.model_id, reason)
            continue
        multiplier = declaration.multiplier
        base_rates = candidate.models[base].own_rates
        if multiplier is None or base_rates is None:  # the model's own errors are reported
            continue
        for name, rate in named_rates(base_rates):
            problem = _derivation_problem(rate, multiplier)
            if problem is not None:
                errors.add(
                    declaration.line,
                    declaration.model_id,
                    f"derived {name}: {base} {name} {rate:f} × multiplier {multiplier:f} {problem}",
                )


def _why_not_a_base(candidate: PricebookVersion, base: str) -> str | None:
    """Why ``base`` is no true base; None when it is listed but broken (reported there)."""
    target = candidate.models.get(base)
    if target is None:
        return f"derived_from {base!r} is not a model of this version"
    if is_fine_tune(base) and target.own_rates is not None:
        return (
            f"derived_from {base!r} is a fine-tune with its own rates; only a true base "
            "(own rates, id not starting with 'ft:') can be derived from"
        )
    if target.derived_from is not None:
        kind = "a derived fine-tune" if is_fine_tune(base) else "itself derived"
        return (
            f"derived_from {base!r} is {kind} (from {target.derived_from!r}); one hop only: "
            "derive from a true base"
        )
    if is_fine_tune(base):
        return f"derived_from {base!r} is a fine-tune; only a true base can be derived from"
    return None


def _derivation_problem(rate: Decimal, multiplier: Decimal) -> str | None:
    """Rule 6: None if ``rate × multiplier`` derives fine, else what is wrong with it."""
    try:
        derived = derive_rate(rate, multiplier)
    except decimal.DecimalException:
        return "has too many digits to derive exactly"
    if rate > 0 and derived.is_zero():
        return f"rounds to 0 at {RATE_PLACES} places (half-even); a priced base cannot derive free"
    if derived >= RATE_LIMIT:
        return f"derives {derived:f}, not below the rate limit {RATE_LIMIT:f}"
    return None


def _check_projection(
    candidate: PricebookVersion, multiplier: Decimal, line: int, errors: _FileErrors
) -> None:
    """Rule 6 through ``fine_tune_multiplier``: every true base projected, every rate of
    every set."""
    for model_id, entry in candidate.models.items():
        if not is_derivation_base(candidate, model_id) or entry.own_rates is None:
            continue
        for name, value in named_rates(entry.own_rates):
            problem = _derivation_problem(value, multiplier)
            if problem is not None:
                errors.add(
                    line,
                    model_id,
                    f"fine_tune_multiplier {multiplier:f} × {name} {value:f} {problem}",
                )
