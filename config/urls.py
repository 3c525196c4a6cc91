from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from billing.webhook import stripe_webhook
from config.views import demo_host_page, healthz
from tenants.api.errors import api_not_found

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("demo/", demo_host_page, name="demo-host"),
    # The schema and docs are public and unmetered: no key, no rate budget.
    path("api/v1/schema/", SpectacularAPIView.as_view(throttle_classes=[]), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("api/v1/", include("feedback.api.urls")),
    path("api/v1/", include("evaluation.api.urls")),
    path("api/v1/", include("billing.api.urls")),
    re_path(r"^api/v1/", api_not_found, name="api-not-found"),
    path("o/<slug:org>/", include("feedback.portal.urls")),
    path("o/<slug:org>/", include("evaluation.portal.urls")),
    path("o/<slug:org>/", include("billing.portal.urls")),
    path("billing/stripe/webhook", stripe_webhook, name="stripe-webhook"),
    path("o/<slug:org>/settings/", include("tenants.portal.org_urls")),
    path("", include("tenants.portal.urls")),
]
