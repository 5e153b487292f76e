"""A plain-ASGI fast path for the hottest route, ``POST /v1/decisions``, in front of the FastAPI app.

Under load the server's core spends most of its time in the web framework rather than in the decision:
routing through the included router, solving the dependencies (bearer token, ``Idempotency-Key`` header),
the exception-handling layers and the response class. This middleware answers the common case of that route
itself, with the same code the route runs:

* the bearer token is checked by :func:`serving.auth.token_matches`;
* the body is parsed with :func:`json.loads` and validated by :class:`serving.schemas.DecisionIn` in Python
  mode, as FastAPI validates a body parameter;
* the effect goes through the same :meth:`serving.writer.Writer.write` (acknowledged = committed, the same
  idempotency record), and refusals are answered by :func:`serving.errors.error_response`, the mapping the
  app's exception handlers use.

Anything off the common path (another route or method, a missing or wrong token, an ``Idempotency-Key`` that
is not a single well-formed header, a body that is not JSON or does not validate, a content type other than
JSON, a server still starting) is handed to the FastAPI app unchanged, with the body already read replayed to
it, so every error answer stays the framework's own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving import schemas
from serving.auth import token_matches
from serving.errors import error_response
from serving.writer import Writer

__all__ = ["DecisionFastPath", "FastPathRoute", "replay_body"]

_PATH = "/v1/decisions"
#: The ``Idempotency-Key`` header's constraints, as the route declares them (1..255 visible ASCII characters).
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_JSON_HEADERS = [(b"content-type", b"application/json")]


class FastPathRoute:
    """What the fast path puts in ``scope["route"]``, so request metrics label it with the route's template."""

    path = _PATH


_ROUTE = FastPathRoute()


class DecisionFastPath:
    """Answer well-formed, authorised ``POST /v1/decisions`` requests without the framework (see module doc).

    Args:
        app: The app to hand every other request to.
        tokens: The accepted bearer tokens.
        writer: The running writer, or ``None`` while the app is starting (then nothing is answered here).
    """

    def __init__(self, app: ASGIApp, tokens: tuple[str, ...], writer: Callable[[], Writer | None]) -> None:
        self.app, self.tokens, self.writer = app, tokens, writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != _PATH
            or scope.get("root_path", "")
            or (writer := self.writer()) is None
        ):
            await self.app(scope, receive, send)
            return
        ours, key = self._headers(scope)
        if not ours:
            await self.app(scope, receive, send)
            return
        # Read the body (the body-limit middleware in front has already refused oversized ones).
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away before sending its body: nothing to decide.
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        body = _validated(raw)
        if body is None:
            await self.app(scope, replay_body(raw, receive), send)
            return
        scope["route"] = _ROUTE
        try:
            outcome = await writer.write("decide", body, key, "POST", _PATH)
        except Exception as exc:
            response = error_response(exc)
            if response is None:
                raise  # a 500, as from the route
            await response(scope, receive, send)
            return
        payload = outcome.body.encode("utf-8")
        headers = [(b"content-length", str(len(payload)).encode("latin-1")), *_JSON_HEADERS]
        await send({"type": "http.response.start", "status": outcome.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def _headers(self, scope: Scope) -> tuple[bool, str | None]:
        """Whether the fast path may answer (by the headers), and the ``Idempotency-Key`` (``None`` without one).

        Not when the token is missing or wrong, a header the route reads is repeated, the key is malformed
        or the content type is not exactly JSON (FastAPI refuses a body without one).
        """
        auth: bytes | None = None
        key: bytes | None = None
        json_body = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                if auth is not None:
                    return False, None
                auth = value
            elif name == b"idempotency-key":
                if key is not None:
                    return False, None
                key = value
            elif name == b"content-type":
                if json_body:
                    return False, None
                json_body = value.split(b";", 1)[0].strip().lower() == b"application/json"
                if not json_body:
                    return False, None
        if auth is None or not json_body:
            return False, None
        scheme, _, credentials = auth.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not credentials or not token_matches(credentials, self.tokens):
            return False, None
        if key is None:
            return True, None
        text = key.decode("latin-1")
        return (True, text) if _KEY.fullmatch(text) else (False, None)


def _validated(raw: bytes) -> schemas.DecisionIn | None:
    """The body as the route would validate it, or ``None`` (the framework then answers with its error)."""
    try:
        data: Any = json.loads(raw)
        return schemas.DecisionIn.model_validate(data)
    except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over the body read already, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
