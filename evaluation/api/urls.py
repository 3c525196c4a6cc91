"""The evaluation app's API: judges and scores (evaluation.api.judges), feature reports (evaluation.api.reports)."""

from evaluation.api import judges, reports

app_name = "evaluation_api"

urlpatterns = [*judges.urlpatterns, *reports.urlpatterns]
