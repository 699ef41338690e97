from django import forms
from django.contrib.auth.forms import UserCreationForm

from marketplace.accounts.models import User


class SignupForm(UserCreationForm):
    role = forms.ChoiceField(
        choices=[(User.Role.ARTIST, "I want frames rendered"), (User.Role.PROVIDER, "I rent out my GPU")]
    )

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email", "role")
