"""A trace priced span by span whose LLM calls went to several models keeps its cost per model (cost_by_model), so
the spend counters (and a budget narrowed to a model) count each model's own. Null for every other trace: no
backfill; a stored agent trace is priced per model the next time its spans move."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('feedback', '0012_edit_kept_ratio_word_diff'),
    ]

    operations = [
        migrations.AddField(
            model_name='trace',
            name='cost_by_model',
            field=models.JSONField(blank=True, null=True),
        ),
    ]
