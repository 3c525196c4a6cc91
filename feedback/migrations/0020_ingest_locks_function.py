"""Ingestion's advisory locks taken in one place: candor_ingest_locks, in each organization's schema.

The policy (feedback.services.shared.LOCKED_IDS_MAX: a lock per id, shared or exclusive, after the organization's
ingestion gate taken shared; past the limit the gate alone, exclusively) was written out three times: in both
functions of 0019 and in the log path's statements. Both functions now call this one, as the log path does.
"""

from importlib import import_module

from django.db import migrations

FORWARD = r"""
-- ids locked under prefix || id, in the array's order (callers sort them), each shared where ``shared`` says so
-- (NULL, or a shorter array: exclusively); past locks_max ids the gate alone, exclusively.
CREATE OR REPLACE FUNCTION candor_ingest_locks(
    gate text, locks_max integer, prefix text, ids text[], shared boolean[]
) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF cardinality(ids) > locks_max THEN
        PERFORM pg_advisory_xact_lock(hashtextextended(gate, 0));
    ELSE
        PERFORM pg_advisory_xact_lock_shared(hashtextextended(gate, 0));
        PERFORM count(CASE WHEN x.s THEN pg_advisory_xact_lock_shared(hashtextextended(prefix || x.k, 0))
                           ELSE pg_advisory_xact_lock(hashtextextended(prefix || x.k, 0)) END)
        FROM unnest(ids, shared) AS x(k, s);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION candor_otel_lock_links(
    gate text, locks_max integer, lock_prefix text, ids text[], shared boolean[], link_otel text[],
    link_trace text[], roles text[], given text[], guessing boolean[]
) RETURNS TABLE (otel text, trace_id text, waiting boolean, feature text)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    PERFORM candor_ingest_locks(gate, locks_max, lock_prefix, ids, shared);
    IF cardinality(link_otel) > 0 THEN
        INSERT INTO feedback_oteltracelink (otel_trace_id, trace_id)
        SELECT * FROM unnest(link_otel, link_trace) ON CONFLICT (otel_trace_id) DO NOTHING;
    END IF;
    RETURN QUERY
    SELECT x.otel, l.trace_id::text,
           EXISTS (SELECT FROM feedback_genaimessage m WHERE m.otel_trace_id = x.otel AND m.role = ANY(roles)),
           CASE WHEN x.guessing THEN (
               SELECT f.key::text FROM feedback_trace t JOIN feedback_feature f ON f.id = t.feature_id
               WHERE t.trace_id = COALESCE(x.given, l.trace_id, x.otel) AND NOT t.feature_guessed
           ) END
    FROM unnest(ids, given, guessing) AS x(otel, given, guessing)
    LEFT JOIN feedback_oteltracelink l ON l.otel_trace_id = x.otel;
END
$$;

CREATE OR REPLACE FUNCTION candor_trace_lock_stored(gate text, locks_max integer, keys text[], ids text[])
RETURNS SETOF text
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM candor_ingest_locks(gate, locks_max, '', keys, NULL);
    RETURN QUERY
    SELECT s.trace_id::text FROM unnest(ids) AS x(trace_id)
    CROSS JOIN LATERAL (SELECT t.trace_id FROM feedback_trace t WHERE t.trace_id = x.trace_id LIMIT 1) s;
END
$$;
"""

# Back to 0019's two functions, each with its locks written out (its own text, replaced as it was created).
BACKWARD = (
    import_module("feedback.migrations.0019_otlp_lock_functions").FORWARD
    + "DROP FUNCTION IF EXISTS candor_ingest_locks(text, integer, text, text[], boolean[]);"
)


class Migration(migrations.Migration):
    dependencies = [("feedback", "0019_otlp_lock_functions")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
