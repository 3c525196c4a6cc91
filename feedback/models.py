"""Ingested data: features, prompt versions, prices, traces, spans, feedback, outcomes, rollups."""
