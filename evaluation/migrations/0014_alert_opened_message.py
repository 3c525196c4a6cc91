"""An alert keeps the message it opened with (``message`` is its latest reading). Alerts from before this have
none: their latest message may already be a later reading, so it is not copied."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("evaluation", "0013_alert_opened_baseline")]

    operations = [
        migrations.AddField(model_name="alert", name="opened_message", field=models.TextField(blank=True, default="")),
    ]
