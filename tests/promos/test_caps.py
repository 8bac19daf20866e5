"""Promotions cannot mint money: the caps (HEYON_PROMO_MAX_BONUS_PERCENT, _DISCOUNT_PERCENT) hold
everywhere terms enter (the staff form, `flask promos create`, the schema), quotes are clamped to
the caps in force, every order records the caps it was quoted under, and `flask ledger verify`
names any credited order beyond them. The issue's own examples: a fixed bonus of 999,999,999.99
with no threshold, and a discount of 100 %."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import downgrade, upgrade
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from heyon_site import config as cfg
from heyon_site import create_app
from heyon_site.billing import ledger
from heyon_site.billing.promos import PromoCaps
from heyon_site.billing.recharge import apply_event, start_recharge
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import AuditLog, Promotion, RechargeOrder, utcnow
from heyon_site.billing.events import ProviderEvent

from tests.kit import TEST_CONFIG, flask_cli, new_client, site_for_tests
from tests.kit import balance, make_card, notification, order, start_order
from tests.kit import MIGRATIONS
from tests.payments.kit import post_notify
from tests.promos.kit import QUOTE, quote_line, save
from tests.staff.kit import audit_rows, signed_in
from tests.promos.kit import approve, approve_button, promo_fields, the_promo, token

MINT = "999999999.99"  # the fixed bonus, typed with no threshold
MINT_MESSAGE = ("A bonus is at most 50% of the amount paid (HEYON_PROMO_MAX_BONUS_PERCENT): a bonus of 999999999.99 "
                "needs a from amount of at least 1999999999.98.")
FREE_MESSAGE = "A discount is at most 30% of the amount (HEYON_PROMO_MAX_DISCOUNT_PERCENT)."
EN = {"Accept-Language": "en"}


def promotion_count() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(Promotion)) or 0


# ------------------------------------------------------------------ the settings


def test_the_caps_default_to_50_and_30_percent() -> None:
    env = cfg.from_environment({})
    assert (env["HEYON_PROMO_MAX_BONUS_PERCENT"], env["HEYON_PROMO_MAX_DISCOUNT_PERCENT"]) == (50, 30)
    env = cfg.from_environment({"HEYON_PROMO_MAX_BONUS_PERCENT": " 100 ", "HEYON_PROMO_MAX_DISCOUNT_PERCENT": "0"})
    assert PromoCaps.from_config(env) == PromoCaps(100, 0)


@pytest.mark.parametrize(("name", "value"), [
    ("HEYON_PROMO_MAX_BONUS_PERCENT", "101"), ("HEYON_PROMO_MAX_BONUS_PERCENT", "-1"),
    ("HEYON_PROMO_MAX_BONUS_PERCENT", "12.5"), ("HEYON_PROMO_MAX_BONUS_PERCENT", "half"),
    ("HEYON_PROMO_MAX_DISCOUNT_PERCENT", "100"), ("HEYON_PROMO_MAX_DISCOUNT_PERCENT", "３０"),
    ("HEYON_PROMO_MAX_DISCOUNT_PERCENT", "1e1"),
])
def test_caps_outside_their_bounds_stop_start_up(name: str, value: str) -> None:
    highest = 100 if "BONUS" in name else 99
    with pytest.raises(ValueError, match=rf"{name} must be a whole percentage from 0 to {highest}, not '{re.escape(value)}'"):
        cfg.from_environment({name: value})
    # The same for settings handed to the factory rather than read from the environment.
    with pytest.raises(ValueError, match=name):
        create_app({**TEST_CONFIG, "DATABASE_URL": "sqlite://", name: value})


def test_the_real_command_refuses_to_start_with_a_100_percent_discount(database: str) -> None:
    done = flask_cli(database, "promos", "list", env={"HEYON_PROMO_MAX_DISCOUNT_PERCENT": "100"})
    assert done.returncode != 0
    assert "HEYON_PROMO_MAX_DISCOUNT_PERCENT must be a whole percentage from 0 to 99, not '100'" in done.stderr


# ------------------------------------------------------------------ where terms enter: the staff form


@pytest.mark.parametrize(("fields", "message"), [
    ({"value": MINT, "threshold": "0"}, MINT_MESSAGE),
    ({"kind": "discount", "value": "", "percent": "100"}, FREE_MESSAGE),
    ({"kind": "discount", "value": "", "percent": "30.01"}, FREE_MESSAGE),
    ({"kind": "percent_bonus", "value": "", "percent": "50.01", "cap": "1"},
     "A bonus is at most 50% of the amount paid (HEYON_PROMO_MAX_BONUS_PERCENT)."),
    ({"value": "50.01", "threshold": "100"}, "needs a from amount of at least 100.02."),
])
@pytest.mark.parametrize("role", ["editor", "admin"])
def test_the_staff_form_refuses_terms_over_the_caps(app: Flask, role: str, fields: dict[str, str], message: str) -> None:
    client = signed_in(app, role)
    r = client.post("/staff/promotions?lang=en", data={"csrf_token": token(client), **promo_fields(**fields)})
    assert r.status_code == 422 and message in r.get_data(as_text=True)
    assert promotion_count() == 0 and audit_rows("promo.create") == []


def test_the_refusal_is_in_the_readers_language(app: Flask) -> None:
    client = signed_in(app, "editor")
    r = client.post("/staff/promotions?lang=zh", data={"csrf_token": token(client), **promo_fields(value=MINT, threshold="0")})
    body = r.get_data(as_text=True)
    assert r.status_code == 422 and "HEYON_PROMO_MAX_BONUS_PERCENT" in body and "50%" in body and "1999999999.98" in body
    assert "A bonus is at most" not in body


def test_the_caps_on_the_form_follow_the_settings(database: str) -> None:
    with site_for_tests(database, HEYON_PROMO_MAX_BONUS_PERCENT="100", HEYON_PROMO_MAX_DISCOUNT_PERCENT="99") as wide:
        client = signed_in(wide, "editor")
        page = client.get("/staff/promotions/new?lang=en").get_data(as_text=True)
        assert "A bonus is at most 100% of the amount paid, a discount at most 99% of the amount." in page
        # Even the widest caps refuse the two: more than the amount paid, and all of it.
        for fields in ({"value": MINT, "threshold": "0"}, {"kind": "discount", "value": "", "percent": "100"}):
            r = client.post("/staff/promotions?lang=en", data={"csrf_token": token(client), **promo_fields(**fields)})
            assert r.status_code == 422, fields
        ok = client.post("/staff/promotions?lang=en", data={"csrf_token": token(client), **promo_fields(
            kind="discount", value="", percent="99")})
        assert ok.status_code == 303 and promotion_count() == 1


def test_an_edit_over_the_caps_is_refused_and_changes_nothing(app: Flask) -> None:
    client = signed_in(app, "editor")
    client.post("/staff/promotions", data={"csrf_token": token(client), **promo_fields(published="")})
    before = the_promo()
    r = client.post(f"/staff/promotions/{before.id}?lang=en", data={"csrf_token": token(client), **promo_fields(
        value=MINT, threshold="0", published="")})
    assert r.status_code == 422 and MINT_MESSAGE in r.get_data(as_text=True)
    after = the_promo()
    assert (after.value_fen, after.threshold_fen) == (before.value_fen, before.threshold_fen) == (1000, 10000)
    assert audit_rows("promo.edit") == []


# ------------------------------------------------------------------ `flask promos create`


@pytest.mark.parametrize(("options", "message"), [
    (["--kind", "fixed_bonus", "--value", MINT], MINT_MESSAGE),
    (["--kind", "discount", "--percent", "100"], FREE_MESSAGE),
])
@pytest.mark.parametrize("publish", [[], ["--publish"]])
def test_the_command_exits_non_zero_and_stores_nothing(database: str, app: Flask, options: list[str], message: str,
                                                       publish: list[str]) -> None:
    done = flask_cli(database, "promos", "create", "--title-zh", "送钱", "--title-en", "Free money",
                     "--ends", "2040-01-01", *options, *publish)
    assert done.returncode != 0 and message in done.stderr, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    assert promotion_count() == 0 and audit_rows() == []


def test_the_command_follows_the_configured_caps(database: str, app: Flask) -> None:
    options = ["--title-zh", "八折", "--title-en", "20 % off", "--ends", "2040-01-01", "--kind", "discount", "--percent", "20"]
    refused = flask_cli(database, "promos", "create", *options, env={"HEYON_PROMO_MAX_DISCOUNT_PERCENT": "10"})
    assert refused.returncode != 0 and "A discount is at most 10% of the amount" in refused.stderr
    assert promotion_count() == 0
    made = flask_cli(database, "promos", "create", *options)
    assert made.returncode == 0 and made.stdout.startswith("created 1  draft  ")


# ------------------------------------------------------------------ the schema


def insert_promotion(**fields: Any) -> None:
    now = utcnow()
    values = {"title_zh": "送钱", "title_en": "Free money", "kind": "fixed_bonus", "threshold_fen": 0, "value_fen": 0,
              "percent_bp": 0, "cap_fen": None, "starts_at": now - timedelta(days=1), "ends_at": now + timedelta(days=1),
              "priority": 0, "published": True, "publish_requested": False, "created_at": now, "updated_at": now, **fields}
    db.session.execute(Promotion.__table__.insert().values(**values))
    db.session.commit()


@pytest.mark.parametrize(("fields", "check"), [
    ({"value_fen": 99_999_999_999}, "fixed_bonus_within_threshold"),  # the issue's, with no threshold
    ({"value_fen": 10_001, "threshold_fen": 10_000}, "fixed_bonus_within_threshold"),
    ({"kind": "discount", "percent_bp": 10_000}, "discount_below_100"),
    ({"kind": "percent_bonus", "percent_bp": 10_001}, "percent_range"),
    ({"value_fen": 100, "threshold_fen": 1000, "publish_requested": True}, "requested_only_when_draft"),
    ({"value_fen": 100, "threshold_fen": 1000, "published": False, "pending_terms": "{}"}, "changes_only_when_published"),
])
def test_the_schema_refuses_a_promotion_that_gives_the_money_away(app: Flask, fields: dict[str, Any], check: str) -> None:
    with pytest.raises(IntegrityError, match=check):
        insert_promotion(**fields)
    db.session.rollback()
    assert promotion_count() == 0


def test_the_schema_refuses_to_publish_a_draft_over_any_cap(app: Flask) -> None:
    insert_promotion(kind="discount", percent_bp=10_000, published=False)  # a draft gives nothing away
    with pytest.raises(IntegrityError, match="discount_below_100"):
        db.session.execute(text("UPDATE promotions SET published = true"))
        db.session.commit()
    db.session.rollback()
    assert db.session.scalar(select(Promotion.published)) is False


def insert_order(card_id: int, **fields: Any) -> None:
    now = utcnow()
    values = {"order_no": "2612010000000001", "token": "t" * 24, "card_id": card_id, "provider": "sandbox",
              "status": "pending", "amount_fen": 10_000, "pay_fen": 10_000, "bonus_fen": 0, "locale": "en",
              "bonus_cap_percent": 50, "discount_cap_percent": 30, "created_at": now, "updated_at": now, **fields}
    db.session.execute(RechargeOrder.__table__.insert().values(**values))
    db.session.commit()


@pytest.mark.parametrize(("fields", "check"), [
    ({"bonus_fen": 5_001}, "bonus_within_cap"),  # 50 % of 100.00 paid is 50.00
    ({"amount_fen": 10_000, "pay_fen": 6_999}, "discount_within_cap"),  # 30 % off 100.00 leaves 70.00
    ({"amount_fen": 10_000, "pay_fen": 1, "discount_cap_percent": 99}, "discount_within_cap"),
    ({"bonus_cap_percent": 101}, "bonus_within_cap"),
    ({"discount_cap_percent": 100}, "discount_within_cap"),
    ({"bonus_cap_percent": None}, "caps_together"),
])
def test_the_schema_refuses_an_order_beyond_the_caps_it_was_quoted_under(app: Flask, fields: dict[str, Any],
                                                                         check: str) -> None:
    card_id = make_card()
    insert_order(card_id, bonus_fen=5_000)  # exactly at the caps: allowed
    with pytest.raises(IntegrityError, match=check):
        insert_order(card_id, order_no="2612010000000002", token="u" * 24, **fields)
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(RechargeOrder)) == 1


# ------------------------------------------------------------------ quotes follow the caps in force


def test_a_quote_is_clamped_when_the_caps_are_lowered_after_publication(app: Flask, database: str) -> None:
    make_card(balance_fen=500)
    save(kind="percent_bonus", percent_bp=5000, title_en="Half as much again")  # fine under the default 50 %
    assert quote_line(new_client(app, htmx=True).get("/recharge/quote?amount=100", headers=EN)).startswith("Pay 100.00, receive 150.00")
    with site_for_tests(database, HEYON_PROMO_MAX_BONUS_PERCENT="10") as lowered:
        customer = new_client(lowered)
        shown = quote_line(new_client(lowered, htmx=True).get("/recharge/quote?amount=100", headers=EN))
        assert shown.startswith("Pay 100.00, receive 110.00"), shown  # what the customer is shown ...
        assert "¥100<small>+¥10.00 bonus</small>" in customer.get("/recharge", headers=EN).get_data(as_text=True)
        order_no = start_order(customer)
        made = order(order_no)
        assert (made.pay_fen, made.bonus_fen, made.bonus_cap_percent, made.discount_cap_percent) == (10_000, 1_000, 10, 30)
        assert post_notify(customer, notification(order_no, "100.00")).get_data(as_text=True) == "success"
        assert balance() == 500 + 10_000 + 1_000  # ... is what is credited
        # The staff see which promotion is beyond the caps now.
        page = signed_in(lowered, "editor").get("/staff/promotions?lang=en").get_data(as_text=True)
        assert "Over the caps in force" in page and "A bonus is at most 10% of the amount paid" in page
    db.session.rollback()
    assert ledger.verify(db.session, caps=PromoCaps(10, 30)).ok


def test_a_discount_is_clamped_the_same_way(database: str) -> None:
    with site_for_tests(database, HEYON_PROMO_MAX_DISCOUNT_PERCENT="5") as lowered:
        make_card()
        save(kind="discount", percent_bp=3000)  # 30 % off, published under the default caps
        customer = new_client(lowered)
        assert quote_line(new_client(lowered, htmx=True).get("/recharge/quote?amount=100", headers=EN)).startswith("Pay 95.00, receive 100.00")
        made = order(start_order(customer))
        assert (made.amount_fen, made.pay_fen, made.bonus_fen, made.discount_cap_percent) == (10_000, 9_500, 0, 5)


def test_every_order_records_the_caps_it_was_quoted_under(app: Flask, client: FlaskClient) -> None:
    make_card()
    made = order(start_order(client))  # no promotion at all
    assert (made.pay_fen, made.bonus_fen, made.bonus_cap_percent, made.discount_cap_percent) == (10_000, 0, 50, 30)
    assert QUOTE.search(client.get("/recharge").get_data(as_text=True)) is None


def test_start_recharge_refuses_a_bonus_without_the_caps_it_was_held_to(app: Flask) -> None:
    from heyon_site.billing.promos import Quote

    card_id = make_card()
    with pytest.raises(ValueError, match="needs the promotion caps"):
        in_write_transaction(lambda: start_recharge(db.session, card_id, 10_000, "sandbox", "en", terms=Quote(10_000, 10_000, 10_000)))
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(RechargeOrder)) == 0


# ------------------------------------------------------------------ approving over lowered caps


def test_terms_over_lowered_caps_cannot_be_approved(app: Flask, database: str) -> None:
    editor = signed_in(app, "editor")
    editor.post("/staff/promotions", data={"csrf_token": token(editor), **promo_fields(
        kind="percent_bonus", value="", percent="40")})  # asks for publication under the default 50 %
    pid = the_promo().id
    with site_for_tests(database, HEYON_PROMO_MAX_BONUS_PERCENT="20") as lowered:
        r = approve(signed_in(lowered, "admin"), pid)
        assert r.status_code == 422 and "A bonus is at most 20% of the amount paid" in r.get_data(as_text=True)
    assert not the_promo().published and audit_rows("promo.publish") == []
    assert approve_button(signed_in(app, "admin"), pid) is not None  # under the default caps it could be


# ------------------------------------------------------------------ `flask ledger verify`


def credited_order(card_id: int, figures: dict[str, int], txn: str) -> str:
    """A credited order made the way orders were before they recorded their caps (NULL), with
    figures set behind the application's back, as a pre-migration order may carry them."""
    def make() -> tuple[int, str]:
        made = start_recharge(db.session, card_id, 10_000, "sandbox", "en")
        return made.id, made.order_no

    order_id, order_no = in_write_transaction(make)
    assignments = ", ".join(f"{k} = :{k}" for k in figures)
    db.session.execute(text(f"UPDATE recharge_orders SET {assignments} WHERE id = :id"), {**figures, "id": order_id})
    db.session.commit()
    pay = db.session.scalar(select(RechargeOrder.pay_fen).where(RechargeOrder.id == order_id))
    event = ProviderEvent(provider="sandbox", order_no=order_no, txn_id=txn, kind="paid", amount_fen=int(pay or 0))
    assert in_write_transaction(lambda: apply_event(db.session, event)) == "credited"
    return order_no


def test_ledger_verify_names_each_order_beyond_the_caps(app: Flask, database: str) -> None:
    card_id = make_card()
    minted = credited_order(card_id, {"bonus_fen": 10_000}, "SBXMINT")  # a 100 % bonus, caps NULL
    free = credited_order(card_id, {"pay_fen": 1}, "SBXFREE")  # 99.99 off 100.00, caps NULL
    fine = credited_order(card_id, {"bonus_fen": 5_000}, "SBXFINE")  # 50 %: within the default caps
    assert (order(minted).bonus_cap_percent, order(minted).discount_cap_percent) == (None, None)
    done = flask_cli(database, "ledger", "verify")
    assert done.returncode == 1
    violations = done.stderr.strip().splitlines()
    assert violations == [
        f"VIOLATION order {minted}: bonus 10000 fen is more than 50% of the 10000 fen paid "
        "(configured caps (none recorded on the order))",
        f"VIOLATION order {free}: discount 9999 fen is more than 30% of the 10000 fen amount "
        "(configured caps (none recorded on the order))",
    ]
    assert fine not in done.stderr
    assert done.stdout.strip() == "ledger FAILS: 2 violation(s)"
    # The caps passed in are the configured ones: with the widest, only the discount is beyond them.
    wide = flask_cli(database, "ledger", "verify", env={"HEYON_PROMO_MAX_BONUS_PERCENT": "100"})
    assert wide.returncode == 1 and minted not in wide.stderr and free in wide.stderr
    verdict = ledger.verify(db.session, caps=PromoCaps(100, 99))
    assert verdict.violations == [f"order {free}: discount 9999 fen is more than 99% of the 10000 fen amount "
                                  "(configured caps (none recorded on the order))"]


def test_ledger_verify_holds_an_order_to_the_caps_it_recorded(app: Flask, client: FlaskClient, database: str) -> None:
    make_card()
    save(kind="percent_bonus", percent_bp=5000)
    order_no = start_order(client)
    assert post_notify(client, notification(order_no, "100.00")).get_data(as_text=True) == "success"
    assert order(order_no).bonus_fen == 5_000
    # Lower caps configured later do not make an order quoted under higher ones a violation.
    done = flask_cli(database, "ledger", "verify", env={"HEYON_PROMO_MAX_BONUS_PERCENT": "0"})
    assert done.returncode == 0 and "1 credited orders" in done.stdout, done
    # Without caps recorded, the same order is held to the configured ones.
    db.session.execute(text("UPDATE recharge_orders SET bonus_cap_percent = NULL, discount_cap_percent = NULL"))
    db.session.commit()
    assert "bonus 5000 fen is more than 0%" in flask_cli(database, "ledger", "verify",
                                                          env={"HEYON_PROMO_MAX_BONUS_PERCENT": "0"}).stderr


# ------------------------------------------------------------------ the migration


def test_the_migration_withdraws_published_promotions_over_any_cap_and_keeps_orders(site: Flask) -> None:  # noqa: F811
    upgrade(directory=MIGRATIONS, revision="0009")
    rows = [  # id, kind, threshold, value, percent, published
        (1, "fixed_bonus", 0, 99_999_999_999, 0, True), (2, "discount", 0, 0, 10_000, True),
        (3, "fixed_bonus", 10_000, 1_000, 0, True), (4, "discount", 0, 0, 10_000, False),
        (5, "discount", 0, 0, 5_000, True),  # over today's default cap only: kept, and clamped when quoted
    ]
    with db.engine.begin() as conn:
        for id_, kind, threshold, value, percent, published in rows:
            conn.execute(text("INSERT INTO promotions (id, title_zh, title_en, kind, threshold_fen, value_fen, percent_bp, "
                              "starts_at, ends_at, priority, published, created_at, updated_at) VALUES (:id, 't', 't', "
                              ":kind, :threshold, :value, :percent, '2026-01-01 00:00:00', '2027-01-01 00:00:00', 0, "
                              ":published, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"),
                         {"id": id_, "kind": kind, "threshold": threshold, "value": value, "percent": percent,
                          "published": published})
        conn.execute(text("INSERT INTO cards (id, number_digest, last4, password_hash, status, balance_fen, created_at) "
                          "VALUES (1, :digest, '1234', 'h', 'active', 0, '2026-01-01 00:00:00')"), {"digest": "d" * 64})
        conn.execute(text("INSERT INTO recharge_orders (id, order_no, token, card_id, provider, status, amount_fen, pay_fen, "
                          "bonus_fen, locale, created_at, updated_at) VALUES (1, '2601010000000001', :token, 1, 'sandbox', "
                          "'pending', 1000, 1000, 100000, 'en', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"),
                     {"token": "x" * 24})
    upgrade(directory=MIGRATIONS)

    db.session.rollback()
    published = {id_: flag for id_, flag in db.session.execute(select(Promotion.id, Promotion.published))}
    assert published == {1: False, 2: False, 3: True, 4: False, 5: True}
    kept = db.session.get(Promotion, 1)
    assert kept is not None and (kept.value_fen, kept.threshold_fen, kept.publish_requested) == (99_999_999_999, 0, False)
    withdrawn = db.session.scalars(select(AuditLog).where(AuditLog.action == "promo.unpublish").order_by(AuditLog.id)).all()
    assert [(a.username, a.target) for a in withdrawn] == [("migration 0010", "promotion 1"), ("migration 0010", "promotion 2")]
    made = db.session.get(RechargeOrder, 1)
    assert made is not None and (made.bonus_fen, made.bonus_cap_percent, made.discount_cap_percent) == (100_000, None, None)

    db.session.rollback()  # PostgreSQL: the session's read locks would hold the downgrade's ALTER TABLE
    downgrade(directory=MIGRATIONS, revision="0009")
    upgrade(directory=MIGRATIONS)
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(RechargeOrder)) == 1
    assert db.session.scalar(select(func.count()).select_from(Promotion)) == 5
