"""Lost notifications: with 5 percent of them dropped at random, `flask payments reconcile`
(each provider answered by a local fake of its API) leaves every paid order credited once and
every unpaid one expired, for every real provider, on SQLite and PostgreSQL."""
from __future__ import annotations

import importlib
import random
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, update

from heyon_site.billing import ledger
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import LedgerEntry, ProviderCallback, RechargeOrder, utcnow

from tests.kit import new_client, site_for_tests
from tests.fakes import serving
from tests.kit import cli, make_card, recharge_form

PROVIDERS = ("alipay", "wechat", "stripe")
PHONE = "Mozilla/5.0 (Linux; Android 9; Redmi 7A) AppleWebKit/537.36 Chrome/90.0 Mobile Safari/537.36"
PAID, UNPAID, DROP_RATE = 40, 8, 0.05


def kit_for(name: str) -> Any:
    return importlib.import_module(f"tests.provider_kits.{name}").KIT


@pytest.fixture(params=PROVIDERS)
def setting(request: pytest.FixtureRequest, database: str) -> Iterator[tuple[Any, Any, Flask]]:
    kit = kit_for(request.param)
    with serving(kit.fake_api()) as fake:
        with site_for_tests(database, HEYON_PROVIDERS=(kit.name,), **kit.config(fake.base_url)) as app:
            yield kit, fake, app


def test_reconcile_finds_every_lost_notification(setting: tuple[Any, Any, Flask]) -> None:
    kit, fake, app = setting
    rng = random.Random(f"{kit.name}-dropped")
    make_card(balance_fen=0)
    client = new_client(app)
    orders: list[str] = []
    for _ in range(PAID + UNPAID):
        r = client.post("/recharge", data=recharge_form(client, method=kit.name), headers={"User-Agent": PHONE})
        assert r.status_code == 303, r.get_data(as_text=True)[:300]
        orders.append(db.session.scalar(select(RechargeOrder.order_no).order_by(RechargeOrder.id.desc())))
        db.session.rollback()
    paid, unpaid = orders[:PAID], orders[PAID:]
    dropped = set(rng.sample(paid, k=max(1, round(PAID * DROP_RATE))))
    for order_no in paid:
        pay_fen = db.session.scalar(select(RechargeOrder.pay_fen).where(RechargeOrder.order_no == order_no))
        txn = kit.pay(fake, order_no, pay_fen)
        if order_no in dropped:
            continue  # the provider took the money; its notification never arrives
        body, headers = kit.notification(order_no, pay_fen, txn)
        answer = client.post(f"/pay/notify/{kit.name}", data=body, headers=headers)
        assert answer.status_code in (200, 204), answer.get_data(as_text=True)
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(RechargeOrder)
                             .where(RechargeOrder.status == "pending")) == len(dropped) + UNPAID

    # Two hours later: the cron job runs.
    in_write_transaction(lambda: db.session.execute(
        update(RechargeOrder).values(created_at=utcnow() - timedelta(minutes=app.config["HEYON_ORDER_EXPIRY_MINUTES"] + 1))))
    result = cli(app.test_cli_runner(), "payments", "reconcile")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"reconcile: credited {len(dropped)}, expired {UNPAID}"

    db.session.rollback()
    status = dict(db.session.execute(select(RechargeOrder.order_no, RechargeOrder.status)).all())
    assert Counter(status[n] for n in paid) == Counter({"credited": PAID})
    assert Counter(status[n] for n in unpaid) == Counter({"expired": UNPAID})
    credits = Counter(db.session.scalars(select(RechargeOrder.order_no).join(LedgerEntry, LedgerEntry.order_id == RechargeOrder.id)
                                         .where(LedgerEntry.kind == "recharge")))
    assert set(credits) == set(paid) and set(credits.values()) == {1}  # each paid order once
    assert db.session.scalar(select(func.count()).select_from(ProviderCallback)) == PAID - len(dropped)
    verdict = ledger.verify(db.session)
    assert verdict.ok, verdict.violations
    # A second run has nothing left to do.
    again = cli(app.test_cli_runner(), "payments", "reconcile")
    assert again.stdout.strip() == "reconcile: expired 0"
