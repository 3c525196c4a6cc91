"""Per-key request budgets for the API rate limit (tenants.ratelimit), shared by every web process.

UNLOGGED: a budget is worth nothing after a crash (PostgreSQL empties the table then, which
only forgives recent spending) and skipping the WAL keeps the per-request upsert cheap.
fillfactor 50 leaves room on each page so the constant updates stay HOT (no index writes).
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(
            sql="""
                CREATE UNLOGGED TABLE public.tenants_rate_budget (
                    key_id bigint PRIMARY KEY,
                    tat double precision NOT NULL,
                    checked_at double precision NOT NULL,
                    allowed boolean NOT NULL
                ) WITH (fillfactor = 50);
                COMMENT ON TABLE public.tenants_rate_budget IS
                    'GCRA state per API key: tat = theoretical arrival time (epoch seconds, database clock)';
            """,
            reverse_sql="DROP TABLE public.tenants_rate_budget;",
        ),
    ]
