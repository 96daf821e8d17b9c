"""`ct`: the Children's Teams command line for agency integrators and platform operators.

    bin/ct token --sub alice --agency health-nz --role referrer       a development bearer token
    bin/ct submit referral.json --agency health-nz [--wait]            publish a referral (or --type concern)
    bin/ct follow CHILD_ID [--from-start]                              print a child's events as they happen
    bin/ct outcomes --agency health-nz [--from-start]                  print what an agency hears back
    bin/ct deadletters list [--topic X.dlq]                            dead letters and why
    bin/ct deadletters replay --topic X.dlq (--offset N | --all)       send them back for another try

Talks to the broker in KAFKA_BOOTSTRAP (the stack's `env` prints it). `submit` acts as the agency's system does:
it publishes on that agency's own topic (`agency.<code>.referrals.in` or `.concerns.in`) with its `ce_source`, and
`--wait` and `outcomes` read that agency's `agency.<code>.outcomes.out`. A submitted file is checked against the
published schema, and against the agency it is sent as, first: every problem is printed before anything is sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import ValidationError

from shared.agencies import AGENCIES, agency_source, sender_problems
from shared.events import model_for
from shared.messaging.deadletters import main as deadletters_main
from shared.messaging.envelope import Envelope, EnvelopeError, decode_headers
from shared.messaging.topics import TOPICS, concerns_in, outcomes_out, referrals_in
from shared.security import issue_token

# What `submit` sends, by --type: the event type, the agency's topic for it, and the field that is its key.
SUBMISSIONS: dict[str, tuple[str, Callable[[str], str], str]] = {
    "referral": ("nz.childrensteams.agency.referral_submitted.v1", referrals_in, "agency_referral_id"),
    "concern": ("nz.childrensteams.agency.concern_submitted.v1", concerns_in, "agency_concern_id"),
}
# A child's journey: every service's events, and what each agency hears back.
STREAMS = [name for t in TOPICS if t.name.endswith(".events") for name in t.names()] + [
    outcomes_out(agency) for agency in sorted(AGENCIES)
]


def bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:29092")


async def submit(path: Path, body: dict[str, Any], kind: str, agency: str, wait: bool) -> int:
    type_name, topic_of, id_field = SUBMISSIONS[kind]
    topic = topic_of(agency)
    body.setdefault("agency", agency)
    problems: list[tuple[str, str]] = []
    try:
        event = model_for(type_name).model_validate(body)
    except ValidationError as error:
        problems += [
            (".".join(str(p) for p in problem["loc"]) or "body", problem["msg"])
            for problem in error.errors(include_input=False, include_url=False)
        ]
    # An agency acts only in its own name: the platform would answer with a rejection on its outcomes topic.
    named = body.get("agency")
    if isinstance(named, str):
        problems += [
            (p["field"], f"{p['problem']} ({agency})")
            for p in sender_problems(sender=agency, source=agency_source(agency), named=named)
        ]
    if problems:
        for field, problem in problems:
            print(f"  {field}: {problem}")
        print(f"{path}: not sent, {len(problems)} problem(s)")
        return 1
    subject = str(getattr(event, id_field, "") or uuid.uuid4())
    envelope = Envelope(event=event, source=agency_source(agency), subject=subject)
    outcomes = AIOKafkaConsumer(outcomes_out(agency), bootstrap_servers=bootstrap(), enable_auto_commit=False)
    if wait:
        await outcomes.start()
        await outcomes.seek_to_end()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        headers = [(k, v.encode()) for k, v in envelope.headers().items()]
        await producer.send_and_wait(topic, envelope.body(), key=envelope.key, headers=headers)
    finally:
        await producer.stop()
    print(f"sent {kind} {subject} (ce_id {envelope.id}) to {topic}")
    if wait:
        try:
            async for record in outcomes:
                if record.key == envelope.key:
                    print(json.dumps(json.loads(record.value or b"{}"), indent=2))
                    break
        finally:
            await outcomes.stop()
    return 0


async def follow(topics: list[str], *, from_start: bool, subject: str | None = None) -> None:
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap(), enable_auto_commit=False)
    width = max(len(t) for t in topics)
    await consumer.start()
    try:
        if from_start:
            await consumer.seek_to_beginning()
        else:
            await consumer.seek_to_end()
        async for record in consumer:
            headers = decode_headers(record.headers)
            try:
                envelope = Envelope.decode(headers, record.value or b"")
            except EnvelopeError:
                continue
            if subject and envelope.subject != subject:
                continue
            body = envelope.event.model_dump(mode="json")
            print(f"{envelope.time:%Y-%m-%d %H:%M:%S}  {record.topic:<{width}} {envelope.type}  {json.dumps(body)}")
    finally:
        await consumer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ct", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser("token", help="issue a development bearer token")
    token.add_argument("--sub", required=True)
    token.add_argument("--agency", required=True)
    token.add_argument("--role", action="append", default=[], dest="roles")
    sending = commands.add_parser("submit", help="publish a referral or concern from a JSON file")
    sending.add_argument("file", type=Path)
    sending.add_argument("--agency", required=True, choices=sorted(AGENCIES), metavar="CODE", help="the sender")
    sending.add_argument("--type", choices=sorted(SUBMISSIONS), default="referral")
    sending.add_argument("--wait", action="store_true", help="wait for the first outcome and print it")
    following = commands.add_parser("follow", help="print a child's events across the services")
    following.add_argument("child_id")
    following.add_argument("--from-start", action="store_true")
    hearing = commands.add_parser("outcomes", help="print the outcomes an agency receives")
    hearing.add_argument("--agency", required=True, choices=sorted(AGENCIES), metavar="CODE")
    hearing.add_argument("--from-start", action="store_true")
    commands.add_parser("deadletters", help="list or replay dead letters", add_help=False)
    args, rest = parser.parse_known_args(argv)
    match args.command:
        case "token":
            print(issue_token(subject=args.sub, agency=args.agency, roles=args.roles))
        case "submit":
            body = json.loads(args.file.read_text())
            return asyncio.run(submit(args.file, body, args.type, args.agency, args.wait))
        case "follow":
            asyncio.run(follow(STREAMS, from_start=args.from_start, subject=args.child_id))
        case "outcomes":
            asyncio.run(follow([outcomes_out(args.agency)], from_start=args.from_start))
        case "deadletters":
            sys.argv = ["ct deadletters", *rest]
            deadletters_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
