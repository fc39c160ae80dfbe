"""The engine's codes in words a coordinator reads: kinds, statuses, rules, reasons, needs.

Each table maps a code on the wire to an English phrase marked for the catalogue; `word()`
gives it in the reader's language, and falls back to the code made readable.
"""

from __future__ import annotations

from typing import Any

from matcher.web.i18n import N_, gettext, number

KINDS = {"volunteer": N_("volunteer"), "goods": N_("goods"), "service": N_("service")}
STATUSES = {
    "proposed": N_("pending"), "approved": N_("approved"), "rejected": N_("rejected"),
    "expired": N_("expired"), "revoked": N_("revoked"), "fulfilled": N_("fulfilled"),
    "no_show": N_("no-show"), "cancelled": N_("cancelled"), "open": N_("open"),
    "closed": N_("closed"), "active": N_("active"), "withdrawn": N_("withdrawn"),
    "completed": N_("completed"), "busy": N_("skipped: another run was busy"),
    "failed": N_("failed"),
}
LEVELS = {"centre": N_("charity centre"), "workstation": N_("charity workstation"),
          "studio": N_("charity studio"), "grid": N_("charity grid")}
GROUPS = {
    "elderly_alone": N_("elderly, living alone"), "elderly": N_("elderly"),
    "disabled": N_("disabled"), "low_income": N_("low income"),
    "left_behind_child": N_("left-behind child"),
    "child_in_difficulty": N_("child in difficulty"),
    "ill_or_recovering": N_("ill or recovering"),
}
# Why an item stays unmatched: the engine's reason codes (matching and eligibility rules).
REASONS = {
    "no_offer": N_("no active offer gives this"),
    "deadline_passed": N_("the deadline has passed"),
    "unit_mismatch": N_("the offers count this in another unit"),
    "out_of_reach": N_("no offer is near enough to the person"),
    "no_time_overlap": N_("no offer is free in the time asked for"),
    "expired": N_("the goods nearby expire before they can be used"),
    "not_eligible": N_("the services nearby are for other groups of people"),
    "language": N_("no volunteer nearby speaks the language needed"),
    "turned_down": N_("every offer nearby was turned down by a coordinator"),
    "partly_served": N_("partly served; the rest of the suitable capacity is used up"),
    "capacity_taken": N_("the suitable offers are already taken"),
}
# Who holds the capacity an unmatched item's eligible offers had.
TAKEN_BY = {
    "more_urgent_cases": N_("used for more urgent cases"),
    "as_urgent_better_placed": N_("used for cases as urgent and closer or better timed"),
    "earlier_commitments": N_("used for matches made earlier"),
    "expected_urgent_cases": N_("kept for more urgent cases expected soon"),
}
# Eligibility rules a proposal passed.
RULES = {
    "kind_and_need_match": N_("offers what is needed"),
    "deadline_not_passed": N_("before the deadline"),
    "unit_matches": N_("same unit"),
    "within_reach": N_("within reach"),
    "time_windows_overlap": N_("free at the time asked for"),
    "still_good_when_used": N_("still good when used"),
    "eligible_beneficiary": N_("the person is eligible"),
    "speaks_required_language": N_("speaks the language needed"),
    "not_turned_down": N_("not turned down before"),
}
# Soft score terms, each what it rewards.
TERMS = {
    "base": N_("serving someone"), "urgency": N_("urgency"),
    "vulnerability": N_("vulnerability"), "waiting": N_("time waited"),
    "travel": N_("short trip"), "skill_fit": N_("skill fit"),
    "expiry": N_("goods used before expiry"), "continuity": N_("a volunteer already known"),
    "preferred_partner": N_("preferred partner"), "workload_balance": N_("fair workload"),
    "grid_coverage": N_("fairness across grids"),
}
NEEDS = {
    "companionship": N_("companion visit"), "home_cleaning": N_("home cleaning"),
    "meal_delivery": N_("meal delivery"), "hospital_escort": N_("hospital escort"),
    "tutoring": N_("tutoring"), "haircut": N_("haircut"), "home_repair": N_("home repair"),
    "smart_device_help": N_("help with smart devices"),
    "psychological_support": N_("psychological support"), "nursing_care": N_("nursing care"),
    "sign_language": N_("sign language"), "legal_aid": N_("legal aid"),
    "rice": N_("rice"), "cooking_oil": N_("cooking oil"), "flour": N_("flour"),
    "vegetables": N_("vegetables"), "milk": N_("milk"), "bread": N_("bread"),
    "eggs": N_("eggs"), "quilt": N_("quilt"), "winter_clothing": N_("winter clothing"),
    "adult_diapers": N_("adult diapers"), "school_supplies": N_("school supplies"),
    "walking_aid": N_("walking aid"), "physiotherapy": N_("physiotherapy"),
    "canteen_meal": N_("canteen meal"), "counselling": N_("counselling"),
    "child_screening": N_("child mental-health screening"),
    "health_consultation": N_("health consultation"), "health_lecture": N_("health lecture"),
    "handicraft_session": N_("handicraft session"), "smart_home_care": N_("smart home care"),
}
UNITS = {
    "hours": N_("hours"), "hour": N_("hours"), "kg": N_("kg"), "litre": N_("litres"),
    "box": N_("boxes"), "bag": N_("bags"), "tray": N_("trays"), "piece": N_("pieces"),
    "pack": N_("packs"), "set": N_("sets"), "session": N_("sessions"),
    "sessions": N_("sessions"), "meal": N_("meals"), "meals": N_("meals"),
}
LANGUAGES = {"mandarin": N_("Mandarin"), "chongqing_dialect": N_("Chongqing dialect"),
             "sichuan_dialect": N_("Sichuan dialect"), "english": N_("English")}
CHANGES = {"new": N_("new"), "moved": N_("moved"), "revoked": N_("revoked"),
           "released": N_("approved, released"), "kept": N_("kept")}
TRIGGERS = {"nightly": N_("nightly"), "cli": N_("started by hand"),
            "event": N_("on request")}
# Why a rebalancing run changed a proposal.
CHANGE_REASONS = {
    "offer_withdrawn": N_("the offer was withdrawn"), "offer_expired": N_("the offer expired"),
    "volunteer_unavailable": N_("the volunteer is no longer free then"),
    "slot_changed": N_("the service slot moved or was removed"),
    "capacity_reduced": N_("the offer now gives less"),
    "item_already_served": N_("the item is already served"),
    "offer_unavailable": N_("the offer is no longer available"),
    "better_match": N_("a better match was found"),
    "capacity_reallocated": N_("the capacity serves a better overall plan"),
    "open_demand": N_("serves a need left open"),
}
EVENTS = {
    "offer.published": N_("offer published"), "offer.updated": N_("offer updated"),
    "offer.withdrawn": N_("offer withdrawn"), "case.opened": N_("case opened"),
    "case.updated": N_("case updated"), "case.closed": N_("case closed"),
    "match.proposed": N_("proposed"), "match.approved": N_("approved"),
    "match.rejected": N_("rejected"), "match.fulfilled": N_("fulfilment reported"),
    "proposal.escalated": N_("escalated"), "proposal.expired": N_("expired"),
    "match.expired": N_("expired"), "match.released": N_("approved match released"),
}
WAIT_BUCKETS = {"< 1 h": N_("under 1 h"), "1-4 h": N_("1–4 h"), "4-12 h": N_("4–12 h"),
                "12-24 h": N_("12–24 h"), "> 24 h": N_("over 24 h")}
TABLES: dict[str, dict[str, str]] = {
    "kind": KINDS, "status": STATUSES, "level": LEVELS, "group": GROUPS, "reason": REASONS,
    "rule": RULES, "term": TERMS, "need": NEEDS, "unit": UNITS, "language": LANGUAGES,
    "change": CHANGES, "trigger": TRIGGERS, "change_reason": CHANGE_REASONS, "event": EVENTS,
    "wait": WAIT_BUCKETS, "taken_by": TAKEN_BY,
}


# How far an offer reaches, by mode; %(km)s is the radius.
REACH_MODES = {
    "pickup": N_("collected within %(km)s km"), "delivery": N_("delivered within %(km)s km"),
    "district": N_("anywhere in the district"),
    "workstation": N_("within its workstation's area"),
    "travel": N_("the volunteer travels up to %(km)s km"),
}
REACH_SET_BY = {
    "offer": N_("set on the offer"), "partner": N_("your default"),
    "node": N_("default of its area"), "rule": N_("engine default: nothing set"),
}


def reach_words(reach: Any) -> str:
    """An offer's reach as a partner reads it: how far, and whose setting it is."""
    if reach is None:
        return ""
    mode = REACH_MODES.get(reach.mode)
    km = number(reach.km) if reach.km is not None else ""
    how = gettext(mode) % {"km": km} if mode else reach.mode
    by = REACH_SET_BY.get(reach.set_by)
    return gettext("%(how)s (%(by)s)") % {"how": how, "by": gettext(by) if by else reach.set_by}


def word(code: str | None, table: str) -> str:
    """A code in the reader's language; unknown codes are shown with spaces for underscores."""
    if not code:
        return ""
    phrase = TABLES[table].get(code)
    return gettext(phrase) if phrase else code.replace("_", " ")
