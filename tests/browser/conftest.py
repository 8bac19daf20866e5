"""Fixtures of the browser tests: one Chromium per test session (per xdist worker), and one live
gunicorn site per test module, on a SQLite copy of the migrated schema with its own data.

The browser tests run on SQLite only: what they check (pages, scripts, layout, accessibility)
does not depend on the database, which the rest of the suite covers on both backends.
"""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from heyon_site import create_app
from heyon_site.billing.money import yuan
from heyon_site.promos.lifecycle import COMMAND_LINE, Editor, approval_digest, approve, create_promotion
from heyon_site.billing.promos import NewPromotion, PromoCaps, current_quote
from heyon_site.billing.recharge import start_recharge
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.faq.services import seed as seed_faq
from heyon_site.faq.starter import STARTER
from heyon_site.models import FaqEntry, utcnow
from heyon_site.staff.services import create_staff

from tests import kit
from tests.kit import TEST_CONFIG
from tests.browser import helpers
from tests.browser.helpers import CARDS, OPENING_FEN, PROMO_TITLE_EN, STAFF_PASSWORD, STAFF_USER, Site

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    reason = helpers.missing()
    if reason:
        pytest.skip(f"browser tests skipped: {reason}")
    with helpers.chromium() as b:
        yield b


def _seed(url: str) -> dict[str, object]:
    """Cards, a staff admin, the starter FAQ, a running promotion, a pending and a credited order."""
    app = create_app({**TEST_CONFIG, "DATABASE_URL": url})
    with app.app_context():
        card_ids = {name: kit.make_card(number, kit.PIN, OPENING_FEN) for name, number in CARDS.items()}
        staff_id = in_write_transaction(lambda: create_staff(STAFF_USER, STAFF_PASSWORD, "admin").id)
        for locale, entries in STARTER.items():
            in_write_transaction(lambda locale=locale, entries=entries: seed_faq(locale, entries))
        now = utcnow()
        caps = PromoCaps()

        def running_promotion() -> int:
            promo = create_promotion(NewPromotion(
                title_zh="浏览器测试赠送", title_en=PROMO_TITLE_EN, kind="fixed_bonus", starts_at=now - timedelta(days=1),
                ends_at=now + timedelta(days=30), threshold_fen=10_000, value_fen=1_000, published=True), caps, COMMAND_LINE)
            approve(promo.id, caps, Editor(staff_id, STAFF_USER), approval_digest(promo) or "")
            return promo.id

        promo_id = in_write_transaction(running_promotion)

        def order(amount_fen: int) -> tuple[str, str, int]:
            o = in_write_transaction(lambda: start_recharge(db.session, card_ids["pages"], amount_fen, "sandbox", "zh_Hans",
                                                            terms=current_quote(db.session, amount_fen, caps=caps)))
            return o.order_no, o.token, o.pay_fen

        pending_no, pending_token, _ = order(5_000)
        paid_no, paid_token, pay_fen = order(10_000)
        answer = app.test_client().post("/pay/notify/sandbox", data=kit.notification(paid_no, yuan(pay_fen)))
        assert answer.get_data(as_text=True) == "success"
        faq_id = db.session.scalar(select(FaqEntry.id).where(FaqEntry.locale == "en").order_by(FaqEntry.position))
        db.session.remove()
        db.engine.dispose()
    assert faq_id is not None
    return {"pending_token": pending_token, "pending_order_no": pending_no, "pending_gateway": kit.gateway_path(pending_no),
            "credited_token": paid_token,
            "credited_order_no": paid_no, "faq_id": faq_id, "promo_id": promo_id, "staff_id": staff_id}


@pytest.fixture(scope="module")
def site(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("browser-site")
    path = tmp / "heyon.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    data = _seed(url)
    # Generous per-IP limits: every request of these tests comes from 127.0.0.1.
    env = {"HEYON_IP_LIMIT": "1000 per minute", "HEYON_IP_FAILURE_LIMIT": "1000 per hour"}
    with kit.live_site(url, tmp, workers=2, extra_env=env) as live:
        yield Site(url=live.url, **data)  # type: ignore[arg-type]


@pytest.fixture(params=[True, False], ids=["js", "nojs"])
def js(request: pytest.FixtureRequest) -> bool:
    """Each scenario runs with JavaScript on (htmx) and off (plain forms and links)."""
    return bool(request.param)
