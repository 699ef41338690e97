"""How amounts read, in one place: pages, messages and the API all format money here.

Money is integer micro-tokens (`settings.MICRO` per token) everywhere else; these functions only turn it into
text, in integers (no float ever touches an amount).

- `tokens(micro)`: for people. 2 decimals from one token up ("1,234.50"); below one token 4 significant
  digits ("0.004321", "0.1235"), so a per-frame price still reads as more than nothing. Rounded half up.
- `tokens_decimal(micro)`: for programs (the API's `*_tokens` fields). Exact, no grouping, at least 2
  decimals ("1234.5" -> "1234.50", "0.004321").
- `cents(amount)`: whole cents of a fiat currency with 2 decimals.
- `TokensField`: the API serializers' field for `tokens_decimal`.
"""

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

SIGNIFICANT_BELOW_ONE = 4
MIN_PLACES = 2


def _split(micro: int | str | None) -> tuple[str, int]:
    if micro in (None, ""):  # an account that does not exist yet holds nothing
        micro = 0
    value = int(micro)
    return ("-" if value < 0 else ""), abs(value)


def _trim(frac: str) -> str:
    return frac.rstrip("0").ljust(MIN_PLACES, "0")


def _decimals() -> int:
    return len(str(settings.MICRO)) - 1


def tokens(micro: int | str | None) -> str:
    """Micro-tokens as a token amount for a person to read: `12.50`, `1,000.00`, `0.004321`, `0.00`."""
    sign, amount = _split(micro)
    decimals = _decimals()
    if amount >= settings.MICRO or amount == 0:
        places = MIN_PLACES
    else:  # the first significant digit is at decimal (decimals - digits + 1)
        places = min(decimals, decimals - len(str(amount)) + SIGNIFICANT_BELOW_ONE)
    step = 10 ** (decimals - places)
    rounded = (amount + step // 2) // step
    whole, frac = divmod(rounded, 10**places)
    return f"{sign}{whole:,}.{_trim(f'{frac:0{places}d}')}"


def tokens_decimal(micro: int | str | None) -> str | None:
    """Micro-tokens as an exact decimal string for programs: `12.50`, `0.004321`, `-3.00`."""
    if micro is None:
        return None
    sign, amount = _split(micro)
    whole, frac = divmod(amount, settings.MICRO)
    return f"{sign}{whole}.{_trim(f'{frac:0{_decimals()}d}')}"


def cents(amount: int | None) -> str:
    """Integer cents as a fiat amount with two decimals, e.g. 1234 -> 12.34."""
    if amount is None:
        return "—"
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(int(amount)), 100)
    return f"{sign}{whole:,}.{frac:02d}"


TOKENS_SCHEMA = {
    "type": "string",
    "format": "decimal",
    "pattern": r"^-?\d+\.\d{2,6}$",
    "example": "12.50",
    "description": "tokens as an exact decimal string (the same amount as the integer micro-tokens field next to it)",
}


@extend_schema_field(TOKENS_SCHEMA)
class TokensField(serializers.ReadOnlyField):
    """Read-only: `TokensField(source="price")` gives `price` (micro-tokens) as "12.50"."""

    def to_representation(self, value: int | None) -> str | None:
        return tokens_decimal(value)
