"""What the service refuses, by kind: the app answers each with its HTTP status (:mod:`serving.errors`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["ConflictError", "InvalidFieldError", "NotFoundError", "ServiceError"]


class ServiceError(Exception):
    """A request the service refuses; the app maps the subclass to an HTTP status."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFoundError(ServiceError):
    """An arrangement or message that is not in the store (404)."""


class ConflictError(ServiceError):
    """A request that contradicts the arrangement's state (409)."""


class InvalidFieldError(ServiceError):
    """A field whose value the state makes invalid (422, naming the field)."""

    def __init__(self, loc: Sequence[str | int], detail: str, value: Any = None) -> None:
        super().__init__(detail)
        self.loc = tuple(loc)
        self.value = value
