"""The CloudEvents envelope and the events registry, in memory (FastStream's TestKafkaBroker, no real broker)."""

from __future__ import annotations

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.events import Event, event_type, model_for, registered_types
from shared.events.backbone import ProbePinged
from shared.messaging.envelope import Envelope, EnvelopeError, decode_headers


def make_envelope(**overrides: object) -> Envelope:
    fields: dict[str, object] = {
        "event": ProbePinged(run="r1", seq=7),
        "source": "/services/referral",
        "subject": "child-42",
    }
    return Envelope(**(fields | overrides))  # type: ignore[arg-type]


def test_envelope_headers_are_cloudevents_binary_mode() -> None:
    envelope = make_envelope()
    headers = envelope.headers()
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_type"] == "nz.childrensteams.backbone.probe_pinged.v1"
    assert headers["ce_source"] == "/services/referral"
    assert headers["ce_subject"] == "child-42"
    assert headers["content-type"] == "application/json"
    assert headers["ce_id"] == envelope.id
    # The first event of a journey starts its correlation; it has no cause.
    assert headers["ce_correlationid"] == envelope.id
    assert "ce_causationid" not in headers
    assert envelope.key == b"child-42"


def test_a_caused_event_keeps_the_journey_and_points_at_its_cause() -> None:
    first = make_envelope()
    second = first.caused(ProbePinged(run="r1", seq=8), source="/services/panel")
    assert second.correlation_id == first.correlation_id
    assert second.causation_id == first.id
    assert second.subject == first.subject
    assert second.id != first.id


def test_decode_reads_back_what_was_written() -> None:
    envelope = make_envelope()
    decoded = Envelope.decode(envelope.headers(), envelope.body())
    assert decoded == envelope


def test_decode_names_every_invalid_field_without_echoing_the_values() -> None:
    envelope = make_envelope()
    with pytest.raises(EnvelopeError) as caught:
        Envelope.decode(envelope.headers(), b'{"run": 5, "seq": "Aroha Smith", "extra": 1}')
    fields = {e["field"] for e in caught.value.errors}
    assert fields == {"run", "seq", "extra"}
    assert "Aroha" not in repr(caught.value.errors)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ce_type": "nz.childrensteams.nobody.knows.v1"}, "unknown event type"),
        ({"ce_specversion": "0.3"}, "specversion"),
        ({"ce_id": ""}, "missing CloudEvents headers: ce_id"),
        ({"ce_time": "yesterday"}, "ce_time"),
    ],
)
def test_decode_refuses_what_is_not_one_of_our_events(change: dict[str, str], reason: str) -> None:
    envelope = make_envelope()
    with pytest.raises(EnvelopeError, match=reason):
        Envelope.decode(envelope.headers() | change, envelope.body())


def test_event_types_must_be_versioned_reverse_dns_names() -> None:
    with pytest.raises(ValueError, match="must be reverse-DNS"):
        event_type("referral.received")
    with pytest.raises(ValueError, match="must be reverse-DNS"):
        event_type("nz.childrensteams.referral.received")


def test_a_type_name_cannot_be_registered_twice() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @event_type("nz.childrensteams.backbone.probe_pinged.v1")
        class Impostor(Event):
            run: str

    assert model_for("nz.childrensteams.backbone.probe_pinged.v1") is ProbePinged
    assert registered_types()["nz.childrensteams.backbone.probe_pinged.v1"] is ProbePinged


async def test_an_envelope_survives_a_trip_through_the_broker() -> None:
    broker = KafkaBroker()
    received: list[Envelope] = []

    @broker.subscriber("backbone.probe")
    async def handle(message: KafkaMessage) -> None:
        record = message.raw_message
        assert not isinstance(record, tuple)
        received.append(Envelope.decode(decode_headers(record.headers), record.value))

    envelope = make_envelope()
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(envelope.body(), "backbone.probe", key=envelope.key, headers=envelope.headers())

    assert received == [envelope]
