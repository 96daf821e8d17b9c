"""Production Kafka definitions: topic settings and ACLs, derived from `shared.messaging.topics`.

    python -m deploy.production.render topics        > deploy/production/topics.yaml
    python -m deploy.production.render acls          > deploy/production/acls.yaml
    python -m deploy.production.render commands [--agency health-nz ...] [--bootstrap HOST:PORT]

The first two re-render the committed YAML (with an `{agency}` placeholder); `commands` prints the kafka-topics.sh and
kafka-acls.sh lines for every registered agency (shared/agencies.py), or for those named (the agency the platform itself
writes as, `childrens-hub`, always included). Not yet applied to a production cluster; the grants are applied to the
local broker and tried by tests/integration/test_kafka_acls.py.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from shared.agencies import AGENCIES
from shared.messaging.topics import AGENCY, DAY_MS, TOPICS, Topic, agency_of, dlq_topic, retry_topic

SERVICES = ("referral", "panel", "assignment", "plans", "hub", "reporting")
REPLICATION_FACTOR = 3
TOPIC_DEFAULTS = {
    "min.insync.replicas": "2",
    "unclean.leader.election.enable": "false",
    "cleanup.policy": "delete",
}
AGENCY_CODE = re.compile(r"^[a-z0-9][a-z0-9-]{1,40}$")

# Each agency's ingress and outcomes topics are created when it is connected (`Topic.per_agency`): an ACL names a topic,
# never a key or a field, so only a topic per agency lets it read just its outcomes, and only a topic per agency tells
# the consumer who wrote a record (a shared ingress topic would let one agency send referrals, or withdraw consent, in
# another's name).
DEV_ONLY = {"backbone.probe": "tests and benchmarks of the backbone; no production principal may use it"}


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    purpose: str
    partitions: int
    config: dict[str, str]


def _specs(topic: Topic, name: str, partitions: int) -> list[TopicSpec]:
    config = TOPIC_DEFAULTS | {"retention.ms": str(topic.retention_ms)}
    specs = [TopicSpec(name, topic.purpose, partitions, config)]
    if topic.consumed:
        specs.append(TopicSpec(retry_topic(name), f"retries of {name}", partitions, config))
        dead = config | {"retention.ms": str(365 * DAY_MS)}
        specs.append(TopicSpec(dlq_topic(name), f"dead letters of {name}, kept a year", partitions, dead))
    return specs


def platform_topics() -> list[TopicSpec]:
    """Topics created once per cluster."""
    return [
        spec
        for topic in TOPICS
        if not topic.per_agency and topic.name not in DEV_ONLY
        for spec in _specs(topic, topic.name, topic.partitions)
    ]


def agency_topics(agency: str = AGENCY) -> list[TopicSpec]:
    """Topics created for each agency that is connected."""
    return [
        spec
        for topic in TOPICS
        if topic.per_agency
        for spec in _specs(topic, topic.name.format(agency=agency), topic.partitions)
    ]


def template_of(topic: str) -> str:
    """The per-agency template a registered agency's topic is made from (`agency.health-nz.referrals.in` ->
    `agency.{agency}.referrals.in`); any other name as it is."""
    agency = agency_of(topic)
    return topic.replace(f"agency.{agency}.", f"agency.{AGENCY}.", 1) if agency in AGENCIES else topic


# Who hears what (ARCHITECTURE.md, "Services"): the public streams and ingress topics each service consumes.
# Re-check against each service's subscriptions when they change: a missing grant fails loudly, an extra one quietly.
# What each service consumes and publishes; tests/unit/test_k8s_manifests.py checks the reads against each service's
# real subscriptions.
SERVICE_READS: dict[str, tuple[str, ...]] = {
    # outcomes to the referrer follow panel decisions, lead assignment and case closure
    "referral": ("agency.{agency}.referrals.in", "panel.events", "assignment.events", "plans.events"),
    "panel": ("referral.events", "plans.events"),
    "assignment": ("referral.events", "panel.events", "plans.events"),
    # consent changes, panel reviews, lead assigned, concerns linked to an open case; its own stream for the timeline
    "plans": ("referral.events", "panel.events", "assignment.events", "hub.events", "plans.events"),
    "hub": ("agency.{agency}.concerns.in", "contactcentre.acks.in", "concerns.raised"),
    # every public stream, into its read model (services/reporting/handlers.py, HEARS). Its rebuild reads the same
    # topics without a consumer group, so it needs nothing more.
    "reporting": ("referral.events", "panel.events", "assignment.events", "plans.events", "hub.events"),
}
SERVICE_WRITES: dict[str, tuple[str, ...]] = {
    # and concerns of immediate danger to the hub
    "referral": ("referral.events", "agency.{agency}.outcomes.out", "concerns.raised"),
    # and a decline with serious risk to the hub
    "panel": ("panel.events", "concerns.raised"),
    "assignment": ("assignment.events",),
    "plans": ("plans.events",),
    # and rejections of concerns that fail validation, back to the sending agency; and a concern it turns into a
    # referral, as agency `childrens-hub` on that agency's ingress topic (services/hub/api.py, REFERRALS_IN)
    "hub": (
        "hub.events",
        "contactcentre.escalations.out",
        "police.escalations.out",
        "agency.{agency}.outcomes.out",
        "agency.childrens-hub.referrals.in",
    ),
    # nothing: a read model has no public stream (its consumer still writes the retry and dead-letter topics of what
    # it reads, granted with its reads below)
    "reporting": (),
}


@dataclass(frozen=True, slots=True)
class Grant:
    principal: str
    operations: tuple[str, ...]
    resource: str  # topic | group
    name: str
    pattern: str = "literal"  # literal | prefixed
    why: str = ""


def _expand(names: Iterable[str], agencies: Iterable[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        if AGENCY in name:
            out.extend(name.format(agency=a) for a in agencies)
        else:
            out.append(name)
    return out


def platform_agencies() -> set[str]:
    """Agencies a service writes as (one of their topics named in SERVICE_WRITES): their topics always exist."""
    return {agency_of(t) for ts in SERVICE_WRITES.values() for t in ts if agency_of(t) in AGENCIES}


def check() -> None:
    """Every grant names a declared topic; every declared topic has a writer, and a reader if it is consumed.

    A registered agency's own topic (`agency.childrens-hub.referrals.in`) counts as its per-agency template.
    """
    declared = {s.name: s for s in platform_topics() + agency_topics()}
    consumed = {t.name for t in TOPICS if t.consumed}
    reads = {template_of(t) for ts in SERVICE_READS.values() for t in ts}
    writes = {template_of(t) for ts in SERVICE_WRITES.values() for t in ts}
    outside_writes = {"agency.{agency}.referrals.in", "agency.{agency}.concerns.in", "contactcentre.acks.in"}
    mains = {t.name for t in TOPICS if t.name not in DEV_ONLY}
    problems = {
        "read but not a consumed topic": reads - consumed,
        "written but not declared": writes - declared.keys(),
        "declared but nobody writes it": mains - writes - outside_writes,
        "consumed but nobody reads it": consumed - set(DEV_ONLY) - reads,
    }
    if any(problems.values()):
        raise SystemExit("; ".join(f"{what}: {sorted(names)}" for what, names in problems.items() if names))


def acls(agencies: Iterable[str] = (AGENCY,)) -> list[Grant]:
    agencies = list(agencies)
    grants: list[Grant] = []
    for service in SERVICES:
        who = f"User:svc.{service}"
        for topic in _expand(SERVICE_WRITES[service], agencies):
            grants.append(Grant(who, ("WRITE", "DESCRIBE"), "topic", topic, why="publishes (outbox relay)"))
        for topic in _expand(SERVICE_READS[service], agencies):
            grants.append(Grant(who, ("READ", "DESCRIBE"), "topic", topic, why="consumes"))
            grants.append(
                Grant(
                    who,
                    ("READ", "WRITE", "DESCRIBE"),
                    "topic",
                    retry_topic(topic),
                    why="retries (one per origin, shared by its consumers)",
                )
            )
            grants.append(Grant(who, ("WRITE", "DESCRIBE"), "topic", dlq_topic(topic), why="gives up on a message"))
        grants.append(
            Grant(who, ("READ",), "group", f"{service}.", "prefixed", why="consumer groups <service>.<consumer>")
        )
    for agency in agencies:
        if agency in platform_agencies():
            continue  # written by a service under its own principal: no outside system connects as this agency
        who = f"User:agency.{agency}"
        for kind in ("referrals", "concerns"):
            grants.append(Grant(who, ("WRITE", "DESCRIBE"), "topic", f"agency.{agency}.{kind}.in", why="its ingress"))
        grants.append(Grant(who, ("READ", "DESCRIBE"), "topic", f"agency.{agency}.outcomes.out", why="its outcomes"))
        grants.append(Grant(who, ("READ",), "group", f"agency.{agency}.", "prefixed", why="its consumer groups"))
    contact = "User:ext.contactcentre"
    grants += [
        Grant(contact, ("READ", "DESCRIBE"), "topic", "contactcentre.escalations.out", why="critical concerns"),
        Grant(contact, ("WRITE", "DESCRIBE"), "topic", "contactcentre.acks.in", why="acknowledgements"),
        Grant(contact, ("READ",), "group", "contactcentre.", "prefixed", why="its consumer groups"),
        Grant("User:ext.police", ("READ", "DESCRIBE"), "topic", "police.escalations.out", why="life in danger"),
        Grant("User:ext.police", ("READ",), "group", "police.", "prefixed", why="its consumer groups"),
    ]
    # Operators list dead letters and replay them into the origin's retry topic (shared.messaging.deadletters, which
    # reads without a consumer group, so no group grant).
    ops = "User:ops.deadletters"
    for spec in platform_topics() + [s for a in agencies for s in agency_topics(a)]:
        if spec.name.endswith(".dlq"):
            grants.append(Grant(ops, ("READ", "DESCRIBE"), "topic", spec.name, why="list dead letters"))
            origin = spec.name.removesuffix(".dlq")
            grants.append(Grant(ops, ("WRITE", "DESCRIBE"), "topic", retry_topic(origin), why="replay"))
    return grants


# Rendering ----------------------------------------------------------------------------------------------------------

HEADER = "# Rendered by `python -m deploy.production.render {what}` from shared/messaging/topics.py and\n"
HEADER += "# deploy/production/render.py; edit those, not this file. Not yet applied to a production cluster.\n"


def _topic_yaml(spec: TopicSpec) -> str:
    config = "".join(f'\n      {k}: "{v}"' for k, v in spec.config.items() if k not in TOPIC_DEFAULTS)
    head = f'  - name: {spec.name}\n    purpose: "{spec.purpose}"\n    partitions: {spec.partitions}\n'
    return f"{head}    config:{config}\n"


def render_topics() -> str:
    out = [HEADER.format(what="topics"), f"replication_factor: {REPLICATION_FACTOR}\n", "defaults:\n"]
    out += [f'  {k}: "{v}"\n' for k, v in TOPIC_DEFAULTS.items()]
    out.append("\n# Once per cluster.\ntopics:\n")
    out += [_topic_yaml(s) for s in platform_topics()]
    out.append("\n# Once per connected agency ({agency} is its code, e.g. health-nz).\nper_agency_topics:\n")
    out += [_topic_yaml(s) for s in agency_topics()]
    out.append(
        "\n# In shared/messaging/topics.py for the local stack, not created in production.\nnot_in_production:\n"
    )
    out += [f'  {name}: "{why}"\n' for name, why in DEV_ONLY.items()]
    return "".join(out)


def render_acls() -> str:
    out = [HEADER.format(what="acls"), "# ALLOW rules only; the authorizer denies everything else.\n", "acls:\n"]
    principal = ""
    for g in acls():
        if g.principal != principal:
            principal = g.principal
            out.append(f'  - principal: "{principal}"\n    allow:\n')
        ops = ", ".join(g.operations)
        out.append(f'      - {{{g.resource}: "{g.name}", pattern: {g.pattern}, operations: [{ops}]}}  # {g.why}\n')
    return "".join(out)


def render_commands(agencies: list[str], bootstrap: str, command_config: str) -> str:
    conn = f"--bootstrap-server {shlex.quote(bootstrap)} --command-config {shlex.quote(command_config)}"
    lines = ["#!/bin/sh", "set -eu"]
    for spec in platform_topics() + [s for a in agencies for s in agency_topics(a)]:
        configs = " ".join(f"--config {k}={v}" for k, v in spec.config.items())
        lines.append(
            f"kafka-topics.sh {conn} --create --if-not-exists --topic {spec.name} "
            f"--partitions {spec.partitions} --replication-factor {REPLICATION_FACTOR} {configs}"
        )
    for g in acls(agencies):
        ops = " ".join(f"--operation {op.capitalize()}" for op in g.operations)
        lines.append(
            f"kafka-acls.sh {conn} --add --allow-principal {shlex.quote(g.principal)} {ops} "
            f"--{g.resource} {shlex.quote(g.name)} --resource-pattern-type {g.pattern}"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.production.render", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("topics", "acls", "commands"))
    parser.add_argument(
        "--agency", action="append", default=[], help="agency code (commands; repeat; default: all registered)"
    )
    parser.add_argument("--bootstrap", default="kafka:9093")
    parser.add_argument("--command-config", default="admin.properties", help="SASL_SSL client properties")
    args = parser.parse_args()
    check()
    if args.what == "topics":
        print(render_topics(), end="")
    elif args.what == "acls":
        print(render_acls(), end="")
    else:
        bad = [a for a in args.agency if not AGENCY_CODE.match(a) or a not in AGENCIES]
        if bad:
            parser.error(f"not an agency registered in shared/agencies.py (register it there first): {bad}")
        # The hub writes referrals as `childrens-hub`: without its topics, and the grants to read them, they go nowhere.
        agencies = sorted(set(args.agency) | platform_agencies()) if args.agency else sorted(AGENCIES)
        if missing := sorted(AGENCIES - set(agencies)):
            # The services subscribe to every registered agency's topics (shared/agencies.py).
            print(f"warning: registered agencies not given: {', '.join(missing)}", file=sys.stderr)
        print(render_commands(agencies, args.bootstrap, args.command_config), end="")


if __name__ == "__main__":
    main()
