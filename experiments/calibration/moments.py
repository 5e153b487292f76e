"""Moments of an event log alone, by observable segment and month, with bootstrap standard errors.

Every moment is a ratio of two sums over arrangements, :math:`m_k = \\sum_a N_{ak} / \\sum_a D_{ak}`, where each
arrangement ``a`` contributes a numerator ``N_ak`` and a denominator ``D_ak`` (counts of installments, messages,
decisions, payments or the arrangement itself). That one form gives the standard errors (a bootstrap over
arrangements: the arrangements are resampled with replacement, ``B`` times, and ``m_k`` recomputed from the
resampled sums; the standard error is the draws' standard deviation) and the bootstrap draws the parameter
intervals reuse (:mod:`experiments.calibration.inference`).

Segments are observable at creation, never hidden types: the debt band (``arrangement_created.amount_eur``:
below EUR 600, 600-1200, 1200 and more) crossed with the plan-length band (``n_installments``: 3-6, 7-11, 12+),
e.g. ``debt:600-1200,plan:3-6``; ``all`` is the whole log. A month is ``floor(time / 30)`` of the event the
moment counts (``-1``: the whole log). The families (``family`` of :class:`MomentKey`; ``cell`` within it):

* ``pay_timing`` (segment x due month): of the installments that fell due, the share paid at a number of days
  relative to the due date (``installment_paid.deferral_days``, negative = early): ``early`` (<= -6), ``due_week``
  (-5..0, the pre-due reminder's window), ``late_1_7``, ``late_8_30``, ``unpaid`` (never paid in the log, or more
  than 30 days late).
* ``on_time`` (segment): share of installments that fell due that were paid by their due date.
* ``reminder_response`` (``all`` x channel x delivery hour band; segment x channel; ``all`` x channel x month):
  share of delivered messages followed by a payment of the arrangement within :data:`RESPONSE_WINDOW_DAYS`.
* ``opened`` and ``clicked`` (segment x channel): opened (clicked) messages / delivered messages.
* ``deferral`` and ``reduction`` (segment x month): re-plans of that kind / decisions.
* ``breakdown`` (segment): P(>= 1 missed), P(>= 2 missed | >= 1), P(broken | >= 1 missed), P(broken | >= 2 missed).
* ``completion`` (segment): completed / created.
* ``pay_amount`` (segment): share of payments whose amount, as a multiple of the plan's installment at creation,
  is at most the log's ``q``-quantile of that ratio, for ``q`` in :data:`AMOUNT_QUANTILES` (quantiles as
  indicator moments: the log's value is about ``q`` by construction, a simulation's says where its quantile lies).

* ``menu_choice`` (segment), when the log has self-service menus (``menu_shown``, ``menu_choice``: regsim.menu):
  the share of menus shown whose answer was each option (``close``, ``deferral``, ``plan``, ...).

Cells whose log denominator
is below ``min_count`` are dropped (:func:`design_from_log`); a simulation is measured on the log's cells and
thresholds (:func:`moment_values`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from numpy.typing import NDArray

__all__ = [
    "AMOUNT_QUANTILES",
    "RESPONSE_WINDOW_DAYS",
    "Contributions",
    "LogMoments",
    "MomentDesign",
    "MomentKey",
    "contributions",
    "design_from_log",
    "event_frame",
    "log_moments",
    "moment_values",
]

#: Days after a delivered message within which a payment counts as its response (unit: days). Assumption: the
#: reminder effect decays within a few days (``memory_days`` 2-3, docs/mechanisms.md mechanism 2).
RESPONSE_WINDOW_DAYS = 3.0
#: Quantiles of the payment-to-installment ratio used as indicator moments.
AMOUNT_QUANTILES: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)
#: Debt band edges (unit: EUR): below the first, between, from the second.
DEBT_EDGES_EUR: tuple[float, float] = (600.0, 1200.0)
#: Plan-length band edges (unit: installments): up to the first, up to the second, above (F9's bands).
PLAN_EDGES: tuple[int, int] = (6, 11)
#: Days late (``deferral_days`` of ``installment_paid``) bin edges of ``pay_timing``: (-inf,-6], (-6,0], (0,7],
#: (7,30]; later or never is ``unpaid``.
_TIMING_EDGES = (-np.inf, -6.0, 0.0, 7.0, 30.0)
_TIMING_CELLS = ("early", "due_week", "late_1_7", "late_8_30")
#: Delivery hour bands (unit: hour of day, [start, end)).
_HOUR_BANDS = ((0.0, 12.0, "morning"), (12.0, 17.0, "afternoon"), (17.0, 24.0, "evening"))
_COLUMNS = ("time", "event", "arrangement_id", "installment", "amount_eur", "channel", "n_installments")
_COLUMNS_OPT = ("installment_eur", "deferral_days", "a_channel")


@dataclass(frozen=True, order=True)
class MomentKey:
    """Which moment: its family, observable segment, month (``-1``: all months) and cell within the family."""

    family: str
    segment: str
    month: int
    cell: str

    @property
    def name(self) -> str:
        """``family/segment/m<month>/cell`` (``m*`` for all months)."""
        month = "m*" if self.month < 0 else f"m{self.month}"
        return f"{self.family}/{self.segment}/{month}/{self.cell}"


@dataclass(frozen=True)
class Contributions:
    """Per-arrangement numerators and denominators of moments.

    Attributes:
        arrangement_ids: The arrangements, shape ``(A,)``, sorted.
        keys: The moments, ``K`` of them.
        numer: ``N``, sparse ``(A, K)``.
        denom: ``D``, sparse ``(A, K)``.
    """

    arrangement_ids: NDArray[np.int64]
    keys: tuple[MomentKey, ...]
    numer: sp.csr_matrix
    denom: sp.csr_matrix

    def values(self) -> NDArray[np.float64]:
        """``m_k = sum_a N_ak / sum_a D_ak`` (NaN where the denominator is 0), shape ``(K,)``."""
        num = np.asarray(self.numer.sum(axis=0)).ravel()
        den = np.asarray(self.denom.sum(axis=0)).ravel()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)

    def counts(self) -> NDArray[np.float64]:
        """The denominators ``sum_a D_ak``, shape ``(K,)``."""
        return np.asarray(self.denom.sum(axis=0)).ravel()


@dataclass(frozen=True)
class MomentDesign:
    """The moments a log defines: which cells, and the log's thresholds of ``pay_amount``.

    Attributes:
        keys: The moments kept (log denominator at least ``min_count``), sorted.
        amount_thresholds: Per segment, the log's payment-to-installment quantiles at :data:`AMOUNT_QUANTILES`.
        min_count: The smallest log denominator kept.
    """

    keys: tuple[MomentKey, ...]
    amount_thresholds: dict[str, tuple[float, ...]]
    min_count: int


@dataclass(frozen=True)
class LogMoments:
    """A log's moments with their uncertainty.

    Attributes:
        design: The moments' definition.
        values: Log value of each moment, shape ``(K,)``.
        se: Bootstrap standard error, shape ``(K,)``.
        counts: Log denominator, shape ``(K,)``.
        draws: Bootstrap values, shape ``(B, K)`` (arrangements resampled with replacement).
        arrangements: Arrangements in the log.
    """

    design: MomentDesign
    values: NDArray[np.float64]
    se: NDArray[np.float64]
    counts: NDArray[np.float64]
    draws: NDArray[np.float64]
    arrangements: int

    @property
    def method(self) -> str:
        """How the standard errors were obtained."""
        return f"bootstrap over arrangements ({self.draws.shape[0]} draws, resampled with replacement)"


def event_frame(events: pa.Table | pd.DataFrame, horizon_days: float | None = None) -> pd.DataFrame:
    """The columns the moments read, as a DataFrame with ``event`` and ``channel`` as categoricals of strings
    (compared and filtered by code, not string by string; each family turns the rows it keeps into strings);
    events at or after ``horizon_days`` (unit: days since the start) dropped."""
    if isinstance(events, pa.Table):
        names = [c for c in (*_COLUMNS, *_COLUMNS_OPT) if c in events.column_names]
        frame = events.select(names).to_pandas()
    else:
        frame = events.copy()
    missing = [c for c in _COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"not an event log: missing columns {missing}")
    for c in ("event", "channel"):
        if not isinstance(frame[c].dtype, pd.CategoricalDtype):
            frame[c] = frame[c].astype(str).astype("category")
    if horizon_days is not None:
        frame = frame[frame["time"] < horizon_days]
    return frame.reset_index(drop=True)


def _band(values: NDArray[np.float64], edges: tuple[float, float], labels: tuple[str, str, str]) -> NDArray[np.str_]:
    idx = np.searchsorted(np.asarray(edges, float), values, side="right")
    return np.asarray(labels, dtype=object)[idx]


def _segments(frame: pd.DataFrame) -> pd.DataFrame:
    """Per arrangement (created in the log): segment label, debt and installment amount at creation."""
    created = frame[frame["event"] == "arrangement_created"].drop_duplicates("arrangement_id")
    debt = created["amount_eur"].to_numpy(float)
    plan = created["n_installments"].to_numpy(float)
    lo, hi = DEBT_EDGES_EUR
    debt_band = _band(debt, DEBT_EDGES_EUR, (f"<{lo:g}", f"{lo:g}-{hi:g}", f">={hi:g}"))
    p1, p2 = PLAN_EDGES
    plan_band = _band(plan, (p1 + 0.5, p2 + 0.5), (f"3-{p1}", f"{p1 + 1}-{p2}", f"{p2 + 1}+"))
    inst = created["installment_eur"].to_numpy(float) if "installment_eur" in created else debt / plan
    return pd.DataFrame(
        {
            "arrangement_id": created["arrangement_id"].to_numpy(np.int64),
            "segment": [f"debt:{d},plan:{p}" for d, p in zip(debt_band, plan_band, strict=True)],
            "installment_eur": inst,
        }
    )


def _rows(frame: pd.DataFrame, family: str, month: pd.Series | int, cell: pd.Series | str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "arrangement_id": frame["arrangement_id"].to_numpy(np.int64),
            "family": family,
            "segment": frame["segment"].to_numpy(object),
            "month": month if isinstance(month, int) else np.asarray(month, np.int64),
            "cell": cell if isinstance(cell, str) else np.asarray(cell, object),
            "num": frame["num"].to_numpy(float),
            "den": frame["den"].to_numpy(float),
        }
    )


def _all(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.assign(segment="all")


def _timing(frame: pd.DataFrame, seg: pd.DataFrame) -> list[pd.DataFrame]:
    due = frame[frame["event"] == "installment_due"][["arrangement_id", "installment", "time"]]
    due = due.drop_duplicates(["arrangement_id", "installment"], keep="last")
    paid = frame[frame["event"] == "installment_paid"][["arrangement_id", "installment", "deferral_days"]]
    paid = paid.drop_duplicates(["arrangement_id", "installment"], keep="first")
    d = due.merge(paid, on=["arrangement_id", "installment"], how="left").merge(seg, on="arrangement_id")
    late = d["deferral_days"].to_numpy(float)
    idx = np.searchsorted(np.asarray(_TIMING_EDGES[1:]), late, side="left")  # (e_{i-1}, e_i] -> i
    cells = np.asarray([*_TIMING_CELLS, "unpaid"], dtype=object)[np.where(np.isnan(late), 4, idx)]
    d = d.assign(month=(d["time"] // 30).astype(np.int64), cell=cells, den=1.0)
    out = []
    for c in (*_TIMING_CELLS, "unpaid"):
        out.append(_rows(d.assign(num=(cells == c).astype(float)), "pay_timing", d["month"], c))
    on_time = d.assign(num=(np.nan_to_num(late, nan=np.inf) <= 0).astype(float))
    out.append(_rows(on_time, "on_time", -1, "paid_by_due"))
    out.append(_all(_rows(on_time, "on_time", -1, "paid_by_due")))
    return out


def _hour_band(time: NDArray[np.float64]) -> NDArray[np.object_]:
    hour = (time % 1.0) * 24.0
    labels = np.empty(len(hour), dtype=object)
    for lo, hi, name in _HOUR_BANDS:
        labels[(hour >= lo) & (hour < hi)] = name
    return labels


def _messages(frame: pd.DataFrame, seg: pd.DataFrame) -> list[pd.DataFrame]:
    delivered = frame[frame["event"] == "message_delivered"][["arrangement_id", "time", "channel"]]
    delivered = delivered.assign(channel=delivered["channel"].astype(str))
    delivered = delivered.merge(seg, on="arrangement_id").sort_values("time", kind="stable")
    pays = frame[frame["event"] == "payment"][["arrangement_id", "time"]].rename(columns={"time": "pay_time"})
    pays = pays.sort_values("pay_time", kind="stable")
    nxt = pd.merge_asof(delivered, pays, left_on="time", right_on="pay_time", by="arrangement_id", direction="forward")
    responded = (nxt["pay_time"] - nxt["time"] <= RESPONSE_WINDOW_DAYS).to_numpy(bool)
    d = nxt.assign(num=responded.astype(float), den=1.0, month=(nxt["time"] // 30).astype(np.int64))
    hours = _hour_band(d["time"].to_numpy(float))
    out = [
        _all(_rows(d, "reminder_response", -1, d["channel"] + "@" + pd.Series(hours, index=d.index))),
        _rows(d, "reminder_response", -1, d["channel"]),
        _all(_rows(d, "reminder_response", d["month"], d["channel"])),
    ]
    per_msg = frame[frame["event"].isin(["message_delivered", "message_opened", "message_clicked"])]
    per_msg = per_msg[["arrangement_id", "event", "channel"]].astype({"event": str, "channel": str})
    per_msg = per_msg.merge(seg, on="arrangement_id")
    counts = per_msg.groupby(["arrangement_id", "segment", "channel", "event"]).size().unstack("event", fill_value=0)
    counts = counts.reset_index()
    for event, family in (("message_opened", "opened"), ("message_clicked", "clicked")):
        got = counts.get(event, 0.0)
        den = counts.get("message_delivered", 0.0)
        rows = counts.assign(num=np.asarray(got, float), den=np.asarray(den, float))
        out.append(_rows(rows, family, -1, rows["channel"]))
        out.append(_all(_rows(rows, family, -1, rows["channel"])))
    return out


def _concessions(frame: pd.DataFrame, seg: pd.DataFrame) -> list[pd.DataFrame]:
    sub = frame[frame["event"].isin(["decision", "deferral", "reduction"])][["arrangement_id", "event", "time"]]
    sub = sub.astype({"event": str})
    sub = sub.assign(month=(sub["time"] // 30).astype(np.int64)).merge(seg, on="arrangement_id")
    counts = sub.groupby(["arrangement_id", "segment", "month", "event"]).size().unstack("event", fill_value=0)
    counts = counts.reset_index()
    out = []
    for event in ("deferral", "reduction"):
        num = counts.get(event, 0.0)
        den = counts.get("decision", 0.0)
        rows = counts.assign(num=np.asarray(num, float), den=np.asarray(den, float))
        out.append(_rows(rows, event, rows["month"], "per_decision"))
    return out


def _per_arrangement(frame: pd.DataFrame, seg: pd.DataFrame) -> list[pd.DataFrame]:
    ev = frame["event"]
    missed = frame[ev == "installment_missed"].groupby("arrangement_id").size()
    broken = set(frame.loc[ev == "broken", "arrangement_id"].to_numpy())
    completed = set(frame.loc[ev == "completed", "arrangement_id"].to_numpy())
    a = seg.assign(missed=seg["arrangement_id"].map(missed).fillna(0).to_numpy(float))
    is_broken = a["arrangement_id"].isin(broken).to_numpy(float)
    m1 = (a["missed"] >= 1).to_numpy(float)
    m2 = (a["missed"] >= 2).to_numpy(float)
    out = []
    for cell, num, den in (
        ("missed>=1", m1, np.ones(len(a))),
        ("missed>=2|missed>=1", m2, m1),
        ("broken|missed>=1", is_broken * m1, m1),
        ("broken|missed>=2", is_broken * m2, m2),
    ):
        rows = a.assign(num=num, den=den)
        out += [_rows(rows, "breakdown", -1, cell), _all(_rows(rows, "breakdown", -1, cell))]
    rows = a.assign(num=a["arrangement_id"].isin(completed).to_numpy(float), den=1.0)
    out += [_rows(rows, "completion", -1, "completed"), _all(_rows(rows, "completion", -1, "completed"))]
    return out


def _menus(frame: pd.DataFrame, seg: pd.DataFrame) -> list[pd.DataFrame]:
    """Choice shares of the self-service menu (regsim.menu), when the log has menus."""
    from regsim.menu import MenuOption

    shown = frame[frame["event"] == "menu_shown"]
    if len(shown) == 0 or "a_channel" not in frame:
        return []
    den = shown.groupby("arrangement_id").size()
    chosen = frame[frame["event"] == "menu_choice"][["arrangement_id", "a_channel"]]
    out = []
    base = seg[seg["arrangement_id"].isin(den.index)]
    for option in MenuOption:
        num = chosen[chosen["a_channel"] == int(option)].groupby("arrangement_id").size()
        rows = base.assign(
            num=base["arrangement_id"].map(num).fillna(0).to_numpy(float),
            den=base["arrangement_id"].map(den).to_numpy(float),
        )
        out += [
            _rows(rows, "menu_choice", -1, option.name.lower()),
            _all(_rows(rows, "menu_choice", -1, option.name.lower())),
        ]
    return out


def _amount_ratios(frame: pd.DataFrame, seg: pd.DataFrame) -> pd.DataFrame:
    pays = frame[frame["event"] == "payment"][["arrangement_id", "amount_eur"]].merge(seg, on="arrangement_id")
    return pays.assign(ratio=pays["amount_eur"].to_numpy(float) / pays["installment_eur"].to_numpy(float))


def amount_thresholds(frame: pd.DataFrame) -> dict[str, tuple[float, ...]]:
    """Per segment (and ``all``), the log's quantiles of the payment-to-installment ratio at
    :data:`AMOUNT_QUANTILES` (duplicates dropped: a point mass at a full installment gives one threshold)."""
    pays = _amount_ratios(frame, _segments(frame))
    out: dict[str, tuple[float, ...]] = {}
    for name, group in [("all", pays), *pays.groupby("segment")]:
        if len(group) == 0:
            continue
        q = np.quantile(group["ratio"].to_numpy(float), AMOUNT_QUANTILES)
        out[str(name)] = tuple(float(x) for x in dict.fromkeys(np.round(q, 6)))
    return out


def _amounts(frame: pd.DataFrame, seg: pd.DataFrame, thresholds: dict[str, tuple[float, ...]]) -> list[pd.DataFrame]:
    pays = _amount_ratios(frame, seg)
    out = []
    for scope in ("segment", "all"):
        view = pays if scope == "segment" else pays.assign(segment="all")
        for name, group in view.groupby("segment"):
            for thr in thresholds.get(str(name), ()):
                rows = group.assign(num=(group["ratio"] <= thr + 1e-9).astype(float), den=1.0)
                out.append(_rows(rows, "pay_amount", -1, f"ratio<={thr:g}"))
    return out


def _key_codes(long: pd.DataFrame) -> tuple[tuple[MomentKey, ...], NDArray[np.int64]]:
    """The sorted distinct moments of the long rows and each row's position among them.

    Each key column is factorised on its own (hashing, no sort of the long frame), the four codes combined into
    one integer per row, and only the distinct combinations sorted as :class:`MomentKey` s.
    """
    codes: list[NDArray[np.int64]] = []
    uniques: list[NDArray[np.object_]] = []
    for column in ("family", "segment", "month", "cell"):
        code, uniq = pd.factorize(long[column].to_numpy(), sort=False)
        codes.append(code.astype(np.int64))
        uniques.append(np.asarray(uniq, dtype=object))
    combined = np.zeros(len(long), dtype=np.int64)
    for code, uniq in zip(codes, uniques, strict=True):
        combined = combined * max(len(uniq), 1) + code
    distinct, inverse = np.unique(combined, return_inverse=True)
    parts = []
    rest = distinct
    for uniq in reversed(uniques):
        parts.append(rest % max(len(uniq), 1))
        rest = rest // max(len(uniq), 1)
    families, segments, months, cells = reversed(parts)
    found = [
        MomentKey(str(uniques[0][a]), str(uniques[1][b]), int(uniques[2][d]), str(uniques[3][e]))
        for a, b, d, e in zip(families, segments, months, cells, strict=True)
    ]
    order = sorted(range(len(found)), key=found.__getitem__)
    rank = np.empty(len(found), dtype=np.int64)
    rank[np.asarray(order, dtype=np.int64)] = np.arange(len(found))
    return tuple(found[i] for i in order), rank[inverse.ravel()]


def contributions(
    events: pa.Table | pd.DataFrame,
    thresholds: dict[str, tuple[float, ...]] | None = None,
    horizon_days: float | None = None,
) -> Contributions:
    """Every moment's per-arrangement numerator and denominator (all cells, none dropped).

    Args:
        events: An event log (production schema).
        thresholds: ``pay_amount`` thresholds per segment (default: this log's own, :func:`amount_thresholds`).
        horizon_days: Count only events before this time (unit: days since the start).

    Raises:
        ValueError: The table is not an event log.
    """
    frame = event_frame(events, horizon_days)
    seg = _segments(frame)
    if thresholds is None:
        thresholds = amount_thresholds(frame)
    parts = [
        *_timing(frame, seg),
        *_messages(frame, seg),
        *_concessions(frame, seg),
        *_per_arrangement(frame, seg),
        *_amounts(frame, seg, thresholds),
        *_menus(frame, seg),
    ]
    long = pd.concat([p for p in parts if len(p)], ignore_index=True)
    long = long[long["den"].to_numpy(float) > 0]
    keys, col = _key_codes(long)
    ids = np.sort(seg["arrangement_id"].to_numpy(np.int64))
    row = np.searchsorted(ids, long["arrangement_id"].to_numpy(np.int64))
    shape = (len(ids), len(keys))
    # A COO-to-CSR conversion sums the rows of one (arrangement, moment): the per-arrangement sums.
    numer = sp.coo_matrix((long["num"].to_numpy(float), (row, col)), shape=shape).tocsr()
    denom = sp.coo_matrix((long["den"].to_numpy(float), (row, col)), shape=shape).tocsr()
    return Contributions(ids, keys, numer, denom)


def design_from_log(
    events: pa.Table | pd.DataFrame, *, min_count: int = 30, horizon_days: float | None = None
) -> tuple[MomentDesign, Contributions]:
    """The moments a log supports: every cell whose log denominator is at least ``min_count``.

    Returns:
        The design and the log's contributions restricted to its keys.

    Raises:
        ValueError: ``min_count`` < 1, or no cell reaches it.
    """
    if min_count < 1:
        raise ValueError(f"min_count: expected an integer >= 1, got {min_count}")
    frame = event_frame(events, horizon_days)
    thresholds = amount_thresholds(frame)
    contrib = contributions(frame, thresholds)
    keep = np.flatnonzero(contrib.counts() >= min_count)
    if len(keep) == 0:
        raise ValueError(f"no moment has a log denominator of at least min_count={min_count}; the log is too small")
    kept = Contributions(
        contrib.arrangement_ids,
        tuple(contrib.keys[i] for i in keep),
        contrib.numer[:, keep].tocsr(),
        contrib.denom[:, keep].tocsr(),
    )
    return MomentDesign(kept.keys, thresholds, min_count), kept


def _restrict(contrib: Contributions, keys: tuple[MomentKey, ...]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    index = {k: i for i, k in enumerate(contrib.keys)}
    cols = [index.get(k, -1) for k in keys]
    present = np.array([c >= 0 for c in cols], dtype=bool)
    take = np.array([c for c in cols if c >= 0], dtype=np.int64)
    a = contrib.numer.shape[0]
    numer = sp.lil_matrix((a, len(keys)))
    denom = sp.lil_matrix((a, len(keys)))
    if len(take):
        numer[:, np.flatnonzero(present)] = contrib.numer[:, take]
        denom[:, np.flatnonzero(present)] = contrib.denom[:, take]
    return numer.tocsr(), denom.tocsr()


def moment_values(
    events: pa.Table | pd.DataFrame, design: MomentDesign, horizon_days: float | None = None
) -> NDArray[np.float64]:
    """A log's (e.g. a simulation's) values of the moments of ``design``, shape ``(K,)``; NaN where it has no
    denominator (the cell did not occur)."""
    contrib = contributions(events, design.amount_thresholds, horizon_days)
    index = {k: i for i, k in enumerate(contrib.keys)}
    values = contrib.values()
    return np.array([values[index[k]] if k in index else np.nan for k in design.keys], dtype=float)


def bootstrap_values(
    numer: sp.csr_matrix, denom: sp.csr_matrix, n_boot: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Moments recomputed on ``n_boot`` resamples of the arrangements (multinomial counts), shape ``(B, K)``."""
    a = numer.shape[0]
    weights = rng.multinomial(a, np.full(a, 1.0 / a), size=n_boot).astype(float)
    num = np.asarray(numer.T @ weights.T).T  # sparse (K, A) @ dense (A, B): no dense (A, K) copy
    den = np.asarray(denom.T @ weights.T).T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def log_moments(
    events: pa.Table | pd.DataFrame,
    *,
    rng: np.random.Generator,
    min_count: int = 30,
    n_boot: int = 200,
    horizon_days: float | None = None,
) -> LogMoments:
    """A log's moments (:func:`design_from_log`) with bootstrap standard errors over arrangements.

    A standard error is floored at ``0.5 / count`` (half of what one unit changes the ratio), so that a moment
    at 0 or 1 in the log still has a finite weight.

    Raises:
        ValueError: ``n_boot`` < 2, or the design's errors.
    """
    if n_boot < 2:
        raise ValueError(f"n_boot: expected an integer >= 2, got {n_boot}")
    design, contrib = design_from_log(events, min_count=min_count, horizon_days=horizon_days)
    draws = bootstrap_values(contrib.numer, contrib.denom, n_boot, rng)
    values = contrib.values()
    counts = contrib.counts()
    draws = np.where(np.isnan(draws), values[None, :], draws)
    se = np.maximum(np.std(draws, axis=0, ddof=1), 0.5 / np.maximum(counts, 1.0))
    return LogMoments(design, values, se, counts, draws, len(contrib.arrangement_ids))


def months_in(events: pa.Table | pd.DataFrame) -> int:
    """Months (of 30 days) the log spans: ``ceil(last event time / 30)``, at least 1."""
    frame = event_frame(events)
    last = float(frame["time"].max()) if len(frame) else 0.0
    return max(1, math.ceil(last / 30.0 - 1e-9))
