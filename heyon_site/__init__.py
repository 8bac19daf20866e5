"""heyon_site: the self-service site of the Heyon prepaid roaming card."""
from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config as cfg
from . import alarms, cli, errors, i18n, logs, metrics, providers, web
from .customer import faq as _faq_routes  # noqa: F401 - registers /faq on the customer blueprint
from .customer.views import bp as customer_bp
from .extensions import compress, csrf, db, limiter, migrate
from .extensions import htmx as htmx_ext
from .payments.views import bp as payments_bp
from .sandbox.views import bp as sandbox_bp
from .staff import account_views as _account_routes  # noqa: F401 - registers the account pages on the staff blueprint
from .staff import content_views as _content_routes  # noqa: F401 - registers the editor pages on the staff blueprint
from .staff.views import bp as staff_bp

log = logging.getLogger(__name__)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: configuration, extensions, blueprints and error handlers, nothing else."""
    app = Flask(__name__, template_folder="../templates", static_folder="../static", instance_relative_config=True)
    app.config.from_object(cfg.Defaults)
    app.config.update({k: v for k, v in cfg.from_environment().items() if v is not None})
    app.config.update(test_config or {})
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config["SQLALCHEMY_DATABASE_URI"] = cfg.database_url(app.config.get("DATABASE_URL"), Path(app.instance_path))
    if not app.config.get("SECRET_KEY"):
        # Fine for `make run` on one machine; production sets SECRET_KEY (the README says so).
        app.config["SECRET_KEY"] = _instance_secret(Path(app.instance_path))
    cfg.refuse_sandbox_beside_real_providers(app.config)
    cfg.refuse_per_process_limits(app.config)
    app.config.update(cfg.check_promo_caps(app.config))
    cfg.warn_of_a_derived_card_key(app.config)
    # Once, at start-up: every card lookup needs it, and an unreadable HEYON_CARD_KEY_FILE stops
    # the site here rather than failing each lookup.
    app.extensions["heyon.card_key"] = cfg.card_number_key(app.config)
    if app.config["HEYON_HTTPS"]:
        app.config.update(cfg.HTTPS_ONLY)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", cfg.engine_options(app.config))
    if app.config["HEYON_PROXY_HOPS"]:
        hops = app.config["HEYON_PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    # Outermost (every request gets its id and access line) and before db.init_app (engine options).
    logs.init_app(app)

    # First, so its after_request hook runs last: it compresses the finished response.
    compress.init_app(app)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(cfg.PROJECT_ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    htmx_ext.init_app(app)
    limiter.init_app(app)
    i18n.init_app(app)
    providers.init_app(app)
    alarms.init_app(app)
    web.init_app(app)
    errors.init_app(app)
    metrics.init_app(app)

    app.register_blueprint(customer_bp)
    app.register_blueprint(payments_bp)
    app.register_blueprint(staff_bp)
    csrf.exempt(payments_bp)  # provider callbacks are authenticated by their signatures
    if "sandbox" in app.extensions["heyon.providers"]:
        app.register_blueprint(sandbox_bp)
    cli.init_app(app)
    return app


def _instance_secret(instance: Path) -> str:
    """A per-installation key kept in instance/, created once even when workers start together."""
    path = instance / "secret_key"
    if not path.exists():
        tmp = instance / f".secret_key.{secrets.token_hex(4)}"
        tmp.write_text(secrets.token_hex(32))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)  # atomic: exactly one worker's key wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()
