# A trace's human label became its reviewers' majority (evaluation.models.trace_labels_sql), not the latest label:
# every calibration is due again, so the worker's next sweep recomputes its snapshot under the new rule.

from django.db import migrations

DUE_NOW = "UPDATE evaluation_calibrationtarget SET due_at = now()"


class Migration(migrations.Migration):
    dependencies = [
        ("evaluation", "0015_success_label"),
    ]

    operations = [migrations.RunSQL(DUE_NOW, migrations.RunSQL.noop)]
