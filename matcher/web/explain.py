"""Plain words for a proposal: one sentence a social worker reads, in the reader's language.

Built from the stored explanation (rules, score terms, runner-ups) and the facts behind it
(names, distances, languages); the score table stays available behind a toggle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from matcher.services.proposal_facts import OfferFacts, ProposalFacts
from matcher.web.i18n import N_, local_datetime, number
from matcher.web.i18n import gettext as _
from matcher.web.words import word

# The engine words a runner-up's loss in one of three ways (see the matching service).
LOST_ON_TERM = re.compile(r"mostly on (?P<term>[a-z_]+)")
LOST_NO_TIME = "no free time"
LOST_ELSEWHERE = "serves other needs"


@dataclass(frozen=True)
class RunnerUpWords:
    """One runner-up in plain words."""

    offer_id: str
    name: str
    why: str


def amount_of(amount: float, unit: str, need: str) -> str:
    """'2 hours of companion visit' / '2 小时陪伴探访'."""
    return _("%(amount)s %(unit)s of %(need)s") % {
        "amount": number(amount), "unit": word(unit, "unit"), "need": word(need, "need")}


def source_of(kind: str, partner: str) -> str:
    """Who gives it: a volunteer of a partner, or the partner itself."""
    if kind == "volunteer":
        return _("a volunteer of %(partner)s") % {"partner": partner}
    return partner


def _who(entry: Any, facts: ProposalFacts | None) -> str:
    """The person served by pseudonym (ids stay pseudonymous), else the case id."""
    return (facts.pseudonym if facts and facts.pseudonym else entry.case_id)


def _shared_languages(facts: ProposalFacts) -> list[str]:
    """Languages both the volunteer and the person speak, other than Mandarin alone."""
    if facts.offer is None or facts.offer.kind != "volunteer":
        return []
    spoken = [lang for lang in facts.offer.languages if lang in facts.languages]
    return [lang for lang in spoken if lang != "mandarin"]


def _km(value: float) -> str:
    """A distance to one decimal."""
    return number(round(value, 1))


def runner_up_words(entry: Any, runner_up: dict[str, Any], facts: ProposalFacts | None
                    ) -> RunnerUpWords:
    """Why one runner-up was not chosen, in plain words."""
    offer: OfferFacts | None = None
    km: float | None = None
    if facts and runner_up["offer_id"] in facts.runner_ups:
        offer, km = facts.runner_ups[runner_up["offer_id"]]
    name = (source_of(offer.kind, offer.partner_name) if offer and offer.partner_name
            else runner_up["offer_id"])
    why_lost = str(runner_up.get("why_lost", ""))
    lost_on = runner_up.get("lost_on")
    if lost_on == "urgency" and runner_up.get("competing_urgency"):
        why = _("needed by a more urgent case (urgency %(urgency)s)") % {
            "urgency": runner_up["competing_urgency"]}
    elif LOST_NO_TIME in why_lost:
        why = _("not free at that time")
    elif LOST_ELSEWHERE in why_lost:
        why = _("needed more by other people in the best overall plan")
    elif (match := LOST_ON_TERM.search(why_lost)) and match["term"] == "travel" and km is not None:
        why = _("farther away")
    elif match:
        why = _("a weaker match, mostly on %(term)s") % {"term": word(match["term"], "term")}
    else:
        why = _("a weaker match")
    if km is not None:
        why = _("%(why)s (%(km)s km away)") % {"why": why, "km": _km(km)}
    return RunnerUpWords(offer_id=runner_up["offer_id"], name=name, why=why)


def plain_sentence(entry: Any, facts: ProposalFacts | None) -> str:
    """One sentence: who gets what from whom, how far, in which language; the next best."""
    partner = entry.partner_name or entry.partner_id
    sentence = _("%(who)s (urgency %(urgency)s) gets %(what)s from %(source)s") % {
        "who": _who(entry, facts), "urgency": entry.urgency,
        "what": amount_of(entry.amount, entry.unit, entry.need),
        "source": source_of(entry.kind, partner)}
    if facts and facts.km is not None:
        sentence += _(", %(km)s km away") % {"km": _km(facts.km)}
    if facts and (shared := _shared_languages(facts)):
        sentence += _(", who speaks %(languages)s") % {
            "languages": _(", ").join(word(lang, "language") for lang in shared)}
    if entry.window_start is not None:
        sentence += _(", on %(when)s") % {"when": local_datetime(entry.window_start, short=True)}
    runner_ups = entry.explanation.get("runner_ups") or []
    if runner_ups:
        best = runner_up_words(entry, runner_ups[0], facts)
        sentence += _("; the next best, %(name)s, was %(why)s") % {
            "name": best.name, "why": best.why}
    return sentence + _(".")


def unmatched_words(code: str, need: str, taken_by: str | None = None) -> str:
    """Why an item is still waiting, in the same plain words (and who took the capacity)."""
    words = _("%(need)s: %(reason)s") % {"need": word(need, "need"),
                                         "reason": word(code, "reason")}
    if taken_by:
        words = _("%(words)s, %(taken_by)s") % {"words": words,
                                                "taken_by": word(taken_by, "taken_by")}
    return words


# Refusals from the decision service, in the reader's words; the original stays for English.
REFUSALS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"needs a reason$"), N_("A rejection needs a reason: write one in the box.")),
    (re.compile(r"is (approved|rejected|expired|revoked|fulfilled)( by \S+)? already$"),
     N_("This proposal was already decided.")),
    (re.compile(r"was decided meanwhile$"), N_("Someone decided this proposal meanwhile.")),
    (re.compile(r"^case '.*' is closed$"), N_("The case is closed.")),
    (re.compile(r"is no longer requested$"), N_("The item is no longer requested.")),
    (re.compile(r"was withdrawn$"), N_("The partner withdrew the offer.")),
    (re.compile(r"expired at"), N_("The offer has expired.")),
    (re.compile(r"has no capacity left"), N_("The offer has no capacity left for this.")),
    (re.compile(r"outside the jurisdiction|not found in your jurisdiction"),
     N_("This lies outside your jurisdiction.")),
    (re.compile(r"the form expired"), N_("The form expired; reload the page and try again.")),
)


def refusal_words(reason: str) -> str:
    """A decision service refusal in the reader's language (the English text otherwise)."""
    for pattern, message in REFUSALS:
        if pattern.search(reason):
            translated = _(message)
            return reason if translated == message else translated
    return reason
