"""The `ct` command line: problems in a file are shown before anything is sent; tokens verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.security import TokenVerifier, ensure_dev_keys
from tools.ct import main


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


def test_a_development_token_names_the_caller(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--sub", "alice", "--agency", "health-nz", "--role", "referrer"]) == 0
    token = capsys.readouterr().out.strip()
    verifier = TokenVerifier(
        ensure_dev_keys()[1].read_bytes(), issuer="childrensteams-dev-issuer", audience="childrensteams"
    )
    principal = verifier.verify(token)
    assert (principal.subject, principal.agency, principal.roles) == ("alice", "health-nz", frozenset({"referrer"}))
