"""Two SQL functions in each organization's schema: an OTLP export's lock and the read that must follow it, in one
call instead of two statements.

A read has to come after the lock it depends on, in a statement of its own: a statement sees what was committed
when it began, and the lock may have waited for a commit. A PL/pgSQL function's statements each take a fresh
snapshot (the function is VOLATILE), so a function that locks and then reads sees what the lock waited for, as the
second statement did, with one round trip and one statement's overhead less (A/B in one process: ~2.5% of an
export's CPU). Their callers are feedback.services.otlp_logs.otel_lock_links and feedback.services.traces.

Past locks_max ids a call takes the organization's ingestion gate exclusively instead of a lock per id, and every
other call takes the gate shared first (feedback.services.shared.LOCKED_IDS_MAX says why).

Table names are unqualified: they resolve through the caller's search_path, the organization's schema, whose own
copy of the function is the one called.
"""

from django.db import migrations

FORWARD = r"""
-- The OTel trace ids' locks (otlp_logs.otel_lock), the export's new links (inserted under the lock, as before), then
-- each id's link, whether GenAI messages wait for its trace, and the feature a guessed trace's stored row names.
-- Past locks_max ids, the organization's ingestion gate exclusively instead of a lock per id
-- (feedback.services.shared.LOCKED_IDS_MAX says why).
CREATE OR REPLACE FUNCTION candor_otel_lock_links(
    gate text, locks_max integer, lock_prefix text, ids text[], shared boolean[], link_otel text[],
    link_trace text[], roles text[], given text[], guessing boolean[]
) RETURNS TABLE (otel text, trace_id text, waiting boolean, feature text)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    IF cardinality(ids) > locks_max THEN
        PERFORM pg_advisory_xact_lock(hashtextextended(gate, 0));
    ELSE
        PERFORM pg_advisory_xact_lock_shared(hashtextextended(gate, 0));
        PERFORM count(CASE WHEN x.s THEN pg_advisory_xact_lock_shared(hashtextextended(lock_prefix || x.k, 0))
                           ELSE pg_advisory_xact_lock(hashtextextended(lock_prefix || x.k, 0)) END)
        FROM unnest(ids, shared) AS x(k, s);
    END IF;
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

-- The trace_ids' locks (traces._trace_lock_keys), or past locks_max of them the ingestion gate exclusively, then
-- which of them are stored: one probe of the unique index each.
CREATE OR REPLACE FUNCTION candor_trace_lock_stored(gate text, locks_max integer, keys text[], ids text[])
RETURNS SETOF text
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF cardinality(keys) > locks_max THEN
        PERFORM pg_advisory_xact_lock(hashtextextended(gate, 0));
    ELSE
        PERFORM pg_advisory_xact_lock_shared(hashtextextended(gate, 0));
        PERFORM count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM unnest(keys) AS k;
    END IF;
    RETURN QUERY
    SELECT s.trace_id::text FROM unnest(ids) AS x(trace_id)
    CROSS JOIN LATERAL (SELECT t.trace_id FROM feedback_trace t WHERE t.trace_id = x.trace_id LIMIT 1) s;
END
$$;
"""

BACKWARD = """
DROP FUNCTION IF EXISTS candor_otel_lock_links(
    text, integer, text, text[], boolean[], text[], text[], text[], text[], boolean[]
);
DROP FUNCTION IF EXISTS candor_trace_lock_stored(text, integer, text[], text[]);
"""


class Migration(migrations.Migration):
    dependencies = [("feedback", "0018_span_key_collation_c")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
