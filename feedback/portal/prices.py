"""Settings > Model prices: the built-in table and the organization's own overrides."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from feedback import services
from feedback.models import ModelPrice
from feedback.prices import DEFAULT_PRICES
from tenants.access import Role, role_required


class PriceForm(forms.Form):
    provider = forms.CharField(max_length=50, required=False, help_text="openai, anthropic, … (optional)")
    model = forms.CharField(max_length=200)
    input_per_mtok = forms.DecimalField(label="Input $ / 1M tokens", min_value=0, max_digits=12, decimal_places=6)
    output_per_mtok = forms.DecimalField(label="Output $ / 1M tokens", min_value=0, max_digits=12, decimal_places=6)
    cached_per_mtok = forms.DecimalField(
        label="Cached input $ / 1M tokens", min_value=0, max_digits=12, decimal_places=6, required=False
    )
    effective_from = forms.DateTimeField(required=False, help_text="Leave empty for now.")


@role_required(Role.ADMIN)
def prices(request: HttpRequest) -> HttpResponse:
    form = PriceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.model_price_create(
                provider=data["provider"], model=data["model"], input_per_mtok=data["input_per_mtok"],
                output_per_mtok=data["output_per_mtok"], cached_per_mtok=data["cached_per_mtok"],
                effective_from=data["effective_from"] or timezone.now(),
            )  # fmt: skip
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, ValidationError(errors))
        else:
            messages.success(request, f"Price for {data['model']} saved; new traces use it.")
            return redirect(reverse("feedback:prices", args=[request.tenant.slug]))  # type: ignore[attr-defined]
    context = {
        "nav": "prices",
        "form": form,
        "overrides": ModelPrice.objects.all(),
        "defaults": [p for p in DEFAULT_PRICES if p.effective_to is None],
    }
    return TemplateResponse(request, "feedback/prices.html", context)


@require_POST
@role_required(Role.ADMIN)
def price_delete(request: HttpRequest, price_id: int) -> HttpResponse:
    # Looked up in the organization's own schema: another organization's price is a 404.
    price = get_object_or_404(ModelPrice, id=price_id)
    price.delete()
    messages.success(request, f"Removed your price for {price.model}; the built-in one applies again.")
    return redirect(reverse("feedback:prices", args=[request.tenant.slug]))  # type: ignore[attr-defined]
