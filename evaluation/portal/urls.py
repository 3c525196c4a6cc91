"""The evaluation app's portal pages, under /o/<org>/: judges and feature reports."""

from evaluation.portal import judges, reports

app_name = "evaluation"

urlpatterns = [*judges.urlpatterns, *reports.urlpatterns]
