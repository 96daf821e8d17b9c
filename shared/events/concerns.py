"""A concern about a child raised by a service for the Children's Hub to screen (critical ones are escalated at once).

This event carries what the hub needs to act without calling back: the child's identity and whereabouts and who to
contact, so it travels on `concerns.raised`, which only the hub reads, never on a service's public stream.
"""

from __future__ import annotations

from datetime import datetime

from shared.events.catalogue import Event, event_type
from shared.events.codes import ConcernCategory


@event_type("nz.childrensteams.concern.raised.v1")
class ConcernRaised(Event):
    concern_id: str
    child_id: str
    raised_by: str  # the service, e.g. "referral"
    agency: str
    # Known to a raiser that took the concern from a person (referral intake); otherwise the hub looks the child up.
    reporter_name: str | None = None
    reporter_phone: str | None = None
    child_name: str | None = None
    child_date_of_birth: str | None = None
    child_location: str | None = None
    categories: list[ConcernCategory]
    immediate_danger: bool
    # Optional, added later: the raiser knows a life is in danger (the hub then tells Police too).
    life_in_danger: bool = False
    details: str
    raised_at: datetime
