"""KPIs computed from an event log alone (so they run unchanged on production logs).

:func:`arrangement_outcomes` reduces a log to one row per arrangement; :func:`kpis` aggregates those rows;
:func:`kpis_by_segment` does so per segment (any labelling of arrangements: a debtor type from ground truth,
or an observable band such as the debt size).

KPI definitions (A = arrangements created in the log):

* ``completion_rate`` = completed / A
* ``breakdown_rate`` = broken / A; ``referral_rate`` = referred / A; ``active_rate`` = still open at the end / A
* ``on_time_installment_rate`` = installments paid in full by their due date / installments that fell due
  (or were paid before they did)
* ``collected_eur`` = sum of payments; ``contact_cost_eur`` = sum of the costs of messages sent (and of
  self-service custom cases' collector calls)
* ``cost_per_eur_collected`` = contact_cost_eur / collected_eur
* ``contacts_per_arrangement`` = messages sent / A
* ``mean_days_to_completion`` = mean over completed arrangements of (completion time - creation time)
* ``collected_eur_per_arrangement`` = collected_eur / A
* ``net_recovery_eur_per_arrangement`` = sum of (collected - contact cost) / A, net of concessions once: a
  discount or a waiver lowers what the debtor owes, so what is collected is already net of it (subtracting it
  again would count every concession twice); the concessions themselves are reported beside it
* ``recovered_share`` = collected_eur / sum of the debts at creation (the share of the original debt recovered)
* ``censored_rate`` = arrangements still open when followed no longer (at the run's end or their run-off cap) / A

Run-off: given a :class:`~regsim.runoff.RunoffCap`, each arrangement is followed from its creation to its cap
only; its events after the cap do not count and an arrangement open there is censored at it. :func:`runoff_value`
is the per-arrangement objective of a run-off verdict (net recovery plus a completion bonus).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from regsim.eventlog import EventType, event_codes
from regsim.runoff import DAYS_PER_MONTH, RunoffCap

__all__ = ["END_KINDS", "KPI_NAMES", "arrangement_outcomes", "kpis", "kpis_by_segment", "runoff_value"]

#: How an arrangement's follow-up ends: one of the three ends, or censored (still open when no longer followed).
END_KINDS: tuple[str, ...] = ("completed", "broken", "referred", "censored")

#: Completion bonus of :func:`runoff_value` (unit: EUR). Assumption: it mirrors the default of
#: ``regsim.rewards.completion_value`` (a completion is worth 3.0 reward units of EUR 100), i.e. a completed
#: plan is worth that much beyond the money it brought (the debtor keeps paying the creditor, no hand-over).
COMPLETION_BONUS_EUR = 300.0

#: The ``a_channel`` of a ``menu_choice`` event that chose debt counselling (``regsim.menu.MenuOption.COUNSELLING``).
MENU_COUNSELLING = 5

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
    "net_recovery_eur_per_arrangement",
    "recovered_share",
    "censored_rate",
)


def arrangement_outcomes(
    events: pa.Table, *, cap: RunoffCap | None = None, horizon_days: float | None = None
) -> pd.DataFrame:
    """One row per arrangement with the per-arrangement quantities the KPIs aggregate.

    Args:
        events: An event log (production schema).
        cap: Run-off cap: each arrangement's events later than its cap after creation are dropped, and one still
            open at its cap is censored there. ``None``: every event counts.
        horizon_days: When the log stops (unit: days since the run's start): an arrangement open then is censored
            then (or at its cap, if earlier). ``None``: the time of the log's last event.

    Returns:
        A frame indexed by ``arrangement_id`` with columns ``created``, ``completed``, ``broken``, ``referred``
        (0/1), ``collected_eur``, ``contact_cost_eur``, ``contacts``, ``installments_due``,
        ``installments_on_time``, ``days_to_completion`` (NaN unless completed), and

        * ``debt_eur``: the original debt (the ``arrangement_created`` event's amount);
        * ``concessions_eur``: discounts and waived costs granted on the self-service page, the sum of the
          ``concession`` events' amounts (0 without self-service, which is off by default);
        * ``custom_cases``: custom-solution cases staff resolved; their collector calls count in
          ``contact_cost_eur``;
        * ``counselled``: 1 when the debtor chose debt counselling on the page (the arrangement then ends
          ``referred``, its own outcome beside a shock's referral);
        * ``net_recovery_eur`` = collected_eur - contact_cost_eur: net of concessions already, since a
          concession comes off the balance and so off what can be collected (not subtracted a second time);
        * ``end_kind``: one of :data:`END_KINDS` (the first end event; ``"censored"`` if none);
        * ``months_to_end``: (end time, or the censoring time, - creation time) / 30.
    """
    if horizon_days is None:  # the log's end, before the events past a cap are dropped
        times = events.column("time").to_numpy()
        horizon_days = float(times.max()) if len(times) else 0.0
    events = _within_cap(events, cap)
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
    # A custom-solution case is a collector's call back (self-service): its cost is a contact's.
    out["contact_cost_eur"] = total(EventType.MESSAGE_SENT) + total(EventType.CASE_RESOLVED)
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

    out["debt_eur"] = _created_column(events, created_mask, ids, "amount_eur", index)
    out["concessions_eur"] = total(EventType.CONCESSION)
    out["custom_cases"] = count(EventType.CASE_RESOLVED)
    out["counselled"] = count(EventType.MENU_CHOICE, _chose(events, codes, MENU_COUNSELLING)).clip(upper=1)
    # A concession comes off the balance, so collected_eur is net of it already: it is not subtracted again.
    out["net_recovery_eur"] = out["collected_eur"] - out["contact_cost_eur"]

    end_codes = np.array([EventType.COMPLETED, EventType.BROKEN, EventType.REFERRED])
    ending = np.isin(codes, end_codes)
    ends = pd.DataFrame({"id": ids[ending], "time": time[ending], "code": codes[ending]})
    ends = ends.sort_values(["id", "time"], kind="stable").drop_duplicates("id").set_index("id").reindex(index)
    kind_of_code = {int(EventType.COMPLETED): 0, int(EventType.BROKEN): 1, int(EventType.REFERRED): 2}
    kind = ends["code"].map(kind_of_code).fillna(3).to_numpy(dtype=np.int64)
    out["end_kind"] = np.asarray(END_KINDS, dtype=object)[kind]
    start = created_time.reindex(index).to_numpy(dtype=np.float64)
    censor = np.full(len(index), float(horizon_days))
    if cap is not None:
        n_inst = _created_column(events, created_mask, ids, "n_installments", index)
        censor = np.minimum(censor, start + cap.days(n_inst))
    end = np.where(kind < 3, ends["time"].to_numpy(dtype=np.float64), censor)
    out["months_to_end"] = (end - start) / DAYS_PER_MONTH
    return out


def _chose(events: pa.Table, codes: np.ndarray, option: int) -> np.ndarray:
    """Per event, whether it is a ``menu_choice`` of ``option`` (``a_channel``; False for other events)."""
    a = events.column("a_channel").to_numpy(zero_copy_only=False)
    return (codes == EventType.MENU_CHOICE) & (np.nan_to_num(a.astype(np.float64), nan=-1.0) == option)


def _created_column(
    events: pa.Table, created_mask: np.ndarray, ids: np.ndarray, name: str, index: pd.Index
) -> np.ndarray:
    """A column of each arrangement's first ``arrangement_created`` event, aligned with ``index``."""
    values = events.column(name).to_numpy(zero_copy_only=False)
    frame = pd.Series(values[created_mask], index=ids[created_mask])
    return frame[~frame.index.duplicated()].reindex(index).to_numpy(dtype=np.float64)


def _within_cap(events: pa.Table, cap: RunoffCap | None) -> pa.Table:
    """The log without each arrangement's events later than its run-off cap after creation (``None``: all)."""
    if cap is None or events.num_rows == 0:
        return events
    codes = event_codes(events)
    ids = events.column("arrangement_id").to_numpy()
    time = events.column("time").to_numpy()
    created_mask = codes == EventType.ARRANGEMENT_CREATED
    n_inst = events.column("n_installments").to_numpy(zero_copy_only=False)[created_mask]
    first = pd.DataFrame({"id": ids[created_mask], "time": time[created_mask], "n": n_inst}).drop_duplicates("id")
    limit = pd.Series(first["time"].to_numpy() + cap.days(first["n"].to_numpy()), index=first["id"].to_numpy())
    per_event = limit.reindex(ids).to_numpy(dtype=np.float64)  # NaN: no creation in the log, kept
    late = time > per_event
    if not late.any():
        return events
    return events.filter(pa.array(~late))


def runoff_value(outcomes: pd.DataFrame, completion_bonus_eur: float = COMPLETION_BONUS_EUR) -> pd.Series:
    """Per arrangement, the run-off objective: ``net_recovery_eur + completion_bonus_eur * completed``.

    Args:
        outcomes: The frame of :func:`arrangement_outcomes` (preferably of a run-off log with a cap).
        completion_bonus_eur: What a completion is worth beyond its money (unit: EUR); the default mirrors
            ``regsim.rewards.completion_value`` (3.0 x EUR 100), an assumption.

    Returns:
        EUR per arrangement, indexed like ``outcomes``, named ``runoff_value_eur``.
    """
    value = outcomes["net_recovery_eur"] + float(completion_bonus_eur) * outcomes["completed"]
    return value.astype(np.float64).rename("runoff_value_eur")


def _aggregate(o: pd.DataFrame) -> dict[str, float]:
    n = float(len(o))
    if n == 0:
        return {k: float("nan") for k in KPI_NAMES}
    collected = float(o["collected_eur"].sum())
    cost = float(o["contact_cost_eur"].sum())
    due = float(o["installments_due"].sum())
    ended = o["completed"] + o["broken"] + o["referred"]
    debt = float(o["debt_eur"].sum())
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
        "net_recovery_eur_per_arrangement": float(o["net_recovery_eur"].sum()) / n,
        "recovered_share": collected / debt if debt else float("nan"),
        "censored_rate": float((o["end_kind"] == "censored").sum()) / n,
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
