"""A SIMULATOR of the national contact centre, for local runs and tests: it is not the contact centre.

It reads escalations on `contactcentre.escalations.out` and, after a configurable delay, acknowledges each escalation
once on `contactcentre.acks.in` as a CloudEvent from `/external/contact-centre-simulator`; with `--never` it reads
and never answers (to watch the hub re-escalate).

    python -m deploy.contactcentre_simulator [--ack-after SECONDS | --never] [--group NAME]

Prints `ready` once it is reading. Needs KAFKA_BOOTSTRAP (the stack's `env` exports it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.events.hub import ContactCentreAcknowledgement, EscalationToContactCentre
from shared.messaging.envelope import Envelope, EnvelopeError, decode_headers

SOURCE = "/external/contact-centre-simulator"
ESCALATIONS = "contactcentre.escalations.out"
ACKS = "contactcentre.acks.in"


async def simulate(bootstrap: str, *, ack_after: float | None, group: str, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        ESCALATIONS, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="latest"
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await consumer.start()
    await producer.start()
    acknowledged: set[str] = set()
    pending: set[asyncio.Task[None]] = set()

    async def acknowledge_later(escalation: Envelope) -> None:
        notice = escalation.event
        assert isinstance(notice, EscalationToContactCentre)
        await asyncio.sleep(ack_after or 0)
        ack = ContactCentreAcknowledgement(
            escalation_id=notice.escalation_id,
            notification_id=notice.notification_id,
            acknowledged_by="simulated-call-taker",
            acknowledged_at=datetime.now(UTC),
        )
        envelope = escalation.caused(ack, source=SOURCE)
        headers = [(k, v.encode()) for k, v in envelope.headers().items()]
        await producer.send_and_wait(ACKS, envelope.body(), key=envelope.key, headers=headers)
        print(f"acknowledged {notice.escalation_id} step {notice.step}", flush=True)

    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        print("ready", flush=True)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    try:
                        escalation = Envelope.decode(decode_headers(record.headers), record.value or b"")
                    except EnvelopeError:
                        continue
                    if not isinstance(escalation.event, EscalationToContactCentre):
                        continue
                    print(f"escalation {escalation.event.escalation_id} step {escalation.event.step}", flush=True)
                    if ack_after is None or escalation.event.escalation_id in acknowledged:
                        continue
                    acknowledged.add(escalation.event.escalation_id)
                    task = asyncio.create_task(acknowledge_later(escalation))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
            if batches:
                await consumer.commit()
    finally:
        for task in pending:
            task.cancel()
        await consumer.stop()
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.contactcentre_simulator", description=__doc__)
    answer = parser.add_mutually_exclusive_group()
    answer.add_argument("--ack-after", type=float, default=5.0, help="seconds before acknowledging (default 5)")
    answer.add_argument("--never", action="store_true", help="read escalations and never acknowledge")
    parser.add_argument("--group", default="contact-centre-simulator", help="Kafka consumer group")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:29092")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await simulate(bootstrap, ack_after=None if args.never else args.ack_after, group=args.group, stop=stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
