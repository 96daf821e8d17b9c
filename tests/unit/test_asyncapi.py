"""The AsyncAPI contract (docs/asyncapi.json) is generated from code and never drifts from it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from shared.agencies import AGENCIES
from shared.events import Event
from shared.events import asyncapi as spec
from shared.messaging.topics import TOPICS, concerns_in, outcomes_out, referrals_in

ROOT = Path(__file__).resolve().parents[2]
COMPONENT_KEY = re.compile(r"^[a-zA-Z0-9.\-_]+$")
ADDRESS_EXPRESSION = re.compile(r"{([^}]*)}")
ACTIONS = {"send", "receive"}
BY_ADDRESS = {t.name: spec.channel_id(t) for t in TOPICS}


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(spec.DOCUMENT.read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="module")
def generated() -> dict[str, Any]:
    return spec.build_document()


def test_the_committed_document_is_what_the_code_generates() -> None:
    # A fresh process: only the catalogue's own modules are registered, never a test's.
    result = subprocess.run(
        [sys.executable, "-m", "shared.events.asyncapi", "--check"],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_document_is_rendered_deterministically(generated: dict[str, Any]) -> None:
    text = spec.render(generated)
    assert text == spec.render(spec.build_document())
    assert text.endswith("}\n")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_every_registered_type_is_a_message(committed: dict[str, Any], generated: dict[str, Any]) -> None:
    types = spec.load_catalogue()
    assert types, "the catalogue registered no event types"
    for document in (committed, generated):
        messages = document["components"]["messages"]
        for name, model in types.items():
            assert name in messages, f"{name} is not in the document; regenerate it"
            assert messages[name]["name"] == name
            assert messages[name]["headers"]["properties"]["ce_type"]["const"] == name
            assert messages[name]["payload"]["title"] == model.__name__


def test_every_event_type_is_placed_on_a_channel() -> None:
    unplaced = spec.unplaced_types(spec.load_catalogue())
    assert not unplaced, f"add rules for {unplaced} to CHANNELS_BY_TYPE_PREFIX in shared/events/asyncapi.py"


def test_every_reference_resolves(committed: dict[str, Any]) -> None:
    references = list(spec.refs(committed))
    assert references
    for ref in references:
        spec.resolve(committed, ref)  # raises KeyError when the target is missing


def test_every_payload_is_self_contained_in_components(committed: dict[str, Any]) -> None:
    schemas = committed["components"]["schemas"]
    for name, message in committed["components"]["messages"].items():
        for part in ("payload", "headers"):
            schema = message[part]
            assert schema["type"] == "object", f"{name} {part}"
            assert "$defs" not in json.dumps(schema), f"{name} {part} still has $defs"
            for ref in spec.refs(schema):
                assert ref.startswith(spec.SCHEMAS_REF), f"{name} {part}: {ref}"
                assert ref.removeprefix(spec.SCHEMAS_REF) in schemas, f"{name} {part}: {ref} is missing"
    assert "$defs" not in json.dumps(schemas)


def test_the_document_has_the_shape_of_asyncapi_3(committed: dict[str, Any]) -> None:
    """The AsyncAPI 3.0.0 schema cannot be downloaded here, so the parts this document uses are checked by hand."""
    assert {"asyncapi", "info", "channels", "operations", "components"} <= committed.keys()
    assert committed["asyncapi"] == "3.0.0"
    info = committed["info"]
    assert info["title"] == "Children's Teams platform events"
    assert info["version"] == "0.1.0"
    assert isinstance(info["description"], str) and info["description"]

    components = committed["components"]
    assert set(components) <= {"schemas", "messages"}
    for section in components.values():
        assert all(COMPONENT_KEY.match(key) for key in section), "component keys must match ^[a-zA-Z0-9.-_]+$"

    for key, message in components["messages"].items():
        assert set(message) <= {
            "name",
            "title",
            "summary",
            "description",
            "contentType",
            "headers",
            "payload",
            "correlationId",
            "bindings",
        }, key
        assert message["contentType"] == "application/json"
        assert message["correlationId"]["location"].startswith("$message.header#/")
        kafka = message["bindings"]["kafka"]
        assert kafka["key"]["type"] == "string"
        assert kafka["bindingVersion"] == "0.5.0"
        headers = message["headers"]
        assert set(headers["required"]) <= set(headers["properties"])
        assert headers["properties"]["ce_specversion"]["const"] == "1.0"
        assert headers["properties"]["content-type"]["const"] == "application/json"
        assert headers["properties"]["ce_id"]["format"] == "uuid"
        assert headers["properties"]["ce_time"]["format"] == "date-time"
        assert {"ce_causationid", "traceparent"}.isdisjoint(headers["required"])

    channels = committed["channels"]
    assert {channel["address"]: key for key, channel in channels.items()} == BY_ADDRESS
    for key, channel in channels.items():
        # Ids are the keys `$ref`s name: no braces, which a URI fragment may not hold.
        assert COMPONENT_KEY.match(key), key
        assert set(channel) <= {"address", "title", "summary", "description", "messages", "parameters", "bindings"}, key
        # Every expression in an address is a declared parameter, and a parameter only comes with an expression.
        expressions = set(ADDRESS_EXPRESSION.findall(channel["address"]))
        assert expressions == set(channel.get("parameters", {})), key
        assert all(re.fullmatch(r"[A-Za-z0-9_\-]+", name) for name in expressions), key
        kafka = channel["bindings"]["kafka"]
        assert kafka.get("topic") == (None if expressions else channel["address"]), key
        for name, ref in channel["messages"].items():
            assert ref == {"$ref": f"#/components/messages/{name}"}

    operations = committed["operations"]
    assert {op["channel"]["$ref"] for op in operations.values()} == {f"#/channels/{name}" for name in channels}
    for key, operation in operations.items():
        assert set(operation) <= {"action", "channel", "title", "summary", "description", "messages"}, key
        assert operation["action"] in ACTIONS
        channel_ref = operation["channel"]["$ref"]
        for ref in operation["messages"]:
            # An operation's messages must be messages of its own channel.
            assert ref["$ref"].startswith(channel_ref + "/messages/"), key


def test_ingress_channels_are_received_and_all_others_sent(committed: dict[str, Any]) -> None:
    address = {f"#/channels/{key}": channel["address"] for key, channel in committed["channels"].items()}
    actions = {address[op["channel"]["$ref"]]: op["action"] for op in committed["operations"].values()}
    assert actions["agency.{agency}.referrals.in"] == "receive"
    assert actions["agency.{agency}.concerns.in"] == "receive"
    assert actions["contactcentre.acks.in"] == "receive"
    assert actions["agency.{agency}.outcomes.out"] == "send"
    assert actions["referral.events"] == "send"
    assert actions["backbone.probe"] == "send"


def test_each_agency_has_its_own_ingress_and_outcomes_channels(committed: dict[str, Any]) -> None:
    """One channel per kind, its address a template over every registered agency's code."""
    channels = {channel["address"]: channel for channel in committed["channels"].values()}
    for template in ("agency.{agency}.referrals.in", "agency.{agency}.concerns.in", "agency.{agency}.outcomes.out"):
        agency = channels[template]["parameters"]["agency"]
        assert agency["enum"] == sorted(AGENCIES), template
        assert agency["location"] == "$message.payload#/agency", template
        assert template.format(agency="health-nz") in channels[template]["description"], template
    # No channel for one agency's topic, nor a topic every agency shares.
    assert all("{agency}" in address for address in channels if address.startswith("agency."))


def test_every_message_on_an_agencys_channel_names_the_agency(committed: dict[str, Any]) -> None:
    """The agency parameter is read from the body's `agency`, which the platform checks against the topic."""
    messages = committed["components"]["messages"]
    for key, channel in committed["channels"].items():
        if "parameters" not in channel:
            continue
        assert channel["messages"], key
        for name in channel["messages"]:
            payload = messages[name]["payload"]
            assert "agency" in payload["properties"] and "agency" in payload["required"], (key, name)


@pytest.mark.parametrize(
    ("ce_type", "channel"),
    [
        ("nz.childrensteams.referral.received.v1", "referral.events"),
        ("nz.childrensteams.plans.plan_agreed.v2", "plans.events"),
        ("nz.childrensteams.referral.outcome.v1", outcomes_out("{agency}")),
        ("nz.childrensteams.referral.outcome.accepted.v1", outcomes_out("{agency}")),
        ("nz.childrensteams.hub.concern_outcome.v1", outcomes_out("{agency}")),
        ("nz.childrensteams.agency.referral_submitted.v1", referrals_in("{agency}")),
        ("nz.childrensteams.agency.consent_changed.v1", referrals_in("{agency}")),
        ("nz.childrensteams.agency.concern_raised.v1", concerns_in("{agency}")),
        ("nz.childrensteams.backbone.probe_pinged.v1", "backbone.probe"),
        ("nz.childrensteams.concern.raised.v1", "concerns.raised"),
        ("nz.childrensteams.agency.acknowledged.v1", None),
        ("nz.childrensteams.nowhere.happened.v1", None),
    ],
)
def test_event_types_are_placed_by_the_prefix_table(ce_type: str, channel: str | None) -> None:
    assert spec.channel_for(ce_type) == channel


def test_the_prefix_table_names_only_declared_topics() -> None:
    assert spec.mapped_topics() <= {t.name for t in TOPICS}


class _Nested(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    code: str


class _Placed(Event):
    ce_type: ClassVar[str] = "nz.childrensteams.backbone.placed.v1"
    nested: _Nested


class _Unplaced(Event):
    ce_type: ClassVar[str] = "nz.childrensteams.nowhere.happened.v1"
    nested: _Nested


def test_definitions_are_hoisted_into_components_and_shared() -> None:
    document = spec.build_document({_Placed.ce_type: _Placed, _Unplaced.ce_type: _Unplaced})
    schemas = document["components"]["schemas"]
    assert set(schemas) == {"_Nested"}
    payload = document["components"]["messages"][_Placed.ce_type]["payload"]
    assert payload["properties"]["nested"] == {"$ref": "#/components/schemas/_Nested"}
    for ref in spec.refs(document):
        spec.resolve(document, ref)


def test_unplaced_types_are_messages_without_a_channel_and_are_named_in_the_description() -> None:
    document = spec.build_document({_Placed.ce_type: _Placed, _Unplaced.ce_type: _Unplaced})
    assert _Unplaced.ce_type in document["components"]["messages"]
    carried = {name for channel in document["channels"].values() for name in channel["messages"]}
    assert carried == {_Placed.ce_type}
    assert "## Unplaced" in document["info"]["description"]
    assert _Unplaced.ce_type in document["info"]["description"]


def test_two_different_schemas_with_one_name_are_refused() -> None:
    class _Nested(BaseModel):  # the module's name, another shape
        count: int

    class _Clash(Event):
        ce_type: ClassVar[str] = "nz.childrensteams.backbone.clash.v1"
        nested: _Nested

    with pytest.raises(ValueError, match="_Nested"):
        spec.build_document({_Placed.ce_type: _Placed, _Clash.ce_type: _Clash})


def test_check_fails_with_a_clear_message_when_the_file_is_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spec, "load_catalogue", lambda: {_Placed.ce_type: _Placed})
    path = tmp_path / "asyncapi.json"
    assert spec.main(["--file", str(path)]) == 0
    assert spec.main(["--check", "--file", str(path)]) == 0

    path.write_text(path.read_text().replace("0.5.0", "0.4.0"))
    assert spec.main(["--check", "--file", str(path)]) == 1
    err = capsys.readouterr().err
    assert "out of date" in err and "python -m shared.events.asyncapi" in err

    path.unlink()
    assert spec.main(["--check", "--file", str(path)]) == 1


def test_check_fails_while_an_event_type_has_no_channel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spec, "load_catalogue", lambda: {_Unplaced.ce_type: _Unplaced})
    path = tmp_path / "asyncapi.json"
    assert spec.main(["--file", str(path)]) == 0
    assert spec.main(["--check", "--file", str(path)]) == 1
    assert "CHANNELS_BY_TYPE_PREFIX" in capsys.readouterr().err
