"""Every page: health and readiness, security headers, the vendored htmx."""
from __future__ import annotations

import base64
import hashlib
import re

from flask.testing import FlaskClient

from tests.kit import ROOT

HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"  # htmx.org 2.0.11, npm


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").get_data(as_text=True) == "ok"
    assert client.get("/readyz").status_code == 200


def test_readiness_reports_a_database_that_is_gone(tmp_path) -> None:
    from heyon_site import create_app
    from tests.kit import TEST_CONFIG

    app = create_app({**TEST_CONFIG, "DATABASE_URL": f"sqlite:///{tmp_path}/missing/dir/x.db"})
    c = app.test_client()
    assert c.get("/healthz").status_code == 200  # liveness never touches the database
    assert c.get("/readyz").status_code == 503


def test_every_page_sends_security_headers_and_no_inline_script_but_the_loader(client: FlaskClient) -> None:
    loader = (ROOT / "static/js/load.js").read_text()
    allowed = "'sha256-" + base64.b64encode(hashlib.sha256(loader.encode()).digest()).decode() + "'"
    for path in ("/", "/recharge", "/faq", "/no-such-page"):
        r = client.get(path)
        csp = r.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in csp and "object-src 'none'" in csp and "frame-ancestors 'none'" in csp
        # Scripts from this origin, and inline only the loader, allowed by the hash of its text.
        script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src")).split()
        assert script_src == ["script-src", "'self'", allowed], csp
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        body = r.get_data(as_text=True)
        inline = re.findall(r"<script(?![^>]*\ssrc=)[^>]*>(.*?)</script>", body, re.S)
        assert inline == [loader], path
        assert not re.search(r"\son[a-z]+=", body), path  # no inline event handlers
        assert "http://" not in body.replace("http://www.w3.org", "") and "https://" not in body  # no CDN


def test_htmx_is_vendored_pinned_and_cached_for_a_year(client: FlaskClient) -> None:
    path = ROOT / "static/js/htmx-2.0.11.min.js"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == HTMX_SHA256
    tag = re.search(r'<script data-src="([^"]+)">', client.get("/").get_data(as_text=True))
    src = tag.group(1)  # the inline loader fetches htmx from there
    assert src.startswith("/static/js/htmx-2.0.11.min.js?v=")
    for url in (src,):
        r = client.get(url)
        assert r.status_code == 200 and "max-age=31536000" in r.headers["Cache-Control"]
        assert "Accept-Language" not in r.headers.get("Vary", "")
        r.close()
