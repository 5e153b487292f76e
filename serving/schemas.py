"""The API's request and response models (pydantic v2).

Times: every request carries ``time``, in days since the server's epoch (the calendar start of the world
config, ``simulation.start_date``; fractions are hours, as in the event log), or ``at``, a timestamp
(UTC if naive), which is turned into ``time``. Responses give both.

Privacy: an arrangement is known by a pseudonymous integer id; the schema has no field for names,
addresses, account numbers or free text, and unknown fields are refused (422), so none can slip in.
"""

from __future__ import annotations

import datetime as dt
import re
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from regsim.config import CHANNELS

__all__ = [
    "Action",
    "ArrangementIn",
    "ArrangementOut",
    "BatchDecisionIn",
    "BatchDecisionOut",
    "CancelledReminder",
    "ClockIn",
    "ClockOut",
    "ContactRecord",
    "DecisionIn",
    "DecisionOut",
    "DecisionSummary",
    "ErrorOut",
    "EventIn",
    "EventOut",
    "Health",
    "Incident",
    "InstallmentOut",
    "MaskedOption",
    "NextAction",
    "Overview",
    "PaymentRecord",
    "ValidationErrorOut",
    "ValidationIssue",
]

Channel = Literal["email", "sms", "letter", "robocall", "collector"]
assert tuple(Channel.__args__) == CHANNELS  # type: ignore[attr-defined]  # the literal mirrors the config
DecisionKindName = Literal["plan_created", "pre_due", "missed", "follow_up", "payment_received"]
Status = Literal["offered", "active", "completed", "broken", "referred"]

#: Largest arrangement id: 2**53 - 1, the largest integer every JSON parser keeps exactly (one that reads
#: numbers as doubles, as JavaScript's does, would merge larger ids); stored as signed 64-bit integers.
MAX_ID = 2**53 - 1
#: Latest accepted time, in days since the epoch (about 270 years).
MAX_TIME_DAYS = 100_000.0


ArrangementId = Annotated[int, Field(ge=0, le=MAX_ID, description="Pseudonymous arrangement id.")]
TimeDays = Annotated[
    float,
    Field(
        ge=0.0,
        le=MAX_TIME_DAYS,
        allow_inf_nan=False,
        strict=True,
        description="Days since the epoch (fractions: hours).",
    ),
]

#: An RFC 3339 date-time: a date, ``T`` (or a space), a time with optional fraction, optional offset.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})?")


def _timestamp_text(value: object) -> object:
    """Only a date-time string is a timestamp: no number (seconds since 1970), no bare date."""
    if isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time string, e.g. '2026-02-01T09:00:00Z' (UTC if no offset)")
    return value


Timestamp = Annotated[dt.datetime, BeforeValidator(_timestamp_text)]


class _NotAnInteger:
    """A boolean or a string sent for an integer field (shown as it was sent)."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


def _is_int_field(annotation: object) -> bool:
    return annotation is int or (get_origin(annotation) in (Union, UnionType) and int in get_args(annotation))


_INT_FIELDS: dict[type, tuple[str, ...]] = {}


def _int_fields(cls: type[BaseModel]) -> tuple[str, ...]:
    """The names of a request model's integer fields (worked out once per model)."""
    names = _INT_FIELDS.get(cls)
    if names is None:
        names = tuple(n for n, f in cls.model_fields.items() if _is_int_field(f.annotation))
        _INT_FIELDS[cls] = names
    return names


class _Strict(BaseModel):
    """A request body: unknown fields refused, numbers only as JSON numbers (``true`` is no id, ``"12"`` no time).

    Times and amounts are strict floats; integer fields take a JSON number with an integral value (``1`` or
    ``1.0``, as JSON Schema's ``integer`` has it), never a boolean or a string.
    """

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _json_integers(cls, data: object) -> object:
        # A boolean or a string in an integer field is swapped for a value no integer validator accepts, so that
        # the field's own validation refuses it, under its own name ("Input should be a valid integer").
        if isinstance(data, dict):
            bad = [n for n in _int_fields(cls) if isinstance(data.get(n), bool | str | bytes)]
            if bad:
                data = {**data, **{n: _NotAnInteger(data[n]) for n in bad}}
        return data


def _exactly_one_time(schema: dict[str, Any]) -> None:
    """What the validator enforces, in the JSON schema: ``time`` or ``at``, exactly one, neither null."""
    props = schema.get("properties", {})
    for name in ("time", "at"):
        props.get(name, {}).pop("default", None)
    schema["oneOf"] = [
        {"required": ["time"], "not": {"required": ["at"]}},
        {"required": ["at"], "not": {"required": ["time"]}},
    ]


def _timed(*examples: dict[str, Any]) -> ConfigDict:
    """The config of a timed request: unknown fields refused, the time rule in the schema, example bodies."""

    def extra(schema: dict[str, Any]) -> None:
        _exactly_one_time(schema)
        if examples:
            schema["examples"] = list(examples)

    return ConfigDict(extra="forbid", json_schema_extra=extra)


class _Timed(_Strict):
    """A request that happens at a time: ``time`` (days since the epoch) or ``at`` (a timestamp), exactly one."""

    model_config = _timed()

    # Not nullable: a time is given or the field is left out (the schema's oneOf says the same).
    time: TimeDays = None  # type: ignore[assignment]
    at: Timestamp = Field(  # type: ignore[assignment]
        None, description="When, as an RFC 3339 timestamp (UTC if it has no offset); instead of `time`."
    )

    @model_validator(mode="after")
    def _one_time(self) -> _Timed:
        if (self.time is None) == (self.at is None):
            raise ValueError("give exactly one of 'time' (days since the epoch) and 'at' (a timestamp)")
        return self


class ErrorOut(BaseModel):
    """An error: what went wrong, naming the field or the limit."""

    detail: str


class ValidationIssue(BaseModel):
    """One broken constraint of a request: where (``loc``), what kind, and a message starting with the field."""

    type: str
    loc: list[str | int]
    msg: str
    input: Any = None


class ValidationErrorOut(BaseModel):
    """A request that is JSON but breaks the schema or the world's rules (422)."""

    detail: list[ValidationIssue]


class Health(BaseModel):
    """Liveness or readiness."""

    status: Literal["ok", "ready"]
    policy: str | None = None
    policy_version: str | None = None
    schema_revision: str | None = None


# ----------------------------------------------------------------------------------------------------------
# Arrangements
# ----------------------------------------------------------------------------------------------------------
class ArrangementIn(_Timed):
    """Register an arrangement (or update its channel opt-outs): the plan as agreed and the prior history.

    The plan is ``n_installments`` equal installments of ``debt_eur`` (the last absorbs the rounding) on day
    ``due_day`` of the month, the first at least the world's ``min_days_to_first_due`` after ``time``. The plan
    changes afterwards only through decisions (due day, deferral, reduction).
    """

    model_config = _timed(
        {"arrangement_id": 7, "time": 0.0, "debt_eur": 300.0, "n_installments": 3, "due_day": 1},
        {
            "arrangement_id": 8,
            "at": "2026-01-06T10:00:00Z",
            "debt_eur": 1200.0,
            "n_installments": 6,
            "due_day": 15,
            "prior_payments": 4,
            "prior_late_share": 0.25,
            "prior_pay_dom": 14,
            "opted_out": ["sms"],
        },
    )

    arrangement_id: ArrangementId
    debt_eur: float = Field(gt=0.0, le=10_000_000.0, allow_inf_nan=False, description="Debt agreed (EUR).", strict=True)
    n_installments: int = Field(ge=1, le=120, description="Installments in the plan.")
    due_day: int = Field(ge=1, le=28, description="Day of the month installments fall due.")
    prior_payments: int = Field(0, ge=0, le=10_000, description="Payments to the creditor before the arrangement.")
    prior_late_share: float = Field(
        0.0, ge=0.0, le=1.0, allow_inf_nan=False, description="Share of those payments that were late.", strict=True
    )
    prior_pay_dom: int | None = Field(
        None, ge=1, le=31, description="Most frequent day of the month of those payments (null if none)."
    )
    opted_out: list[Channel] = Field(
        default_factory=list, max_length=len(CHANNELS), description="Channels the debtor opted out of."
    )


class InstallmentOut(BaseModel):
    """One installment of the current plan."""

    index: int
    due_time: int = Field(description="Due day, in days since the epoch.")
    due_date: dt.date
    amount_eur: float
    paid_eur: float
    status: Literal["paid", "open", "overdue"]


class ArrangementOut(BaseModel):
    """An arrangement as registered, with its plan."""

    arrangement_id: int
    created: bool = Field(description="True if this request registered it; false for an update or a replay.")
    status: Status
    opted_out: list[Channel]
    installments: list[InstallmentOut]


# ----------------------------------------------------------------------------------------------------------
# Decisions
# ----------------------------------------------------------------------------------------------------------
class DecisionIn(_Timed):
    """Ask for the decision at one decision point of one arrangement.

    ``installment`` defaults to the one the decision point is about: 0 at plan creation, the next to fall due
    before it (pre-due), the oldest open one (missed, follow-up), the one just paid (payment received).
    """

    model_config = _timed(
        {"arrangement_id": 7, "kind": "plan_created", "time": 0.0},
        {"arrangement_id": 7, "kind": "pre_due", "installment": 0, "at": "2026-01-27T09:00:00Z"},
    )

    arrangement_id: ArrangementId
    kind: DecisionKindName
    installment: int | None = Field(None, ge=0, le=1_000, description="Installment index the decision is about.")


class BatchDecisionIn(_Strict):
    """Many decision points, decided as one batch by the policy (in order)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "decisions": [
                        {"arrangement_id": 7, "kind": "plan_created", "time": 0.0},
                        {"arrangement_id": 8, "kind": "plan_created", "time": 0.0},
                    ]
                }
            ]
        },
    )

    decisions: list[DecisionIn] = Field(min_length=1, description="The decision points (at most REGSIM_MAX_BATCH).")


class Action(BaseModel):
    """The action, by meaning."""

    channel: Literal["none", "email", "sms", "letter", "robocall", "collector"]
    send_slot: str = Field(description="Send-slot option, e.g. 'day+1 09:00' (meaningless without contact).")
    due_day: int | None = Field(description="New due day of the month (plan creation), null to keep it.")
    deferral_days: int
    reduction: float = Field(description="Fraction by which installments are reduced.")
    indices: list[int] = Field(description="The five option indices (channel, slot, due day, deferral, reduction).")


class MaskedOption(BaseModel):
    """An option the rules masked, and the rules that masked it."""

    part: Literal["channel", "send_slot", "due_day", "deferral", "reduction"]
    option: str
    rules: list[str]


class DecisionOut(BaseModel):
    """A committed decision: the action, why other options were masked, who decided, and what to send when."""

    decision_id: int
    arrangement_id: int
    kind: DecisionKindName
    installment: int
    time: float
    at: dt.datetime
    action: Action
    message_id: int | None = Field(description="The planned message (null: no contact).")
    send_time: float | None = Field(description="When to send it, days since the epoch (null: no contact).")
    send_at: dt.datetime | None
    masked_rules: list[str] = Field(description="Business rules that masked options here (applicability excluded).")
    masked: list[MaskedOption]
    policy: str
    policy_version: str
    propensity: float = Field(description="Probability the deciding policy gave this action.")
    fallback: bool = Field(description="True if the rule-based fallback answered instead of the active policy.")


class BatchDecisionOut(BaseModel):
    """Decisions of a batch, in request order."""

    decisions: list[DecisionOut]


# ----------------------------------------------------------------------------------------------------------
# Events
# ----------------------------------------------------------------------------------------------------------
class _EventBase(_Timed):
    arrangement_id: ArrangementId


class PaymentEvent(_EventBase):
    """A payment; it pays installments oldest first and cancels pending reminders of those it completes."""

    model_config = _timed({"arrangement_id": 7, "type": "payment", "amount_eur": 100.0, "time": 22.4})

    type: Literal["payment"]
    amount_eur: float = Field(
        gt=0.0, le=10_000_000.0, allow_inf_nan=False, description="Amount paid (EUR).", strict=True
    )
    channel: Channel | None = Field(None, description="The message whose payment link was used, by channel.")


class MessageEvent(_EventBase):
    """What happened to a message the server planned (by its ``message_id``)."""

    model_config = _timed({"arrangement_id": 7, "type": "message_opened", "message_id": 1, "time": 22.6})

    type: Literal["message_sent", "message_delivered", "message_opened", "message_clicked"]
    message_id: int = Field(ge=1, le=MAX_ID)
    cost_eur: float | None = Field(
        None,
        ge=0.0,
        le=10_000.0,
        allow_inf_nan=False,
        description="Cost of a sent message (default: the channel's).",
        strict=True,
    )


class MissedEvent(_EventBase):
    """An installment was not paid by its due date (plus grace)."""

    model_config = _timed({"arrangement_id": 7, "type": "installment_missed", "installment": 0, "time": 31.0})

    type: Literal["installment_missed"]
    installment: int = Field(ge=0, le=1_000)


class OptOutEvent(_EventBase):
    """The debtor opted out of a channel."""

    model_config = _timed({"arrangement_id": 7, "type": "opt_out", "channel": "sms", "time": 23.0})

    type: Literal["opt_out"]
    channel: Channel
    message_id: int | None = Field(None, ge=1, le=MAX_ID, description="The message that prompted it, if any.")


class EndEvent(_EventBase):
    """The arrangement broke down (back to collection) or was referred to debt counselling."""

    model_config = _timed({"arrangement_id": 7, "type": "referred", "time": 40.0})

    type: Literal["broken", "referred"]
    collection_costs_eur: float | None = Field(None, ge=0.0, le=10_000_000.0, allow_inf_nan=False, strict=True)


EventIn = Annotated[PaymentEvent | MessageEvent | MissedEvent | OptOutEvent | EndEvent, Field(discriminator="type")]


class CancelledReminder(BaseModel):
    """A pending message cancelled by an event."""

    message_id: int
    decision_id: int
    installment: int
    channel: Channel
    send_time: float


class Incident(BaseModel):
    """Something a late event showed to have gone wrong: a message that went out after what made it moot."""

    kind: str = Field(description="What happened, e.g. sent_after_payment: a reminder sent after the payment.")
    message_id: int
    decision_id: int
    installment: int
    channel: str
    moot_time: float = Field(description="When the message became moot (the payment's time, in days).")
    sent_time: float = Field(description="When it went out anyway (days).")


class EventOut(BaseModel):
    """A recorded event and its consequences."""

    arrangement_id: int
    type: str
    time: float
    at: dt.datetime
    status: Status = Field(description="The arrangement's status after the event.")
    installments_paid: list[int] = Field(description="Installments a payment completed.")
    cancelled: list[CancelledReminder] = Field(description="Pending messages this event cancelled.")
    late: bool = Field(
        False,
        description="The event was stamped before the arrangement's latest recorded event: its history was "
        "re-derived in event-time order.",
    )
    incidents: list[Incident] = Field(
        default_factory=list, description="Incidents the late event revealed (messages sent after they became moot)."
    )


# ----------------------------------------------------------------------------------------------------------
# The clock
# ----------------------------------------------------------------------------------------------------------
class ClockIn(_Timed):
    """Time has reached ``time`` (the creditor's end of day): book every open arrangement up to then.

    Installments that fell due or were missed, and plans that broke (with their collection costs), are booked
    on the days they happened; an arrangement is otherwise booked only when a request for it arrives.
    """

    model_config = _timed({"time": 30.0}, {"at": "2026-02-04T23:59:00Z"})


class ClockOut(BaseModel):
    """What the clock booked."""

    time: float
    at: dt.datetime
    arrangements: int = Field(description="Open arrangements booked up to the time.")
    events: dict[str, int] = Field(description="Events booked, by type.")


# ----------------------------------------------------------------------------------------------------------
# Overview
# ----------------------------------------------------------------------------------------------------------
class DecisionSummary(BaseModel):
    """A past decision, briefly."""

    decision_id: int
    time: float
    kind: DecisionKindName
    installment: int
    channel: str
    deferral_days: int
    reduction: float
    policy: str
    policy_version: str
    propensity: float
    masked_rules: list[str]


class NextAction(BaseModel):
    """The next planned message and the decision that planned it (why)."""

    message_id: int
    channel: Channel
    purpose: Literal["reminder", "confirmation", "thank_you"]
    installment: int
    send_time: float
    send_at: dt.datetime
    decided_by: DecisionSummary


class ContactRecord(BaseModel):
    """A message event of the contact history."""

    time: float
    at: dt.datetime
    event: str
    channel: str
    message_id: int | None
    decision_id: int | None


class PaymentRecord(BaseModel):
    """A payment received."""

    time: float
    at: dt.datetime
    amount_eur: float
    channel: str


class Overview(BaseModel):
    """The call-centre screen of one arrangement."""

    arrangement_id: int
    status: Status
    debt_eur: float
    balance_eur: float
    installments_paid: int
    installments_open: int
    installments: list[InstallmentOut]
    opted_out: list[Channel]
    next_action: NextAction | None
    last_decision: DecisionSummary | None
    contact_history: list[ContactRecord]
    payments: list[PaymentRecord] = Field(default_factory=list, description="Payments received, oldest first.")
    incidents: list[Incident] = Field(
        default_factory=list, description="Messages that went out after a late event had made them moot."
    )
