"""`{% load disputes %}`: what the pages of other apps show of disputes (the job page's "Dispute" link, the
provider's earnings page's disputes) without their code importing the disputes app."""

from django import template
from django.db.models import QuerySet

from marketplace.disputes import selectors
from marketplace.disputes.models import Dispute
from marketplace.jobs.models import Frame

register = template.Library()


@register.simple_tag
def frame_disputable(frame: Frame) -> bool:
    """`{% frame_disputable frame as disputable %}`: whether the artist may dispute the frame's current result."""
    return selectors.frame_disputable(frame=frame)


@register.simple_tag
def disputes_against(provider) -> QuerySet[Dispute]:
    """`{% disputes_against user as disputes %}`: the recent disputes on the provider's frames."""
    return selectors.disputes_against(provider=provider)
