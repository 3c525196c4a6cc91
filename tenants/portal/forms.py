from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from tenants.models import KeyKind, Role


class EmailAuthenticationForm(AuthenticationForm):
    username = forms.EmailField(label="Email", widget=forms.EmailInput(attrs={"autofocus": True}))

    def clean_username(self) -> str:
        return self.cleaned_data["username"].strip().lower()


class SignupForm(forms.Form):
    email = forms.EmailField()
    password = forms.CharField(widget=forms.PasswordInput, help_text="At least 10 characters, not a common one.")
    organization_name = forms.CharField(max_length=200, label="Organization name")
    organization_slug = forms.CharField(
        max_length=40, label="Organization URL name", help_text="Lowercase letters, digits and hyphens: /o/<name>/"
    )


class InviteForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=KeyKind.choices, initial=KeyKind.SECRET)
    allowed_origins = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "https://app.example.com"}),
        help_text="Public keys only: one origin per line, the sites allowed to send widget events.",
    )

    def origins(self) -> list[str]:
        return [line for line in self.cleaned_data.get("allowed_origins", "").split() if line]


class OriginsForm(forms.Form):
    allowed_origins = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def origins(self) -> list[str]:
        return [line for line in self.cleaned_data.get("allowed_origins", "").split() if line]
