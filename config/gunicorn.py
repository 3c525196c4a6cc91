"""gunicorn's settings for Candor: `gunicorn -c config/gunicorn.py` (bin/run-demo, the benchmarks, tests).

Loaded by the master before it forks, so it starts the embedded PostgreSQL when DATABASE_URL
is unset and every worker inherits the URL. Command-line flags override anything here.
"""

import os
import sys
from pathlib import Path

# gunicorn puts the working directory on sys.path only after reading this file.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.embedded_db import ensure_database_url

ensure_database_url()

wsgi_app = "config.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
# gunicorn reads WEB_CONCURRENCY for the worker count itself; threads serve slow clients.
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# The worker's pid on each line: which process served a request (the shared rate limit's test reads it).
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" pid=%(p)s'
