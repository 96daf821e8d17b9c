"""The platform's AsyncAPI 3.0.0 document, generated from code: the events registry and the declared topics.

    python -m shared.events.asyncapi            write docs/asyncapi.json
    python -m shared.events.asyncapi --check    exit 1 if docs/asyncapi.json differs from what the code generates,
                                                or if an event type has no channel

Channels are the topics of `shared/messaging/topics.py`; messages are the registered event types (payload = the
model's JSON schema, headers = the CloudEvents binary-mode headers). Which channel carries a type comes from
`CHANNELS_BY_TYPE_PREFIX` below: place a new event type there. A per-agency topic is one channel whose address holds
the `{agency}` parameter (every registered agency code), not one channel per agency.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import pkgutil
import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import shared.events
from shared.agencies import AGENCIES, agency_source
from shared.events import Event, registered_types
from shared.messaging.consumer import (
    H_ATTEMPTS,
    H_CONSUMER,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_FAILED_AT,
    H_NOT_BEFORE,
    H_ORIGIN_OFFSET,
    H_ORIGIN_PARTITION,
    H_ORIGIN_TOPIC,
)
from shared.messaging.envelope import (
    CONTENT_TYPE,
    H_CAUSATION,
    H_CONTENT_TYPE,
    H_CORRELATION,
    H_ID,
    H_SOURCE,
    H_SPECVERSION,
    H_SUBJECT,
    H_TIME,
    H_TYPE,
    SPEC_VERSION,
)
from shared.messaging.topics import (
    AGENCY,
    TOPICS,
    Topic,
    concerns_in,
    dlq_topic,
    outcomes_out,
    referrals_in,
    retry_topic,
)

# Where each event type is published, by the start of its `ce_type`. The longest matching prefix decides; `{area}`
# stands for the type's first segment after `nz.childrensteams.` and applies only when that topic exists. A value is
# either a topic, or (word, topic) pairs: the first word found in the rest of the type picks the topic.
# A type that matches nothing is listed as unplaced, and `--check` fails until it is placed here.
CHANNELS_BY_TYPE_PREFIX: Final[Mapping[str, str | tuple[tuple[str, str], ...]]] = {
    "nz.childrensteams.{area}.": "{area}.events",
    "nz.childrensteams.agency.": (
        ("referral", referrals_in(AGENCY)),
        ("consent", referrals_in(AGENCY)),
        ("information", referrals_in(AGENCY)),
        ("concern", concerns_in(AGENCY)),
    ),
    "nz.childrensteams.referral.outcome.": outcomes_out(AGENCY),
    "nz.childrensteams.backbone.": "backbone.probe",
    # Concerns a service raises for the hub (referral on an immediate-danger referral, panel on a risky decline).
    "nz.childrensteams.concern.": "concerns.raised",
    # The hub: escalations out to the national contact centre and Police, acknowledgements in, outcomes to agencies.
    "nz.childrensteams.escalation.": (
        ("contact_centre", "contactcentre.escalations.out"),
        ("police", "police.escalations.out"),
    ),
    "nz.childrensteams.contactcentre.": "contactcentre.acks.in",
    "nz.childrensteams.hub.concern_outcome.": outcomes_out(AGENCY),
}

ROOT: Final = Path(__file__).resolve().parents[2]
DOCUMENT: Final = ROOT / "docs" / "asyncapi.json"

ASYNCAPI_VERSION: Final = "3.0.0"
TITLE: Final = "Children's Teams platform events"
KAFKA_BINDING_VERSION: Final = "0.5.0"
SCHEMAS_REF: Final = "#/components/schemas/"
TRACEPARENT: Final = "traceparent"
_AREA: Final = "{area}"
# The channel parameter of a per-agency topic, and the stand-in for it in channel ids: a `$ref` names a channel by id,
# and braces are not allowed in a URI fragment, so the id spells the parameter out instead.
AGENCY_PARAMETER: Final = AGENCY.strip("{}")
AGENCY_IN_ID: Final = "AGENCY"
# Every message on a per-agency topic names the agency in its body; the parameter's value is found there.
AGENCY_LOCATION: Final = "$message.payload#/agency"

JSON = dict[str, Any]


# --- placing event types on channels ---------------------------------------------------------------------------


def channel_for(ce_type: str, topics: Sequence[Topic] = TOPICS) -> str | None:
    """The topic that carries `ce_type`, or None when no rule in CHANNELS_BY_TYPE_PREFIX places it."""
    names = {t.name for t in topics}
    candidates: list[tuple[int, str, str | tuple[tuple[str, str], ...]]] = []
    for prefix, rule in CHANNELS_BY_TYPE_PREFIX.items():
        if _AREA in prefix:
            head, _, tail = prefix.partition(_AREA)
            if not ce_type.startswith(head):
                continue
            area = ce_type[len(head) :].partition(".")[0]
            concrete = head + area + tail
            if not ce_type.startswith(concrete):
                continue
            # A template counts only its literal head, so a literal prefix for the same area always wins.
            candidates.append((len(head), concrete, _fill(rule, area)))
        elif ce_type.startswith(prefix):
            candidates.append((len(prefix), prefix, rule))
    if not candidates:
        return None
    _, prefix, rule = max(candidates, key=lambda c: c[0])
    if isinstance(rule, str):
        return rule if rule in names else None
    rest = ce_type[len(prefix) :]
    for word, topic in rule:
        if word in rest:
            return topic if topic in names else None
    return None


def _fill(rule: str | tuple[tuple[str, str], ...], area: str) -> str | tuple[tuple[str, str], ...]:
    if isinstance(rule, str):
        return rule.replace(_AREA, area)
    return tuple((word, topic.replace(_AREA, area)) for word, topic in rule)


def mapped_topics() -> set[str]:
    """Every concrete topic CHANNELS_BY_TYPE_PREFIX names (templates left out), for checking against topics.py."""
    named: set[str] = set()
    for rule in CHANNELS_BY_TYPE_PREFIX.values():
        pairs = [("", rule)] if isinstance(rule, str) else list(rule)
        named |= {topic for _, topic in pairs if _AREA not in topic}
    return named


def is_ingress(topic: Topic) -> bool:
    """Outside systems write ingress topics (`*.in`); the platform receives from them."""
    return topic.name.endswith(".in")


def channel_id(topic: Topic) -> str:
    """The channel's key in the document: the topic's name, with `AGENCY` standing for a per-agency topic's `{agency}`
    (ids keep to the characters of component keys, `^[a-zA-Z0-9.-_]+$`)."""
    return topic.name.replace(AGENCY, AGENCY_IN_ID)


# --- schemas -----------------------------------------------------------------------------------------------------


def load_catalogue() -> dict[str, type[Event]]:
    """Import every module of shared.events (a module registers its types when imported), then the registry."""
    for module in pkgutil.iter_modules(shared.events.__path__):
        if module.name not in {"asyncapi", "catalogue"}:
            importlib.import_module(f"{shared.events.__name__}.{module.name}")
    return registered_types()


def payload_schema(model: type[Event], schemas: dict[str, JSON]) -> JSON:
    """The model's JSON schema with its `$defs` hoisted into `schemas` (components/schemas) and refs pointing there."""
    schema = model.model_json_schema(ref_template=SCHEMAS_REF + "{model}")
    for name, definition in schema.pop("$defs", {}).items():
        existing = schemas.get(name)
        if existing is not None and existing != definition:
            raise ValueError(
                f"two different schemas are named {name!r} (one used by {model.ce_type}); "
                "rename one of the pydantic models so the AsyncAPI components stay unambiguous"
            )
        schemas[name] = definition
    return schema


def headers_schema(ce_type: str) -> JSON:
    """The CloudEvents 1.0 binary-mode Kafka headers of a message of type `ce_type`."""
    string: JSON = {"type": "string"}
    properties: JSON = {
        H_SPECVERSION: string | {"const": SPEC_VERSION, "description": "CloudEvents spec version."},
        H_ID: string
        | {
            "format": "uuid",
            "description": "Unique per event: the deduplication key. A resent duplicate keeps its ce_id; "
            "a new or corrected event gets a new one.",
        },
        H_SOURCE: string
        | {
            "format": "uri-reference",
            "description": "Who produced the event: `/agencies/<agency code>` for an agency's system (on an "
            "agency's topic, that agency's code), `/services/<name>` for the platform's services.",
        },
        H_TYPE: string | {"const": ce_type, "description": "The event type; names the body's schema and version."},
        H_TIME: string | {"format": "date-time", "description": "When the event happened (RFC 3339)."},
        H_SUBJECT: string
        | {
            "minLength": 1,
            "description": "The child id; before a child id exists, the agency's referral id. Same as the Kafka key.",
        },
        H_CORRELATION: string
        | {
            "minLength": 1,
            "description": "The child's journey: copied from the event that caused this one; "
            "the first event of a journey uses its own ce_id.",
        },
        H_CAUSATION: string | {"description": "The ce_id of the event that caused this one; absent on a first event."},
        H_CONTENT_TYPE: string | {"const": CONTENT_TYPE, "description": "The body is JSON (UTF-8)."},
        TRACEPARENT: string
        | {
            "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
            "description": "W3C Trace Context; optional, continues the sender's trace.",
        },
    }
    optional = {H_CAUSATION, TRACEPARENT}
    return {
        "type": "object",
        "description": "CloudEvents 1.0 attributes in Kafka binary mode: one UTF-8 header each.",
        "properties": properties,
        "required": sorted(name for name in properties if name not in optional),
    }


def key_schema() -> JSON:
    return {
        "type": "string",
        "minLength": 1,
        "description": "The child id, or the agency's referral id before a child id exists (UTF-8; equals ce_subject). "
        "One child's events stay in order within a topic.",
    }


def message(ce_type: str, model: type[Event], schemas: dict[str, JSON]) -> JSON:
    doc = (model.__doc__ or "").strip()
    result: JSON = {
        "name": ce_type,
        "title": model.__name__,
        "contentType": CONTENT_TYPE,
        "headers": headers_schema(ce_type),
        "payload": payload_schema(model, schemas),
        "correlationId": {
            "description": "The child's journey across events and services.",
            "location": f"$message.header#/{H_CORRELATION}",
        },
        "bindings": {"kafka": {"key": key_schema(), "bindingVersion": KAFKA_BINDING_VERSION}},
    }
    if doc:
        result["summary"] = doc.splitlines()[0]
        result["description"] = doc
    return result


# --- the document ------------------------------------------------------------------------------------------------


def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as file:
        version = tomllib.load(file)["project"]["version"]
    assert isinstance(version, str)
    return version


def unplaced_types(types: Mapping[str, type[Event]], topics: Sequence[Topic] = TOPICS) -> list[str]:
    return sorted(t for t in types if channel_for(t, topics) is None)


def build_document(types: Mapping[str, type[Event]] | None = None, topics: Sequence[Topic] = TOPICS) -> JSON:
    """The AsyncAPI document for `types` (default: the whole catalogue) on `topics`."""
    types = load_catalogue() if types is None else types
    schemas: dict[str, JSON] = {}
    messages = {name: message(name, types[name], schemas) for name in sorted(types)}

    channels: JSON = {}
    operations: JSON = {}
    for topic in topics:
        carried = sorted(name for name in types if channel_for(name, topics) == topic.name)
        key = channel_id(topic)
        kafka: JSON = {
            "partitions": topic.partitions,
            "topicConfiguration": {"retention.ms": topic.retention_ms},
            "bindingVersion": KAFKA_BINDING_VERSION,
        }
        channel: JSON = {
            "address": topic.name,
            "description": topic.purpose + "." + (" " + _per_agency(topic) if topic.per_agency else ""),
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in carried},
            "bindings": {"kafka": kafka},
        }
        if topic.per_agency:
            channel["parameters"] = {AGENCY_PARAMETER: agency_parameter()}
        else:
            # A per-agency channel's address is a template, not a topic: only a single topic names itself here.
            kafka["topic"] = topic.name
        channels[key] = channel
        action = "receive" if is_ingress(topic) else "send"
        operations[f"{action}_{key.replace('.', '_')}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{key}"},
            "summary": (
                f"Outside systems publish on {topic.name}; the platform receives."
                if action == "receive"
                else f"The platform publishes on {topic.name}."
            ),
            "messages": [{"$ref": f"#/channels/{key}/messages/{name}"} for name in carried],
        }

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": TITLE,
            "version": project_version(),
            "description": _description(topics, unplaced_types(types, topics)),
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def agency_parameter() -> JSON:
    return {
        "description": "The agency's code: each registered agency has a topic of its own. An ACL names a topic, so "
        "an agency may write only its own ingress topics and read only its own outcomes.",
        "enum": sorted(AGENCIES),
        "location": AGENCY_LOCATION,
    }


def _per_agency(topic: Topic) -> str:
    example = topic.name.format(agency="health-nz")
    if is_ingress(topic):
        return (
            f"One topic per agency (`{example}` for `health-nz`), written only by that agency's system: the topic "
            f"says who sent a message, so its `{H_SOURCE}` must be `{agency_source('<agency>')}` and its body's "
            f"`agency` that agency, or it is rejected."
        )
    return f"One topic per agency (`{example}` for `health-nz`), read only by that agency's system."


def _description(topics: Sequence[Topic], unplaced: Sequence[str]) -> str:
    consumed = [t.name for t in topics if t.consumed]
    ingress = [t.name for t in topics if is_ingress(t)]
    lines = [
        "Domain events of the Children's Teams platform on Kafka. Generated from code (`python -m "
        "shared.events.asyncapi`): the event registry in `shared/events/` and the topics in "
        "`shared/messaging/topics.py`. Operations are from the platform's side: it **receives** on ingress topics "
        f"({', '.join(f'`{n}`' for n in ingress)}) and **sends** on all others.",
        "",
        "## Envelope",
        "CloudEvents 1.0 in Kafka binary mode: the attributes are Kafka headers (UTF-8 strings), the body is the "
        "event as JSON (`content-type: application/json`). Each message's `headers` schema lists them: "
        f"`{H_SPECVERSION}` (`{SPEC_VERSION}`), `{H_ID}` (UUID, the deduplication key), `{H_SOURCE}` "
        f"(`/agencies/<agency code>` or `/services/<name>`), `{H_TYPE}` (`nz.childrensteams.<area>.<event>.vN`, "
        f"names the body's schema), `{H_TIME}`, `{H_SUBJECT}` (the child id), `{H_CORRELATION}` (the child's "
        f"journey), `{H_CAUSATION}` (the `{H_ID}` of the event that caused this one, optional), `{H_CONTENT_TYPE}`, "
        f"and optionally W3C `{TRACEPARENT}`. A message carrying the same `{H_ID}` again is a duplicate and has no "
        "second effect.",
        "",
        "## Keys",
        f"The Kafka key is the child id (the same as `{H_SUBJECT}`), so one child's events stay in order within a "
        "topic. Before a child id exists, the key is the agency's referral id.",
        "",
        "## Versioning",
        "Additive changes (a new optional field) keep the type. A breaking change gets a new type ending in the next "
        "`.vN`, and both versions are published for a while. Readers should ignore fields they do not know; on "
        "ingress the platform refuses fields that are not in the schema (`additionalProperties: false`).",
        "",
        "## Agencies",
        f"Each registered agency has topics of its own: it publishes on `{referrals_in('<agency>')}` and "
        f"`{concerns_in('<agency>')}` and reads `{outcomes_out('<agency>')}`, where `<agency>` is its code. Each is "
        f"one channel here, its address holding the `{AGENCY}` parameter (whose `enum` lists the codes); its id "
        f"spells the parameter `{AGENCY_IN_ID}`. An agency may write only its own ingress topics and read only its "
        "own outcomes topic, so the topic a message arrives on says which agency sent it: its "
        f"`{H_SOURCE}` must be `{agency_source('<agency>')}` and the `agency` in its body must be that agency. The "
        f"Children's Hub sends the concerns it turns into referrals on `{referrals_in('childrens-hub')}`, as agency "
        "`childrens-hub`.",
        "",
        "## Rejections",
        "A message on an agency's ingress topic that the platform cannot accept (missing or wrong CloudEvents "
        "headers, an unknown type or one not accepted on that topic, a body that does not match its schema, one sent "
        "in another agency's name, or input the receiving service finds invalid by rules a schema cannot express) is "
        "never retried: the sending agency, the one whose topic carried it, gets a rejection on its "
        f"`{outcomes_out('<agency>')}` (see that channel's messages), and a copy of the message goes to the "
        "topic's dead-letter companion for the platform's operators. A rejection names fields and problems, never "
        "the values that were sent. Fix the input and send it again as a new event (a new `ce_id`).",
        "",
        "## Retry and dead-letter topics",
        "Every topic the platform consumes has two companions, `<topic>.retry` and `<topic>.dlq` (one pair for each "
        "agency's topic), used only by the platform: "
        + ", ".join(f"`{retry_topic(n)}`/`{dlq_topic(n)}`" for n in consumed)
        + ". A failed message goes to the retry topic with growing back-off and, after the last attempt (or at once "
        "when retrying cannot help), to the dead-letter topic. The original headers and body travel unchanged, "
        "plus:",
        "",
        f"- `{H_CONSUMER}`: the consumer group that failed",
        f"- `{H_ATTEMPTS}`: attempts made so far",
        f"- `{H_NOT_BEFORE}`: on a retry, epoch milliseconds before which it is not tried again",
        f"- `{H_ORIGIN_TOPIC}`, `{H_ORIGIN_PARTITION}`, `{H_ORIGIN_OFFSET}`: where the message first arrived",
        f"- `{H_ERROR_TYPE}`, `{H_ERROR_MESSAGE}`: why it failed (field names and problems, no values)",
        f"- `{H_FAILED_AT}`: when, in epoch milliseconds",
    ]
    if unplaced:
        lines += [
            "",
            "## Unplaced",
            "These event types have no channel yet (add a rule to `CHANNELS_BY_TYPE_PREFIX` in "
            "`shared/events/asyncapi.py`): " + ", ".join(f"`{t}`" for t in unplaced) + ".",
        ]
    return "\n".join(lines)


def render(document: JSON) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def refs(node: Any) -> Iterator[str]:
    """Every `$ref` value in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(document: JSON, ref: str) -> Any:
    """The target of a local `$ref` (`#/a/b`); KeyError when it does not exist."""
    if not ref.startswith("#/"):
        raise KeyError(f"not a local reference: {ref}")
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise KeyError(ref)
        node = node[part]
    return node


# --- command line ------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.events.asyncapi", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--check", action="store_true", help="fail if the file differs from the generated document")
    parser.add_argument("--file", type=Path, default=DOCUMENT, help=f"the document (default: {DOCUMENT})")
    args = parser.parse_args(argv)
    path: Path = args.file

    types = load_catalogue()
    expected = render(build_document(types))
    unplaced = unplaced_types(types)
    placement = (
        f"event types with no channel: {', '.join(unplaced)}; "
        "add a rule for them to CHANNELS_BY_TYPE_PREFIX in shared/events/asyncapi.py"
    )

    if not args.check:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(expected, encoding="utf-8")
        print(f"wrote {path} ({len(types)} event types, {len(TOPICS)} channels)")
        if unplaced:
            print(f"warning: {placement}", file=sys.stderr)
        return 0

    failed = False
    actual = path.read_text(encoding="utf-8") if path.exists() else ""
    if actual != expected:
        failed = True
        diff = list(
            difflib.unified_diff(actual.splitlines(), expected.splitlines(), str(path), "generated", lineterm="")
        )
        shown = "\n".join(diff[:60]) + ("\n…" if len(diff) > 60 else "")
        print(
            f"{path} is out of date with the code (event registry / topics).\n"
            f"Regenerate it with `python -m shared.events.asyncapi` and commit the result.\n{shown}",
            file=sys.stderr,
        )
    if unplaced:
        failed = True
        print(placement, file=sys.stderr)
    if not failed:
        print(f"{path} is up to date")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
