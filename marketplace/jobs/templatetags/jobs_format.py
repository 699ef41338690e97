from django import template

register = template.Library()


@register.filter
def duration(seconds: float | str | None) -> str:
    """Seconds as a short human duration: 45 s, 3 min 20 s, 2 h 5 min."""
    if seconds in (None, ""):
        return "unknown"
    total = max(0, round(float(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


@register.filter
def significant(value: float | str | None) -> str:
    """A measured quantity to three significant digits: 41.3, 0.0123, 1,230."""
    if value in (None, ""):
        return "unknown"
    number = float(value)
    return f"{number:,.0f}" if abs(number) >= 1000 else f"{number:.3g}"
