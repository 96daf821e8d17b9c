"""CloudEvents 1.0 binary-mode envelope for Kafka: attributes in headers, the event model as the JSON body."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError

from shared.events import Event, UnknownEventType, model_for
from shared.messaging.errors import InvalidInput

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"

# CloudEvents extension attribute names must be lower-case alphanumerics, hence no separators.
H_SPECVERSION = "ce_specversion"
H_ID = "ce_id"
H_SOURCE = "ce_source"
H_TYPE = "ce_type"
H_TIME = "ce_time"
H_SUBJECT = "ce_subject"
H_CORRELATION = "ce_correlationid"
H_CAUSATION = "ce_causationid"
H_CONTENT_TYPE = "content-type"


class EnvelopeError(InvalidInput):
    """A message that cannot be read as one of our events: never retried, it goes to the dead-letter topic."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One event with its CloudEvents attributes.

    `subject` is the child id, or the agency's referral id before a child id exists. `topic` is where a consumer read
    it (the first topic, for a retry): on an agency's ingress topic, it names the sending agency. It is not sent.
    """

    event: Event
    source: str
    subject: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    correlation_id: str = ""
    causation_id: str = ""
    topic: str = ""

    def __post_init__(self) -> None:
        if not self.correlation_id:
            # The first event of a journey starts its correlation.
            object.__setattr__(self, "correlation_id", self.id)

    @property
    def type(self) -> str:
        return self.event.ce_type

    @property
    def key(self) -> bytes:
        return self.subject.encode()

    def caused(self, event: Event, *, source: str, subject: str | None = None) -> Envelope:
        """An envelope for an event this one caused: same journey, causation pointing here."""
        return Envelope(
            event=event,
            source=source,
            subject=subject if subject is not None else self.subject,
            correlation_id=self.correlation_id,
            causation_id=self.id,
        )

    def headers(self) -> dict[str, str]:
        headers = {
            H_SPECVERSION: SPEC_VERSION,
            H_ID: self.id,
            H_SOURCE: self.source,
            H_TYPE: self.type,
            H_TIME: self.time.isoformat(),
            H_SUBJECT: self.subject,
            H_CORRELATION: self.correlation_id,
            H_CONTENT_TYPE: CONTENT_TYPE,
        }
        if self.causation_id:
            headers[H_CAUSATION] = self.causation_id
        return headers

    def body(self) -> bytes:
        return self.event.model_dump_json().encode()

    @classmethod
    def decode(cls, headers: Mapping[str, str], body: bytes, *, topic: str = "") -> Envelope:
        """Read an envelope from Kafka headers and body; raise EnvelopeError with every reason when it is not one."""
        missing = [h for h in (H_SPECVERSION, H_ID, H_SOURCE, H_TYPE, H_SUBJECT) if not headers.get(h)]
        if missing:
            raise EnvelopeError(f"missing CloudEvents headers: {', '.join(missing)}")
        if headers[H_SPECVERSION] != SPEC_VERSION:
            raise EnvelopeError(f"unsupported CloudEvents specversion {headers[H_SPECVERSION]!r}")
        try:
            model = model_for(headers[H_TYPE])
        except UnknownEventType:
            raise EnvelopeError(f"unknown event type {headers[H_TYPE]!r}") from None
        try:
            event = model.model_validate_json(body)
        except ValidationError as error:
            # include_input=False: the rejected values may be personal data and must not travel further.
            details = [
                {"field": ".".join(str(p) for p in e["loc"]) or "body", "problem": e["msg"]}
                for e in error.errors(include_input=False, include_url=False)
            ]
            raise EnvelopeError(f"body does not match {headers[H_TYPE]}", details) from None
        try:
            time = datetime.fromisoformat(headers[H_TIME]) if headers.get(H_TIME) else datetime.now(UTC)
        except ValueError:
            raise EnvelopeError(f"ce_time {headers[H_TIME]!r} is not an ISO 8601 time") from None
        return cls(
            event=event,
            source=headers[H_SOURCE],
            subject=headers[H_SUBJECT],
            id=headers[H_ID],
            time=time,
            correlation_id=headers.get(H_CORRELATION) or headers[H_ID],
            causation_id=headers.get(H_CAUSATION, ""),
            topic=topic,
        )


def decode_headers(raw: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    """Kafka headers arrive as (name, bytes) pairs; the last value of a repeated name wins."""
    return {name: value.decode("utf-8", "replace") for name, value in raw}
