"""Forms only parse text into integers; the services decide what is allowed."""

import re
import uuid

from django import forms
from django.conf import settings


class TopUpForm(forms.Form):
    amount = forms.DecimalField(
        label="Amount (USD)",
        max_digits=9,
        decimal_places=2,
        widget=forms.NumberInput(attrs={"step": "0.01", "min": "0"}),
    )

    def amount_cents(self) -> int:
        return int(self.cleaned_data["amount"] * 100)


class PayoutForm(forms.Form):
    tokens = forms.CharField(label="Tokens to pay out", max_length=20)
    # One key per rendered form: a double click or a resubmission sends the same key, and gets one payout.
    request_key = forms.CharField(widget=forms.HiddenInput, max_length=64)

    @classmethod
    def fresh(cls) -> "PayoutForm":
        return cls(initial={"request_key": uuid.uuid4().hex})

    def clean_tokens(self) -> int:
        text = self.cleaned_data["tokens"].strip().replace(",", "")
        if not re.fullmatch(r"-?\d+", text):
            raise forms.ValidationError("Enter a whole number of tokens, without fractions.")
        return int(text) * settings.MICRO
