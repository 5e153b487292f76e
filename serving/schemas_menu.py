"""The self-service API's request and response bodies: ``POST /v1/menus``, ``POST /v1/choices``, debtor links.

A **menu** is what the self-service page offers one arrangement in arrears (docs/mechanisms.md#mechanism-10):
for each of six options (deferral, plan, waiver, discount, counselling, custom) whether it is shown and with
which term, and the business rules that capped it. A **choice** is the debtor's answer: one option shown, with
the term the menu offered, or ``close`` (closed the page: the outside option).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from serving.schemas import MAX_ID, ArrangementId, InstallmentOut, _Strict, _Timed, _timed

__all__ = [
    "LANGUAGES",
    "OPTION_NAMES",
    "Answers",
    "CappedLevel",
    "CaseIn",
    "CaseOut",
    "ChoiceIn",
    "ChoiceOut",
    "Confirmation",
    "DebtorLinkIn",
    "DebtorLinkOut",
    "Language",
    "MenuIn",
    "MenuOut",
    "OfferedOption",
    "OptionName",
    "QueueOut",
    "QueuedCase",
]

#: The options of a menu, in slot order, after ``close`` (the outside option): regsim.menu.MenuOption's names.
OPTION_NAMES: tuple[str, ...] = ("close", "deferral", "plan", "waiver", "discount", "counselling", "custom")
OptionName = Literal["close", "deferral", "plan", "waiver", "discount", "counselling", "custom"]
#: The languages of the debtor's page and the confirmation text.
LANGUAGES: tuple[str, ...] = ("nl", "en")
Language = Literal["nl", "en"]
MenuId = int


class Answers(BaseModel):
    """The debtor's answers to the page's questions (recorded with the menu; the policy does not read them).

    They are observable proxies of the choice model's latent covariates (need, shock), kept so that a creditor
    can calibrate the model to their own log (regsim.choice.fit_mnl).
    """

    model_config = {"extra": "forbid"}

    can_pay_now: Literal["yes", "no"] = Field(description="Can you pay the amount due now?")
    reason: Literal["income_dropped", "unexpected_costs", "waiting_for_income", "other"] | None = Field(
        None, description="Why you cannot pay now."
    )
    when_able: Literal["within_two_weeks", "within_a_month", "later", "dont_know"] | None = Field(
        None, description="When you expect to be able to pay again."
    )


class MenuIn(_Timed):
    """A debtor of an arrangement in arrears opened the self-service page: the menu to show them."""

    model_config = _timed(
        {"arrangement_id": 7, "time": 40.5},
        {
            "arrangement_id": 7,
            "at": "2026-02-10T18:30:00Z",
            "answers": {"can_pay_now": "no", "reason": "unexpected_costs", "when_able": "within_a_month"},
        },
    )

    arrangement_id: ArrangementId
    answers: Answers | None = Field(None, description="The page's questions, as the debtor answered them.")


class CappedLevel(BaseModel):
    """A level of an option the business rules forbid for this arrangement, and the rules that forbid it."""

    level: int = Field(description="The level (index into the option's levels in the world config).")
    label: str = Field(description="The level by meaning, e.g. '10 days', '12 installments', '10%'.")
    rules: list[str] = Field(description="The menu rules that forbid it, e.g. ['menu_deferral_cap'].")


class OfferedOption(BaseModel):
    """One option of a menu: shown or not, its term, and what capped it."""

    option: OptionName
    shown: bool = Field(description="Whether the page offers it.")
    level: int = Field(description="The level the policy chose (0: not shown).")
    deferral_days: int | None = Field(None, description="Days of deferral offered (deferral only).")
    n_installments: int | None = Field(None, description="Installments of the new plan offered (plan only).")
    discount: float | None = Field(None, description="Fraction of the open balance offered off (discount only).")
    capped: list[CappedLevel] = Field(description="Levels of this option the rules forbid here.")
    capped_by: list[str] = Field(
        description="The rules that capped or hid this option (the union of ``capped``); empty: only the policy "
        "chose its level."
    )


class MenuOut(BaseModel):
    """A menu as logged (``menu_shown``): the options, who chose it and with which probability."""

    menu_id: MenuId = Field(description="The menu's id (a decision id: logged as ``decision_id``).")
    arrangement_id: int
    time: float
    at: dt.datetime
    installment: int = Field(description="The first open installment, which the menu is about.")
    options: list[OfferedOption] = Field(description="The six options in slot order (not ``close``).")
    allowed_choices: list[OptionName] = Field(description="What a choice on it may be: ``close`` and those shown.")
    masked_rules: list[str] = Field(description="The menu rules that capped anything on this menu.")
    policy: str
    policy_version: str
    propensity: float = Field(description="The policy's probability of the whole menu (for off-policy evaluation).")
    standing: bool = Field(
        False,
        description="True: the arrangement's unanswered menu shown again, within self_service.visit."
        "min_days_between_visits of when it was drawn (a reload or a repeat visit); nothing new was logged.",
    )


class ChoiceIn(_Timed):
    """The debtor's choice on a menu: an option it shows (with the term it offered), or ``close``."""

    model_config = _timed(
        {"arrangement_id": 7, "menu_id": 12, "option": "deferral", "deferral_days": 10, "time": 40.6},
        {"arrangement_id": 7, "menu_id": 12, "option": "plan", "n_installments": 6, "time": 40.6},
        {"arrangement_id": 7, "menu_id": 12, "option": "close", "at": "2026-02-10T18:35:00Z"},
    )

    arrangement_id: ArrangementId
    menu_id: MenuId = Field(ge=0, le=MAX_ID, description="The menu answered (``menu_id`` of POST /v1/menus).")
    option: OptionName
    deferral_days: int | None = Field(None, ge=0, le=365, description="Must equal the menu's (deferral only).")
    n_installments: int | None = Field(None, ge=1, le=1_000, description="Must equal the menu's (plan only).")
    discount: float | None = Field(None, ge=0.0, lt=1.0, description="Must equal the menu's (discount only).")
    language: Language = Field("nl", description="Language of the confirmation text.")


class Confirmation(BaseModel):
    """The confirmation the world sends after a choice: a message, due at once, on the confirmation channel."""

    message_id: int = Field(description="Report its events under this id (POST /v1/events).")
    channel: str
    send_time: float
    send_at: dt.datetime
    text: str = Field(description="The confirmation's text in the requested language.")


class ChoiceOut(BaseModel):
    """A registered choice and what followed from it through the ledger."""

    menu_id: MenuId
    arrangement_id: int
    option: OptionName
    time: float
    at: dt.datetime
    status: str = Field(description="The arrangement's status after the choice.")
    follow_up: Literal["none", "deferral", "new_plan", "concession", "referred", "queued_for_collectors"] = Field(
        description="What the choice set in motion: a re-plan, a concession off the balance, a referral to debt "
        "counselling, a case in the collectors' queue, or nothing (closed the page)."
    )
    concession_eur: float | None = Field(None, description="Amount taken off the balance (waiver, discount).")
    balance_eur: float = Field(description="Open balance after the choice.")
    installments: list[InstallmentOut] = Field(description="The plan after the choice, installment by installment.")
    events: list[str] = Field(description="The events the ledger logged for the choice, in order.")
    confirmation: Confirmation | None = Field(description="The confirmation (none after close or counselling).")


class DebtorLinkIn(_Strict):
    """Ask for the signed link to an arrangement's self-service page (to put in a reminder).

    Strict as every request body: an id is a JSON integer (``false`` is no id).
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"arrangement_id": 7, "language": "nl"}]})

    arrangement_id: ArrangementId
    language: Language = "nl"


class DebtorLinkOut(BaseModel):
    """A signed link to an arrangement's self-service page."""

    arrangement_id: int
    path: str = Field(description="The page's path with its signature; prefix the server's public address.")
    expires_at: dt.datetime


class CaseIn(_Timed):
    """Staff resolved a custom-solution case of the collectors' queue: a new plan and a deferral."""

    model_config = _timed(
        {"arrangement_id": 7, "menu_id": 12, "time": 44.4},
        {"arrangement_id": 7, "menu_id": 12, "deferral_days": 7, "n_installments": 9, "at": "2026-02-18T10:00:00Z"},
    )

    arrangement_id: ArrangementId
    menu_id: MenuId = Field(ge=0, le=MAX_ID, description="The menu whose custom solution this resolves.")
    deferral_days: int | None = Field(
        None, ge=0, le=365, description="Deferral staff agreed (default: the world's self_service.custom)."
    )
    n_installments: int | None = Field(
        None,
        ge=0,
        le=1_000,
        description="Installments of the new plan over the open balance (0: none; default: the world's, within "
        "the rules' plan length cap).",
    )
    cost_eur: float | None = Field(
        None, ge=0.0, le=10_000.0, description="What the case cost (default: a collector call's cost)."
    )


class CaseOut(BaseModel):
    """A resolved case and the plan it left."""

    menu_id: MenuId
    arrangement_id: int
    time: float
    at: dt.datetime
    deferral_days: int
    n_installments: int
    cost_eur: float
    events: list[str] = Field(description="The events the ledger logged, in order.")
    installments: list[InstallmentOut] = Field(description="The plan after the case, installment by installment.")


class QueuedCase(BaseModel):
    """A custom-solution case waiting in the collectors' queue."""

    menu_id: MenuId
    arrangement_id: int
    time: float = Field(description="When the debtor asked for it (days since the epoch).")
    at: dt.datetime


class QueueOut(BaseModel):
    """The collectors' queue of custom-solution cases, oldest first."""

    cases: list[QueuedCase]
