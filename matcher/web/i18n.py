"""Languages of the console: gettext catalogues (Babel), the reader's locale, local times.

Chinese is the district's default; English sits beside it. The locale is chosen per request:
a `?lang=` switch (remembered in a cookie), then the cookie, then Accept-Language, then the
configured default. Times on pages are shown in the district's zone; the wire keeps ISO-8601.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from gettext import NullTranslations
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_datetime as babel_datetime
from babel.numbers import format_decimal as babel_decimal
from babel.numbers import format_percent as babel_percent
from babel.support import Translations
from starlette.requests import Request
from starlette.responses import Response

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
DOMAIN = "messages"
LOCALES: dict[str, str] = {"zh_CN": "zh-CN", "en": "en"}  # gettext name -> HTML lang
LANG_COOKIE = "matcher_lang"
LANG_COOKIE_MAX_AGE_S = 365 * 86_400
# Babel date patterns per locale: what a reader of that language expects to see.
DATETIME_PATTERNS = {"zh_CN": "yyyy年M月d日 HH:mm", "en": "d MMM yyyy, HH:mm"}
SHORT_PATTERNS = {"zh_CN": "M月d日 HH:mm", "en": "d MMM, HH:mm"}
BEIJING_ZONES = frozenset({"Asia/Shanghai", "Asia/Chongqing", "Asia/Harbin", "PRC"})

_current: ContextVar[str] = ContextVar("console_locale", default="zh_CN")
_zone: ContextVar[str] = ContextVar("console_timezone", default="Asia/Shanghai")


def N_(message: str) -> str:
    """Mark a string for the catalogue without translating it yet (for tables of words)."""
    return message


@lru_cache
def translations(locale: str) -> NullTranslations:
    """The compiled catalogue of a locale (English msgids pass through untranslated)."""
    if locale not in LOCALES:
        return NullTranslations()
    return Translations.load(str(LOCALE_DIR), [locale], domain=DOMAIN)


def gettext(message: str) -> str:
    """`message` in the current reader's language."""
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """Singular or plural of `message` in the current reader's language."""
    return translations(_current.get()).ngettext(singular, plural, n)


_ = gettext


def current_locale() -> str:
    """The locale of the request being rendered."""
    return _current.get()


def html_lang() -> str:
    """The `lang` attribute of the current page (BCP 47, e.g. zh-CN)."""
    return LOCALES.get(_current.get(), "zh-CN")


def _normalise(tag: str) -> str | None:
    """A known locale for a language tag ('zh-CN', 'zh_Hans', 'en-GB' ...), or None."""
    tag = tag.strip().replace("_", "-").lower()
    if tag.startswith("zh"):
        return "zh_CN"
    if tag.startswith("en"):
        return "en"
    return None


def from_accept_language(header: str) -> str | None:
    """The best known locale of an Accept-Language header, by q-value."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _sep, params = part.partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        locale = _normalise(tag)
        if locale and quality > 0:
            ranked.append((-quality, index, locale))
    return min(ranked)[2] if ranked else None


def choose_locale(request: Request, default: str) -> str:
    """The reader's locale: ?lang=, then the cookie, then Accept-Language, then the default."""
    for candidate in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        locale = _normalise(candidate) if candidate else None
        if locale:
            return locale
    accepted = from_accept_language(request.headers.get("accept-language", ""))
    return accepted or (default if default in LOCALES else "zh_CN")


def activate(request: Request, *, default: str, timezone: str) -> str:
    """Choose and remember the locale and zone for this request's rendering."""
    locale = choose_locale(request, default)
    _current.set(locale)
    _zone.set(timezone)
    return locale


def remember_choice(request: Request, response: Response) -> None:
    """Keep an explicit ?lang= switch in a cookie, so later pages follow it."""
    chosen = _normalise(request.query_params.get("lang") or "")
    if chosen:
        response.set_cookie(LANG_COOKIE, chosen, max_age=LANG_COOKIE_MAX_AGE_S,
                            samesite="lax", httponly=True)


# --- local time and numbers --------------------------------------------------------------------


def zone() -> ZoneInfo:
    """The district's time zone."""
    return ZoneInfo(_zone.get())


def utc_offset(name: str | None = None, at: datetime | None = None) -> str:
    """The zone's offset now (or at a moment), e.g. 'UTC+8'."""
    zone_info = ZoneInfo(name or _zone.get())
    offset = (at or datetime.now(UTC)).astimezone(zone_info).utcoffset() or timedelta()
    return f"UTC{offset.total_seconds() / 3600:+g}"


def zone_name(name: str | None = None) -> str:
    """'Beijing time' for China's zone, else the IANA name."""
    name = name or _zone.get()
    return _("Beijing time") if name in BEIJING_ZONES else name


def zone_label(name: str | None = None, at: datetime | None = None) -> str:
    """'Beijing time (UTC+8)' for China's zone, else 'Area/City (UTC±H)'."""
    return _("%(zone)s (%(utc)s)") % {"zone": zone_name(name), "utc": utc_offset(name, at)}


def local_datetime(value: datetime | str | None, short: bool = False) -> str:
    """A moment as the reader reads it: in the district's zone, in the reader's format."""
    if value is None or value == "":
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:  # stored times are UTC
        moment = moment.replace(tzinfo=UTC)
    patterns = SHORT_PATTERNS if short else DATETIME_PATTERNS
    locale = _current.get()
    return babel_datetime(moment, patterns.get(locale, patterns["en"]), tzinfo=zone(),
                          locale=locale)


def iso_local(value: datetime | None) -> str:
    """ISO-8601 with the district's offset (for `datetime` attributes and CSV)."""
    if value is None:
        return ""
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    return moment.astimezone(zone()).isoformat(timespec="minutes")


def number(value: float, digits: int = 1) -> str:
    """A number in the reader's format, with at most `digits` decimals."""
    pattern = "#,##0" + ("." + "#" * digits if digits else "")
    return babel_decimal(value, format=pattern, locale=_current.get())


def percent(value: float) -> str:
    """A share (0..1) as a percentage in the reader's format."""
    return babel_percent(value, locale=_current.get())


def duration(seconds: float) -> str:
    """A waiting time in words: minutes under an hour, hours under two days, else days."""
    if seconds < 3600:
        return ngettext("%(n)s minute", "%(n)s minutes", int(seconds // 60)) % {
            "n": int(seconds // 60)}
    if seconds < 48 * 3600:
        hours = round(seconds / 3600, 1)
        return _("%(n)s h") % {"n": number(hours)}
    days = int(seconds // 86_400)
    return ngettext("%(n)s day", "%(n)s days", days) % {"n": days}
