"""A plain-ASGI fast path for the hottest route, ``POST /v1/decisions``, in front of the FastAPI app.

Under load the server's core spends much of its time in the web framework rather than in the decision: the
middleware layers (error handling, exception telemetry, body limits, request metrics, each wrapping ``send``),
routing through the included router, solving the dependencies (bearer token, ``Idempotency-Key`` header) and
the response class. This front answers the common case of that route itself, before any of those layers, with
the same code the route runs:

* the bearer token is checked by :func:`serving.auth.token_matches`;
* the body is parsed with :func:`json.loads` and validated by :class:`serving.schemas.DecisionIn` in Python
  mode, as FastAPI validates a body parameter;
* the effect goes through the same :meth:`serving.writer.Writer.write` (acknowledged = committed, the same
  idempotency record), and refusals are answered by :func:`serving.errors.error_response`, the mapping the
  app's exception handlers use;
* the answer is counted and timed by the same :class:`serving.metrics.RequestRecorder` as the app's request
  metrics, under the route's template.

Anything off the common path (another route or method, a missing or wrong token, an ``Idempotency-Key`` that
is not a single well-formed header, a body without a ``Content-Length`` within the body limit, a body that is
not JSON or does not validate, a content type other than JSON, a server still starting) is handed to the
FastAPI app unchanged, with the body already read replayed to it, so every error answer stays the framework's
own.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving import schemas
from serving.auth import token_matches
from serving.errors import error_response
from serving.metrics import RequestRecorder
from serving.writer import Writer

__all__ = ["DecisionFastPath", "replay_body"]

log = logging.getLogger("regsim.serving")

_PATH = "/v1/decisions"
#: The ``Idempotency-Key`` header's constraints, as the route declares them (1..255 visible ASCII characters).
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_JSON_HEADERS = [(b"content-type", b"application/json")]
_TEXT_HEADERS = [(b"content-type", b"text/plain; charset=utf-8")]


class DecisionFastPath:
    """Answer well-formed, authorised ``POST /v1/decisions`` requests without the framework (see module doc).

    Args:
        app: The app to hand every other request to.
        tokens: The accepted bearer tokens.
        writer: The running writer, or ``None`` while the app is starting (then nothing is answered here).
        max_body_bytes: The app's body limit: a larger (or unannounced) body is the app's to refuse.
        recorder: Counts and times the answers given here.
    """

    def __init__(
        self,
        app: ASGIApp,
        tokens: tuple[str, ...],
        writer: Callable[[], Writer | None],
        max_body_bytes: int,
        recorder: RequestRecorder,
    ) -> None:
        self.app, self.tokens, self.writer = app, tokens, writer
        self.max_body_bytes, self.recorder = max_body_bytes, recorder

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
        started = time.perf_counter()
        # Read the body (its announced length is within the limit: the server reads no more than that).
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
        try:
            outcome = await writer.write("decide", body, key, "POST", _PATH)
        except Exception as exc:
            response = error_response(exc)
            if response is None:
                # What the framework's error middleware does with an unexpected error: log it, answer 500.
                log.exception("POST %s failed", _PATH)
                await self._answer(send, 500, b"Internal Server Error", _TEXT_HEADERS, started)
                return
            await response(scope, receive, send)
            self.recorder.record("POST", _PATH, response.status_code, time.perf_counter() - started)
            return
        await self._answer(send, outcome.status_code, outcome.body.encode("utf-8"), _JSON_HEADERS, started)

    async def _answer(
        self, send: Send, status: int, payload: bytes, headers: list[tuple[bytes, bytes]], started: float
    ) -> None:
        length = [(b"content-length", str(len(payload)).encode("latin-1"))]
        await send({"type": "http.response.start", "status": status, "headers": length + headers})
        await send({"type": "http.response.body", "body": payload})
        self.recorder.record("POST", _PATH, status, time.perf_counter() - started)

    def _headers(self, scope: Scope) -> tuple[bool, str | None]:
        """Whether the fast path may answer (by the headers), and the ``Idempotency-Key`` (``None`` without one).

        Not when the token is missing or wrong, a header the route reads is repeated, the key is malformed,
        the content type is not exactly JSON (FastAPI refuses a body without one) or the body's length is not
        announced within the limit.
        """
        auth: bytes | None = None
        key: bytes | None = None
        json_body = False
        length: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                if length is not None:
                    return False, None
                length = value
            elif name == b"authorization":
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
        if auth is None or not json_body or length is None or not _within(length, self.max_body_bytes):
            return False, None
        scheme, _, credentials = auth.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not credentials or not token_matches(credentials, self.tokens):
            return False, None
        if key is None:
            return True, None
        text = key.decode("latin-1")
        return (True, text) if _KEY.fullmatch(text) else (False, None)


def _within(length: bytes, limit: int) -> bool:
    return length.isdigit() and int(length) <= limit


def _validated(raw: bytes) -> schemas.DecisionIn | None:
    """The body as the route would validate it, or ``None`` (the framework then answers with its error)."""
    try:
        data: Any = json.loads(raw)
        return schemas.DecisionIn.model_validate(data)
    except (ValueError, ValidationError, RecursionError):
        # JSONDecodeError and UnicodeDecodeError are ValueErrors; RecursionError is a body nested too deeply.
        # The framework answers each of them with its 4xx.
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
