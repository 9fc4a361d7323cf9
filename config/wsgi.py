import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()

from django.urls import get_resolver  # noqa: E402 (Django is set up by now)

from curation.common.interpreter import process_tune  # noqa: E402

get_resolver().url_patterns  # noqa: B018 (the views, imported now rather than by the first request)
process_tune()
