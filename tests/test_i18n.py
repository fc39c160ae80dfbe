"""The console's catalogues cannot go stale: every word it shows has a Chinese translation,
the compiled .mo files say what the .po files say, and the engine's codes all have words."""

from __future__ import annotations

from gettext import GNUTranslations
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from starlette.requests import Request

from matcher.domain.rules import KIND_AND_NEED, RULES
from matcher.domain.scoring import TERMS
from matcher.settings import PROJECT_ROOT, Settings
from matcher.web import i18n, words

LOCALE = PROJECT_ROOT / "matcher" / "locale"
METHODS = [("matcher/web/templates/**.html", "jinja2"), ("matcher/web/**.py", "python")]
OPTIONS = {"matcher/web/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
# Reason codes the matching service gives besides its rules' own.
MATCHING_REASONS = {"no_offer", "partly_served", "capacity_taken"}


def source_messages() -> set[str]:
    """Every msgid in the templates and the web modules, as Babel's extractor finds them."""
    found: set[str] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
            PROJECT_ROOT, METHODS, OPTIONS, keywords=KEYWORDS):
        found.add(message if isinstance(message, str) else message[0])
    return found


def catalogue(locale: str) -> dict[str, str]:
    """msgid -> translation (the first form for plurals) of a locale's .po file."""
    with (LOCALE / locale / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        po = read_po(handle, locale=locale)
    return {(m.id if isinstance(m.id, str) else m.id[0]):
            (m.string if isinstance(m.string, str) else m.string[0])
            for m in po if m.id}


def test_every_template_and_console_string_has_a_chinese_translation() -> None:
    messages = source_messages()
    zh = catalogue("zh_CN")
    assert len(messages) > 200  # the extractor saw the templates, not an empty folder
    missing = sorted(m for m in messages if not zh.get(m, "").strip())
    assert not missing, f"translate these in zh_CN (scripts/i18n): {missing}"


@pytest.mark.parametrize("locale", ["zh_CN", "en"])
def test_the_compiled_catalogue_matches_its_source(locale: str) -> None:
    folder = LOCALE / locale / "LC_MESSAGES"
    with (folder / "messages.mo").open("rb") as handle:
        compiled = GNUTranslations(handle)
    with (folder / "messages.po").open("rb") as handle:
        po = read_po(handle, locale=locale)
    for message in po:
        if not message.id or not message.string or not any(message.string):
            continue
        if isinstance(message.id, str):
            found = compiled.gettext(message.id)
            expected = message.string
        else:  # a plural: looked up as the app does, by ngettext (gettext's fallback to a
            # plural's first form only exists in newer Pythons)
            found = compiled.ngettext(message.id[0], message.id[1], 1)
            expected = message.string[0]
        assert found == expected, f"run scripts/i18n: {message.id!r}"


def test_every_rule_reason_code_and_score_term_has_words() -> None:
    assert {rule.name for rule in RULES} | {KIND_AND_NEED} <= set(words.RULES)
    assert {rule.reason_code for rule in RULES} | MATCHING_REASONS <= set(words.REASONS)
    assert set(TERMS) <= set(words.TERMS)


def test_words_fall_back_to_a_readable_code() -> None:
    i18n.activate(_request({}), default="zh_CN", timezone="Asia/Shanghai")
    assert words.word("within_reach", "rule") == "在服务范围内"
    assert words.word("some_new_code", "reason") == "some new code"


def _request(headers: dict[str, str], query: str = "") -> Request:
    """A bare request with these headers and query string."""
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/console/queue",
                    "headers": raw, "query_string": query.encode()})


@pytest.mark.parametrize(("headers", "query", "expected"), [
    ({}, "", "zh_CN"),
    ({"Accept-Language": "en-GB,en;q=0.9"}, "", "en"),
    ({"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}, "", "zh_CN"),
    ({"Accept-Language": "fr-FR, en;q=0.5, zh;q=0.7"}, "", "zh_CN"),
    ({"Accept-Language": "en"}, "lang=zh-CN", "zh_CN"),
    ({"Cookie": "matcher_lang=en"}, "", "en"),
    ({"Cookie": "matcher_lang=en", "Accept-Language": "zh-CN"}, "", "en"),
])
def test_the_locale_follows_the_switch_then_the_cookie_then_the_browser(
        headers: dict[str, str], query: str, expected: str) -> None:
    assert i18n.choose_locale(_request(headers, query), "zh_CN") == expected


def test_the_default_locale_is_one_setting() -> None:
    assert Settings().default_locale == "zh_CN"
    assert i18n.choose_locale(_request({}), Settings(default_locale="en").default_locale) == "en"


def test_one_timezone_setting_also_drives_the_nightly_run() -> None:
    assert Settings().timezone == "Asia/Shanghai"
    assert Settings(timezone="Asia/Urumqi").rebalance_timezone == "Asia/Urumqi"
    assert Settings(timezone="Asia/Urumqi",
                    rebalance_timezone="UTC").rebalance_timezone == "UTC"


def test_local_times_and_numbers_follow_the_reader() -> None:
    from datetime import datetime

    deadline = datetime.fromisoformat("2030-06-03T17:00:00+08:00")
    i18n.activate(_request({}), default="zh_CN", timezone="Asia/Shanghai")
    assert i18n.local_datetime(deadline) == "2030年6月3日 17:00"
    assert i18n.zone_label() == "北京时间（UTC+8）"
    assert i18n.number(1234.5) == "1,234.5"
    i18n.activate(_request({"Accept-Language": "en"}), default="zh_CN", timezone="Asia/Shanghai")
    assert i18n.local_datetime(deadline) == "3 Jun 2030, 17:00"
    assert i18n.zone_label() == "Beijing time (UTC+8)"
    assert i18n.iso_local(deadline) == "2030-06-03T17:00+08:00"


def test_catalogue_files_ship_with_the_package() -> None:
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    assert '"locale/*/LC_MESSAGES/*.mo"' in pyproject
    assert Path(i18n.LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / "messages.mo").is_file()
