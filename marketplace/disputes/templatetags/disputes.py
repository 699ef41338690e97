"""`{% load disputes %}`: what the pages of other apps show of disputes (the provider's earnings page's disputes)
without their code importing the disputes app. The job page's "Dispute" links are a page part (jobs.extensions)."""

from django import template
from django.db.models import QuerySet

from marketplace.disputes import selectors
from marketplace.disputes.models import Dispute

register = template.Library()


@register.simple_tag
def disputes_against(provider) -> QuerySet[Dispute]:
    """`{% disputes_against user as disputes %}`: the recent disputes on the provider's frames."""
    return selectors.disputes_against(provider=provider)
