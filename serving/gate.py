"""The API's gate: the bearer token and the content type are checked before a byte of the body is read.

FastAPI reads and parses a route's body before it solves the route's dependencies, so with the token checked
by a dependency alone, a request without a token but with a malformed body would be told about its body (400
or 422) rather than refused (401), and an unauthenticated client could make the server parse whatever it
sends. :class:`ApiGate`, a pure-ASGI middleware in front of the routes, answers first:

* every path under ``/v1/`` and ``/metrics`` needs a valid bearer token (:func:`serving.auth.token_matches`),
  else ``401`` with ``WWW-Authenticate: Bearer``, whatever the body;
* a ``POST`` to a route that takes one must declare a JSON body (``Content-Type: application/json`` or
  ``application/*+json``), else ``415`` naming the content type received and the one expected (a ``POST`` to
  a route without one is the router's ``405``).

``/healthz``, ``/readyz``, ``/docs`` and ``/openapi.json`` pass ungated (readiness then tells nothing but its
status; see :mod:`serving.app`). The routes keep their :func:`serving.auth.require_token` dependency, which
documents the bearer scheme in OpenAPI and guards any route mounted outside the gated prefixes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence

from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.auth import token_matches

__all__ = ["GATED_PREFIXES", "ApiGate", "bearer_token_ok", "is_json_content_type"]

#: Paths (prefixes) that need a bearer token.
GATED_PREFIXES = ("/v1/", "/metrics")


def is_json_content_type(value: bytes | None) -> bool:
    """Whether a ``Content-Type`` header value declares JSON (``application/json`` or ``application/*+json``)."""
    if value is None:
        return False
    media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


def bearer_token_ok(value: bytes | None, tokens: tuple[str, ...]) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <one of tokens>`` (compared in constant time)."""
    if value is None:
        return False
    scheme, _, credentials = value.decode("latin-1").partition(" ")
    return scheme.lower() == "bearer" and bool(credentials) and token_matches(credentials.strip(), tokens)


class ApiGate:
    """Refuse API requests without a valid token (401) or, for a POST, without a JSON body (415), unread.

    Args:
        app: The app behind the gate.
        tokens: The accepted bearer tokens.
        json_routes: The templates of the routes that take a JSON body by ``POST`` (read at the first request).
    """

    def __init__(self, app: ASGIApp, tokens: tuple[str, ...], json_routes: Callable[[], Sequence[str]]) -> None:
        self.app, self.tokens, self.json_routes = app, tokens, json_routes
        self._json: list[re.Pattern[str]] | None = None

    def _takes_json(self, path: str) -> bool:
        if self._json is None:
            self._json = [compile_path(t)[0] for t in self.json_routes()]
        return any(p.match(path) for p in self._json)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(GATED_PREFIXES):
            await self.app(scope, receive, send)
            return
        auth: list[bytes] = []
        content_type: list[bytes] = []
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth.append(value)
            elif name == b"content-type":
                content_type.append(value)
        if len(auth) != 1 or not bearer_token_ok(auth[0], self.tokens):
            await _answer(send, 401, "missing or invalid bearer token", [(b"www-authenticate", b"Bearer")])
            return
        if (
            scope["method"] == "POST"
            and (len(content_type) != 1 or not is_json_content_type(content_type[0]))
            and self._takes_json(scope["path"])
        ):
            given = content_type[0].decode("latin-1") if len(content_type) == 1 else "none"
            if len(content_type) > 1:
                given = "several Content-Type headers"
            detail = f"content-type: expected application/json, got {given}"
            await _answer(send, 415, detail, [])
            return
        await self.app(scope, receive, send)


async def _answer(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"detail": detail}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
