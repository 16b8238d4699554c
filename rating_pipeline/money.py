"""Every number on the money path is built here, and never passes through a float.

Rates are USD per 1,000,000 tokens with RATE_PLACES decimal places. Costs are exact:
``(input_tokens * input_rate + output_tokens * output_rate) / 1e6`` has at most
COST_PLACES places and is never rounded. The only rounding on the whole path is
``derive_rate``: half-even to RATE_PLACES places. Off the path, ``micro_usd`` rounds a copy
of an amount, half-even, into a whole number for the UI's charts; nothing stores, bills or
adds up what it returns.
"""

from __future__ import annotations

import decimal
import re
from decimal import ROUND_HALF_EVEN, Decimal

from rating_pipeline.errors import RatingPipelineError

RATE_PLACES = 6
COST_PLACES = 12
TOKEN_UNIT_DIGITS = 6  # rates are per 10 ** 6 tokens
RATE_QUANTUM = Decimal(1).scaleb(-RATE_PLACES)
# The warehouse stores rates as numeric(24, 6): 18 digits before the point.
RATE_INTEGER_DIGITS = 18
RATE_LIMIT = Decimal(10) ** RATE_INTEGER_DIGITS  # every rate, own or derived, is below it
COST_QUANTUM = Decimal(1).scaleb(-COST_PLACES)

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

_DECIMAL_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


class MoneyFormatError(RatingPipelineError, ValueError):
    """A text that should hold a decimal number does not."""


def parse_decimal(text: str) -> Decimal:
    """The exact Decimal written in ``text`` (plain or exponent notation).

    Raises MoneyFormatError for anything else: NaN, infinities, blanks, underscores.
    """
    stripped = text.strip()
    if not _DECIMAL_TEXT.fullmatch(stripped):
        raise MoneyFormatError(f"not a decimal number: {text!r}")
    return Decimal(stripped)


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
    product = EXACT.multiply(base_rate, multiplier)
    return product.quantize(RATE_QUANTUM, context=ROUNDING)


def cost_usd(
    input_tokens: int, output_tokens: int, input_rate: Decimal, output_rate: Decimal
) -> Decimal:
    """The exact cost of a token count at rates per million tokens, at COST_PLACES places."""
    if not isinstance(input_rate, Decimal) or not isinstance(output_rate, Decimal):
        raise TypeError("rates must be Decimal")
    gross = EXACT.add(
        EXACT.multiply(input_tokens, input_rate), EXACT.multiply(output_tokens, output_rate)
    )
    # Dividing by 10**6 moves the exponent only: exact, and cheaper than a division.
    return EXACT.scaleb(gross, -TOKEN_UNIT_DIGITS).quantize(COST_QUANTUM, context=EXACT)


def micro_usd(amount: Decimal) -> int:
    """``amount`` USD as whole micro-USD, rounded half-even (0.0000005 -> 0, 0.0000015 -> 2).

    For plotting only: an integer the UI can chart next to the exact amount's text. Never
    stored, billed or summed back into money.
    """
    if not isinstance(amount, Decimal):
        raise TypeError("amount must be Decimal")
    scaled = ROUNDING.scaleb(amount, MICRO_USD_DIGITS)
    return int(scaled.quantize(Decimal(1), context=ROUNDING))
