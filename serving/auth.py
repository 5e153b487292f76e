"""Bearer-token authentication: every route but ``/healthz`` and ``/readyz`` depends on :func:`require_token`."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

__all__ = ["UNAUTHORIZED", "require_token", "token_matches"]

_bearer = HTTPBearer(auto_error=False, description="A token from REGSIM_TOKENS.")

#: The 401 answer, with the challenge RFC 6750 asks for.
UNAUTHORIZED = HTTPException(
    status_code=401, detail="missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
)


def token_matches(given: str, tokens: tuple[str, ...]) -> bool:
    """Whether ``given`` is one of ``tokens``, compared in constant time.

    Every token is compared (no early exit), so the time taken does not reveal which one, if any, matched or
    how long a common prefix was.
    """
    given_bytes = given.encode("utf-8")
    ok = False
    for token in tokens:
        ok |= hmac.compare_digest(given_bytes, token.encode("utf-8"))
    return ok


async def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """A FastAPI dependency: refuse the request with 401 unless it carries a valid bearer token.

    Async (it does not block), so FastAPI runs it on the event loop rather than in a worker thread.
    """
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise UNAUTHORIZED
    if not token_matches(credentials.credentials, request.app.state.settings.tokens):
        raise UNAUTHORIZED
