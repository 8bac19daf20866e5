"""The base of every form: Flask-WTF's, with WTForms' own messages read once per language."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from babel import support
from flask import current_app
from flask_babel import get_locale
from flask_wtf import FlaskForm
from wtforms.i18n import messages_path


@lru_cache(maxsize=8)
def _wtforms_catalog(locale: str) -> support.NullTranslations:
    # WTForms names its Traditional Chinese zh_TW: asked for zh_Hant, gettext falls back to its
    # Simplified zh.
    return support.Translations.load(messages_path(), ["zh_TW" if locale == "zh_Hant" else locale], domain="wtforms")


class Form(FlaskForm):
    """Flask-WTF loads WTForms' message catalogue from disk again in every request that builds a
    form (a parse of the .mo file, about a fifth of a millisecond); the catalogues never change
    while the site runs, so each language's is kept."""

    class Meta:
        def get_translations(self, form: Any) -> Any:
            if not current_app.config.get("WTF_I18N_ENABLED", True):
                return None  # WTForms' own English messages
            return _wtforms_catalog(str(get_locale()))
