"""The numbers Python builds on the money path, never through a float: pricebook decimals
read from their text (``parse_decimal``), derived rates (``derive_rate``) and rates checked
to fit the warehouse's numeric(24, 6) (``exact_rate``). ``round_rate`` is the one rounding
of a rate, half-even to RATE_PLACES places: of a derived rate, and of a price the LiteLLM
import rounds when asked to.

It does not compute costs. A rollup's cost is computed in exactly one place, the pricing
statement (``warehouse/sql/price_window.sql``), exactly, at 12 places, and the
database's CHECK constraint refuses a row whose cost does not reconstruct from its own
tokens and rates. The independent oracle in ``tests/`` computes it again.
Amounts the warehouse returned are added up in Python only by ``exact_sum``: every digit
kept, where Python's default context keeps 28 and rounds the rest away without a word.
Off the money path, ``micro_usd`` rounds a copy of an amount, half-even, into a whole number
for the UI's charts; nothing stores, bills or adds up what it returns.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal

from rating_pipeline.errors import RatingPipelineError

RATE_PLACES = 6
RATE_QUANTUM = Decimal(1).scaleb(-RATE_PLACES)
# Every rate, own or derived, is below 10^12 USD per 1M tokens (a million USD a token):
# then any rollup rated_usage holds (nine classes of numeric(30, 0) sums) costs less than
# 9 x 10^36 USD, which its numeric(50, 12) cost holds. Rates are stored as numeric(24, 6).
RATE_LIMIT = Decimal(10) ** 12

# Exact arithmetic: enough digits for any bigint token sum times any rate, and any
# inexact result is an error rather than a silent rounding.
EXACT = decimal.Context(
    prec=80,
    rounding=ROUND_HALF_EVEN,
    traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow, decimal.DivisionByZero],
)
# The one rounding context: half-even, used by derive_rate (and micro_usd, for charts).
ROUNDING = decimal.Context(prec=80, rounding=ROUND_HALF_EVEN, traps=[decimal.InvalidOperation])
MICRO_USD_DIGITS = 6  # 1 USD = 10 ** 6 micro-USD

# ASCII digits only: Decimal also reads other scripts' digits, which no price list means.
_DECIMAL_TEXT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


class MoneyFormatError(RatingPipelineError, ValueError):
    """A text that should hold a decimal number does not."""


def parse_decimal(text: str) -> Decimal:
    """The exact Decimal written in ``text`` (plain or exponent notation).

    Raises MoneyFormatError for anything else: NaN, infinities, blanks, underscores,
    non-ASCII digits, an exponent beyond what Decimal can hold.
    """
    stripped = text.strip()
    if not _DECIMAL_TEXT.fullmatch(stripped):
        raise MoneyFormatError(f"not a decimal number: {text!r}")
    try:
        return Decimal(stripped)
    except decimal.InvalidOperation:
        raise MoneyFormatError(f"exponent out of range: {text!r}") from None


def decimal_places(value: Decimal) -> int:
    """How many digits ``value`` carries after the point, trailing zeros aside (0 for integers).

    Read from the digits themselves: no decimal context, so no precision limit can round
    a long fraction away before it is counted.
    """
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite by construction
    significant = len(digits)
    while significant > 1 and digits[significant - 1] == 0:
        significant -= 1
    if significant == 1 and digits[0] == 0:
        return 0
    return max(0, -(exponent + len(digits) - significant))


def exact_rate(value: Decimal) -> Decimal:
    """``value`` at RATE_PLACES places; ``decimal.Inexact`` if that would round it.

    The warehouse stores rates as numeric(24, 6), which rounds silently: every rate passes
    through here on its way there.
    """
    return value.quantize(RATE_QUANTUM, context=EXACT)


def derive_rate(base_rate: Decimal, multiplier: Decimal) -> Decimal:
    """``base_rate * multiplier`` rounded half-even to RATE_PLACES places."""
    return round_rate(EXACT.multiply(base_rate, multiplier))


def round_rate(rate: Decimal) -> Decimal:
    """``rate`` rounded half-even to RATE_PLACES places."""
    return rate.quantize(RATE_QUANTUM, context=ROUNDING)


def exact_sum(amounts: Iterable[Decimal]) -> Decimal:
    """The sum of ``amounts``, exactly (decimal.Inexact if it needs more than 80 digits)."""
    total = Decimal(0)
    for amount in amounts:
        total = EXACT.add(total, amount)
    return total


def micro_usd(amount: Decimal) -> int:
    """``amount`` USD as whole micro-USD, rounded half-even (0.0000005 -> 0, 0.0000015 -> 2).

    For plotting only: an integer the UI can chart next to the exact amount's text. Never
    stored, billed or summed back into money.
    """
    if not isinstance(amount, Decimal):
        raise TypeError("amount must be Decimal")
    scaled = ROUNDING.scaleb(amount, MICRO_USD_DIGITS)
    return int(scaled.quantize(Decimal(1), context=ROUNDING))
