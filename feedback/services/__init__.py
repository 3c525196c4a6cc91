"""Every write of ingestion, by concern: traces (and spans), feedback events, outcomes, OTLP
adoption and model prices, on a shared base (feedback.services.shared) and one declaration
per ingest table (feedback.services.tables).

Ingestion validates fast (msgspec, feedback.schemas), then writes in bulk: COPY straight
into the table, and COPY into a staging table then upsert only when a batch repeats what is
stored. Every write is idempotent: feedback and outcomes by their client IDs, traces by
trace_id (a resent trace is merged column by column). Rollups are not touched here: the
(day, feature) partitions a batch changed are marked dirty and a Celery task recomputes them
(see feedback.rollups).

The names below are the package's public surface; import them from here.
"""

from feedback.services.features import feature_segments_set, feature_value_set
from feedback.services.feedback_events import feedback_ingest
from feedback.services.otlp import otlp_ingest
from feedback.services.otlp_logs import genai_messages_prune
from feedback.services.outcomes import outcomes_ingest
from feedback.services.prices import model_price_create
from feedback.services.shared import BatchCompleteness, IngestResult, on_rollups_dirty
from feedback.services.traces import traces_ingest, traces_ingest_items

__all__ = [
    "BatchCompleteness",
    "IngestResult",
    "feature_segments_set",
    "feature_value_set",
    "feedback_ingest",
    "genai_messages_prune",
    "model_price_create",
    "on_rollups_dirty",
    "otlp_ingest",
    "outcomes_ingest",
    "traces_ingest",
    "traces_ingest_items",
]
