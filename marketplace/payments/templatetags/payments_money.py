from django import template

register = template.Library()


@register.filter
def cents(amount: int | None) -> str:
    """Integer cents as a fiat amount with two decimals, e.g. 1234 -> 12.34."""
    if amount is None:
        return "—"
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(int(amount)), 100)
    return f"{sign}{whole:,}.{frac:02d}"
