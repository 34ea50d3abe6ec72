"""Shared helpers for the postgrest-py suite; the proxy URL and JWT secret
come from run.sh's environment.

Clients are built the way supabase-py builds them: SyncPostgrestClient /
AsyncPostgrestClient on the REST URL with schema "esg" (sent as
Accept-Profile / Content-Profile) and the user's JWT set with .auth(token).
The test clients hand the library an httpx client configured like its default
one (HTTP/2 enabled, redirects followed) plus a response hook, so a test can
also check the HTTP status of the last response (APIError carries no status).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time

import httpx
from postgrest import AsyncPostgrestClient, SyncPostgrestClient

URL = os.environ.get("TENANCY_PROXY_URL", "")
SECRET = os.environ.get("TENANCY_JWT_SECRET", "")
if not URL or not SECRET:
    raise RuntimeError("TENANCY_PROXY_URL and TENANCY_JWT_SECRET must be set (use run.sh)")

SCHEMA = "esg"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: dict, secret: str = SECRET) -> str:
    """An HS256 JWT signed with the proxy's secret."""
    head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64url(sig)}"


def member_token(tenant: str | None, role: str = "tenancy_member") -> str:
    """A token for `role` in `tenant` (slug or uuid); no tenant claim when None."""
    claims = {"role": role, "exp": int(time.time()) + 600}
    if tenant is not None:
        claims["tenant_id"] = tenant
    return jwt(claims)


class Recorder:
    """Keeps the last httpx response a client received."""

    def __init__(self) -> None:
        self.last: httpx.Response | None = None

    def __call__(self, response: httpx.Response) -> None:
        self.last = response

    @property
    def status(self) -> int:
        assert self.last is not None, "no response recorded"
        return self.last.status_code


_open: list[httpx.Client] = []


def client(token: str | None = None) -> SyncPostgrestClient:
    """A SyncPostgrestClient on schema esg; `token` is sent as a bearer.

    The returned client has a `.rec` Recorder for the last response.
    """
    rec = Recorder()
    http = httpx.Client(http2=True, follow_redirects=True, timeout=30, event_hooks={"response": [rec]})
    _open.append(http)
    c = SyncPostgrestClient(URL, schema=SCHEMA, http_client=http)
    if token:
        c.auth(token)
    c.rec = rec  # type: ignore[attr-defined]
    return c


def member(tenant: str | None, role: str = "tenancy_member") -> SyncPostgrestClient:
    """A client acting as `role` in `tenant`."""
    return client(member_token(tenant, role))


def async_client(token: str | None = None) -> AsyncPostgrestClient:
    """An AsyncPostgrestClient built with the library's own default httpx client."""
    c = AsyncPostgrestClient(URL, schema=SCHEMA)
    if token:
        c.auth(token)
    return c


def codes(rows) -> list[str]:
    return sorted(r["code"] for r in rows)


def titles(rows) -> list[str]:
    return sorted(r["title"] for r in rows)
