"""The WSGI application the web server (config/serve.py) serves: Django, with the hot paths (widget events, the budget
check) answered ahead of its handler (tenants.hotpath.hot_wsgi)."""

import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
django_application = get_wsgi_application()

from tenants.hotpath import hot_wsgi  # noqa: E402 - needs the apps loaded (they register the hot paths)

application = hot_wsgi(django_application)

# The URLconf and the views it imports (the API, the portal), loaded here rather than by each process's first request:
# Django reads them lazily, and the first request of every web process paid ~0.3 s for it, its ~33,000 objects then
# left out of the freeze below and scanned by every full collection.
# Its reverse lookup tables ({% url %}, redirects) are built here too.
get_resolver().reverse_dict  # noqa: B018 - the properties import and build them

# Python's cycle collector, set for a web worker. By default a young collection runs every 700 net
# allocations, and every so often one scans the whole heap, ~250,000 objects of which Django and the
# apps loaded at start-up are ~200,000 that live as long as the process. An OTLP export allocates tens
# of thousands of objects (its spans' dicts and attributes) and kept the collector busy: ~11 us of CPU
# per span, one export after another in one thread (~10% of its Python time), and more with several
# requests' objects alive at once. Frozen, the start-up objects are never scanned again; with 50,000
# allocations between young collections, a request's objects are freed by their reference counts
# before a collection sees them (none ran while 54,000 spans were stored). Cyclic garbage still goes,
# a little later: at most ~50,000 container objects wait for it.
gc.collect()
gc.freeze()
gc.set_threshold(50_000, 10, 10)
