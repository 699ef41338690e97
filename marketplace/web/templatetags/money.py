from django import template
from django.conf import settings

register = template.Library()


@register.filter
def tokens(micro: int | None) -> str:
    """Micro-tokens as a token amount with up to 6 decimals, computed in integers."""
    if micro in (None, ""):  # an account that does not exist yet holds nothing
        micro = 0
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(int(micro)), settings.MICRO)
    text = f"{whole:,}" + (f".{frac:06d}".rstrip("0") if frac else "")
    return f"{sign}{text}"
