"""Feature reports: success, cost per success, ROI, latency per feature, prompt version, customer
and segment, from the rollups for the big numbers and from raw rows for the rest
(evaluation.reports.selectors); the figures themselves are plain maths (measures, success, figures)."""
