"""Money at the edges: what `parse_amount` accepts and refuses, and the amount rules. No database."""
from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heyon_site.billing.money import AmountError, parse_amount, yuan, yuan_grouped
from heyon_site.billing.recharge import AmountOutOfRange, AmountRules

# No example database: it would leave a .hypothesis/ directory in the checkout.
QUICK = settings(database=None, max_examples=300, deadline=None)

# The largest amount the parser takes: nine integer digits (999,999,999.99 yuan).
MAX_PARSEABLE_FEN = 10**11 - 1
_FULL_WIDTH = str.maketrans("0123456789.", "０１２３４５６７８９．")


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("10", 1000),
        ("10.5", 1050),
        ("10.50", 1050),
        (" 88.00 ", 8800),
        ("１００．５０", 10050),  # full-width, as a Chinese IME types it
        ("¥100", 10000),
        ("100元", 10000),
        ("1,000.00", 100000),
        ("0.01", 1),
        ("0", 0),  # parsing is not range checking: AmountRules refuses 0
    ],
)
def test_parse_amount_accepts(text: str, fen: int) -> None:
    parsed = parse_amount(text)
    assert parsed == fen
    assert type(parsed) is int


@pytest.mark.parametrize(
    "text",
    ["1e2", "NaN", "nan", "inf", "Infinity", "-5", "+5", "10.555", "", "   ", "abc", "0x10", "１e２", "10.5.5",
     ".5", "5.", "1 000", "10.5 0", "1_000", "1" * 10],  # the last: ten integer digits
)
def test_parse_amount_refuses(text: str) -> None:
    with pytest.raises(AmountError):
        parse_amount(text)


def test_parse_amount_refuses_a_megabyte_quickly() -> None:
    # A form field is capped elsewhere, but the parser must not be the weak point either.
    for junk in ("1" * 1_000_000, "１" * 1_000_000, "9." + "9" * 1_000_000):
        with pytest.raises(AmountError):
            parse_amount(junk)


@pytest.mark.parametrize("not_text", [10, 10.5, None, b"10"])
def test_parse_amount_refuses_non_text(not_text: object) -> None:
    with pytest.raises(AmountError):
        parse_amount(not_text)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "fen"), [("٣", 300), ("١٠٠.٥٠", 10050), ("१२", 1200)])
def test_non_latin_decimal_digits_parse_right_or_are_refused(text: str, fen: int) -> None:
    # NFKC leaves Arabic-Indic and Devanagari digits alone (they are not compatibility forms),
    # but `\d` and Decimal both read any Unicode decimal digit. Today "٣" parses as 3 yuan;
    # refusing it would also be fine. Anything else (a wrong value, a crash) is not.
    assert unicodedata.normalize("NFKC", text) == text
    try:
        parsed = parse_amount(text)
    except AmountError:
        return
    assert parsed == fen and type(parsed) is int


@QUICK
@given(st.integers(min_value=0, max_value=MAX_PARSEABLE_FEN))
def test_yuan_round_trips(fen: int) -> None:
    assert parse_amount(yuan(fen)) == fen
    assert parse_amount(yuan_grouped(fen)) == fen  # staff tables' "1,234.56" reads back too
    assert parse_amount("¥" + yuan(fen).translate(_FULL_WIDTH)) == fen


def test_the_parser_stops_at_nine_integer_digits() -> None:
    # The documented limit; `yuan` can print more, the parser will not read it back.
    assert parse_amount(yuan(MAX_PARSEABLE_FEN)) == MAX_PARSEABLE_FEN
    with pytest.raises(AmountError):
        parse_amount(yuan(MAX_PARSEABLE_FEN + 1))


@QUICK
@given(st.text(max_size=30) | st.from_regex(r"\A[ ¥￥元,.0-9０-９eE+\-]{0,16}\Z"))
def test_parse_amount_returns_int_or_refuses(text: str) -> None:
    try:
        parsed = parse_amount(text)
    except AmountError:
        return
    # Never Decimal, float or bool: every later sum stays exact.
    assert type(parsed) is int and parsed >= 0


@QUICK
@given(st.integers(min_value=0, max_value=999_999_999), st.integers(min_value=0, max_value=99))
def test_parsed_decimals_are_exact(whole: int, cents: int) -> None:
    # 0.1 + 0.2 style float errors would show here: 1.10 must be 110, not 110.00000000000001.
    assert parse_amount(f"{whole}.{cents:02d}") == whole * 100 + cents


# ------------------------------------------------------------------ AmountRules

# Presets deliberately outside [min, max] to show that presets bypass the limits.
RULES = AmountRules(presets_fen=(500, 10000, 300000), min_fen=1000, max_fen=200000)


@pytest.mark.parametrize("preset", RULES.presets_fen)
def test_presets_are_always_allowed(preset: int) -> None:
    assert RULES.check(preset) == preset


@pytest.mark.parametrize("fen", [1000, 1001, 12345, 199999, 200000])
def test_custom_amounts_within_the_limits_are_allowed(fen: int) -> None:
    assert RULES.check(fen) == fen


@pytest.mark.parametrize("fen", [0, 1, 999, 200001, 10**11])
def test_custom_amounts_outside_the_limits_are_refused(fen: int) -> None:
    with pytest.raises(AmountOutOfRange) as refused:
        RULES.check(fen)
    assert (refused.value.min_fen, refused.value.max_fen) == (1000, 200000)


def test_the_channel_minimum_raises_the_floor() -> None:
    assert RULES.check(5000, channel_min_fen=5000) == 5000
    with pytest.raises(AmountOutOfRange) as refused:
        RULES.check(4999, channel_min_fen=5000)
    assert refused.value.min_fen == 5000  # the message names the channel's floor, not the site's


def test_the_channel_minimum_applies_to_presets_too() -> None:
    # A channel that cannot take 5.00 must not get it because it happens to be a preset.
    with pytest.raises(AmountOutOfRange):
        RULES.check(500, channel_min_fen=1000)
    assert RULES.check(10000, channel_min_fen=1000) == 10000


def test_a_channel_minimum_below_the_site_minimum_changes_nothing() -> None:
    with pytest.raises(AmountOutOfRange) as refused:
        RULES.check(999, channel_min_fen=1)
    assert refused.value.min_fen == 1000


def test_rules_parse_text_then_check() -> None:
    assert RULES.parse("１２３．４５") == 12345
    with pytest.raises(AmountError):
        RULES.parse("12.345")
    with pytest.raises(AmountOutOfRange):
        RULES.parse("2000.01")


def test_rules_from_config() -> None:
    rules = AmountRules.from_config(
        {"HEYON_PRESET_AMOUNTS": "50, 100,,200.5", "HEYON_MIN_AMOUNT": "10", "HEYON_MAX_AMOUNT": "2,000"})
    assert rules == AmountRules(presets_fen=(5000, 10000, 20050), min_fen=1000, max_fen=200000)
    with pytest.raises(AmountError):
        AmountRules.from_config({"HEYON_PRESET_AMOUNTS": "50,1e3", "HEYON_MIN_AMOUNT": "10", "HEYON_MAX_AMOUNT": "2000"})


# ------------------------------------------------------------------ separators and marks in the wrong place


@pytest.mark.parametrize("text", ["1元5", "10yuan5", "1¥0", "rmb1rmb0"])
def test_currency_marks_inside_the_number_are_refused(text: str) -> None:
    # "1元5" is how "1.50 yuan" is said in Chinese; today it parses as 15.00 yuan.
    with pytest.raises(AmountError):
        parse_amount(text)


@pytest.mark.parametrize("text", ["1,0,0", ",,,5", "10,00", "1,5"])
def test_misplaced_commas_are_refused(text: str) -> None:
    # "1,5" is 1.5 in much of the world; today it parses as 15.00 yuan.
    with pytest.raises(AmountError):
        parse_amount(text)
