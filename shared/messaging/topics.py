"""Every Kafka topic the platform uses, declared once: partitions, retention, and retry/dead-letter companions.

Each registered agency has topics of its own (`agency.<code>.referrals.in`, `.concerns.in`, `.outcomes.out`): an ACL
names a topic, never a field, so only a topic per agency lets an agency read just its own outcomes, and lets a consumer
know from the topic which agency wrote a record.

`python -m shared.messaging.topics create` creates what is missing (idempotent); the set-up runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.agencies import AGENCIES

DAY_MS = 24 * 60 * 60 * 1000
AGENCY = "{agency}"


def referrals_in(agency: str) -> str:
    """Where an agency's system publishes referrals, consent changes, withdrawals and answers."""
    return f"agency.{agency}.referrals.in"


def concerns_in(agency: str) -> str:
    """Where an agency's system publishes concerns."""
    return f"agency.{agency}.concerns.in"


def outcomes_out(agency: str) -> str:
    """Where an agency's system reads what became of its referrals and concerns, rejections included."""
    return f"agency.{agency}.outcomes.out"


def agency_of(topic: str) -> str:
    """The agency whose topic this is (`agency.<code>.…`), or "" for a platform topic."""
    parts = topic.split(".")
    return parts[1] if len(parts) >= 4 and parts[0] == "agency" else ""


def retry_topic(topic: str) -> str:
    return f"{topic}.retry"


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    purpose: str
    partitions: int = 6
    retention_ms: int = 30 * DAY_MS
    # Consumed topics get `.retry` and `.dlq` companions.
    consumed: bool = True

    @property
    def per_agency(self) -> bool:
        """One such topic per registered agency: `name` holds an `{agency}` placeholder."""
        return AGENCY in self.name

    def names(self, agencies: Iterable[str] = AGENCIES) -> list[str]:
        """The topic's real names: one per agency for a per-agency topic."""
        return sorted(self.name.format(agency=a) for a in agencies) if self.per_agency else [self.name]


# Public streams: each service's domain events. Ingress/egress: where outside systems write and read.
TOPICS: tuple[Topic, ...] = (
    Topic("referral.events", "Referral service domain events"),
    Topic("panel.events", "Panel service domain events"),
    Topic("assignment.events", "Assignment service domain events"),
    Topic("plans.events", "Plans service domain events"),
    Topic("hub.events", "Hub service domain events"),
    Topic(referrals_in(AGENCY), "Agency systems publish referrals and consent changes", partitions=3),
    Topic(concerns_in(AGENCY), "Agency systems publish concerns", partitions=3),
    Topic(outcomes_out(AGENCY), "Outcomes and rejections back to referring agencies", partitions=3, consumed=False),
    Topic("contactcentre.escalations.out", "Critical concerns to the national contact centre", consumed=False),
    Topic("police.escalations.out", "Concerns where a life is in danger, to Police", consumed=False),
    Topic("contactcentre.acks.in", "Acknowledgements from the national contact centre"),
    # Concerns carry what the hub needs to act (who, where, what was seen): a stream of their own, read by the hub only.
    Topic("concerns.raised", "Concerns other services raise for the Children's Hub to screen"),
    # The backbone's own tests and benchmarks exercise the real broker through this stream.
    Topic("backbone.probe", "Backbone self-test and benchmark events", partitions=3, retention_ms=DAY_MS),
)


def all_topics(replication: int = 1) -> list[NewTopic]:
    """Every topic with its companions (each agency's included), as Kafka admin requests."""
    topics = []
    for topic in TOPICS:
        config = {"retention.ms": str(topic.retention_ms), "min.insync.replicas": str(min(2, replication))}
        # Dead letters wait for an operator: keep them a year.
        dead = config | {"retention.ms": str(365 * DAY_MS)}
        for name in topic.names():
            topics.append(NewTopic(name, topic.partitions, replication, topic_configs=config))
            if topic.consumed:
                topics.append(NewTopic(retry_topic(name), topic.partitions, replication, topic_configs=config))
                topics.append(NewTopic(dlq_topic(name), topic.partitions, replication, topic_configs=dead))
    return topics


async def create_topics(bootstrap: str, replication: int = 1) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in all_topics(replication) if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another set-up created them meanwhile
                await admin.create_topics(missing)
        return [t.name for t in missing]
    finally:
        await admin.close()


def main() -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:29092")
    created = asyncio.run(create_topics(bootstrap, int(os.environ.get("KAFKA_REPLICATION", "1"))))
    print(f"topics: {len(created)} created" if created else "topics: all present")


if __name__ == "__main__":
    main()
