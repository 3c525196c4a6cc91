"""The WSGI application the web server (config/serve.py) serves: Django, with the hot paths (widget events, the budget
check) answered ahead of its handler (tenants.hotpath.hot_wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
django_application = get_wsgi_application()

from tenants.hotpath import hot_wsgi  # noqa: E402 - needs the apps loaded (they register the hot paths)

application = hot_wsgi(django_application)
