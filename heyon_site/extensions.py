"""Extensions, created unbound so models and billing can import them without an app."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask, Response
from flask_babel import Babel
from flask_compress import Compress
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from htmx_flask import Htmx
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Named constraints, so Alembic can alter them on SQLite (batch mode) and PostgreSQL alike.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


db = SQLAlchemy(model_class=Base)

# The models' base class. db.Model is made at run time (Base plus Flask-SQLAlchemy's table-name and
# bind mixins), so a type checker cannot follow it as a base class; to it the models are plain Base.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model
migrate = Migrate()
csrf = CSRFProtect()
babel = Babel()
htmx = Htmx()
limiter = Limiter(key_func=get_remote_address)


# Compression of everything the browser reads. Only gzip (every client) and brotli (every current
# browser, and smaller on HTML thanks to its built-in dictionary); zstd and deflate are left out.
COMPRESSION: dict[str, Any] = {
    "COMPRESS_MIMETYPES": [
        "text/html",
        "text/css",
        "text/javascript",
        "application/javascript",
        "image/svg+xml",
        "text/plain",
    ],
    "COMPRESS_ALGORITHM": ["br", "gzip"],
    # Static files are sent as streams (send_file), and Flask-Compress's streaming list has no
    # gzip by default: a gzip-only phone browser would get htmx and the CSS uncompressed.
    "COMPRESS_ALGORITHM_STREAMING": ["br", "gzip"],
    "COMPRESS_STREAMS": True,
    # Pages are compressed afresh on every request, so the levels buy bytes per CPU: on the
    # 3.5 KB home page brotli 5 gives 1436 B in 0.3 ms, brotli 4 gives 1578 B, brotli 11 gives
    # 1238 B but costs 3.7 ms, more than rendering the page; gzip 9 is no smaller than gzip 6.
    # Static files are compressed only when a browser's year-long cache misses: same levels.
    "COMPRESS_LEVEL": 6,
    "COMPRESS_BR_LEVEL": 5,
    # Below this a compressed body saves nothing worth a round of CPU (and the payment
    # providers' plain "success" stays plain).
    "COMPRESS_MIN_SIZE": 500,
}


class Compression(Compress):
    """Flask-Compress with this site's settings as defaults (app config can override each)."""

    def init_app(self, app: Flask) -> None:
        for key, value in COMPRESSION.items():
            app.config.setdefault(key, value)
        super().init_app(app)

    def after_request(self, response: Response | None) -> Response:
        if response is None:
            return super().after_request(response)
        # A byte range of a static file (206) must stay a range of the file as stored:
        # Flask-Compress would compress the range and leave Content-Range describing the file.
        if response.status_code == 206:
            return response
        # Flask-Compress replaces a streamed body (send_file's file wrapper) with a generator
        # and never closes the original, leaking the open file until garbage collection.
        source = response.response
        if response.is_streamed and hasattr(source, "close"):
            response.call_on_close(source.close)
        return super().after_request(response)


# Like every Flask-Compress object it keeps the algorithm and type lists of the last app it was
# initialised with; every app of this project uses the settings above.
compress = Compression()
