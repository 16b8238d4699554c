"""A YAML layer that keeps every scalar's source text and line, and sees duplicated keys.

PyYAML's constructors turn ``2.50`` into a float, ``2026-06-01`` into a date, and keep
the last of two equal keys without a word. Nothing here constructs: the document is
composed into nodes and values are read from each scalar's text (``node.value``).
Lines are 1-based, from the node's ``start_mark``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rating_pipeline.money import MoneyFormatError, parse_decimal

_TAG = "tag:yaml.org,2002:"
MAP_TAG = _TAG + "map"
STR_TAG = _TAG + "str"
NULL_TAG = _TAG + "null"
BOOL_TAG = _TAG + "bool"
# Scalars whose text may be read as a decimal number, and as a plain string.
# (YAML's resolver tags an unquoted 2.50 "tag:yaml.org,2002:float"; we read only its text.)
_NUMBER_TAGS = frozenset({STR_TAG, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})
_TEXT_TAGS = _NUMBER_TAGS | {_TAG + "timestamp"}
# Digits a number may span written out in full (``1e3`` spans 4, ``0.001`` spans 4): far
# beyond any price, and small enough that every product of money.py stays exact.
MAX_DIGITS = 40
# `010` is ten to us and eight to a YAML 1.1 reader: refused as ambiguous.
_LEADING_ZERO = re.compile(r"[+-]?0[0-9]")
# libyaml's parser, when PyYAML has it, composes the same nodes with the same marks, faster
# (BENCHMARKS.md: pricebook validation at LiteLLM size).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
UNDEFINED_ALIAS = "found undefined alias"
_ALIAS = re.compile(r"\*([0-9A-Za-z_-]+)")  # the characters libyaml takes in an alias
_YAML_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")
_PLAIN_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
# Longer than any count a pricebook holds, far below the 4300 digits Python converts.
MAX_INTEGER_DIGITS = 40
# How much of a long value an error shows: one error stays one readable line.
SHOWN_CHARACTERS = 60


class YamlDocumentError(Exception):
    """The text is not one well-formed YAML document."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class NodeValueError(Exception):
    """A node does not hold the kind of value its key requires."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def line_of(node: Node) -> int:
    """The 1-based line a node starts on."""
    return int(node.start_mark.line) + 1


def compose_document(text: str) -> Node | None:
    """The node tree of the single YAML document in ``text`` (None when it is empty)."""
    try:
        return yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or exc.context or "malformed document"
        if message == UNDEFINED_ALIAS and mark is not None:  # libyaml's, which names none
            alias = _alias_at(text, mark.line, mark.column)
            message += f" {alias!r}" if alias is not None else ""
        if exc.context and exc.problem and exc.context_mark is not None:
            message = f"{message} ({exc.context} at line {exc.context_mark.line + 1})"
        raise YamlDocumentError(mark.line + 1 if mark else None, _one_line(message)) from exc
    except yaml.reader.ReaderError as exc:
        if _LOADER is yaml.SafeLoader:
            line = text[: exc.position].count("\n") + 1
        else:  # libyaml counts the position in UTF-8 bytes
            line = text.encode("utf-8", "surrogatepass")[: exc.position].count(b"\n") + 1
        raise YamlDocumentError(
            line, f"invalid YAML: unacceptable character #x{exc.character:04x}"
        ) from exc
    except yaml.YAMLError as exc:
        raise YamlDocumentError(None, _one_line(str(exc))) from exc


def _alias_at(text: str, line: int, column: int) -> str | None:
    """The alias (``*name``) at ``column`` of ``line`` (0-based), else the line's first."""
    lines = _YAML_LINE_BREAK.split(text)
    if line >= len(lines):
        return None
    found = _ALIAS.match(lines[line], column) or _ALIAS.search(lines[line])
    return found[1] if found else None


def _one_line(message: str) -> str:
    return "invalid YAML: " + " ".join(message.split())


@dataclass(frozen=True)
class Entry:
    """One ``key: value`` pair of a mapping, the key read as its source text."""

    key: str
    key_node: ScalarNode
    value: Node

    @property
    def line(self) -> int:
        return line_of(self.key_node)


@dataclass(frozen=True)
class Duplicate:
    """A key written again in the same mapping: ``entry`` repeats ``first``."""

    entry: Entry
    first: Entry


@dataclass(frozen=True)
class MappingEntries:
    """A mapping's pairs. ``entries`` holds each key's first occurrence, in file order."""

    entries: tuple[Entry, ...]
    duplicates: tuple[Duplicate, ...]
    bad_keys: tuple[Node, ...]

    def get(self, key: str) -> Entry | None:
        return next((entry for entry in self.entries if entry.key == key), None)


def is_mapping(node: Node) -> bool:
    return isinstance(node, MappingNode) and node.tag == MAP_TAG


def mapping_entries(node: MappingNode) -> MappingEntries:
    """Every pair of ``node``; keys compare by their text, so ``a`` and ``"a"`` collide. A
    key that is no plain string (``!custom rate``, ``null``) is a bad key, never read as
    its text."""
    first: dict[str, Entry] = {}
    duplicates: list[Duplicate] = []
    bad_keys: list[Node] = []
    for key_node, value_node in node.value:
        if not isinstance(key_node, ScalarNode) or key_node.tag not in _TEXT_TAGS:
            bad_keys.append(key_node)  # a list, a mapping, null, or tagged: no plain name
            continue
        entry = Entry(key=key_node.value, key_node=key_node, value=value_node)
        if entry.key in first:
            duplicates.append(Duplicate(entry=entry, first=first[entry.key]))
        else:
            first[entry.key] = entry
    return MappingEntries(tuple(first.values()), tuple(duplicates), tuple(bad_keys))


def describe(node: Node) -> str:
    """A node's value as an error message shows it."""
    if isinstance(node, MappingNode):
        return "a mapping" if node.tag == MAP_TAG else f"a mapping tagged {node.tag}"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == NULL_TAG:
        return "null"
    if node.tag == BOOL_TAG:
        return f"the boolean {node.value}"
    shown = quoted(str(node.value))
    return shown if node.tag in _TEXT_TAGS else f"{shown} tagged {node.tag}"


def quoted(text: str) -> str:
    """``text`` as its repr, cut at SHOWN_CHARACTERS: one error stays one readable line."""
    if len(text) <= SHOWN_CHARACTERS:
        return repr(text)
    return f"{text[:SHOWN_CHARACTERS]!r}... ({len(text)} characters)"


def shown_text(text: str) -> str:
    """``text`` as it is where all of it prints and it is short, else ``quoted``."""
    return text if text.isprintable() and len(text) <= SHOWN_CHARACTERS else quoted(text)


def text_value(node: Node, what: str) -> str:
    """A scalar's source text, whatever YAML would have made of it (a date, a number)."""
    if not isinstance(node, ScalarNode) or node.tag not in _TEXT_TAGS:
        raise NodeValueError(line_of(node), f"{what} must be a string, got {describe(node)}")
    return str(node.value)


def decimal_value(node: Node, what: str) -> Decimal:
    """The exact Decimal a scalar's source text spells: ``2.50`` and ``"2.50"`` alike."""
    if not isinstance(node, ScalarNode) or node.tag not in _NUMBER_TAGS:
        raise NodeValueError(
            line_of(node), f"{what} must be a decimal number, got {describe(node)}"
        )
    text = str(node.value)
    try:
        value = parse_decimal(text)
    except MoneyFormatError:
        raise NodeValueError(
            line_of(node), f"{what} must be a decimal number, got {quoted(text)}"
        ) from None
    if _LEADING_ZERO.match(text.strip()):
        raise NodeValueError(
            line_of(node),
            f"{what} {quoted(text)} has a leading zero, which some YAML readers take as octal; "
            "write it without",
        )
    if fixed_point_digits(value) > MAX_DIGITS:
        raise NodeValueError(
            line_of(node),
            f"{what} {quoted(text)} has more than {MAX_DIGITS} digits written out in full",
        )
    # -0 is 0: a sign on zero means nothing and must not show in a rate.
    return value.copy_abs() if value.is_zero() else value


def plain_integer(node: Node) -> int | None:
    """The integer a scalar's text spells in plain digits (``200000``, ``"200000"``, ``-1``),
    at most MAX_INTEGER_DIGITS of them; None for anything else (``2e5``, ``200_000``,
    ``010``, ``200000.0``, ``+5``, ``" 5"``, null, a list, thousands of digits)."""
    if not isinstance(node, ScalarNode) or node.tag not in _NUMBER_TAGS:
        return None
    text = str(node.value)
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS or not _PLAIN_INTEGER.fullmatch(text):
        return None
    return int(text)


def fixed_point_digits(value: Decimal) -> int:
    """How many digits ``value`` spans written without an exponent (no context involved)."""
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):
        return 0  # not finite; parse_decimal never returns one
    coefficient = len(value.as_tuple().digits)
    return max(coefficient + exponent, 1) + max(-exponent, 0)
