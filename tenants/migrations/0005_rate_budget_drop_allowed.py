"""The rate budget's `allowed` flag said what `granted > 0` now says: dropped, not kept in step."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0004_rate_budget_granted"),
    ]

    operations = [
        migrations.RunSQL(
            sql="ALTER TABLE public.tenants_rate_budget DROP COLUMN allowed;",
            reverse_sql=(
                "ALTER TABLE public.tenants_rate_budget ADD COLUMN allowed boolean NOT NULL DEFAULT true; "
                "UPDATE public.tenants_rate_budget SET allowed = granted > 0;"
            ),
        ),
    ]
