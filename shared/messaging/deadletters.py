"""Operators' dead-letter tool: list what failed and why, and replay one message or all of them.

    python -m shared.messaging.deadletters list [--topic agency.health-nz.referrals.in.dlq]
    python -m shared.messaging.deadletters replay --topic referral.events.dlq --partition 0 --offset 42
    python -m shared.messaging.deadletters replay --topic agency.health-nz.referrals.in.dlq --all

Listing without --topic reads every dead-letter topic, each agency's included. A replayed message goes to its
origin's retry topic (for an agency's message, that agency's: the topic still says who sent it) addressed to the
consumer that gave up on it, with its attempts reset; the inbox makes replaying something already handled harmless.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.messaging.broker import client_security
from shared.messaging.consumer import (
    H_ATTEMPTS,
    H_CONSUMER,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_NOT_BEFORE,
    H_ORIGIN_TOPIC,
)
from shared.messaging.envelope import H_ID, H_TYPE, decode_headers
from shared.messaging.topics import TOPICS, dlq_topic, retry_topic
from shared.settings import ServiceSettings


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def summary(self) -> str:
        h = self.headers
        return (
            f"{self.topic}[{self.partition}]@{self.offset} consumer={h.get(H_CONSUMER, '?')} "
            f"type={h.get(H_TYPE, '?')} id={h.get(H_ID, '?')} attempts={h.get(H_ATTEMPTS, '?')} "
            f"error={h.get(H_ERROR_TYPE, '?')}: {h.get(H_ERROR_MESSAGE, '')}"
        )


def _security() -> dict[str, Any]:
    """The operator's Kafka credentials, from the CTP_KAFKA_* variables the services read (SASL_SSL in production)."""
    return client_security(ServiceSettings())


async def read_dead_letters(bootstrap: str, *topics: str) -> list[DeadLetter]:
    """Everything currently in these dead-letter topics, in the order given, read by one consumer without a group."""
    # No group: the consumer is assigned every partition of the topics and commits nothing. Its own first reset must
    # also be to the earliest offset: one still under way when seek_to_beginning is asked for can win, and would
    # silently skip what is already there.
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", **_security()
    )
    await consumer.start()
    try:
        partitions = sorted(consumer.assignment())
        if not partitions:
            return []
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        # By position: a record read twice is listed once.
        letters: dict[tuple[int, int, int], DeadLetter] = {}
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    letters[topics.index(tp.topic), tp.partition, record.offset] = DeadLetter(
                        topic=tp.topic,
                        partition=tp.partition,
                        offset=record.offset,
                        key=record.key,
                        value=record.value or b"",
                        headers=decode_headers(record.headers),
                    )
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return [letters[position] for position in sorted(letters)]
    finally:
        await consumer.stop()


async def replay(bootstrap: str, letters: list[DeadLetter]) -> int:
    """Send dead letters back through their origin's retry topic, with fresh attempts."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **_security())
    await producer.start()
    try:
        for letter in letters:
            origin = letter.headers.get(H_ORIGIN_TOPIC) or letter.topic.removesuffix(".dlq")
            headers = dict(letter.headers) | {H_ATTEMPTS: "0", H_NOT_BEFORE: str(int(time.time() * 1000))}
            await producer.send_and_wait(
                retry_topic(origin),
                letter.value,
                key=letter.key,
                headers=[(k, v.encode()) for k, v in headers.items()],
            )
        return len(letters)
    finally:
        await producer.stop()


def dead_letter_topics() -> list[str]:
    """Every concrete dead-letter topic: one per consumed topic, and one per agency for an agency's topics."""
    return [dlq_topic(name) for topic in TOPICS if topic.consumed for name in topic.names()]


async def _main(args: argparse.Namespace) -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:29092")
    topics = [args.topic] if args.topic else dead_letter_topics()
    letters = await read_dead_letters(bootstrap, *topics)
    if args.command == "list":
        for letter in letters:
            print(letter.summary)
        print(f"{len(letters)} dead letter(s)")
        return
    if not args.all:
        letters = [
            d for d in letters if d.offset == args.offset and (args.partition is None or d.partition == args.partition)
        ]
        if not letters:
            raise SystemExit("no dead letter at that position")
    print(f"replayed {await replay(bootstrap, letters)} dead letter(s)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m shared.messaging.deadletters", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="show dead letters and why they failed")
    listing.add_argument("--topic", help="one dead-letter topic (default: all)")
    again = commands.add_parser("replay", help="send dead letters back for another try")
    again.add_argument("--topic", required=True)
    which = again.add_mutually_exclusive_group(required=True)
    which.add_argument("--offset", type=int)
    which.add_argument("--all", action="store_true")
    again.add_argument("--partition", type=int)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
