"""Events the backbone uses to test and measure itself on the real broker; no service handles them."""

from shared.events.catalogue import Event, event_type


@event_type("nz.childrensteams.backbone.probe_pinged.v1")
class ProbePinged(Event):
    """One numbered ping in a run; the consumer records an effect row for it."""

    run: str
    seq: int
