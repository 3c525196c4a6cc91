"""Alerts keep the baseline they opened against (and the success source it was read with), so a lasting
regression stays open after the trailing baseline takes it in; and who resolved an alert, and why.

Alerts open before this migration keep their latest baseline as the level they opened against when their
metric does not read success; a success or cost-per-success alert, whose source was not recorded, resolves
against the trailing baseline as before."""

from django.db import migrations, models

BACKFILL = """
UPDATE evaluation_alert a SET opened_baseline = a.baseline
FROM evaluation_alertrule r
WHERE a.rule_id = r.id AND a.state = 'open' AND r.metric NOT IN ('success_high', 'cost_per_success_usd')
"""


class Migration(migrations.Migration):
    dependencies = [("evaluation", "0012_sampling_rule_bounds")]

    operations = [
        migrations.AddField(model_name="alert", name="opened_baseline", field=models.FloatField(null=True)),
        migrations.AddField(model_name="alert", name="opened_bound", field=models.FloatField(null=True)),
        migrations.AddField(
            model_name="alert",
            name="opened_source",
            field=models.CharField(blank=True, default="", max_length=40),
        ),
        migrations.AddField(model_name="alert", name="resolution", field=models.TextField(blank=True, default="")),
        migrations.AddField(
            model_name="alert",
            name="resolved_by",
            field=models.CharField(blank=True, default="", max_length=254),
        ),
        migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop),
    ]
