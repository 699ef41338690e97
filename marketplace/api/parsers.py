"""The API's JSON parser: what PostgreSQL cannot store is refused as a bad request, not a server error.

JSON may carry "\\u0000" and lone surrogates ("\\ud93e"); Python accepts both, but a PostgreSQL text or jsonb
column refuses them (UntranslatableCharacter), which would surface as a 500 (schemathesis found it on the agent's
bench upload). Checked once here for every API body instead of in each serializer.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _storable(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" not in value and not any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(v) for v in value)
    return True


class StorableJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        if not _storable(data):
            raise ParseError("JSON strings may not contain NUL characters or unpaired surrogates")
        return data
