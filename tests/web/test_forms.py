"""The base form: WTForms' own messages in the visitor's language, each catalogue read once."""
from __future__ import annotations

from flask import Flask
from flask_babel import refresh
from wtforms import IntegerField

from heyon_site.web import forms
from heyon_site.web.forms import Form


class _Number(Form):
    class Meta:
        csrf = False

    n = IntegerField()


def test_wtforms_messages_follow_the_language_and_each_catalogue_is_read_once(app: Flask) -> None:
    forms._wtforms_catalog.cache_clear()
    errors = {}
    for lang in ("zh", "en", "zh"):
        with app.test_request_context(f"/?lang={lang}", method="POST", data={"n": "abc"}):
            refresh()  # the test's one app context would keep the first language chosen
            form = _Number()
            assert not form.validate()
            errors.setdefault(lang, form.n.errors[0])
    assert errors["en"] == "Not a valid integer value."
    assert errors["zh"] != errors["en"] and "整数" in errors["zh"]
    assert forms._wtforms_catalog.cache_info().misses == 2  # zh_Hans and en, each once
