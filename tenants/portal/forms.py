from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from tenants.models import KeyKind, Role
from tenants.services import normalize_origin


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


def _origin_entries(text: str) -> list[str]:
    """The entries of an origins box: one per line or comma-separated (a space is part of a bad entry,
    so the error quotes what was typed rather than its first word)."""
    return [entry.strip() for entry in re.split(r"[,\r\n]+", text) if entry.strip()]


def _clean_origins(text: str) -> str:
    """Every entry an origin, or a ValidationError quoting each bad one whole."""
    errors = []
    for entry in _origin_entries(text):
        try:
            normalize_origin(entry)
        except ValidationError as exc:
            errors.extend(exc.messages)
    if errors:
        raise ValidationError(errors)
    return text


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=KeyKind.choices, initial=KeyKind.SECRET)
    allowed_origins = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "https://app.example.com"}),
        help_text="Public keys only: one origin per line (or comma-separated), the sites allowed to send widget "
        "events.",
    )

    def clean_allowed_origins(self) -> str:
        return _clean_origins(self.cleaned_data.get("allowed_origins", ""))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        # A secret key is for servers and is never checked against an origin: refuse rather than drop them.
        if cleaned.get("kind") == KeyKind.SECRET and _origin_entries(cleaned.get("allowed_origins", "")):
            self.add_error(
                "allowed_origins",
                "Allowed origins apply to public (browser) keys only: a secret key is never checked against "
                "them. Leave this empty, or choose the public kind.",
            )
        return cleaned

    def origins(self) -> list[str]:
        return _origin_entries(self.cleaned_data.get("allowed_origins", ""))


class OriginsForm(forms.Form):
    allowed_origins = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def clean_allowed_origins(self) -> str:
        return _clean_origins(self.cleaned_data.get("allowed_origins", ""))

    def origins(self) -> list[str]:
        return _origin_entries(self.cleaned_data.get("allowed_origins", ""))
