"""money.py: exact numbers, one named rounding, and no way in for a float."""

from __future__ import annotations

import ast
from decimal import Decimal, Inexact
from pathlib import Path

import pytest

import rating_pipeline
from rating_pipeline.money import (
    MoneyFormatError,
    decimal_places,
    derive_rate,
    exact_rate,
    exact_sum,
    parse_decimal,
)

PACKAGE = Path(rating_pipeline.__file__).parent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.50", Decimal("2.50")),
        ("0.1000000000000000055511151231257827", Decimal("0.1000000000000000055511151231257827")),
        ("3e-6", Decimal("0.000003")),
        ("15", Decimal(15)),
        (".5", Decimal("0.5")),
    ],
)
def test_decimal_text_is_read_exactly(text, expected):
    parsed = parse_decimal(text)
    assert parsed == expected and type(parsed) is Decimal
    assert str(parsed) == str(Decimal(text))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "NaN",
        "inf",
        "-Infinity",
        "1_000",
        "1,5",
        "0x10",
        "two",
        "\u0661\u0660",  # Arabic-Indic digits: Decimal reads them, a price list must not
        "\uff12.\uff15",  # fullwidth digits
        "1e-9999999999999999999",  # an exponent beyond what Decimal can hold
        "1E+1000000000000000000",
    ],
)
def test_non_numbers_are_refused(text):
    with pytest.raises(MoneyFormatError):
        parse_decimal(text)


def test_decimal_places_counts_significant_fraction_digits():
    assert [decimal_places(Decimal(t)) for t in ("2.50", "2", "0.000001", "1E+3")] == [1, 0, 6, 0]


def test_derive_rate_rounds_half_even_to_six_places():
    assert derive_rate(Decimal("0.000005"), Decimal("0.5")) == Decimal("0.000002")
    assert derive_rate(Decimal("0.000015"), Decimal("0.5")) == Decimal("0.000008")
    assert derive_rate(Decimal("2.50"), Decimal("1.25")) == Decimal("3.125")
    assert derive_rate(Decimal("1"), Decimal("0.1000000000000000055511151231257827")) == Decimal(
        "0.1"
    )


@pytest.mark.parametrize("float_rate", [2.5, 0.1])
def test_a_float_rate_is_refused_on_the_money_path(float_rate):
    with pytest.raises(TypeError):
        derive_rate(float_rate, Decimal(1))  # type: ignore[arg-type]


def test_decimal_places_is_exact_beyond_the_default_context_precision():
    assert decimal_places(Decimal("2.5000000000000000000000000001")) == 28
    assert decimal_places(Decimal("0.00000050000000000000000000000010")) == 31
    assert decimal_places(Decimal("0E-9")) == 0


def test_decimal_places_drops_trailing_zeros_down_to_one_significant_digit():
    assert [decimal_places(Decimal(t)) for t in ("0.10", "1.0", "0.0000010")] == [1, 0, 6]


def test_exact_rate_carries_a_rate_to_six_places_and_never_rounds_one():
    """The warehouse's numeric(24, 6) would round a seventh place silently: refuse it."""
    assert str(exact_rate(Decimal("2.5"))) == "2.500000"
    assert str(exact_rate(Decimal("0.0000010"))) == "0.000001"
    for seven_places in ("0.0000001", "2.5000005", "0.0000015"):
        with pytest.raises(Inexact):
            exact_rate(Decimal(seven_places))


def test_exact_sum_keeps_every_digit_where_the_default_context_rounds():
    """A total of closed-period costs at 12 places past the point passes 28 digits long
    before it passes any real bill: Python's sum would round it without a word."""
    amounts = [Decimal("12345678901234567.000000000001"), Decimal("0.000000000001")]
    assert sum(amounts, Decimal(0)) != Decimal("12345678901234567.000000000002")
    assert exact_sum(amounts) == Decimal("12345678901234567.000000000002")
    assert exact_sum([]) == 0 and type(exact_sum([])) is Decimal
    with pytest.raises(Inexact):
        exact_sum([Decimal(10) ** 80, Decimal("0.1")])


def _decimal_sums(path: Path) -> list[str]:
    """Calls of the builtin sum that start from a Decimal: money added in the default
    context."""
    tree = ast.parse(path.read_text())
    return [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "sum"
        and len(node.args) == 2
        and isinstance(node.args[1], ast.Call)
        and isinstance(node.args[1].func, ast.Name)
        and node.args[1].func.id == "Decimal"
    ]


def test_the_package_adds_money_up_only_through_exact_sum():
    found = [use for path in sorted(PACKAGE.rglob("*.py")) for use in _decimal_sums(path)]
    assert not found, "sum(..., Decimal(0)) rounds past 28 digits; use money.exact_sum:\n" + (
        "\n".join(found)
    )


# 30 significant digits: rounded once to 6 places it is 0.000001; rounded first to 28
# digits (Python's default context: 0.0000015000...) and then to 6 places, 0.000002.
LONG_MULTIPLIER = "0.00000149999999999999999999999999999"


def test_a_derived_rate_is_rounded_once_from_the_exact_product() -> None:
    assert derive_rate(Decimal(1), Decimal(LONG_MULTIPLIER)) == Decimal("0.000001")
    assert derive_rate(Decimal(3), Decimal("0.499999999999999999999999999999999")) == Decimal(
        "1.500000"
    )
