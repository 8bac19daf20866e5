"""The quote of billing/promos.py: each kind's arithmetic exact in fen, the caps, the threshold, one
promotion at most per order. Pure functions of unsaved promotions: no database, no application."""
from __future__ import annotations

import json
import math
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from heyon_site.billing.promos import PromoCaps, Quote, quote, snapshot
from heyon_site.models import PROMO_KINDS
from tests.promos.kit import NOW, promo

CAPS = PromoCaps()  # the defaults: a bonus at most 50 % of the amount paid, a discount at most 30 %


@pytest.mark.parametrize(("fields", "amount", "pay", "bonus"), [
    pytest.param({"kind": "fixed_bonus", "value_fen": 1000}, 10000, 10000, 1000, id="fixed"),
    pytest.param({"kind": "fixed_bonus", "value_fen": 1}, 1000, 1000, 1, id="fixed-one-fen"),
    pytest.param({"kind": "percent_bonus", "percent_bp": 1000}, 12345, 12345, 1234, id="percent-1234.5-down"),
    pytest.param({"kind": "percent_bonus", "percent_bp": 333}, 9999, 9999, 332, id="percent-332.97-down"),
    pytest.param({"kind": "percent_bonus", "percent_bp": 1}, 1000, 1000, 0, id="percent-under-a-fen"),
    pytest.param({"kind": "percent_bonus", "percent_bp": 1000, "cap_fen": 1500}, 14999, 14999, 1499, id="percent-under-cap"),
    pytest.param({"kind": "percent_bonus", "percent_bp": 1000, "cap_fen": 1500}, 20000, 20000, 1500, id="percent-capped"),
    # A discount is rounded down too: the customer pays 95.00, not 94.9995.
    pytest.param({"kind": "discount", "percent_bp": 500}, 9999, 9500, 0, id="discount-499.95-down"),
    pytest.param({"kind": "discount", "percent_bp": 1000, "cap_fen": 500}, 10000, 9500, 0, id="discount-capped"),
    # Held to the caps in force, whatever the promotion says (terms from before the caps, or caps
    # lowered since): 30 % off at most, a bonus of at most half the amount paid, rounded down.
    pytest.param({"kind": "discount", "percent_bp": 10000}, 5000, 3500, 0, id="discount-clamped-to-the-cap"),
    pytest.param({"kind": "discount", "percent_bp": 5000}, 9999, 7000, 0, id="discount-clamp-rounds-down"),
    pytest.param({"kind": "fixed_bonus", "value_fen": 99_999_999_999}, 1000, 1000, 500, id="fixed-clamped-to-the-cap"),
    pytest.param({"kind": "percent_bonus", "percent_bp": 9000}, 999, 999, 499, id="percent-clamp-rounds-down"),
])
def test_each_kind_is_exact_in_fen(fields: dict[str, Any], amount: int, pay: int, bonus: int) -> None:
    p = promo(**fields)
    q = quote(amount, [p], NOW, caps=CAPS)
    assert q == Quote(amount, pay, bonus, snapshot(p))
    assert q.caps == CAPS  # recorded on the order
    assert all(type(v) is int for v in (q.amount_fen, q.pay_fen, q.bonus_fen))


@pytest.mark.parametrize("amount", [1, 2, 99, 100, 101, 5000])
def test_even_the_highest_caps_leave_a_payment_and_never_more_bonus_than_paid(amount: int) -> None:
    highest = PromoCaps(100, 99)
    free = quote(amount, [promo(kind="discount", percent_bp=10000)], NOW, caps=highest)
    assert free.pay_fen >= 1 and (amount - free.pay_fen) * 100 <= amount * 99
    double = quote(amount, [promo(kind="percent_bonus", percent_bp=10000)], NOW, caps=highest)
    assert double.bonus_fen == amount  # 100 %: as much again, no more


@pytest.mark.parametrize("caps", [(101, 30), (50, 100), (-1, 30), (50, -1), (50.0, 30), ("50", 30), (True, 30)])
def test_caps_outside_their_bounds_are_no_caps(caps: tuple[Any, Any]) -> None:
    with pytest.raises(ValueError, match="whole percent"):
        PromoCaps(*caps)


def test_the_threshold_is_inclusive() -> None:
    p = promo(kind="fixed_bonus", value_fen=1000, threshold_fen=10000)
    assert quote(9999, [p], NOW, caps=CAPS) == Quote.face_value(9999)
    assert quote(10000, [p], NOW, caps=CAPS).bonus_fen == 1000


@pytest.mark.parametrize("amount", [0, -1, 100.0, True, None])
def test_quote_refuses_anything_but_a_positive_int(amount: Any) -> None:
    with pytest.raises(ValueError, match="positive int of fen"):
        quote(amount, [], NOW, caps=CAPS)


def test_the_highest_priority_wins_even_when_it_gives_less() -> None:
    small = promo(id=1, kind="fixed_bonus", value_fen=500, priority=5)
    big = promo(id=2, kind="percent_bonus", percent_bp=2000, priority=1)
    for order_ in ([small, big], [big, small]):  # the order of the list does not matter
        q = quote(10000, order_, NOW, caps=CAPS)
        assert (q.pay_fen, q.bonus_fen, q.promo and q.promo["id"]) == (10000, 500, 1)


def test_a_tie_goes_to_the_older_promotion() -> None:
    older, newer = promo(id=3, value_fen=100), promo(id=4, value_fen=900)
    assert quote(10000, [newer, older], NOW, caps=CAPS).bonus_fen == 100


def test_a_higher_priority_out_of_reach_leaves_the_next_one() -> None:
    high = promo(id=1, kind="fixed_bonus", value_fen=5000, threshold_fen=50000, priority=9)
    low = promo(id=2, kind="discount", percent_bp=1000, priority=1)
    assert quote(10000, [high, low], NOW, caps=CAPS) == Quote(10000, 9000, 0, snapshot(low))
    assert quote(50000, [high, low], NOW, caps=CAPS) == Quote(50000, 50000, 5000, snapshot(high))


def test_a_bonus_and_a_discount_never_stack() -> None:
    bonus = promo(id=1, kind="fixed_bonus", value_fen=1000)
    discount = promo(id=2, kind="discount", percent_bp=1000, priority=1)
    assert quote(10000, [bonus, discount], NOW, caps=CAPS) == Quote(10000, 9000, 0, snapshot(discount))


PROMOTIONS = st.lists(
    st.builds(
        dict,
        kind=st.sampled_from(PROMO_KINDS),
        threshold_fen=st.integers(0, 250_000),
        value_fen=st.integers(0, 100_000),
        percent_bp=st.integers(0, 10_000),
        cap_fen=st.none() | st.integers(1, 100_000),
        priority=st.integers(-3, 3),
        published=st.booleans(),
    ),
    max_size=5,
)


def expected_benefit(fields: dict[str, Any], amount: int) -> int:
    """The bonus or discount, computed apart from the code: exact rationals, then the floor."""
    raw = fields["value_fen"] if fields["kind"] == "fixed_bonus" else math.floor(Fraction(amount * fields["percent_bp"], 10_000))
    return raw if fields["cap_fen"] is None else min(raw, fields["cap_fen"])


CAPS_DRAWN = st.builds(PromoCaps, st.integers(0, 100), st.integers(0, 99))


@settings(database=None, max_examples=400, deadline=None)
@given(amount=st.integers(1000, 200_000), drawn=PROMOTIONS, caps=CAPS_DRAWN)
@example(amount=1000, drawn=[{"kind": "discount", "threshold_fen": 0, "value_fen": 0, "percent_bp": 10_000,
                              "cap_fen": None, "priority": 0, "published": True}], caps=PromoCaps(100, 99))
@example(amount=200_000, drawn=[{"kind": "percent_bonus", "threshold_fen": 200_000, "value_fen": 0,
                                 "percent_bp": 9_999, "cap_fen": None, "priority": 0, "published": True}], caps=CAPS)
@example(amount=1000, drawn=[{"kind": "fixed_bonus", "threshold_fen": 0, "value_fen": 100_000, "percent_bp": 0,
                              "cap_fen": None, "priority": 0, "published": True}], caps=PromoCaps(0, 0))
def test_every_amount_gets_whole_fen_within_bounds(amount: int, drawn: list[dict[str, Any]], caps: PromoCaps) -> None:
    promotions = [promo(id=i + 1, **fields) for i, fields in enumerate(drawn)]
    q = quote(amount, promotions, NOW, caps=caps)
    assert all(type(v) is int for v in (q.amount_fen, q.pay_fen, q.bonus_fen))
    assert q.amount_fen == amount and q.bonus_fen >= 0 and 1 <= q.pay_fen <= amount
    # Within the caps, by the schema's own integer arithmetic (recharge_orders' CHECKs).
    assert q.bonus_fen * 100 <= q.pay_fen * caps.bonus_percent
    assert (amount - q.pay_fen) * 100 <= amount * caps.discount_percent
    assert q.bonus_fen == 0 or q.pay_fen == amount  # never both a bonus and a discount
    applicable = [(i + 1, f) for i, f in enumerate(drawn) if f["published"] and f["threshold_fen"] <= amount]
    if not applicable:
        assert q == Quote.face_value(amount)
        return
    chosen_id, chosen = min(applicable, key=lambda pair: (-pair[1]["priority"], pair[0]))
    assert q.promo is not None and q.promo["id"] == chosen_id
    assert json.loads(q.snapshot_json() or "") == q.promo
    limit = amount * (caps.discount_percent if chosen["kind"] == "discount" else caps.bonus_percent) // 100
    benefit = min(expected_benefit(chosen, amount), limit)
    if chosen["cap_fen"] is not None:
        assert q.bonus_fen <= chosen["cap_fen"] and amount - q.pay_fen <= chosen["cap_fen"]
    if chosen["kind"] == "discount":
        assert (q.pay_fen, q.bonus_fen) == (max(1, amount - benefit), 0)
    else:
        assert (q.pay_fen, q.bonus_fen) == (amount, benefit)
