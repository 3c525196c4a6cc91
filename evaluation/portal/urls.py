"""The evaluation app's portal pages, under /o/<org>/: judges and feature reports."""

from evaluation.portal import calibration, experiments, judges, queues, reports

app_name = "evaluation"

urlpatterns = [
    *calibration.urlpatterns,
    *judges.urlpatterns,
    *reports.urlpatterns,
    *experiments.urlpatterns,
    *queues.urlpatterns,
]
