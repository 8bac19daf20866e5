"""The WSGI entry point: `gunicorn wsgi:app`, and what `flask` finds (FLASK_APP=wsgi)."""

from heyon_site import create_app

app = create_app()
