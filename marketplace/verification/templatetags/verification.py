from django import template

register = template.Library()


@register.inclusion_tag("verification/_frame_status.html")
def frame_status(statuses: dict, frame_id: int) -> dict:
    """`{% frame_status verification frame.pk %}` with `verification = selectors.frame_checks(job.pk)`."""
    return {"status": statuses.get(frame_id)}
