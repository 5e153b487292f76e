"""Context -> fixed-length float vector: the one feature module that training and serving share.

The layout (:data:`FEATURE_LAYOUT`) names every entry with its unit and range; :data:`FEATURE_VERSION` changes
whenever the layout or any entry's definition changes, and policy artifacts record it so that a policy is
never served features it was not trained on. Every entry is computed from a
:class:`~regsim.decision.ContextBatch` column, i.e. from observable history only, and clipped to its range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from regsim.config import CHANNELS
from regsim.decision import ContextBatch, DecisionKind

__all__ = ["FEATURE_LAYOUT", "FEATURE_VERSION", "Feature", "feature_names", "features"]

#: Version of the feature layout; bump on any change of :data:`FEATURE_LAYOUT` or of an entry's definition.
FEATURE_VERSION = "features-1"


@dataclass(frozen=True)
class Feature:
    """One entry of the feature vector."""

    name: str
    unit: str
    low: float
    high: float
    description: str


def _layout() -> tuple[Feature, ...]:
    f = Feature
    rows: list[Feature] = [
        f(f"kind_{k.name.lower()}", "indicator", 0, 1, f"decision point is {k.name}") for k in DecisionKind
    ]
    rows += [f(f"weekday_{d}", "indicator", 0, 1, f"decision day is weekday {d} (0=Monday)") for d in range(7)]
    rows += [
        f("day_of_month", "day/31", 0, 1, "calendar day of the month of the decision"),
        f("days_to_due", "days/30", -2, 2, "days until the targeted installment is due (negative: overdue)"),
        f("target_paid", "indicator", 0, 1, "the targeted installment is already paid"),
        f("log_installment", "log(1+EUR)/10", 0, 1.5, "amount of the targeted installment"),
        f("log_balance", "log(1+EUR)/10", 0, 1.5, "amount still to pay"),
        f("log_debt", "log(1+EUR)/10", 0, 1.5, "debt when the arrangement was agreed"),
        f("progress", "fraction", 0, 1, "installments paid / installments in the plan"),
        f("n_installments", "installments/24", 0, 5, "installments in the current plan"),
        f("installments_due", "installments/24", 0, 5, "installments that have fallen due"),
        f("on_time_share", "fraction", 0, 1, "on-time installments / installments due (1 if none due)"),
        f("missed", "misses/6", 0, 4, "missed installments so far"),
        f("overdue", "installments/3", 0, 4, "installments overdue now"),
        f("due_day", "day/31", 0, 1, "day of the month on which installments fall due"),
        f("deferrals", "deferrals/3", 0, 4, "deferrals granted"),
        f("reductions", "reductions/2", 0, 4, "reductions granted"),
        f("has_paid", "indicator", 0, 1, "a payment was received in this arrangement"),
        f("days_since_payment", "days/90", 0, 1, "days since the last payment (0 if none), clipped at 90"),
        f("last_payment_dom", "day/31", 0, 1, "day of the month of the last payment (0 if none)"),
        f("age", "days/365", 0, 4, "days since the arrangement was agreed"),
        f("prior_payments", "payments/10", 0, 5, "payments to the creditor before the arrangement"),
        f("prior_late_share", "fraction", 0, 1, "share of those that were late"),
        f("has_prior_pay_dom", "indicator", 0, 1, "a usual payment day is known from earlier payments"),
        f("prior_pay_dom", "day/31", 0, 1, "usual day of the month of earlier payments (0 if unknown)"),
        f("due_after_payday", "days/31", 0, 1, "days from the usual payment day to the due day, cyclic (0 if unknown)"),
        f("contacts_7d", "contacts/7", 0, 3, "contacts planned or made in the last 7 days"),
        f("has_contact", "indicator", 0, 1, "a contact was made"),
        f("days_since_contact", "days/30", 0, 1, "days since the last contact (0 if none), clipped at 30"),
    ]
    for what, scale in (("sent", 10), ("delivered", 10), ("opened", 10), ("clicked", 5)):
        rows += [f(f"{what}_{c}", f"messages/{scale}", 0, 5, f"{what} messages by {c}") for c in CHANNELS]
    rows += [f(f"opted_out_{c}", "indicator", 0, 1, f"the debtor opted out of {c}") for c in CHANNELS]
    return tuple(rows)


#: The feature layout: one :class:`Feature` per entry, in vector order.
FEATURE_LAYOUT: tuple[Feature, ...] = _layout()


def feature_names() -> tuple[str, ...]:
    """Names of the entries, in vector order."""
    return tuple(f.name for f in FEATURE_LAYOUT)


def _log10(x: NDArray[np.floating]) -> NDArray[np.float64]:
    return np.log1p(np.maximum(np.asarray(x, dtype=np.float64), 0.0)) / 10.0


def features(batch: ContextBatch) -> NDArray[np.float32]:
    """The feature matrix of a batch, shape ``(B, len(FEATURE_LAYOUT))``, float32, each column in its range."""
    c = batch.columns
    n = len(batch)
    f64 = np.float64
    kind = np.asarray(c["kind"], dtype=np.int64)
    weekday = np.asarray(c["weekday"], dtype=np.int64)
    due = np.asarray(c["installments_due"], dtype=f64)
    n_inst = np.maximum(np.asarray(c["n_installments"], dtype=f64), 1.0)
    since_pay = np.asarray(c["days_since_payment"], dtype=f64)
    since_contact = np.asarray(c["days_since_contact"], dtype=f64)
    prior_dom = np.asarray(c["prior_pay_dom"], dtype=f64)
    last_dom = np.asarray(c["last_payment_dom"], dtype=f64)
    due_day = np.asarray(c["due_day"], dtype=f64)
    known = prior_dom > 0
    cols: list[NDArray[np.float64]] = [(kind == k).astype(f64) for k in range(len(DecisionKind))]
    cols += [(weekday == d).astype(f64) for d in range(7)]
    cols += [
        np.asarray(c["day_of_month"], dtype=f64) / 31.0,
        np.asarray(c["days_to_due"], dtype=f64) / 30.0,
        np.asarray(c["target_paid"], dtype=f64),
        _log10(c["installment_eur"]),
        _log10(c["balance_eur"]),
        _log10(c["debt_eur"]),
        np.asarray(c["installments_paid"], dtype=f64) / n_inst,
        n_inst / 24.0,
        due / 24.0,
        np.where(due > 0, np.asarray(c["on_time"], dtype=f64) / np.maximum(due, 1.0), 1.0),
        np.asarray(c["missed"], dtype=f64) / 6.0,
        np.asarray(c["overdue"], dtype=f64) / 3.0,
        due_day / 31.0,
        np.asarray(c["deferrals"], dtype=f64) / 3.0,
        np.asarray(c["reductions"], dtype=f64) / 2.0,
        (since_pay >= 0).astype(f64),
        np.where(since_pay >= 0, np.minimum(since_pay, 90.0), 0.0) / 90.0,
        np.where(last_dom > 0, last_dom, 0.0) / 31.0,
        np.asarray(c["age_days"], dtype=f64) / 365.0,
        np.asarray(c["prior_payments"], dtype=f64) / 10.0,
        np.asarray(c["prior_late_share"], dtype=f64),
        known.astype(f64),
        np.where(known, prior_dom, 0.0) / 31.0,
        np.where(known, (due_day - prior_dom) % 31, 0.0) / 31.0,
        np.asarray(c["contacts_7d"], dtype=f64) / 7.0,
        (since_contact >= 0).astype(f64),
        np.where(since_contact >= 0, np.minimum(since_contact, 30.0), 0.0) / 30.0,
    ]
    for what, scale in (("sent", 10.0), ("delivered", 10.0), ("opened", 10.0), ("clicked", 5.0)):
        m = np.asarray(batch.by_name()[what], dtype=f64).reshape(n, len(CHANNELS)) / scale
        cols += [m[:, k] for k in range(len(CHANNELS))]
    opted = np.asarray(c["opted_out"], dtype=f64).reshape(n, len(CHANNELS))
    cols += [opted[:, k] for k in range(len(CHANNELS))]
    out = np.stack(cols, axis=1) if n else np.zeros((0, len(FEATURE_LAYOUT)))
    low = np.array([f.low for f in FEATURE_LAYOUT])
    high = np.array([f.high for f in FEATURE_LAYOUT])
    return np.clip(out, low, high).astype(np.float32)
