"""Writes the Traditional Chinese catalogue from the Simplified one: every zh_Hans message through
``hant.to_hant`` (OpenCC and the reviewed overrides), to translations/zh_Hant/LC_MESSAGES/
messages.po, and that file compiled to messages.mo as ``pybabel compile`` would.

Nobody edits zh_Hant by hand: a wording fix goes into ``hant_overrides.txt`` (or the zh_Hans
entry), and this runs again. It depends on nothing but those two files, dates included, so a
second run changes no byte: ``make translations-hant`` (``make translations`` runs it too).

    python -m heyon_site.web.hant_catalog [TRANSLATIONS_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

from heyon_site.web.hant import CONFIG, to_hant

TRANSLATIONS = Path(__file__).resolve().parents[2] / "translations"
SOURCE, TARGET = "zh_Hans", "zh_Hant"
HEADER = f"""\
# Traditional Chinese catalog of heyon_site, MADE from zh_Hans: do not edit.
# `make translations-hant` writes it again (OpenCC {CONFIG}, then
# heyon_site/web/hant_overrides.txt); fix wording there or in zh_Hans."""


def convert(source: Catalog) -> Catalog:
    """``source`` (zh_Hans) with every translation in Traditional Chinese, in the same order."""
    target = Catalog(
        locale=TARGET,
        header_comment=HEADER,
        project=source.project,
        version=source.version,
        creation_date=source.creation_date,
        revision_date=source.revision_date,
        msgid_bugs_address=source.msgid_bugs_address,
        last_translator=source.last_translator,
        language_team=TARGET,
        fuzzy=False,
    )
    for message in source:
        if not message.id:
            continue  # the header: the target's own
        string = message.string
        converted = tuple(to_hant(s) for s in string) if isinstance(string, (list, tuple)) else to_hant(string)
        target[message.id] = Message(
            message.id,
            converted,
            flags=message.flags,
            auto_comments=message.auto_comments,
            user_comments=message.user_comments,
            context=message.context,
        )
    return target


def build(translations: Path = TRANSLATIONS) -> tuple[Path, Path]:
    """Write zh_Hant's .po and .mo under ``translations``; returns their paths."""
    with (translations / SOURCE / "LC_MESSAGES" / "messages.po").open("rb") as f:
        source = read_po(f, locale=SOURCE)
    folder = translations / TARGET / "LC_MESSAGES"
    folder.mkdir(parents=True, exist_ok=True)
    po, mo = folder / "messages.po", folder / "messages.mo"
    with po.open("wb") as f:
        write_po(f, convert(source), width=76, no_location=True)
    # Compiled from the file just written, not from memory: the .mo is what `pybabel compile`
    # makes of the .po, and the test that compares them holds for this language too.
    with po.open("rb") as f:
        written = read_po(f, locale=TARGET)
    with mo.open("wb") as f:
        write_mo(f, written)
    return po, mo


def main(argv: list[str]) -> int:
    po, mo = build(Path(argv[0]) if argv else TRANSLATIONS)
    print(f"wrote {po} and {mo}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
