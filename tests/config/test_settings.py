"""Settings that do not surprise: importing them starts nothing; production says what it is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from config.embedded_db import usable_data_dir
from tests.fixtures.server import ROOT, database_url_for_subprocess

SECRET = "prod-test-secret-" + "x" * 40


def _python(code: str, *, pgdata: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run Python in a fresh process with neither DATABASE_URL nor DJANGO_SECRET_KEY unless given."""
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SECRET_KEY"}}
    base.pop("DJANGO_SETTINGS_MODULE", None)
    base["CANDOR_PGDATA"] = str(pgdata)
    base.update(env)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120)


def _no_embedded_database_at(pgdata: Path) -> bool:
    return not pgdata.exists() and not usable_data_dir(pgdata).exists()


@pytest.mark.parametrize("module", ["base", "dev", "test"])
def test_importing_settings_without_database_url_starts_nothing(tmp_path: Path, module: str) -> None:
    pgdata = tmp_path / "pgdata"
    result = _python(f"import config.settings.{module}", pgdata=pgdata)
    assert result.returncode != 0
    assert "ImproperlyConfigured: DATABASE_URL is not set. Run Candor through manage.py" in result.stderr
    assert _no_embedded_database_at(pgdata), "importing settings started an embedded PostgreSQL"


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({}, "DATABASE_URL and DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": SECRET}, "DATABASE_URL in"),
        ({"DATABASE_URL": "postgresql://candor@db.invalid/candor"}, "DJANGO_SECRET_KEY in"),
    ],
)
def test_prod_refuses_without_database_url_and_secret_key(tmp_path: Path, given: dict[str, str], missing: str) -> None:
    pgdata = tmp_path / "pgdata"
    result = _python("import config.settings.prod", pgdata=pgdata, **given)
    assert result.returncode != 0
    assert f"ImproperlyConfigured: config.settings.prod needs {missing}" in result.stderr
    assert _no_embedded_database_at(pgdata)


def test_prod_starts_with_database_url_and_secret_key(tmp_path: Path, django_db_setup: None) -> None:
    code = (
        "import django; django.setup()\n"
        "from django.conf import settings; from django.db import connection\n"
        "with connection.cursor() as cursor: cursor.execute('SELECT current_database()'); name = cursor.fetchone()[0]\n"
        "print(settings.DEBUG, settings.SECRET_KEY == __import__('os').environ['DJANGO_SECRET_KEY'], name)\n"
    )
    url = database_url_for_subprocess()
    result = _python(
        code,
        pgdata=tmp_path / "pgdata",
        DJANGO_SETTINGS_MODULE="config.settings.prod",
        DATABASE_URL=url,
        DJANGO_SECRET_KEY=SECRET,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", connection.settings_dict["NAME"]]


def test_manage_py_uses_the_given_database_url(tmp_path: Path, django_db_setup: None) -> None:
    """An entry point starts the embedded PostgreSQL only when DATABASE_URL is unset."""
    pgdata = tmp_path / "pgdata"
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url_for_subprocess(), "CANDOR_PGDATA": str(pgdata),
             "DJANGO_SETTINGS_MODULE": "config.settings.test"},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert _no_embedded_database_at(pgdata)


def test_the_wsgi_module_sets_the_cycle_collector_for_a_web_worker(tmp_path: Path, django_db_setup: None) -> None:
    """The objects loaded at start-up are frozen, and young collections wait for 50,000 allocations. Start-up
    includes the URLconf and the views it imports (Django reads them at the first request otherwise)."""
    code = (
        "import gc, sys, config.wsgi\n"
        "print(gc.get_threshold()[0], gc.get_freeze_count() > 100_000, 'feedback.api.views' in sys.modules)\n"
    )
    result = _python(
        code,
        pgdata=tmp_path / "pgdata",
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=database_url_for_subprocess(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["50000", "True", "True"]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CANDOR_GENAI_MESSAGE_RETENTION_DAYS", "0", "CANDOR_GENAI_MESSAGE_RETENTION_DAYS must be a whole number"),
        ("CANDOR_GENAI_MESSAGE_RETENTION_DAYS", "a week", "CANDOR_GENAI_MESSAGE_RETENTION_DAYS must be a whole number"),
        ("CANDOR_REPORT_WORK_MEM", "lots", "CANDOR_REPORT_WORK_MEM must be a size"),
    ],
)
def test_a_bad_setting_says_which_and_how(tmp_path: Path, variable: str, value: str, message: str) -> None:
    result = _python(
        "import config.settings.base", pgdata=tmp_path / "pgdata", DATABASE_URL="postgresql://c@db.invalid/c",
        **{variable: value},
    )  # fmt: skip
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {message}" in result.stderr
