"""KPIs computed from an event log alone (so they run unchanged on production logs).

:func:`arrangement_outcomes` reduces a log to one row per arrangement; :func:`kpis` aggregates those rows;
:func:`kpis_by_segment` does so per segment (any labelling of arrangements: a debtor type from ground truth,
or an observable band such as the debt size).

KPI definitions (A = arrangements created in the log):

* ``completion_rate`` = completed / A
* ``breakdown_rate`` = broken / A; ``referral_rate`` = referred / A; ``active_rate`` = still open at the end / A
* ``on_time_installment_rate`` = installments paid in full by their due date / installments that fell due
  (or were paid before they did)
* ``collected_eur`` = sum of payments; ``contact_cost_eur`` = sum of the costs of messages sent
* ``cost_per_eur_collected`` = contact_cost_eur / collected_eur
* ``contacts_per_arrangement`` = messages sent / A
* ``mean_days_to_completion`` = mean over completed arrangements of (completion time - creation time)
* ``collected_eur_per_arrangement`` = collected_eur / A
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from regsim.eventlog import EventType, event_codes

__all__ = ["KPI_NAMES", "arrangement_outcomes", "kpis", "kpis_by_segment"]

#: The KPIs every evaluation reports, in display order.
KPI_NAMES: tuple[str, ...] = (
    "completion_rate",
    "on_time_installment_rate",
    "collected_eur",
    "contact_cost_eur",
    "cost_per_eur_collected",
    "contacts_per_arrangement",
    "breakdown_rate",
    "mean_days_to_completion",
    "referral_rate",
    "active_rate",
    "collected_eur_per_arrangement",
)


def arrangement_outcomes(events: pa.Table) -> pd.DataFrame:
    """One row per arrangement with the per-arrangement quantities the KPIs aggregate.

    Columns: ``created``, ``completed``, ``broken``, ``referred`` (0/1), ``collected_eur``,
    ``contact_cost_eur``, ``contacts``, ``installments_due``, ``installments_on_time``, ``days_to_completion``
    (NaN unless completed). Indexed by ``arrangement_id``.
    """
    codes = event_codes(events)
    ids = events.column("arrangement_id").to_numpy()
    time = events.column("time").to_numpy()
    amount = events.column("amount_eur").to_numpy(zero_copy_only=False)
    late = events.column("deferral_days").to_numpy(zero_copy_only=False)

    created_mask = codes == EventType.ARRANGEMENT_CREATED
    index = pd.Index(np.unique(ids[created_mask]), name="arrangement_id")
    out = pd.DataFrame(index=index)
    out["created"] = 1

    def count(kind: EventType, extra: np.ndarray | None = None) -> pd.Series:
        m = codes == kind if extra is None else (codes == kind) & extra
        return pd.Series(ids[m]).value_counts().reindex(index, fill_value=0)

    def total(kind: EventType) -> pd.Series:
        m = codes == kind
        return pd.Series(amount[m], index=ids[m]).groupby(level=0).sum().reindex(index, fill_value=0.0)

    out["completed"] = count(EventType.COMPLETED).clip(upper=1)
    out["broken"] = count(EventType.BROKEN).clip(upper=1)
    out["referred"] = count(EventType.REFERRED).clip(upper=1)
    out["collected_eur"] = total(EventType.PAYMENT)
    out["contact_cost_eur"] = total(EventType.MESSAGE_SENT)
    out["contacts"] = count(EventType.MESSAGE_SENT)
    # Installments that fell due, or were paid before they did (a prepaid last installment never falls due).
    inst = events.column("installment").to_numpy(zero_copy_only=False).astype(np.int64)
    settled = (codes == EventType.INSTALLMENT_DUE) | (codes == EventType.INSTALLMENT_PAID)
    keys = np.unique(ids[settled] * 65_536 + inst[settled])  # installment < 2**16
    out["installments_due"] = pd.Series(keys // 65_536).value_counts().reindex(index, fill_value=0)
    out["installments_on_time"] = count(EventType.INSTALLMENT_PAID, late <= 0)
    created_time = pd.Series(time[created_mask], index=ids[created_mask]).groupby(level=0).min()
    done = codes == EventType.COMPLETED
    done_time = pd.Series(time[done], index=ids[done]).groupby(level=0).min()
    out["days_to_completion"] = (done_time - created_time).reindex(index)
    return out


def _aggregate(o: pd.DataFrame) -> dict[str, float]:
    n = float(len(o))
    if n == 0:
        return {k: float("nan") for k in KPI_NAMES}
    collected = float(o["collected_eur"].sum())
    cost = float(o["contact_cost_eur"].sum())
    due = float(o["installments_due"].sum())
    ended = o["completed"] + o["broken"] + o["referred"]
    return {
        "completion_rate": float(o["completed"].sum()) / n,
        "on_time_installment_rate": float(o["installments_on_time"].sum()) / due if due else float("nan"),
        "collected_eur": collected,
        "contact_cost_eur": cost,
        "cost_per_eur_collected": cost / collected if collected else float("nan"),
        "contacts_per_arrangement": float(o["contacts"].sum()) / n,
        "breakdown_rate": float(o["broken"].sum()) / n,
        "mean_days_to_completion": float(o["days_to_completion"].mean()) if o["completed"].any() else float("nan"),
        "referral_rate": float(o["referred"].sum()) / n,
        "active_rate": float((ended == 0).sum()) / n,
        "collected_eur_per_arrangement": collected / n,
    }


def kpis(events: pa.Table | pd.DataFrame) -> dict[str, float]:
    """The KPIs of :data:`KPI_NAMES` over all arrangements of a log (or of an outcomes frame)."""
    outcomes = events if isinstance(events, pd.DataFrame) else arrangement_outcomes(events)
    return _aggregate(outcomes)


def kpis_by_segment(events: pa.Table | pd.DataFrame, segment_of: Mapping[int, str] | pd.Series) -> pd.DataFrame:
    """KPIs per segment.

    Args:
        events: An event log (or the frame of :func:`arrangement_outcomes`).
        segment_of: Arrangement id to segment label; arrangements without a label form the segment "other".

    Returns:
        A frame indexed by segment with one column per KPI and ``arrangements``, the segment's size.
    """
    outcomes = events if isinstance(events, pd.DataFrame) else arrangement_outcomes(events)
    labels = pd.Series(segment_of).reindex(outcomes.index).fillna("other")
    rows = {}
    for label, group in outcomes.groupby(labels.to_numpy()):
        rows[label] = {"arrangements": float(len(group)), **_aggregate(group)}
    return pd.DataFrame.from_dict(rows, orient="index")
