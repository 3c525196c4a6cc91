"""kept_ratio is now the share of the original left standing in the word diff the portal draws
(feedback.edits), where it was the longest shared run of characters in order: recompute it for stored
edits, so old and new edits read alike (the demo's mean moved from 0.72 to 0.40). edit_distance is
unchanged. Rows are read and written in chunks; a rerun recomputes the same values."""

from __future__ import annotations

from typing import Any

from django.db import migrations

CHUNK = 2_000


def recompute(apps: Any, schema_editor: Any) -> None:
    from feedback.edits import edit_measures

    FeedbackEvent = apps.get_model("feedback", "FeedbackEvent")
    edits = FeedbackEvent.objects.filter(kind="edit").only("id", "original_text", "edited_text", "kept_ratio")
    changed = []
    for event in edits.order_by("id").iterator(chunk_size=CHUNK):
        kept = edit_measures(event.original_text or "", event.edited_text or "").kept_ratio
        if kept != event.kept_ratio:
            event.kept_ratio = kept
            changed.append(event)
        if len(changed) >= CHUNK:
            FeedbackEvent.objects.bulk_update(changed, ["kept_ratio"])
            changed = []
    if changed:
        FeedbackEvent.objects.bulk_update(changed, ["kept_ratio"])


class Migration(migrations.Migration):
    dependencies = [("feedback", "0011_trace_session_recent")]
    operations = [migrations.RunPython(recompute, migrations.RunPython.noop)]
