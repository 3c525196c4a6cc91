from django.urls import path

from feedback.portal import views

urlpatterns = [
    path("", views.overview, name="overview"),
    path("traces/", views.trace_list, name="trace-list"),
    path("traces/<path:trace_id>", views.trace_view, name="trace-detail"),
]
