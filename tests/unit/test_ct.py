"""The `ct` command line: problems in a file are shown before anything is sent; an agency sends on its own topic;
tokens verify; dead letters are looked for everywhere."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from deploy.local.samples import sample_referral
from shared.agencies import AGENCIES
from shared.messaging import deadletters
from shared.messaging.deadletters import DeadLetter
from shared.security import TokenVerifier, ensure_dev_keys
from tools import ct
from tools.ct import main


class _Producer:
    """Stands in for the agency's Kafka producer: remembers where each message went."""

    sent: ClassVar[list[tuple[str, dict[str, str]]]] = []

    def __init__(self, **_: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send_and_wait(self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.sent.append((topic, {name: raw.decode() for name, raw in headers}))


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> type[_Producer]:
    monkeypatch.setattr(ct, "AIOKafkaProducer", _Producer)
    _Producer.sent = []
    return _Producer


def write_referral(tmp_path: Path, **overrides: Any) -> Path:
    referral = tmp_path / "referral.json"
    referral.write_text(sample_referral("CT-1", **overrides).model_dump_json())
    return referral


def test_a_referral_file_with_problems_is_not_sent_and_every_problem_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    referral = tmp_path / "referral.json"
    referral.write_text(json.dumps({"agency_referral_id": "HNZ-1", "reasons": ["being_a_teenager"]}))
    assert main(["submit", str(referral), "--agency", "health-nz"]) == 1
    printed = capsys.readouterr().out
    for field in ("child", "needs", "consent", "reasons.0", "submitted_at", "referrer"):
        assert f"  {field}:" in printed
    assert "not sent" in printed


def test_a_referral_goes_to_the_sending_agencys_own_topic_in_its_name(
    tmp_path: Path, producer: type[_Producer], capsys: pytest.CaptureFixture[str]
) -> None:
    referral = write_referral(tmp_path, agency="police-nz")
    assert main(["submit", str(referral), "--agency", "police-nz"]) == 0
    ((topic, headers),) = producer.sent
    assert topic == "agency.police-nz.referrals.in"
    assert headers["ce_source"] == "/agencies/police-nz"
    assert "to agency.police-nz.referrals.in" in capsys.readouterr().out


def test_a_referral_naming_another_agency_is_not_sent(
    tmp_path: Path, producer: type[_Producer], capsys: pytest.CaptureFixture[str]
) -> None:
    referral = write_referral(tmp_path, agency="health-nz")
    assert main(["submit", str(referral), "--agency", "police-nz"]) == 1
    printed = capsys.readouterr().out
    assert "  agency: does not match the sending agency (police-nz)" in printed
    assert "not sent, 1 problem(s)" in printed
    assert producer.sent == []


def test_an_agency_that_is_not_registered_cannot_send(tmp_path: Path, producer: type[_Producer]) -> None:
    with pytest.raises(SystemExit):
        main(["submit", str(write_referral(tmp_path)), "--agency", "acme-corp"])
    assert producer.sent == []


def test_a_development_token_names_the_caller(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--sub", "alice", "--agency", "health-nz", "--role", "referrer"]) == 0
    token = capsys.readouterr().out.strip()
    verifier = TokenVerifier(
        ensure_dev_keys()[1].read_bytes(), issuer="childrensteams-dev-issuer", audience="childrensteams"
    )
    principal = verifier.verify(token)
    assert (principal.subject, principal.agency, principal.roles) == ("alice", "health-nz", frozenset({"referrer"}))


def test_listing_dead_letters_looks_in_every_agencys_dead_letter_topics(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    looked_in: list[str] = []

    async def read(bootstrap: str, *topics: str) -> list[DeadLetter]:
        looked_in.extend(topics)
        return []

    monkeypatch.setattr(deadletters, "read_dead_letters", read)
    monkeypatch.setattr(sys, "argv", sys.argv)  # `ct deadletters` hands its arguments on through sys.argv
    assert main(["deadletters", "list"]) == 0
    for agency in AGENCIES:
        assert f"agency.{agency}.referrals.in.dlq" in looked_in
        assert f"agency.{agency}.concerns.in.dlq" in looked_in
        assert f"agency.{agency}.outcomes.out.dlq" not in looked_in  # the platform only writes outcomes
    assert {"referral.events.dlq", "concerns.raised.dlq", "contactcentre.acks.in.dlq"} <= set(looked_in)
    assert not any("{" in topic for topic in looked_in)
    assert "0 dead letter(s)" in capsys.readouterr().out
