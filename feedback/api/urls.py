from django.urls import path

from feedback.api import views

app_name = "feedback_api"

urlpatterns = [
    path("traces", views.TracesApi.as_view(), name="api-traces"),
    path("traces/<text:trace_id>", views.TraceDetailApi.as_view(), name="api-trace-detail"),
    path("feedback", views.FeedbackApi.as_view(), name="api-feedback"),
    path("widget/events", views.WidgetEventsApi.as_view(), name="api-widget-events"),
    path("outcomes", views.OutcomesApi.as_view(), name="api-outcomes"),
    path("otlp/v1/traces", views.OtlpTracesApi.as_view(), name="api-otlp-traces"),
    path("otlp/v1/logs", views.OtlpLogsApi.as_view(), name="api-otlp-logs"),
]
