"""An alert keeps the message it opened with (``message`` is its latest reading); alerts open before this keep
their latest message as both."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("evaluation", "0013_alert_opened_baseline")]

    operations = [
        migrations.AddField(model_name="alert", name="opened_message", field=models.TextField(blank=True, default="")),
        migrations.RunSQL("UPDATE evaluation_alert SET opened_message = message", reverse_sql=migrations.RunSQL.noop),
    ]
