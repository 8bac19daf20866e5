"""One failure budget per address for every form that checks a secret (``heyon_site/web/limits.py``).

Twenty wrong card passwords on /balance used to leave /recharge with twenty-one more, and the
staff sign-in and code step with their own: each form had a budget of its own. Now they share
one, and the class is closed: the first test finds every view that checks a secret, today's
and any later one, and fails if one does not draw on the shared budget.
"""
from __future__ import annotations

import ast
import inspect
import uuid
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from heyon_site.extensions import limiter
from heyon_site.web.limits import SECRET_FAILURES

from tests.kit import ROOT, new_client, site_for_tests
from tests.kit import CARD, PIN, csrf_from, make_card, recharge_form
from tests.staff.kit import PASSWORD, add_staff

PACKAGE = ROOT / "heyon_site"
# The functions that check a secret. The primitives under them (argon2's verify, reached only
# through ``hasher()``; a TOTP code's ``matching_step``; the throttled ``throttle.check``) may be
# called by these alone, which the second test proves: a new way to check a secret must be
# added here, and from then on every view that reaches it needs the shared budget.
SECRET_CHECKS = frozenset({"authenticate", "check_code", "use_code", "confirm_enrolment"})
KNOWN_SECRET_VIEWS = frozenset({"customer.balance_submit", "customer.recharge_submit", "staff.login_submit",
                                "staff.login_code_submit", "staff.account_password", "staff.totp_confirm",
                                "staff.totp_off"})


def _calls(node: ast.AST) -> set[str]:
    """Names of what ``node`` calls, its nested functions included (``a.b()`` counts as ``b``)."""
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            if isinstance(n.func, ast.Name):
                names.add(n.func.id)
            elif isinstance(n.func, ast.Attribute):
                names.add(n.func.attr)
    return names


def _uses_a_primitive(node: ast.AST) -> bool:
    calls = _calls(node)
    throttled = any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "check"
                    and isinstance(n.func.value, ast.Name) and n.func.value.id == "throttle" for n in ast.walk(node))
    return throttled or "matching_step" in calls or {"hasher", "verify"} <= calls


def _functions() -> Iterator[tuple[str, ast.FunctionDef]]:
    """Every module-level function of the package, with its module's dotted name."""
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef):
                yield module, node


def _secret_checking() -> set[tuple[str, str]]:
    """(module, function) of every function that checks a secret itself or through others."""
    functions = {(module, f.name): _calls(f) for module, f in _functions()}
    names = set(SECRET_CHECKS)
    while True:
        more = {name for (_, name), calls in functions.items() if name not in names and calls & names}
        if not more:
            return {key for key in functions if key[1] in names}
        names |= more


def test_the_secret_checks_are_the_only_callers_of_the_primitives() -> None:
    users = {f.name for _, f in _functions() if _uses_a_primitive(f) and f.name not in ("hasher", "matching_step", "check")}
    assert users == SECRET_CHECKS  # a new function checking a secret belongs in SECRET_CHECKS


def test_every_view_that_checks_a_secret_draws_on_the_shared_failure_budget(app: Flask) -> None:
    checking = _secret_checking()
    found, missing = set(), []
    with app.test_request_context():
        for endpoint, view in app.view_functions.items():
            original = inspect.unwrap(view)
            if (original.__module__, original.__name__) not in checking:
                continue
            found.add(endpoint)
            resolved = limiter.limit_manager.resolve_limits(app, endpoint=endpoint, blueprint=endpoint.partition(".")[0])
            if not any(limit.shared and limit.scope == SECRET_FAILURES and limit.deduct_when
                       for group in resolved for limit in group):
                missing.append(endpoint)
    assert found >= KNOWN_SECRET_VIEWS, found  # the search finds what it must (it is not blind)
    assert missing == [], f"views that check a secret without the shared failure budget: {missing}"


# ------------------------------------------------------------------ the budget in use


@pytest.fixture(autouse=True)
def own_key_prefix() -> Iterator[None]:
    """Flask-Limiter reads RATELIMIT_KEY_PREFIX from the first app it meets and keeps it; each
    test here sets its own (a shared Redis holds other runs' counters), then puts it back."""
    kept = limiter._key_prefix
    limiter._key_prefix = ""
    yield
    limiter._key_prefix = kept


def _limited(app: Flask, storage: str = "memory://") -> Flask:
    app.config.update(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI=storage,
                      RATELIMIT_KEY_PREFIX=f"heyon-test-{uuid.uuid4().hex}",
                      # The per-form limit far above the budget: only the shared one can answer 429.
                      HEYON_IP_LIMIT="1000 per minute", HEYON_IP_FAILURE_LIMIT="20 per hour",
                      # Nor the card's own throttle: every wrong password here answers 403.
                      HEYON_CARD_FREE_ATTEMPTS=1000)
    limiter.init_app(app)  # re-read the settings: the fixture's app had limits switched off
    assert limiter._key_prefix == app.config["RATELIMIT_KEY_PREFIX"]
    if storage.startswith("memory://"):
        # Not in Redis: reset() there deletes every site's counters, not only this test's
        # (whose own key prefix already keeps them apart).
        limiter.reset()
    return app


def _balance(client: FlaskClient, password: str) -> int:
    token = csrf_from(client.get("/balance?lang=en").get_data(as_text=True))
    return client.post("/balance", data={"csrf_token": token, "card_number": CARD, "password": password}).status_code


def _every_secret_form(client: FlaskClient) -> dict[str, int]:
    """One right secret on each form that checks one, from this client's address."""
    answers = {"/recharge": client.post("/recharge", data=recharge_form(client)).status_code}
    token = csrf_from(client.get("/staff/login?lang=en").get_data(as_text=True))
    answers["/staff/login"] = client.post("/staff/login", data={"csrf_token": token, "username": "alice",
                                                                "password": PASSWORD}).status_code
    token = csrf_from(client.get("/balance?lang=en").get_data(as_text=True))  # a sign-in starts a new session
    # No code is due (the password step did not ask for one): where the budget allows, the
    # step sends the browser back to the sign-in page.
    answers["/staff/login/code"] = client.post("/staff/login/code", data={"csrf_token": token,
                                                                          "code": "123456"}).status_code
    answers["/balance"] = _balance(client, PIN)
    return answers


def _twenty_failures_close_every_form(app: Flask) -> None:
    make_card()
    add_staff("alice")
    attacker = new_client(app)
    assert [_balance(attacker, "000000") for _ in range(20)] == [403] * 20
    assert _every_secret_form(attacker) == {"/recharge": 429, "/staff/login": 429, "/staff/login/code": 429,
                                            "/balance": 429}
    elsewhere = new_client(app)
    elsewhere.environ_base["REMOTE_ADDR"] = "127.0.0.9"
    assert _every_secret_form(elsewhere) == {"/recharge": 303, "/staff/login": 303, "/staff/login/code": 303,
                                             "/balance": 200}


def test_twenty_failures_on_one_form_close_every_form_that_checks_a_secret(app: Flask) -> None:
    _twenty_failures_close_every_form(_limited(app))


def test_the_staff_forms_spend_the_same_budget(app: Flask) -> None:
    _limited(app)
    make_card()
    add_staff("alice")
    client = new_client(app)
    token = csrf_from(client.get("/staff/login?lang=en").get_data(as_text=True))
    for _ in range(10):
        assert client.post("/staff/login", data={"csrf_token": token, "username": "nobody",
                                                 "password": "wrong-password"}).status_code in (403, 429)
    signed_in = client.post("/staff/login", data={"csrf_token": token, "username": "alice", "password": PASSWORD})
    assert signed_in.status_code == 303
    # The current password on one's own account page: a wrong one answers 422, and still counts.
    page = client.get("/staff/account?lang=en").get_data(as_text=True)
    for _ in range(9):
        r = client.post("/staff/account/password", data={"csrf_token": csrf_from(page), "current": "not-it-at-all",
                                                         "new_password": "another-long-password",
                                                         "again": "another-long-password"})
        assert r.status_code == 422
    assert _balance(client, "000000") == 403  # the twentieth failure
    assert _balance(client, PIN) == 429


@pytest.fixture
def redis_url() -> str:
    import redis

    url = "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    return url


def test_the_shared_budget_holds_in_redis_too(database: str, redis_url: str) -> None:
    import redis

    store = redis.Redis.from_url(redis_url)
    with site_for_tests(database) as app:
        _twenty_failures_close_every_form(_limited(app, redis_url))
        ours = list(store.scan_iter(match=f"*{app.config['RATELIMIT_KEY_PREFIX']}*"))
    assert ours  # the counts were in Redis, not in this process's memory
    store.delete(*ours)


def test_the_budget_module_is_the_only_place_limits_are_spelled() -> None:
    """``ip_limit`` and ``ip_failure_limit`` live in heyon_site/web/limits.py alone."""
    defined = [f"{module}.{f.name}" for module, f in _functions() if f.name in ("ip_limit", "ip_failure_limit")]
    assert defined == ["heyon_site.web.limits.ip_limit", "heyon_site.web.limits.ip_failure_limit"]
    assert "deduct_when" not in "".join(p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py")
                                        if p != PACKAGE / "web" / "limits.py")

