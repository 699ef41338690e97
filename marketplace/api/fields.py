"""`TokensField`: an amount of micro-tokens given again as an exact decimal string of tokens."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from marketplace.money import tokens_decimal

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
