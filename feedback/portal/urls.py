from django.urls import path

from feedback.portal import prices, views

app_name = "feedback"

urlpatterns = [
    path("traces/", views.trace_list, name="trace-list"),
    path("traces/<text:trace_id>", views.trace_view, name="trace-detail"),
    path("prompts/", views.prompt_list, name="prompt-list"),
    path("settings/prices/", prices.prices, name="prices"),
    path("settings/prices/<int:price_id>/delete/", prices.price_delete, name="price-delete"),
]
