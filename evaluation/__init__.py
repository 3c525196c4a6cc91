"""Judges, scores, annotation queues, labels, calibration, experiments, drift, alerts (later issues)."""
