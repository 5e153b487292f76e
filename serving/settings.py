"""The server's settings: one pydantic-settings class, read from ``REGSIM_*`` environment variables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["DEFAULT_POPULATION", "ServerSettings"]

#: The default world (rules, decision options, calendar start): ``configs/population/default.yaml``.
DEFAULT_POPULATION = Path(__file__).resolve().parent.parent / "configs" / "population" / "default.yaml"


class ServerSettings(BaseSettings):
    """Everything the server is configured with; each field is also the env variable ``REGSIM_<FIELD>``.

    Example: ``REGSIM_POLICY=runs/bandit/policy REGSIM_STORE=sqlite:///regsim.db REGSIM_TOKENS=s3cret``.
    """

    model_config = SettingsConfigDict(env_prefix="REGSIM_", extra="forbid", frozen=True)

    policy: str = Field(
        description="The active policy: an artifact folder (verified at start-up) or a registered policy name."
    )
    store: str = Field(
        "sqlite:///regsim-serve.db",
        description="SQLAlchemy URL of the store: sqlite:///FILE (WAL, created on start) or postgresql://...",
    )
    tokens: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Bearer tokens accepted on every route but /healthz and /readyz (comma-separated or a JSON "
        "list). At least one is required.",
    )
    shadow_policy: str | None = Field(
        None, description="A policy (artifact folder or name) deciding beside the active one: logged, never returned."
    )
    fallback_policy: str = Field(
        "static-dunning",
        description="The rule-based policy that answers when the active one fails or exceeds its time budget.",
    )
    decision_budget_ms: float = Field(
        250.0, gt=0, description="Time budget of one call of the active policy (milliseconds, > 0)."
    )
    max_body_bytes: int = Field(1_048_576, gt=0, description="Largest accepted request body (bytes, > 0).")
    max_batch: int = Field(10_000, gt=0, description="Most decision points in one batch request (> 0).")
    group_linger_rounds: int = Field(
        6,
        ge=0,
        description="Group commit: before taking the next group, the writer lets the event loop run until this "
        "many rounds in a row queue no new request (0: take what is queued at once). Larger groups share one "
        "transaction, context build and policy call; like PostgreSQL's commit_delay.",
    )
    group_linger_max_ms: float = Field(
        2.0, ge=0, description="Longest a group waits for more requests (milliseconds, >= 0)."
    )
    idempotency_retention_hours: float = Field(
        72.0,
        gt=0,
        allow_inf_nan=False,
        description="How long an Idempotency-Key is kept after its first use (hours, > 0); older keys are purged, "
        "and a request repeated with one is a new request. Keys are stored as their SHA-256, never as sent.",
    )
    population: str = Field(
        str(DEFAULT_POPULATION),
        description="World config giving the rules, decision options and calendar (a YAML path); its rules "
        "version must equal the artifact's.",
    )
    access_log: bool = Field(
        False,
        description="Log one line per request (uvicorn's access log). Off by default: /metrics counts and times "
        "every answer by route and status, and a line per request costs single-decision throughput "
        "(measure it: python -m benchmarks.bench_server --access-log); turn it on where no proxy logs requests.",
    )
    staff_users: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Staff who may log in to the staff pages (/staff), comma-separated USER:scrypt$SALT$HASH "
        "entries (regsim staff-user USER prints one); none: the pages are off.",
    )
    session_secret: str | None = Field(
        None,
        min_length=32,
        description="Key that signs the staff pages' session cookies (at least 32 characters; required with "
        "staff_users). Changing it logs everyone out.",
    )
    session_hours: float = Field(8.0, gt=0, le=24 * 30, description="How long a staff login lasts (hours).")
    debtor_link_secret: str | None = Field(
        None,
        min_length=32,
        description="Key that signs the links to the debtors' self-service pages (/self-service) sent in "
        "reminders, and their forms' CSRF cookies (at least 32 characters); none: the pages are off. Changing it "
        "voids every link sent.",
    )
    debtor_link_days: float = Field(
        30.0, gt=0, le=365, description="How long a debtor's link stays valid after it is made (days)."
    )
    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on.")

    @field_validator("tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                parsed = json.loads(text)
                if not isinstance(parsed, list) or not all(isinstance(t, str) for t in parsed):
                    raise ValueError("tokens: a JSON value must be a list of strings")
                return tuple(parsed)
            return tuple(t.strip() for t in text.split(",") if t.strip())
        return value

    @field_validator("staff_users", mode="before")
    @classmethod
    def _split_users(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(u.strip() for u in value.split(",") if u.strip())
        return value

    @field_validator("staff_users")
    @classmethod
    def _users_well_formed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            user, _, stored = entry.partition(":")
            if not user or not stored.startswith("scrypt$") or stored.count("$") != 2:
                raise ValueError(
                    f"staff_users: {user or entry[:16]!r} is not USER:scrypt$SALT$HASH "
                    "(regsim staff-user USER prints one)"
                )
        return value

    @model_validator(mode="after")
    def _secret_with_users(self) -> ServerSettings:
        if self.staff_users and self.session_secret is None:
            raise ValueError("session_secret: required with staff_users (REGSIM_SESSION_SECRET, 32+ characters)")
        return self

    @field_validator("tokens")
    @classmethod
    def _tokens_present(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("tokens: at least one bearer token is required (REGSIM_TOKENS)")
        if any(len(t) < 8 for t in value):
            raise ValueError("tokens: every token must have at least 8 characters")
        return value
