"""The FAQ for Traditional Chinese readers: the Simplified entries, converted as they are shown.

Staff write the Chinese FAQ once, in Simplified (faq_entries holds no zh_Hant rows, and the
starter has none), and a zh-Hant reader sees it through ``web/hant.py``, cached; README,
"Traditional Chinese", says why. A search looks for the words typed, in either script, in what
the reader sees: the converted question and the answer's text.
"""

from __future__ import annotations

from markupsafe import Markup

from heyon_site.faq.services import Answer, Section
from heyon_site.faq.services import sections as stored_sections
from heyon_site.web.hant import to_hant

SOURCE = "zh_Hans"  # the rows a zh_Hant reader is shown
LOCALE = "zh_Hant"


def _converted(answer: Answer) -> Answer:
    # The answer is sanitised HTML: OpenCC changes only Chinese characters, and the overrides
    # bring in no markup (web/hant.py refuses a target with <, >, &, or quotes).
    return Answer(to_hant(answer.question), Markup(to_hant(str(answer.answer))))


def sections(locale: str, query: str = "") -> list[Section]:
    """What ``faq.services.sections`` gives, for any language the site speaks."""
    if locale != LOCALE:
        return stored_sections(locale, query)
    wanted = {query.casefold(), to_hant(query).casefold()}
    found = []
    for section in stored_sections(SOURCE):
        answers = tuple(
            converted
            for converted in map(_converted, section.answers)
            if not query or any(w in f"{converted.question}\n{converted.answer.striptags()}".casefold() for w in wanted)
        )
        if answers:
            found.append(Section(to_hant(section.category), answers))
    return found
