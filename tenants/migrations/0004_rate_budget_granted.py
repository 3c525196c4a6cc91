"""The rate budget's row says how many requests its last take granted (tenants.ratelimit: a key
with a high rate takes a lease of several requests in one round trip)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0003_organization_quota"),
    ]

    operations = [
        migrations.RunSQL(
            sql="ALTER TABLE public.tenants_rate_budget ADD COLUMN granted integer NOT NULL DEFAULT 1;",
            reverse_sql="ALTER TABLE public.tenants_rate_budget DROP COLUMN granted;",
        ),
    ]
