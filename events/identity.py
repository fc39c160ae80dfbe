"""Who sent a record, as the connection proves it, not as the payload claims.

Only a partner's own principal may write `<prefix>.offers.<partner>` and
`<prefix>.fulfilments.<partner>` (broker ACLs, see docs/kafka-security.md), so a record on one
of those topics comes from that partner, whatever its envelope says. An event claiming to be
someone else is refused here, before it reaches the services, whose ownership checks then
rest on a proven `producer`. The shared topics are written only by the district's own
principals (admin, the case system, the coordinator app, the engine), which speak for others.
"""

from __future__ import annotations

from schemas.offers import OfferPublished, OfferUpdated
from schemas.topics import Topics

NOT_OWNER = "not_owner"


def identity_refusal(topics: Topics, topic: str, event: object) -> str | None:
    """Why an event on a partner's own topic does not speak for that partner, or None."""
    partner = topics.partner_of(topic)
    if partner is None:
        return None
    producer = getattr(event, "producer", None)
    if producer != partner:
        return (f"topic {topic} belongs to partner '{partner}'; the event says it comes from "
                f"'{producer}'")
    if isinstance(event, OfferPublished | OfferUpdated) and event.payload.partner_id != partner:
        return (f"topic {topic} belongs to partner '{partner}'; the offer names partner "
                f"'{event.payload.partner_id}'")
    return None
