"""heyon_site: the self-service site of the Heyon prepaid roaming card."""

from __future__ import annotations

from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from heyon_site import api, config, customer, payments, providers, sandbox, staff
from heyon_site.cards.cli import cards, seed_demo
from heyon_site.extensions import compress, csrf, db, limiter, migrate
from heyon_site.extensions import htmx as htmx_ext
from heyon_site.faq.cli import faq_cli
from heyon_site.ops import alarms, backup, logs, metrics
from heyon_site.ops.cli import ledger_cli
from heyon_site.outbox.cli import outbox as outbox_cli
from heyon_site.payments.cli import payments as payments_cli
from heyon_site.payments.cli import refunds_group as refunds_cli
from heyon_site.promos.cli import promos_cli
from heyon_site.settlement.cli import settlement as settlement_cli
from heyon_site.staff.cli import staff_cli
from heyon_site.vouchers.cli import vouchers_cli
from heyon_site.web import errors, i18n, pages

COMMANDS = (
    cards,
    seed_demo,
    ledger_cli,
    payments_cli,
    refunds_cli,
    settlement_cli,
    outbox_cli,
    faq_cli,
    promos_cli,
    staff_cli,
    vouchers_cli,
)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: settings, extensions, blueprints and commands, nothing else."""
    app = Flask(__name__, template_folder="../templates", static_folder="../static", instance_relative_config=True)
    config.configure(app, test_config)
    if app.config["HEYON_PROXY_HOPS"]:
        hops = app.config["HEYON_PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]  # Flask's documented way to add WSGI middleware
    # Outermost (every request gets its id and access line) and before db.init_app (engine options).
    logs.init_app(app)

    # First, so its after_request hook runs last: it compresses the finished response.
    compress.init_app(app)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(config.PROJECT_ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    htmx_ext.init_app(app)
    limiter.init_app(app)
    i18n.init_app(app)
    providers.init_app(app)
    alarms.init_app(app)
    pages.init_app(app)
    errors.init_app(app)
    metrics.init_app(app)

    for blueprint in (customer.bp, payments.bp, staff.bp, api.bp):
        app.register_blueprint(blueprint)
    csrf.exempt(payments.bp)  # provider callbacks are authenticated by their signatures
    csrf.exempt(api.bp)  # so is every API request (api/auth.py)
    if "sandbox" in app.extensions["heyon.providers"]:
        app.register_blueprint(sandbox.bp)
        app.extensions["heyon.providers"]["sandbox"].on_refund = sandbox.notify_refund
    for command in COMMANDS:
        app.cli.add_command(command)
    backup.init_app(app)  # `flask db backup`
    return app
