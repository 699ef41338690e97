from django import forms

from marketplace.disputes import conf
from marketplace.disputes.models import Dispute


class DisputeForm(forms.Form):
    reason = forms.CharField(
        label="What is wrong with this frame?",
        widget=forms.Textarea(attrs={"rows": 5}),
        max_length=conf.REASON_MAX_CHARS,
    )


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[(Dispute.State.UPHELD, "Uphold"), (Dispute.State.REJECTED, "Reject")])
    note = forms.CharField(
        label="Decision note (shown to the artist)",
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=conf.NOTE_MAX_CHARS,
    )
