"""Traditional Chinese made from Simplified: OpenCC's Simplified-to-Taiwan-standard conversion
(``s2tw``), then a short, reviewed list of regional wording (``hant_overrides.txt`` beside this
file).

Used at build time for the message catalogue (``hant_catalog.py`` writes zh_Hant from zh_Hans)
and at display time, cached, for the Chinese that staff write (promotion titles, FAQ entries):
staff write Chinese once, in Simplified, and a zh-Hant reader sees it converted. README,
"Traditional Chinese", says why ``s2tw`` and not the Taiwan-phrase (``s2twp``) or Hong Kong sets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import opencc

CONFIG = "s2tw"
OVERRIDES = Path(__file__).with_name("hant_overrides.txt")
ARROW = "→"
WHOLE = "="  # a line "= 保存 → 儲存" applies only to a text that is exactly "保存"
# Converted text is put into HTML (a rendered FAQ answer): an override may not bring markup in.
_NOT_IN_TARGETS = set("<>&\"'")


@dataclass(frozen=True)
class Overrides:
    phrases: dict[str, str]  # Simplified phrase -> Traditional, wherever it occurs
    whole: dict[str, str]  # Simplified text -> Traditional, when it is the whole text


def read_overrides(path: Path = OVERRIDES) -> Overrides:
    """The overrides file: one ``简体 → 繁體`` a line, ``#`` comments, ``= `` for whole texts."""
    phrases: dict[str, str] = {}
    whole: dict[str, str] = {}
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        table = phrases
        if line.startswith(WHOLE):
            table, line = whole, line[len(WHOLE) :].strip()
        source, arrow, target = (part.strip() for part in line.partition(ARROW))
        if not (arrow and source and target) or source in table or _NOT_IN_TARGETS & set(target):
            raise ValueError(f"{path.name}:{n}: not a new '简体 {ARROW} 繁體' line: {raw!r}")
        table[source] = target
    return Overrides(phrases, whole)


@lru_cache(maxsize=1)
def _rules() -> tuple[Overrides, re.Pattern[str]]:
    overrides = read_overrides()
    # Longest first: at any place the longest phrase wins ("退出登录" before "登录").
    alternatives = sorted(overrides.phrases, key=len, reverse=True)
    return overrides, re.compile("|".join(map(re.escape, alternatives)) or "(?!)")


@lru_cache(maxsize=1)
def _converter() -> opencc.OpenCC:
    return opencc.OpenCC(CONFIG)


def _opencc(text: str) -> str:
    return str(_converter().convert(text)) if text else text


@lru_cache(maxsize=2048)
def to_hant(text: str) -> str:
    """``text`` (Simplified) in Traditional Chinese. Cached: the same titles and answers are
    shown again and again, and staff change them rarely (a change is a new text, a new entry)."""
    if text.isascii():
        return text
    overrides, pattern = _rules()
    if text in overrides.whole:
        return overrides.whole[text]
    # An override's words are kept as written; the text between them goes through OpenCC.
    out, at = [], 0
    for match in pattern.finditer(text):
        out += [_opencc(text[at : match.start()]), overrides.phrases[match.group()]]
        at = match.end()
    out.append(_opencc(text[at:]))
    return "".join(out)
