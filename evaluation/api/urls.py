"""The evaluation app's API: judges and scores (evaluation.api.judges), feature reports
(evaluation.api.reports), labels, calibration and success (evaluation.api.calibration)."""

from evaluation.api import alerts, calibration, experiments, judges, reports

app_name = "evaluation_api"

urlpatterns = [
    *judges.urlpatterns,
    *reports.urlpatterns,
    *calibration.urlpatterns,
    *experiments.urlpatterns,
    *alerts.urlpatterns,
]
