"""Start (or reuse) the embedded PostgreSQL that Candor uses when DATABASE_URL is unset.

pgserver keeps one server per data folder and hands every process the same one, so
web, worker, beat and tests can all call this at import time for the cost of a stat.
"""

from __future__ import annotations

import os
from pathlib import Path


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
