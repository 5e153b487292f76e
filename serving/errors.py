"""The HTTP answers of the service's refusals: one mapping, used by the app's exception handlers and its fast path.

:class:`~serving.service.NotFoundError` is 404, :class:`~serving.service.ConflictError` and
:class:`~serving.idempotency.IdempotencyConflictError` are 409, :class:`~serving.lease.LeaseLostError` is 503
and :class:`~serving.service.InvalidFieldError` is 422 with a FastAPI-style ``detail`` list naming the field.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

from serving.idempotency import IdempotencyConflictError
from serving.lease import LeaseLostError
from serving.refusals import ConflictError, InvalidFieldError, NotFoundError

__all__ = ["HANDLED", "error_response"]

#: The exception types :func:`error_response` answers.
HANDLED: tuple[type[Exception], ...] = (
    NotFoundError,
    ConflictError,
    IdempotencyConflictError,
    LeaseLostError,
    InvalidFieldError,
)


def error_response(exc: Exception) -> JSONResponse | None:
    """The answer to a refusal of the service, or ``None`` for any other exception (a 500 to the caller)."""
    if isinstance(exc, NotFoundError):
        return JSONResponse({"detail": exc.detail}, status_code=404)
    if isinstance(exc, ConflictError):
        return JSONResponse({"detail": exc.detail}, status_code=409)
    if isinstance(exc, IdempotencyConflictError):
        return JSONResponse({"detail": str(exc)}, status_code=409)
    if isinstance(exc, LeaseLostError):
        return JSONResponse({"detail": str(exc)}, status_code=503)
    if isinstance(exc, InvalidFieldError):
        error = {"type": "value_error", "loc": list(exc.loc), "msg": exc.detail, "input": exc.value}
        return JSONResponse({"detail": [error]}, status_code=422)
    return None
