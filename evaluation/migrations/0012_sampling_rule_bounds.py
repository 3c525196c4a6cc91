"""Sampling rules saved before their bounds (evaluation.judges.sampling: oversampling up to 1,000x, a delay up to a
week, a finite thumbs-down multiplier) are brought inside them: the sweep rebuilds each rule, and one out of
bounds would otherwise raise on every sweep (the portal used to take 1e308)."""

from django.db import migrations

CLAMP = """
UPDATE evaluation_samplingrule SET
    edited_multiplier = LEAST(edited_multiplier, 1000),
    guardrail_multiplier = LEAST(guardrail_multiplier, 1000),
    delay_s = LEAST(delay_s, 604800),
    thumbs_down_multiplier = CASE WHEN thumbs_down_multiplier = 'Infinity'::float8 OR thumbs_down_multiplier = 'NaN'::float8
                                  THEN 1000000 ELSE thumbs_down_multiplier END
WHERE edited_multiplier > 1000 OR guardrail_multiplier > 1000 OR delay_s > 604800
   OR thumbs_down_multiplier = 'Infinity'::float8 OR thumbs_down_multiplier = 'NaN'::float8
"""


class Migration(migrations.Migration):
    dependencies = [("evaluation", "0011_output_wait")]

    operations = [migrations.RunSQL(CLAMP, reverse_sql=migrations.RunSQL.noop)]
