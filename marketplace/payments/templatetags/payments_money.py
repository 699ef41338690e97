"""`{% load payments_money %}`: the `cents` filter (the formatting itself lives in `marketplace.money`)."""

from django import template

from marketplace import money

register = template.Library()

cents = register.filter("cents", money.cents)
