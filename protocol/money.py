"""Exact money arithmetic and its text form, shared by the server and the client.

- `EXACT`: the decimal context every computed amount uses. 80 digits are far more than
  the wire's range needs (below 10^25 with at most 18 fractional digits: 43 digits), and
  Inexact traps: an amount that would need rounding is a bug, never a silent change.
- `plain`: a decimal as text in plain notation, never an exponent ("1000", not "1E+3").
- `is_currency`: the one rule for a currency code, on the wire and in the catalog.
- `with_places`: an amount with at least its currency's usual number of fractional
  digits ("0.00" in EUR), so amounts read the same whatever arithmetic produced them.
- `in_wire_range`: whether a decimal fits the wire (below 10^25 in absolute value, at
  most 18 fractional digits): the server refuses what would leave that range.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Context, Decimal, Inexact, InvalidOperation
from typing import Final

EXACT = Context(prec=80, traps=[InvalidOperation, Inexact], Emax=999_999, Emin=-999_999)

#: ISO 4217 currencies whose minor unit is not 2 digits; every other code has 2.
MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
                     "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
_QUANTUM: dict[str, Decimal] = {}   # by currency: bounded by the 26**3 valid codes
CURRENCY_RULE = "a three-letter ISO 4217 code in capitals A-Z, such as 'EUR'"


def is_currency(value: object) -> bool:
    """Whether `value` is a currency code: exactly three ASCII capitals ("EUR", not "Eur",
    "E1R" or "ÄÖÜ")."""
    return type(value) is str and len(value) == 3 and value.isascii() and value.isalpha() \
        and value.isupper()


def minor_units(currency: str) -> int:
    """Fractional digits a currency's amounts usually have (EUR 2, JPY 0)."""
    return MINOR_UNITS.get(currency, 2)


def with_places(value: Decimal, currency: str) -> Decimal:
    """`value` with at least the currency's usual fractional digits (exact: only zeros are
    added; a value with more digits is returned as it is)."""
    quantum = _QUANTUM.get(currency)
    if quantum is None:
        quantum = _QUANTUM[currency] = Decimal(1).scaleb(-minor_units(currency))
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -minor_units(currency):
        return value.quantize(quantum, context=EXACT)
    return value


#: every decimal on the wire is below this in absolute value (PROTOCOL.md section 3)
WIRE_BOUND: Final = Decimal("1E25")
#: and has at most this many fractional digits
WIRE_PLACES: Final = 18


def in_wire_range(value: Decimal) -> bool:
    """Whether the wire can carry `value`: finite, |value| < 10^25, at most 18 fractional
    digits (a zero may have more: the wire's own rule)."""
    if not value.is_finite() or not -WIRE_BOUND < value < WIRE_BOUND:
        return False
    exponent = value.as_tuple().exponent
    return not value or (isinstance(exponent, int) and exponent >= -WIRE_PLACES)


_ZEROS: dict[str, Decimal] = {}     # by currency: bounded by the 26**3 valid codes


def zero(currency: str) -> Decimal:
    """Zero in a currency's usual form ("0.00" in EUR)."""
    known = _ZEROS.get(currency)
    if known is None:
        known = _ZEROS[currency] = with_places(Decimal(0), currency)
    return known


def plain(value: Decimal) -> str:
    """The decimal's text in plain notation: never an exponent."""
    text = str(value)
    return format(value, "f") if "E" in text else text


def exact_sum(values: Iterable[Decimal], start: Decimal = Decimal(0)) -> Decimal:
    """The exact sum of amounts (whatever the thread's decimal context is)."""
    total = start
    for value in values:
        total = EXACT.add(total, value)
    return total


def exact_sub(a: Decimal, b: Decimal) -> Decimal:
    """a - b, exactly (whatever the thread's decimal context is)."""
    return EXACT.subtract(a, b)
