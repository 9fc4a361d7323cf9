"""gunicorn's settings for the web process: `gunicorn -c config/gunicorn.py config.wsgi` (docker/Dockerfile,
docker/compose.yaml, bench/, tests/faults/). docs/deploy.md#slow-clients explains the choices.

Options given on the command line win over these.
"""

import os

wsgi_app = "config.wsgi:application"
# No `bind`: the image's command names its address (0.0.0.0:8000 inside the container), gunicorn's default is
# 127.0.0.1:8000.

# Processes (WEB_CONCURRENCY, as gunicorn reads it itself) of WEB_THREADS threads each. Threads overlap one request's
# waits (the database, a body arriving from the proxy, an upstream of the logging proxy) with another's Python.
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
threads = int(os.environ.get("WEB_THREADS", "4"))
# gthread, with each request's head and small body read by the event loop, under a time limit, before a thread
# takes it: clients that send slowly cost a socket each, up to worker_connections, not a thread.
worker_class = "config.gunicorn_worker.HeadFirstWorker"
worker_connections = 1000

# A worker whose event loop says nothing for this long is killed and replaced. The loop answers even while every
# thread is busy, so this does not cut long requests (uploads, streamed proxy answers) short.
timeout = 60
graceful_timeout = 30  # a stop (deploy, restart) lets requests under way finish this long
keepalive = 5  # seconds an idle connection from the reverse proxy stays open for its next request

# The limits of a request's head (gunicorn's defaults, stated): past them, 400 before any of Django runs.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

accesslog = "-"
# No gunicornc control socket (~/.gunicorn/gunicorn.ctl): nothing uses it, and every instance on a machine would share
# the one path.
control_socket_disable = True
