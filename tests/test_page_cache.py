"""The render cache of the home page and the recharge form (heyon_site/page_cache.py).

Every visitor gets the same page with their own CSRF token, which their form posts accept and
nobody else's do; the page is rendered once per language and lifetime, never holds the
placeholder, and a promotion change shows once the lifetime is over.
"""
from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from heyon_site import page_cache
from heyon_site.customer import views

from .conftest import new_client
from .kit import CARD, PIN, csrf_from, make_card
from .test_budgets import masked
from .test_promotions import save

PAGES = ("/", "/recharge")
LIFETIME = 5


@pytest.fixture
def cached(app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The cache on, with a clock the test moves; returns the clock (one mutable number)."""
    app.config["HEYON_PAGE_CACHE_SECONDS"] = LIFETIME
    clock = [1000.0]
    monkeypatch.setattr(page_cache.time, "monotonic", lambda: clock[0])
    return clock


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The templates actually rendered, one entry per render."""
    seen: list[str] = []
    real = views.recharge_page

    def counting(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        seen.append(str(kwargs.get("template", "customer/recharge.html")))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(views, "recharge_page", counting)
    return seen


def tokens(html: str) -> set[str]:
    return set(re.findall(r'name="csrf_token" type="hidden" value="([^"]+)"|"X-CSRFToken": "([^"]+)"', html)[0]) - {""}


@pytest.mark.parametrize("path", PAGES)
def test_each_visitor_gets_the_same_page_with_their_own_token(app: Flask, cached: list[float], path: str) -> None:
    first, second = new_client(app), new_client(app)
    a = first.get(path).get_data(as_text=True)
    b = second.get(path).get_data(as_text=True)
    again = first.get(path).get_data(as_text=True)
    assert page_cache.PLACEHOLDER not in a + b + again
    assert masked(a.encode()) == masked(b.encode()) == masked(again.encode())
    assert csrf_from(a) != csrf_from(b)
    # The token is in the form and in hx-headers, the same in both places.
    assert re.findall(r'"X-CSRFToken": "([^"]+)"', a) == [csrf_from(a)]


@pytest.mark.parametrize("path", PAGES)
def test_the_cached_page_is_the_page_rendered_afresh(app: Flask, cached: list[float], path: str) -> None:
    warm = new_client(app)
    warm.get(path + "?lang=en")  # fills the cache
    from_cache = new_client(app).get(path + "?lang=en").get_data()
    app.config["HEYON_PAGE_CACHE_SECONDS"] = 0
    fresh = new_client(app).get(path + "?lang=en").get_data()
    assert masked(from_cache) == masked(fresh)


def test_a_visitors_token_from_the_cache_posts_and_anothers_does_not(app: Flask, cached: list[float]) -> None:
    make_card(CARD, PIN, 0)
    owner, stranger = new_client(app), new_client(app)
    new_client(app).get("/recharge?lang=en")  # someone else filled the cache
    token = csrf_from(owner.get("/recharge?lang=en").get_data(as_text=True))
    stranger.get("/recharge?lang=en")
    form = {"csrf_token": token, "card_number": CARD, "password": PIN, "amount": "100", "custom_amount": "",
            "method": "sandbox"}
    assert stranger.post("/recharge", data=form).status_code == 400  # not the stranger's token
    assert owner.post("/recharge", data=form).status_code == 303


def test_one_render_per_page_and_language_per_lifetime(app: Flask, cached: list[float], renders: list[str]) -> None:
    for _ in range(3):
        for lang in ("zh", "en"):
            for path in PAGES:
                assert new_client(app).get(f"{path}?lang={lang}").status_code == 200
    assert sorted(renders) == sorted(["customer/home.html", "customer/recharge.html"] * 2)
    cached[0] += LIFETIME
    new_client(app).get("/?lang=zh")
    assert len(renders) == 5


def test_a_new_promotion_shows_once_the_lifetime_is_over(app: Flask, client: FlaskClient, cached: list[float]) -> None:
    assert "Launch week bonus" not in client.get("/recharge?lang=en").get_data(as_text=True)
    save(title_en="Launch week bonus", kind="fixed_bonus", value_fen=1000)
    cached[0] += LIFETIME - 1
    assert "Launch week bonus" not in client.get("/recharge?lang=en").get_data(as_text=True)  # at most this late
    cached[0] += 1
    assert "Launch week bonus" in client.get("/recharge?lang=en").get_data(as_text=True)


def test_without_a_lifetime_every_visit_renders(app: Flask, renders: list[str]) -> None:
    assert app.config["HEYON_PAGE_CACHE_SECONDS"] == 0
    for _ in range(3):
        new_client(app).get("/")
    assert renders == ["customer/home.html"] * 3


def test_a_page_rendered_without_the_placeholder_is_served_but_not_kept(app: Flask, cached: list[float]) -> None:
    """Were the token not taken from ``g`` (Flask-WTF changed), the render would hold its first
    visitor's token: it is served to that visitor only, and the next visit renders again."""
    built: list[str] = []

    def build() -> str:
        built.append("render")
        return f"<p>{len(built)}</p>"

    with app.test_request_context("/"):
        assert page_cache.page("no-token.html", build) == "<p>1</p>"
    with app.test_request_context("/"):
        assert page_cache.page("no-token.html", build) == "<p>2</p>"


def test_a_promotion_changed_by_staff_shows_at_once_in_the_same_process(
        app: Flask, client: FlaskClient, cached: list[float]) -> None:
    """Other processes wait out the lifetime; the one that made the change forgets its pages."""
    from .test_staff import signed_in
    from .test_staff_content import create_promo, the_promo, token

    assert "Staff-made bonus" not in client.get("/?lang=en").get_data(as_text=True)
    staff = signed_in(app, "editor")
    create_promo(staff, title_en="Staff-made bonus")
    assert "Staff-made bonus" in client.get("/?lang=en").get_data(as_text=True)
    r = staff.post(f"/staff/promotions/{the_promo().id}/end", data={"csrf_token": token(staff)})
    assert r.status_code == 303, r.status_code
    assert "Staff-made bonus" not in client.get("/?lang=en").get_data(as_text=True)
