"""A trace whose feature the OTLP mapping took from the service name says so (feature_guessed), so a later export of
the same trace that names no candor.feature (a child exported after its root) cannot move it out of the feature its
root named. Every stored trace reads false: a constant default, no rewrite of the table."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('feedback', '0013_trace_cost_by_model'),
    ]

    operations = [
        migrations.AddField(
            model_name='trace',
            name='feature_guessed',
            field=models.BooleanField(db_default=False, default=False),
        ),
    ]
