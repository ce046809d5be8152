"""The WSGI app tests/test_gunicorn.py serves from gunicorn's workers: each says its pid."""

from __future__ import annotations

import os


def app(environ, start_response):
    body = f"worker {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
