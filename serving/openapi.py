"""What the API's OpenAPI schema says beyond the models: the limits that come from the settings and the world.

The longest plan (the rules' cap on installments) and the largest batch (``REGSIM_MAX_BATCH``) are stated as
the ``maximum`` of ``n_installments`` and the ``maxItems`` of a batch's ``decisions``.

A timed request gives ``time`` (days since the epoch, ``0 .. MAX_TIME_DAYS``: the models state it) or ``at``,
a timestamp, which the server turns into days since the epoch and refuses (422) outside that range. The epoch
is a setting (the world config's ``simulation.start_date``), so the models cannot state it; JSON Schema has no
bound on a date-time either. :func:`refine` states it as a ``pattern``: the date is from the day after the
epoch (so that any UTC offset keeps the instant on or after it) to the end of the year 272 years later (under
``MAX_TIME_DAYS``, offsets included). A timestamp the pattern allows is always accepted; the few it leaves out
at the edges (the epoch's own day, a fractional year) may still be accepted: the schema errs on the side of
promising less.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from serving.schemas import MAX_TIME_DAYS

__all__ = ["at_pattern", "refine"]

#: Whole years after the epoch's year that every ``at`` of the pattern stays within ``MAX_TIME_DAYS``.
_YEARS = int(MAX_TIME_DAYS // 366) - 1

_DAY = r"(0[1-9]|[12][0-9]|3[01])"
_CLOCK = r"[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?"


def _alternatives(values: range, width: int) -> str:
    return "(" + "|".join(f"{v:0{width}d}" for v in values) + ")"


def at_pattern(epoch: dt.date) -> str:
    """A regular expression of the RFC 3339 timestamps from the day after ``epoch`` to ``_YEARS`` years later."""
    first = epoch + dt.timedelta(days=1)
    y, m, d = first.year, first.month, first.day
    parts = [f"{y:04d}-{m:02d}-{_alternatives(range(d, 32), 2)}"]
    if m < 12:
        parts.append(f"{y:04d}-{_alternatives(range(m + 1, 13), 2)}-{_DAY}")
    parts.append(f"{_alternatives(range(y + 1, epoch.year + _YEARS + 1), 4)}-(0[1-9]|1[0-2])-{_DAY}")
    return "^(" + "|".join(parts) + ")" + _CLOCK + "$"


def refine(schema: dict[str, Any], epoch: dt.date, max_installments: int, max_batch: int) -> dict[str, Any]:
    """State the settings' and the world's limits in an OpenAPI schema (in place; returned): the ``at`` pattern
    of every timed request body, the longest plan and the largest batch."""
    pattern = at_pattern(epoch)
    components = schema.get("components", {}).get("schemas", {})
    n_installments = components.get("ArrangementIn", {}).get("properties", {}).get("n_installments")
    if n_installments is not None:
        n_installments["maximum"] = min(int(n_installments.get("maximum", max_installments)), max_installments)
    decisions = components.get("BatchDecisionIn", {}).get("properties", {}).get("decisions")
    if decisions is not None:
        decisions["maxItems"] = max_batch
    for component in components.values():
        at = component.get("properties", {}).get("at")
        if at is not None and "oneOf" in component and at.get("format") == "date-time":
            at["pattern"] = pattern
            at["description"] = (
                f"{at.get('description', '')} From {epoch + dt.timedelta(days=1)} (the day after the epoch) "
                f"to the end of {epoch.year + _YEARS}."
            ).strip()
    return schema
