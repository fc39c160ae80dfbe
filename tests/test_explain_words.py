"""One plain sentence per proposal, in both languages, from the stored explanation and the
facts behind it (names, km, a shared dialect, the next best option)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
from starlette.requests import Request

from matcher.domain.explain import binding_rule
from matcher.domain.rules import RULES
from matcher.services.proposal_facts import OfferFacts, ProposalFacts, km_between
from matcher.web import i18n
from matcher.web.explain import plain_sentence, refusal_words, unmatched_words

EXPLANATION = {"runner_ups": [
    {"offer_id": "o-2", "score": 40.0,
     "why_lost": "lower score (40.0 vs 55.0), mostly on travel (0.8 vs 9.1)"},
    {"offer_id": "o-3", "score": 60.0,
     "why_lost": "higher score (60.0) but the volunteer has no free time left in the item's "
                 "window"}]}


def entry() -> SimpleNamespace:
    return SimpleNamespace(
        case_id="case-7", partner_name="爱心协会", partner_id="p-1", urgency=5, amount=2,
        unit="hours", need="companionship", kind="volunteer", explanation=EXPLANATION,
        window_start=datetime(2030, 6, 3, 1, 0, tzinfo=UTC), offer_id="o-1")


def facts() -> ProposalFacts:
    volunteer = OfferFacts(offer_id="o-1", kind="volunteer", partner_name="爱心协会",
                           what="companionship", languages=("chongqing_dialect", "mandarin"),
                           point=(29.0, 106.6))
    other = OfferFacts(offer_id="o-2", kind="volunteer", partner_name="阳光志愿者协会",
                       what="companionship", languages=("mandarin",), point=(29.05, 106.6))
    return ProposalFacts(pseudonym="王阿姨", group="elderly_alone", vulnerability=4,
                         languages=("chongqing_dialect",), offer=volunteer, km=1.24,
                         runner_ups={"o-2": (other, 6.04)})


def speak(tag: str) -> None:
    raw = [(b"accept-language", tag.encode())]
    i18n.activate(Request({"type": "http", "headers": raw, "query_string": b""}),
                  default="zh_CN", timezone="Asia/Shanghai")


def test_the_sentence_in_chinese() -> None:
    speak("zh-CN")
    assert plain_sentence(entry(), facts()) == (
        "王阿姨（紧急程度 5）将获得爱心协会的志愿者提供的2 小时陪伴探访，距离 1.2 公里，"
        "会说重庆话，时间为 6月3日 09:00；次优选择是阳光志愿者协会的志愿者，"
        "距离更远（距离 6 公里）。")


def test_the_sentence_in_english() -> None:
    speak("en")
    assert plain_sentence(entry(), facts()) == (
        "王阿姨 (urgency 5) gets 2 hours of companion visit from a volunteer of 爱心协会, "
        "1.2 km away, who speaks Chongqing dialect, on 3 Jun, 09:00; the next best, "
        "a volunteer of 阳光志愿者协会, was farther away (6 km away).")


def test_without_facts_the_sentence_still_reads() -> None:
    speak("en")
    sentence = plain_sentence(entry(), None)
    assert sentence.startswith("case-7 (urgency 5) gets 2 hours of companion visit")
    assert "o-2" in sentence


def test_unmatched_reasons_and_refusals_in_plain_words() -> None:
    speak("zh-CN")
    assert unmatched_words("language", "companionship") == "陪伴探访：附近没有会说所需语言的志愿者"
    assert refusal_words("reject needs a reason") == "拒绝需要填写理由，请在输入框中写明。"
    speak("en")
    assert refusal_words("proposal 'p1' is approved by c-grid already") == (
        "proposal 'p1' is approved by c-grid already")


def test_distances_are_great_circle_km() -> None:
    assert round(km_between((29.0, 106.6), (29.1, 106.6)) or 0, 1) == 11.1
    assert km_between(None, (29.0, 106.6)) is None


def test_the_binding_rule_is_the_one_that_stopped_the_offers_that_came_closest() -> None:
    failed = np.zeros(len(RULES), dtype=np.int64)
    reach = next(i for i, rule in enumerate(RULES) if rule.reason_code == "out_of_reach")
    time = next(i for i, rule in enumerate(RULES) if rule.reason_code == "no_time_overlap")
    failed[reach] = 12  # most offers are far away...
    failed[time] = 1  # ...but one in reach had no time that fits: that is what stopped it
    assert RULES[binding_rule(failed)].reason_code == "no_time_overlap"
    failed[time] = 0
    assert RULES[binding_rule(failed)].reason_code == "out_of_reach"
