"""What an OTLP export could not tell of its trace, kept so another export of the trace does not overwrite what it
told: feature_guessed (the feature is the service's name, no span named candor.feature) and root_missing (every span
had a parent: the root is in another export). A child exported after its root moved the trace into a feature named
after the service and took the root's start and latency; an error in a child exported before its root was lost.
Every stored trace reads false: constant defaults, no rewrite of the table."""

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
        migrations.AddField(
            model_name='trace',
            name='root_missing',
            field=models.BooleanField(db_default=False, default=False),
        ),
    ]
