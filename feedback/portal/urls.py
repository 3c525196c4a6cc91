from django.urls import path

from feedback.portal import prices, views

urlpatterns = [
    path("", views.overview, name="overview"),
    path("traces/", views.trace_list, name="trace-list"),
    path("traces/<path:trace_id>", views.trace_view, name="trace-detail"),
    path("settings/prices/", prices.prices, name="settings-prices"),
    path("settings/prices/<int:price_id>/delete/", prices.price_delete, name="settings-price-delete"),
]
