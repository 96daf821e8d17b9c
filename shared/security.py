"""Bearer tokens: verification for every HTTP API, the claims model, and a local development issuer.

Tokens are ES256 JWTs with OIDC-style claims: `sub`, `agency`, `roles`, `iss`, `aud`, `exp`. In production the public
key is the identity provider's; locally `python -m shared.security keys` makes a key pair and
`python -m shared.security token --sub ... --agency ... --role ...` issues a token.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

ALGORITHM = "ES256"
# Beside the repository (not the working directory), so tools find the keys from anywhere.
DEV_KEY_DIR = Path(__file__).resolve().parents[1] / ".local" / "keys"
DEV_ISSUER = "childrensteams-dev-issuer"
AUDIENCE = "childrensteams"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a person or system, their home agency and their roles."""

    subject: str
    agency: str
    roles: frozenset[str]

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))


class TokenVerifier:
    def __init__(self, public_key_pem: bytes, *, issuer: str, audience: str) -> None:
        self._key = serialization.load_pem_public_key(public_key_pem)
        self.issuer = issuer
        self.audience = audience

    def verify(self, token: str) -> Principal:
        claims: dict[str, Any] = jwt.decode(
            token,
            self._key,  # type: ignore[arg-type]
            algorithms=[ALGORITHM],
            issuer=self.issuer,
            audience=self.audience,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
        agency = claims.get("agency")
        roles = claims.get("roles", [])
        if not isinstance(agency, str) or not agency or not isinstance(roles, list):
            raise jwt.InvalidTokenError("token lacks agency or roles")
        return Principal(subject=str(claims["sub"]), agency=agency, roles=frozenset(str(r) for r in roles))


@lru_cache(maxsize=4)
def verifier_from_file(path: str, issuer: str, audience: str) -> TokenVerifier:
    return TokenVerifier(Path(path).read_bytes(), issuer=issuer, audience=audience)


_bearer = HTTPBearer(auto_error=False)


async def authenticated(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """FastAPI dependency: the verified caller, or 401. The app's state carries the verifier."""
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    verifier: TokenVerifier = request.app.state.token_verifier
    try:
        return verifier.verify(credentials.credentials)
    except jwt.InvalidTokenError as error:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"invalid bearer token: {error}",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None


CurrentPrincipal = Annotated[Principal, Depends(authenticated)]


def require_role(principal: Principal, *roles: str) -> None:
    if not principal.has_role(*roles):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs one of the roles: {', '.join(roles)}")


# Local development issuer ------------------------------------------------------------------------------------


def ensure_dev_keys(directory: Path = DEV_KEY_DIR) -> tuple[Path, Path]:
    """Create the local issuer's key pair once; returns (private, public) paths."""
    private_path, public_path = directory / "dev-issuer.pem", directory / "dev-issuer.pub.pem"
    if not private_path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        private_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        private_path.chmod(0o600)
        public_path.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    return private_path, public_path


def issue_token(
    *,
    subject: str,
    agency: str,
    roles: list[str],
    ttl_seconds: int = 8 * 3600,
    private_key_pem: bytes | None = None,
    issuer: str = DEV_ISSUER,
    audience: str = AUDIENCE,
) -> str:
    if private_key_pem is None:
        private_key_pem = ensure_dev_keys()[0].read_bytes()
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "agency": agency,
        "roles": roles,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, private_key_pem, algorithm=ALGORITHM)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m shared.security", description="Local development token issuer")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("keys", help="create the local issuer's key pair if missing")
    token = commands.add_parser("token", help="print a bearer token")
    token.add_argument("--sub", required=True)
    token.add_argument("--agency", required=True)
    token.add_argument("--role", action="append", default=[], dest="roles")
    token.add_argument("--ttl", type=int, default=8 * 3600)
    args = parser.parse_args()
    if args.command == "keys":
        private, public = ensure_dev_keys()
        print(f"issuer keys: {private} {public}")
    else:
        print(issue_token(subject=args.sub, agency=args.agency, roles=args.roles, ttl_seconds=args.ttl))


if __name__ == "__main__":
    main()
