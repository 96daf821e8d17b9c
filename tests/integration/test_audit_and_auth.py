"""The security core: bearer tokens on every API, and an audit log nobody can rewrite."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.audit import record_access
from shared.security import CurrentPrincipal, Principal, TokenVerifier, issue_token


def pem_pair() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


PRIVATE, PUBLIC = pem_pair()


def token(**overrides: object) -> str:
    fields: dict[str, object] = {
        "subject": "kaimahi-7",
        "agency": "childrens-hub",
        "roles": ["hub_social_worker"],
        "private_key_pem": PRIVATE,
    }
    return issue_token(**(fields | overrides))  # type: ignore[arg-type]


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.token_verifier = TokenVerifier(PUBLIC, issuer="childrensteams-dev-issuer", audience="childrensteams")

    @app.get("/whoami")
    async def whoami(principal: CurrentPrincipal) -> dict[str, object]:
        return {"subject": principal.subject, "agency": principal.agency, "roles": sorted(principal.roles)}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as client:
        yield client


async def test_a_valid_token_names_the_caller_their_agency_and_roles(api: httpx.AsyncClient) -> None:
    response = await api.get("/whoami", headers={"Authorization": f"Bearer {token()}"})
    assert response.status_code == 200
    assert response.json() == {"subject": "kaimahi-7", "agency": "childrens-hub", "roles": ["hub_social_worker"]}


async def test_no_token_is_refused_with_401(api: httpx.AsyncClient) -> None:
    response = await api.get("/whoami")
    assert response.status_code == 401
    assert response.json()["detail"] == "a bearer token is required"


@pytest.mark.parametrize(
    ("bad_token", "reason"),
    [
        (token(ttl_seconds=-10), "expired"),
        (token(audience="someone-else"), "Audience"),
        (token(issuer="a-stranger"), "issuer"),
        (token(private_key_pem=pem_pair()[0]), "Signature"),
        (
            jwt.encode(
                {
                    "sub": "x",
                    "iss": "childrensteams-dev-issuer",
                    "aud": "childrensteams",
                    "iat": 0,
                    "exp": time.time() + 3600,
                },
                PRIVATE,
                algorithm="ES256",
            ),
            "agency",
        ),
    ],
)
async def test_a_bad_token_is_refused_with_the_reason(api: httpx.AsyncClient, bad_token: str, reason: str) -> None:
    response = await api.get("/whoami", headers={"Authorization": f"Bearer {bad_token}"})
    assert response.status_code == 401
    assert reason in response.json()["detail"]


async def test_every_access_is_audited_and_the_audit_log_cannot_be_rewritten(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reader = Principal(subject="kaimahi-7", agency="childrens-hub", roles=frozenset({"hub_social_worker"}))
    async with sessions() as session, session.begin():
        await record_access(session, principal=reader, action="read concern", child_id="child-9", purpose="screening")

    async with sessions() as session:
        row = (
            await session.execute(
                text("SELECT actor, roles, agency, action, child_id, purpose, at FROM audit_log ORDER BY id DESC")
            )
        ).first()
    assert row is not None
    assert tuple(row)[:6] == ("kaimahi-7", "hub_social_worker", "childrens-hub", "read concern", "child-9", "screening")
    assert row.at is not None

    for tampering in ("UPDATE audit_log SET purpose = 'nothing to see'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with sessions() as session, session.begin():
                await session.execute(text(tampering))
