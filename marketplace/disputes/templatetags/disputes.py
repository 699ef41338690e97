"""`{% load disputes %}`: lets the job page (jobs app, a lower layer) offer "Dispute" without importing disputes."""

from django import template

from marketplace.disputes import selectors
from marketplace.jobs.models import Frame

register = template.Library()


@register.simple_tag
def frame_disputable(frame: Frame) -> bool:
    """`{% frame_disputable frame as disputable %}`: whether the artist may dispute the frame's current result."""
    return selectors.frame_disputable(frame=frame)
