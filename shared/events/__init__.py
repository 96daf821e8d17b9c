"""The events catalogue: every domain event type the platform knows, keyed by its CloudEvents type."""

# Importing the catalogue's modules registers their types.
from shared.events import agency, assignment, backbone, concerns, hub, panel, plans, referral  # noqa: F401
from shared.events.catalogue import Event, UnknownEventType, event_type, model_for, registered_types

__all__ = ["Event", "UnknownEventType", "event_type", "model_for", "registered_types"]
