"""`{% load money %}`: the `tokens` filter (the formatting itself lives in `marketplace.money`)."""
from django import template

from marketplace import money

register = template.Library()

tokens = register.filter("tokens", money.tokens)
