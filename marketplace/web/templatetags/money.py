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


@register.filter
def tokens_short(micro: int | None) -> str:
    """A token amount for reading, not for reconciling: two decimals from one token up, two significant digits
    below it (0.0078), "≈" when that drops digits. Exact amounts stay in the ledger, the API and `tokens`."""
    if micro in (None, ""):
        micro = 0
    micro = int(micro)
    sign = "-" if micro < 0 else ""
    amount = abs(micro)
    if amount == 0:
        return "0"
    exact = True
    if amount < settings.MICRO:
        step = 10 ** max(len(str(amount)) - 2, 0)  # keep two significant digits
        kept = (amount + step // 2) // step * step
        exact, amount = kept == amount, kept
    if amount < settings.MICRO:
        text = f"0.{amount:06d}".rstrip("0")
    else:
        cent = settings.MICRO // 100
        cents = (amount + cent // 2) // cent  # rounded to 0.01
        exact = exact and amount % cent == 0
        text = f"{cents // 100:,}.{cents % 100:02d}"
    return f"{'' if exact else chr(0x2248) + ' '}{sign}{text}"


@register.filter
def bps_multiplier(bps: int | None) -> str:
    """Basis points as a multiplier: 14000 -> "1.40"."""
    return f"{int(bps or 0) // 100 // 100}.{int(bps or 0) // 100 % 100:02d}"
