"""The embedded PostgreSQL (pgserver) that Candor runs on when DATABASE_URL is unset.

Settings never start it: the entry points that need a database do, before Django reads its
settings, through `ensure_database_url()` (manage.py, config/serve.py, the Celery app,
bin/run-demo, the test session). pgserver keeps one server per data folder and hands every
process the same one, so calling it again costs a stat.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Where the embedded PostgreSQL keeps its data: CANDOR_PGDATA, else .var/pgdata."""
    return Path(os.environ.get("CANDOR_PGDATA") or BASE_DIR / ".var" / "pgdata")


def ensure_database_url() -> str:
    """DATABASE_URL, starting the embedded PostgreSQL and setting it in os.environ if it is unset.

    Child processes (web server processes, Celery, subprocesses of tests) inherit the variable and
    so the same database. Production settings never get an embedded database: with
    config.settings.prod this leaves DATABASE_URL unset, and the settings say so.
    """
    url = os.environ.get("DATABASE_URL", "")
    if url or os.environ.get("DJANGO_SETTINGS_MODULE", "").endswith(".prod"):
        return url
    url = embedded_database_url(data_dir())
    os.environ["DATABASE_URL"] = url
    return url


def _reachable_by_others(path: Path) -> bool:
    """Whether another OS user can walk down to this folder (every ancestor has o+x)."""
    for folder in [path, *path.parents]:
        if folder.exists() and not os.stat(folder).st_mode & 0o001:
            return False
    return True


def usable_data_dir(data_dir: Path) -> Path:
    """As root, pgserver runs PostgreSQL as the 'pgserver' user, which must reach the folder.

    A checkout under a private home (/root is 0700) cannot be reached: fall back to a folder
    under the temp dir, one per checkout.
    """
    if os.geteuid() != 0 or _reachable_by_others(data_dir.parent.parent):
        return data_dir
    import hashlib
    import tempfile

    tag = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"candor-pgdata-{tag}" / "pgdata"


def embedded_database_url(data_dir: Path) -> str:
    import warnings

    # platformdirs warns when XDG_RUNTIME_DIR is unset (as under CI); the fallback is fine.
    warnings.filterwarnings("ignore", module="platformdirs")
    import pgserver  # imported lazily: production never needs it

    data_dir = usable_data_dir(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # As root, pgserver runs PostgreSQL as the 'pgserver' user: it must reach the folder.
    os.chmod(data_dir.parent, 0o755)
    server = pgserver.get_server(data_dir, cleanup_mode=None)
    return str(server.get_uri())


def stop_embedded_database(data_dir: Path) -> None:
    import pgserver

    data_dir = usable_data_dir(data_dir)
    if (data_dir / "postmaster.pid").exists():
        server = pgserver.get_server(data_dir, cleanup_mode="stop")
        server.cleanup()
