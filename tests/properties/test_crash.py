"""A worker killed in the middle of crediting leaves no partial money movement, and the retried
notification credits once.

The crediting transaction writes three things: the order's move to ``credited``, the ledger
entry, and the card's cached balance. A process can die (OOM killer, deploy, power) between any
two statements; only the database's own transaction can make "all or nothing" true. The raw
callback, written in a transaction of its own before crediting, must survive the crash so
support can see what the provider sent.
"""
from __future__ import annotations

from sqlalchemy.orm import Session

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from heyon_site.billing import ledger, recharge
from heyon_site.extensions import db
from heyon_site.models import LedgerEntry

from tests import kit
from tests.kit import ROOT

OPENING = 500  # a non-zero opening balance, so "unchanged" is not the same as "empty"

# The child: the real app and view, with `credit` wrapped to SIGKILL the process right after the
# real credit ran (entry inserted, balance raised, nothing committed). It reports what its own
# transaction saw first, so the parent knows the kill came at that exact point.
CHILD = """
import json, os, signal, sys
from pathlib import Path
from sqlalchemy import select
import heyon_site
from heyon_site.billing import recharge
from heyon_site.extensions import db
from heyon_site.models import Card
from tests.kit import TEST_CONFIG

url, form_path = sys.argv[1], sys.argv[2]
app = heyon_site.create_app({**TEST_CONFIG, "DATABASE_URL": url})
real_credit = recharge.credit

def credit_then_die(s, card_id, amount_fen, kind, key, order_id=None):
    wrote = real_credit(s, card_id, amount_fen, kind, key, order_id=order_id)
    seen = db.session.scalar(select(Card.balance_fen).where(Card.id == card_id))
    print(json.dumps({"wrote": wrote, "balance_in_transaction": seen}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

recharge.credit = credit_then_die
with app.app_context():
    answer = app.test_client().post("/pay/notify/sandbox", data=json.loads(Path(form_path).read_text()))
print("SURVIVED", answer.status_code, answer.get_data(as_text=True), flush=True)
sys.exit(3)
"""


def ledger_entries(order_id: int) -> int:
    db.session.rollback()  # another process wrote: read a fresh snapshot
    return db.session.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.order_id == order_id)) or 0


def assert_untouched(order_no: str, order_id: int) -> None:
    """Nothing of the interrupted crediting transaction is visible."""
    found = kit.order(order_no)
    assert (found.status, found.provider_txn_id, found.paid_fen, found.finalized_at) == ("pending", None, None, None)
    assert ledger_entries(order_id) == 0
    assert kit.event_outcomes(order_id) == Counter()
    assert kit.balance() == OPENING
    verdict = ledger.verify(db.session)
    assert verdict.ok, verdict.violations


def assert_redelivery_credits_once(client: FlaskClient, form: dict[str, str], order_no: str, order_id: int) -> None:
    """The provider's retry credits; a further retry is answered success and moves nothing."""
    for _ in range(2):
        answer = client.post("/pay/notify/sandbox", data=form)
        assert (answer.status_code, answer.get_data(as_text=True)) == (200, "success")
        assert kit.order(order_no).status == "credited"
        assert kit.balance() == OPENING + 10000
        assert ledger_entries(order_id) == 1
        assert kit.event_outcomes(order_id) == Counter({"credited": 1})
        verdict = ledger.verify(db.session)
        assert verdict.ok and verdict.credited_orders == 1, verdict.violations


@pytest.mark.live
def test_sigkill_while_crediting_leaves_no_partial_money_movement(app: Flask, client: FlaskClient, database: str, tmp_path: Path) -> None:
    kit.make_card(balance_fen=OPENING)
    order_no = kit.start_order(client)
    order_id = kit.order(order_no).id
    form = kit.notification(order_no, "100.00")
    form_path = tmp_path / "notification.json"
    form_path.write_text(json.dumps(form))

    child = subprocess.run([sys.executable, "-c", CHILD, database, str(form_path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)

    # It died by our SIGKILL, at the planned point: after the real credit wrote inside the transaction.
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stdout, child.stderr[-3000:])
    seen = json.loads(child.stdout.strip().splitlines()[-1])
    assert seen == {"wrote": True, "balance_in_transaction": OPENING + 10000}, child.stdout

    assert_untouched(order_no, order_id)
    # The raw callback was committed before crediting began, so it outlived the worker.
    [kept] = kit.callbacks()
    assert (kept.provider, kept.outcome, kept.order_no) == ("sandbox", "received", None)
    assert dict(parse_qsl(kept.body)) == form

    assert_redelivery_credits_once(client, form, order_no, order_id)
    assert [c.outcome for c in kit.callbacks()] == ["received", "credited", "duplicate"]


class Boom(RuntimeError):
    """Stands for any error after money was written but before the commit."""


def test_error_while_crediting_rolls_everything_back(app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    kit.make_card(balance_fen=OPENING)
    order_no = kit.start_order(client)
    order_id = kit.order(order_no).id
    form = kit.notification(order_no, "100.00")
    real_credit = recharge.credit
    calls: list[str] = []

    def credit_then_raise(s: Session, card_id: int, amount_fen: int, kind: str, key: str, order_id: int | None = None) -> bool:
        assert real_credit(s, card_id, amount_fen, kind, key, order_id=order_id)
        calls.append(key)
        raise Boom("after the ledger entry and the balance update, before the commit")

    monkeypatch.setattr(recharge, "credit", credit_then_raise)
    answer = client.post("/pay/notify/sandbox", data=form)
    # Not "success": the provider must deliver again.
    assert (answer.status_code, answer.get_data(as_text=True)) == (500, "fail")
    assert calls == [f"order:{order_id}:recharge"]

    assert_untouched(order_no, order_id)
    [kept] = kit.callbacks()
    assert (kept.outcome, kept.order_no) == ("received", None)

    monkeypatch.setattr(recharge, "credit", real_credit)
    assert_redelivery_credits_once(client, form, order_no, order_id)
    assert [c.outcome for c in kit.callbacks()] == ["received", "credited", "duplicate"]
