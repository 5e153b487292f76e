"""Paired evaluation of policies on the population simulator, with confidence intervals against a baseline.

:func:`evaluate` runs every policy on the same debtors and shocks (common random numbers: one
:func:`regsim.simulate` run per policy and seed, with the same seed and therefore the same arrangement ids,
debts, incomes and shocks; shared capacity counts, since the whole population runs together), and returns an
:class:`Evaluation`: per KPI of :data:`regsim.metrics.KPI_NAMES` and per segment, each policy's value, its
difference to the baseline with a paired confidence interval, and the share of the baseline-to-oracle gap it
closes.

Notation. Seeds :math:`s = 1..S`; in seed *s* arrangements :math:`i = 1..n_s`, pooled over seeds into
:math:`N = \\sum_s n_s` pairs; for policy *p* and the baseline *b*, per-arrangement quantities from
:func:`regsim.metrics.arrangement_outcomes`. Arrangement *i* of seed *s* is the same debtor under every
policy, so differences are taken arrangement by arrangement (pairing), which removes the between-debtor
variance that unpaired comparisons carry. Arrangements are pooled across seeds and treated as independent
pairs (seeds are independent populations; within a seed, arrangements interact only through shared
capacity, which the intervals ignore). All intervals are two-sided at ``level`` (95 % by default).

KPIs come in three kinds (:data:`KPI_KINDS`):

* **Means over arrangements** (``completion_rate``, ``breakdown_rate``, ``referral_rate``, ``active_rate``,
  ``contacts_per_arrangement``, ``collected_eur_per_arrangement``): value :math:`\\bar y_p = \\frac1N
  \\sum_{s,i} y_{p,si}`; difference :math:`\\bar d = \\frac1N \\sum_{s,i} d_{si}` with
  :math:`d_{si} = y_{p,si} - y_{b,si}`; the paired t interval :math:`\\bar d \\pm t_{1-\\alpha/2,\\,N-1}
  \\, s_d / \\sqrt N`, :math:`s_d` the sample standard deviation (ddof 1) of the :math:`d_{si}`
  (:func:`paired_mean_difference`).
* **Ratios of sums** (``on_time_installment_rate`` = on-time / due installments, ``cost_per_eur_collected``
  = contact cost / collected, ``mean_days_to_completion`` = sum of days over completed arrangements /
  completed): value :math:`R_p = \\bar Y_p / \\bar X_p`; difference :math:`D = R_p - R_b`; **delta method**
  with the paired influence values :math:`z_{si} = (Y_{p,si} - R_p X_{p,si}) / \\bar X_p - (Y_{b,si} - R_b
  X_{b,si}) / \\bar X_b`, interval :math:`D \\pm z_{1-\\alpha/2} \\, s_z / \\sqrt N`
  (:func:`paired_ratio_difference`).
* **Totals** (``collected_eur``, ``contact_cost_eur``): value the per-seed total averaged over seeds,
  :math:`\\frac1S \\sum_s \\sum_i y_{p,si} = \\bar n \\, \\bar y_p` with :math:`\\bar n = N / S` arrangements
  per seed; difference and interval are those of the per-arrangement mean scaled by :math:`\\bar n`:
  :math:`\\bar n \\bar d \\pm t_{1-\\alpha/2,\\,N-1} \\, \\bar n \\, s_d / \\sqrt N`.

Within a segment (a subset of arrangements) the same formulas apply to the arrangements of the segment, and
:math:`\\bar n` is the segment's arrangements per seed. Segments are labelled on the baseline's run of each seed
(hidden debtor type from ground truth, debt band from the ``arrangement_created`` event) and the labels are
used for every policy, so that the pairs stay pairs.

The gap closed (when an oracle is named) is :math:`\\bar d_p / \\bar d_{oracle}` per KPI and segment: 0 for
the baseline, 1 for the oracle, NaN where the oracle's difference is 0 or undefined.

References:
    Delta method for ratio metrics: Deng, Knoblich & Lu, "Applying the Delta Method in Metric Analytics: A
    Practical Guide with Novel Ideas", KDD 2018, section 3. Common random numbers: Law, *Simulation Modeling
    and Analysis*, 5th ed., section 11.2.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from tqdm import tqdm

from agents.registry import UnknownPolicyError, available, make
from regsim.config import WorldConfig
from regsim.decision import Policy
from regsim.eventlog import EventType, event_codes
from regsim.metrics import KPI_NAMES, arrangement_outcomes
from regsim.simulate import SimulationResult, simulate

__all__ = [
    "COLUMNS",
    "DEFAULT_SEGMENTS",
    "KPI_KINDS",
    "TABLE_KPIS",
    "DebtBands",
    "Evaluation",
    "PairedDifference",
    "Segmenter",
    "by_debtor_type",
    "evaluate",
    "paired_mean_difference",
    "paired_ratio_difference",
    "resolve_policy",
]

#: Columns of :attr:`Evaluation.frame`, in order.
COLUMNS: tuple[str, ...] = (
    "policy",
    "segment",
    "kpi",
    "value",
    "diff",
    "ci_low",
    "ci_high",
    "gap_closed",
    "n_arrangements",
)

KpiKind = Literal["mean", "ratio", "total"]

#: How each KPI aggregates arrangements, which decides its interval (see the module docstring).
KPI_KINDS: dict[str, KpiKind] = {
    "completion_rate": "mean",
    "on_time_installment_rate": "ratio",
    "collected_eur": "total",
    "contact_cost_eur": "total",
    "cost_per_eur_collected": "ratio",
    "contacts_per_arrangement": "mean",
    "breakdown_rate": "mean",
    "mean_days_to_completion": "ratio",
    "referral_rate": "mean",
    "active_rate": "mean",
    "collected_eur_per_arrangement": "mean",
}

#: The KPIs :meth:`Evaluation.table` shows by default.
TABLE_KPIS: tuple[str, ...] = (
    "completion_rate",
    "on_time_installment_rate",
    "breakdown_rate",
    "contacts_per_arrangement",
    "collected_eur_per_arrangement",
    "cost_per_eur_collected",
)

#: A segmentation: from the baseline's run of one seed, a label per arrangement id (index) as a Series.
Segmenter = Callable[[SimulationResult], pd.Series]

#: A policy as :func:`evaluate` accepts it: an instance (deep-copied per run), a zero-argument factory (called
#: per run), or a registered name or artifact folder (made or loaded per run).
PolicyLike = Policy | Callable[[], Policy] | str

_META_KEY = b"regsim.evaluation"


# ---------------------------------------------------------------------------------------------------------------
# Estimators: stateless functions of per-arrangement arrays
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairedDifference:
    """A difference to the baseline and its confidence interval.

    Attributes:
        diff: Point estimate (policy minus baseline).
        ci_low: Lower bound of the interval.
        ci_high: Upper bound of the interval.
        se: Standard error of ``diff``.
    """

    diff: float
    ci_low: float
    ci_high: float
    se: float

    def scaled(self, factor: float) -> PairedDifference:
        """The same difference in units ``factor`` times larger (e.g. per-seed totals from per-arrangement means)."""
        return PairedDifference(self.diff * factor, self.ci_low * factor, self.ci_high * factor, self.se * factor)


_NAN_DIFFERENCE = PairedDifference(math.nan, math.nan, math.nan, math.nan)


def _check_paired(*arrays: NDArray[np.float64]) -> int:
    n = len(arrays[0])
    if any(a.ndim != 1 or len(a) != n for a in arrays):
        raise ValueError(f"paired arrays must be 1-d of equal length, got shapes {[a.shape for a in arrays]}")
    return n


def paired_mean_difference(y: ArrayLike, y_base: ArrayLike, *, level: float = 0.95) -> PairedDifference:
    """Difference of means of paired observations, with the paired t interval.

    :math:`\\bar d \\pm t_{(1+level)/2,\\,N-1} \\, s_d / \\sqrt N`, where :math:`d_i = y_i - y^{base}_i`,
    :math:`\\bar d` their mean and :math:`s_d` their sample standard deviation (ddof 1).

    Args:
        y: Per-pair outcome under the policy, shape ``(N,)``.
        y_base: Per-pair outcome under the baseline, shape ``(N,)``.
        level: Confidence level of the two-sided interval.

    Returns:
        The difference; its interval is NaN for fewer than two pairs, and has zero width when every pair's
        difference is the same.

    Reference: Student's paired t test, e.g. Wasserman, *All of Statistics*, section 10.6 (paired samples).
    """
    a = np.asarray(y, dtype=np.float64)
    b = np.asarray(y_base, dtype=np.float64)
    n = _check_paired(a, b)
    if n == 0:
        return _NAN_DIFFERENCE
    d = a - b
    mean = float(d.mean())
    if n < 2:
        return PairedDifference(mean, math.nan, math.nan, math.nan)
    se = float(d.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + level / 2, df=n - 1)) * se
    return PairedDifference(mean, mean - half, mean + half, se)


def paired_ratio_difference(
    num: ArrayLike, den: ArrayLike, num_base: ArrayLike, den_base: ArrayLike, *, level: float = 0.95
) -> PairedDifference:
    """Difference of two ratios of sums over the same pairs, with a delta-method interval.

    With :math:`R = \\bar Y / \\bar X` for the policy and :math:`R_b = \\bar Y_b / \\bar X_b` for the baseline,
    :math:`D = R - R_b` is linearised per pair into the influence values

    .. math:: z_i = \\frac{Y_i - R X_i}{\\bar X} - \\frac{Y_{b,i} - R_b X_{b,i}}{\\bar X_b},

    so :math:`\\operatorname{Var} D \\approx s_z^2 / N` (the covariance of the two ratios enters through the
    pairing), and the interval is :math:`D \\pm z_{(1+level)/2} \\, s_z / \\sqrt N` with the normal quantile.

    Args:
        num: Per-pair numerator :math:`Y` under the policy, shape ``(N,)``.
        den: Per-pair denominator :math:`X` under the policy, shape ``(N,)``.
        num_base: Per-pair numerator under the baseline, shape ``(N,)``.
        den_base: Per-pair denominator under the baseline, shape ``(N,)``.
        level: Confidence level of the two-sided interval.

    Returns:
        The difference; all NaN when a denominator sums to 0; the interval NaN for fewer than two pairs.

    Reference: Deng, Knoblich & Lu, "Applying the Delta Method in Metric Analytics", KDD 2018, section 3.3.
    """
    y, x, yb, xb = (np.asarray(v, dtype=np.float64) for v in (num, den, num_base, den_base))
    n = _check_paired(y, x, yb, xb)
    if n == 0:
        return _NAN_DIFFERENCE
    mx, mxb = float(x.mean()), float(xb.mean())
    if mx == 0 or mxb == 0:
        return _NAN_DIFFERENCE
    r, rb = float(y.sum()) / float(x.sum()), float(yb.sum()) / float(xb.sum())
    diff = r - rb
    if n < 2:
        return PairedDifference(diff, math.nan, math.nan, math.nan)
    z = (y - r * x) / mx - (yb - rb * xb) / mxb
    se = float(z.std(ddof=1)) / math.sqrt(n)
    half = float(stats.norm.ppf(0.5 + level / 2)) * se
    return PairedDifference(diff, diff - half, diff + half, se)


# ---------------------------------------------------------------------------------------------------------------
# Per-arrangement terms of each KPI
# ---------------------------------------------------------------------------------------------------------------
def _terms(o: pd.DataFrame) -> dict[str, tuple[NDArray[np.float64], NDArray[np.float64] | None]]:
    """Per KPI, the per-arrangement numerator and (for ratios) denominator, matching regsim.metrics."""

    def col(name: str) -> NDArray[np.float64]:
        return o[name].to_numpy(dtype=np.float64)

    completed = col("completed")
    ended = completed + col("broken") + col("referred")
    days = np.nan_to_num(col("days_to_completion"), nan=0.0) * completed
    return {
        "completion_rate": (completed, None),
        "on_time_installment_rate": (col("installments_on_time"), col("installments_due")),
        "collected_eur": (col("collected_eur"), None),
        "contact_cost_eur": (col("contact_cost_eur"), None),
        "cost_per_eur_collected": (col("contact_cost_eur"), col("collected_eur")),
        "contacts_per_arrangement": (col("contacts"), None),
        "breakdown_rate": (col("broken"), None),
        "mean_days_to_completion": (days, completed),
        "referral_rate": (col("referred"), None),
        "active_rate": ((ended == 0).astype(np.float64), None),
        "collected_eur_per_arrangement": (col("collected_eur"), None),
    }


def _value(kind: KpiKind, num: NDArray[np.float64], den: NDArray[np.float64] | None, n_seeds: int) -> float:
    if len(num) == 0:
        return math.nan
    if kind == "ratio":
        assert den is not None
        total = float(den.sum())
        return float(num.sum()) / total if total else math.nan
    return float(num.sum()) / n_seeds if kind == "total" else float(num.mean())


def _difference(
    kind: KpiKind,
    terms: tuple[NDArray[np.float64], NDArray[np.float64] | None],
    base: tuple[NDArray[np.float64], NDArray[np.float64] | None],
    per_seed: float,
    level: float,
) -> PairedDifference:
    if kind == "ratio":
        assert terms[1] is not None and base[1] is not None
        return paired_ratio_difference(terms[0], terms[1], base[0], base[1], level=level)
    d = paired_mean_difference(terms[0], base[0], level=level)
    return d.scaled(per_seed) if kind == "total" else d


# ---------------------------------------------------------------------------------------------------------------
# Segments
# ---------------------------------------------------------------------------------------------------------------
def by_debtor_type(result: SimulationResult) -> pd.Series:
    """Hidden debtor type per arrangement, from ground truth (simulation only)."""
    truth = result.ground_truth
    return pd.Series(truth["debtor_type"].astype(str).to_numpy(), index=truth["arrangement_id"].to_numpy())


@dataclass(frozen=True)
class DebtBands:
    """Observable debt-size bands from the ``amount_eur`` of each ``arrangement_created`` event.

    Args:
        edges: Increasing band edges in euros; with the default, the bands are ``<500``, ``500-1500`` and
            ``>1500`` (a debt equal to an edge falls in the band above it).
    """

    edges: tuple[float, ...] = (500.0, 1500.0)

    def __post_init__(self) -> None:
        if not self.edges or any(b <= a for a, b in itertools.pairwise(self.edges)):
            raise ValueError(f"edges must be a non-empty increasing sequence, got {self.edges}")

    @property
    def labels(self) -> tuple[str, ...]:
        """Band labels, lowest first."""
        e = [f"{v:g}" for v in self.edges]
        return (f"<{e[0]}", *(f"{a}-{b}" for a, b in itertools.pairwise(e)), f">{e[-1]}")

    def __call__(self, result: SimulationResult) -> pd.Series:
        codes = event_codes(result.events)
        created = codes == EventType.ARRANGEMENT_CREATED
        ids = result.events.column("arrangement_id").to_numpy()[created]
        debt = result.events.column("amount_eur").to_numpy(zero_copy_only=False)[created]
        band = np.searchsorted(np.asarray(self.edges), debt, side="right")
        return pd.Series(np.asarray(self.labels, dtype=object)[band], index=ids)


#: The segmentations reported by default: hidden type (ground truth) and an observable debt band.
DEFAULT_SEGMENTS: dict[str, Segmenter] = {"debtor_type": by_debtor_type, "debt_eur": DebtBands()}


# ---------------------------------------------------------------------------------------------------------------
# Policies
# ---------------------------------------------------------------------------------------------------------------
def _load_artifact(path: Path, rules_version: str | None) -> Policy:
    # Imported here: agents.artifact may pull optional dependencies (torch) that plain evaluations don't need.
    from agents.artifact import load_policy

    return load_policy(path, rules_version=rules_version)


def resolve_policy(name: str, *, rules_version: str | None = None) -> Callable[[], Policy]:
    """A factory for a policy given by name: a registered name, or a folder holding a saved policy artifact.

    An artifact folder is loaded once here, to refuse a broken one before anything is simulated, and then
    again by every call of the factory (a fresh policy per run).

    Args:
        name: A registered policy name or an artifact folder.
        rules_version: The rule set the policy will run under; an artifact trained under another is refused
            (see ``agents.artifact.load_policy``). None skips that check.

    Raises:
        UnknownPolicyError: Neither a registered name nor a loadable artifact folder; the message lists the
            registered names, or says why the folder does not load.
    """
    path = Path(name)
    if path.is_dir():
        try:
            _load_artifact(path, rules_version)
        except (ValueError, ImportError, OSError) as exc:
            raise UnknownPolicyError(f"policy {name!r}: the folder does not load as a policy artifact: {exc}") from exc
        return lambda: _load_artifact(path, rules_version)
    if name in available():
        return lambda: make(name)
    raise UnknownPolicyError(
        f"unknown policy {name!r}: neither a registered name nor an artifact folder; allowed: {sorted(available())}"
    )


def _factory(key: str, obj: PolicyLike, rules_version: str) -> Callable[[], Policy]:
    if isinstance(obj, str):
        return resolve_policy(obj, rules_version=rules_version)
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "decide_batch")):
        factory: Callable[[], Any] = obj

        def fresh() -> Policy:
            policy: Policy = factory()
            if not hasattr(policy, "decide_batch"):
                raise TypeError(f"the factory of policy {key!r} returned {policy!r}, not a Policy")
            return policy

        return fresh
    if hasattr(obj, "decide_batch"):
        pristine: Any = obj
        return lambda: copy.deepcopy(pristine)
    raise TypeError(f"policy {key!r}: expected a Policy, a factory of one, or a name; got {obj!r}")


def _factories(
    policies: Mapping[str, PolicyLike] | Sequence[str], baseline: str, oracle: str | None, rules_version: str
) -> dict[str, Callable[[], Policy]]:
    if isinstance(policies, str):
        raise TypeError("policies must be a sequence of names or a mapping, not one string")
    if isinstance(policies, Mapping):
        given: dict[str, PolicyLike] = dict(policies)
    else:
        names = list(policies)
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"policies: names given more than once: {duplicated}")
        given = {n: n for n in names}
    for extra in (oracle, baseline):
        if extra is not None and extra not in given:
            given = {extra: extra, **given} if extra == baseline else {**given, extra: extra}
    return {key: _factory(key, obj, rules_version) for key, obj in given.items()}


# ---------------------------------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------------------------------
def _fmt(kpi: str, v: float, signed: bool = False) -> str:
    if not math.isfinite(v):
        return "nan"
    if kpi.endswith("_rate"):
        digits = 3
    elif kpi == "cost_per_eur_collected":
        digits = 4
    elif kpi in ("contacts_per_arrangement", "mean_days_to_completion"):
        digits = 2
    else:
        digits = 1
    return f"{v:+,.{digits}f}" if signed else f"{v:,.{digits}f}"


def _none_if_nan(v: Any) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in r.items()} for r in frame.to_dict("records")]


@dataclass
class Evaluation:
    """The paired comparison of policies returned by :func:`evaluate`.

    Attributes:
        frame: Tidy results, one row per (policy, segment, KPI), columns :data:`COLUMNS`: ``value`` (the KPI
            pooled over seeds; totals averaged per seed), ``diff`` (policy minus baseline), ``ci_low`` and
            ``ci_high`` (paired interval of ``diff``), ``gap_closed`` (``diff / diff of the oracle``; NaN
            without an oracle) and ``n_arrangements`` (pairs pooled over seeds). Rows are ordered by policy, then
            segment (``"all"`` first, then ``"<segmentation>=<label>"`` such as ``"debtor_type=reliable"`` or
            ``"debt_eur=<500"``), then KPI in :data:`~regsim.metrics.KPI_NAMES` order.
        baseline: The policy the differences are taken to.
        oracle: The policy whose difference defines the gap, or None.
        meta: Provenance: seeds, months, arrangements per seed, population, level, segmentations, methods.
    """

    frame: pd.DataFrame
    baseline: str
    oracle: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def policies(self) -> list[str]:
        """Policy names in evaluation order."""
        return list(dict.fromkeys(self.frame["policy"]))

    @property
    def segments(self) -> list[str]:
        """Segment labels in report order (``"all"`` first)."""
        return list(dict.fromkeys(self.frame["segment"]))

    def row(self, policy: str, kpi: str, segment: str = "all") -> pd.Series:
        """The result row of one policy, KPI and segment."""
        f = self.frame
        hit = f[(f["policy"] == policy) & (f["kpi"] == kpi) & (f["segment"] == segment)]
        if len(hit) != 1:
            raise KeyError(f"no result for policy={policy!r}, kpi={kpi!r}, segment={segment!r}")
        return hit.iloc[0]

    # -- writing and reading -----------------------------------------------------------------------------------
    def _all_meta(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "oracle": self.oracle, **self.meta}

    def to_parquet(self, path: str | Path) -> Path:
        """Write the tidy frame to Parquet, with the baseline, oracle and :attr:`meta` in the file's metadata."""
        p = Path(path)
        table = pa.Table.from_pandas(self.frame, preserve_index=False)
        metadata = {**(table.schema.metadata or {}), _META_KEY: json.dumps(self._all_meta()).encode()}
        pq.write_table(table.replace_schema_metadata(metadata), p)
        return p

    @classmethod
    def read_parquet(cls, path: str | Path) -> Evaluation:
        """Read what :meth:`to_parquet` wrote."""
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {})[_META_KEY])
        return cls._from_parts(table.to_pandas(), meta)

    def to_dict(self) -> dict[str, Any]:
        """Nested form: ``{"baseline", "oracle", "meta", "policies": {policy: {kpi: {value, diff, ci_low, ci_high,
        gap_closed, n_arrangements}, ..., "segments": {segment: {kpi: {...}}}}}}``; the ``"all"`` segment at the
        policy's top level, NaN as null."""
        policies: dict[str, Any] = {}
        for row in _records(self.frame):
            entry = {k: _none_if_nan(row[k]) for k in ("value", "diff", "ci_low", "ci_high", "gap_closed")}
            entry["n_arrangements"] = int(row["n_arrangements"])
            node = policies.setdefault(str(row["policy"]), {"segments": {}})
            if row["segment"] == "all":
                node[str(row["kpi"])] = entry
            else:
                node["segments"].setdefault(str(row["segment"]), {})[str(row["kpi"])] = entry
        for node in policies.values():
            node["segments"] = node.pop("segments")  # after the KPIs, for reading
        return {"baseline": self.baseline, "oracle": self.oracle, "meta": self.meta, "policies": policies}

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (strict: NaN written as null)."""
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        return p

    @classmethod
    def read_json(cls, path: str | Path) -> Evaluation:
        """Read what :meth:`to_json` wrote."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        rows = []
        for policy, node in data["policies"].items():
            groups = [("all", {k: v for k, v in node.items() if k != "segments"}), *node["segments"].items()]
            for segment, by_kpi in groups:
                for kpi, e in by_kpi.items():
                    rows.append({"policy": policy, "segment": segment, "kpi": kpi, **e})
        return cls._from_parts(
            pd.DataFrame(rows), {"baseline": data["baseline"], "oracle": data["oracle"], **data["meta"]}
        )

    @classmethod
    def _from_parts(cls, frame: pd.DataFrame, meta: dict[str, Any]) -> Evaluation:
        meta = dict(meta)
        baseline, oracle = meta.pop("baseline"), meta.pop("oracle")
        return cls(_typed_frame(frame), baseline, oracle, meta)

    # -- reading by eye --------------------------------------------------------------------------------------
    def table(self, segment: str = "all", kpis: Sequence[str] = TABLE_KPIS) -> str:
        """A paired table: policies as rows, KPIs as columns, cells ``value (diff [lo, hi])``.

        The baseline's cells show its value only. With an oracle, a last column gives the share of the gap
        closed on the first KPI.

        Args:
            segment: ``"all"``, a full segment label (``"debtor_type=reliable"``) or an unambiguous bare label
                (``"reliable"``).
            kpis: KPI columns, in order.
        """
        segment = self._segment_label(segment)
        f = self.frame[self.frame["segment"] == segment]
        at = {(str(r["policy"]), str(r["kpi"])): r for r in _records(f)}
        cells: dict[str, dict[str, str]] = {}
        for policy in self.policies:
            cells[policy] = {}
            for kpi in kpis:
                r = at[(policy, kpi)]
                value, diff, lo, hi = (float(r[k]) for k in ("value", "diff", "ci_low", "ci_high"))
                if policy == self.baseline:
                    cells[policy][kpi] = f"{_fmt(kpi, value)} (baseline)"
                else:
                    cells[policy][kpi] = (
                        f"{_fmt(kpi, value)} ({_fmt(kpi, diff, True)} [{_fmt(kpi, lo, True)}, {_fmt(kpi, hi, True)}])"
                    )
            if self.oracle is not None and kpis:
                g = float(at[(policy, kpis[0])]["gap_closed"])
                cells[policy][f"gap closed ({kpis[0]})"] = "nan" if not math.isfinite(g) else f"{g:.0%}"
        body = pd.DataFrame.from_dict(cells, orient="index")
        body.index.name = "policy"
        n = int(f["n_arrangements"].iloc[0]) if len(f) else 0
        seeds = self.meta.get("seeds", [])
        head = (
            f"segment {segment!r}: {n:,} arrangements over {len(seeds)} seed(s); "
            f"value (difference to {self.baseline!r} [{self.meta.get('level', 0.95):.0%} paired interval])"
        )
        return head + "\n" + body.to_string()

    def _segment_label(self, segment: str) -> str:
        known = self.segments
        if segment in known:
            return segment
        matches = [s for s in known if s.split("=", 1)[-1] == segment]
        if len(matches) == 1:
            return matches[0]
        raise KeyError(f"unknown or ambiguous segment {segment!r}; allowed: {known}")


def _typed_frame(frame: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "policy": frame["policy"].astype(str),
            "segment": frame["segment"].astype(str),
            "kpi": frame["kpi"].astype(str),
            **{c: pd.to_numeric(frame[c], errors="coerce").astype(np.float64) for c in COLUMNS[3:8]},
            "n_arrangements": frame["n_arrangements"].astype(np.int64),
        }
    )
    return out.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------------
# Evaluating
# ---------------------------------------------------------------------------------------------------------------
def evaluate(
    policies: Mapping[str, PolicyLike] | Sequence[str],
    population: WorldConfig,
    n_arrangements: int,
    seeds: Sequence[int],
    *,
    months: int = 12,
    baseline: str = "static-dunning",
    oracle: str | None = None,
    segments: Mapping[str, Segmenter] | None = None,
    level: float = 0.95,
    progress: bool = False,
    on_result: Callable[[str, int, SimulationResult], None] | None = None,
) -> Evaluation:
    """Run every policy on the same debtors and shocks and compare each with the baseline, paired.

    Every (policy, seed) pair is one :func:`regsim.simulate` run of the whole population (shared capacity
    counts), with ``arrangements=n_arrangements``, ``months`` and the seed: common random numbers make
    arrangement *i* of seed *s* the same debtor, facing the same shocks, under every policy. The statistics are
    in the module docstring.

    Every run starts from a fresh policy, so a learning policy's seeds are independent replications:

    * a **name** is made with :func:`agents.make` per run, or, when it is a folder, loaded per run with
      ``agents.artifact.load_policy(folder, rules_version=population.rules.version)`` (an artifact trained
      under another rule set is refused);
    * a **factory** (a class or any zero-argument callable) is called per run;
    * an **instance** is deep-copied per run (the instance passed in is never run itself).

    Args:
        policies: Names (registered or artifact folders), or a mapping of report name to instance, factory or
            name. The baseline and the oracle are added by name when missing.
        population: The world.
        n_arrangements: Arrangements per run.
        seeds: Run seeds (distinct, non-negative); each gives an independent population.
        months: Horizon in months of 30 days.
        baseline: Report name of the policy the differences are taken to.
        oracle: Report name of an upper-reference policy; every policy's ``gap_closed`` is its difference
            divided by the oracle's. None: no gap.
        segments: Segmentations, name to :data:`Segmenter`, applied to the baseline's run of each seed
            (default :data:`DEFAULT_SEGMENTS`: hidden ``debtor_type`` and observable ``debt_eur`` bands; ``{}``
            for the whole population only).
        level: Confidence level of the intervals.
        progress: Show a progress bar over the policy x seed runs (on stderr).
        on_result: Called as ``on_result(report_name, seed, result)`` after each run, before the result is
            dropped: the hook for keeping more of a run than its outcomes (event-log summaries, queue samples).

    Returns:
        The :class:`Evaluation`.

    Raises:
        UnknownPolicyError: A policy name is neither registered nor a loadable artifact folder (the message
            lists the registered names or says why the folder does not load), before anything is simulated.
        ValueError: Invalid sizes, seeds or level.
    """
    if n_arrangements < 1:
        raise ValueError(f"n_arrangements must be >= 1, got {n_arrangements}")
    if months < 1:
        raise ValueError(f"months must be >= 1, got {months}")
    seed_list = [int(s) for s in seeds]
    if not seed_list or any(s < 0 for s in seed_list) or len(set(seed_list)) != len(seed_list):
        raise ValueError(f"seeds must be a non-empty list of distinct integers >= 0, got {list(seeds)}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    missing = sorted(set(KPI_NAMES) - set(KPI_KINDS))
    if missing:  # a KPI added to regsim.metrics needs its kind here
        raise RuntimeError(f"agents.evaluate does not know how to compare KPI(s) {missing}; add them to KPI_KINDS")
    factories = _factories(policies, baseline, oracle, population.rules.version)
    segmenters = dict(DEFAULT_SEGMENTS if segments is None else segments)

    # -- run: one simulation per (seed, policy), kept as per-arrangement outcomes ------------------------------
    outcomes: dict[str, list[pd.DataFrame]] = {name: [] for name in factories}
    labels: dict[str, list[NDArray[np.object_]]] = {name: [] for name in segmenters}
    order = [baseline, *(n for n in factories if n != baseline)]  # the baseline first: it labels the segments
    with tqdm(total=len(order) * len(seed_list), unit="run", disable=not progress, file=sys.stderr) as bar:
        for seed in seed_list:
            index: pd.Index | None = None
            for name in order:
                bar.set_description(f"seed {seed} {name}")
                result = simulate(population, factories[name](), arrangements=n_arrangements, months=months, seed=seed)
                o = arrangement_outcomes(result.events)
                if on_result is not None:
                    on_result(name, seed, result)
                if index is None:
                    index = o.index
                    for seg, segmenter in segmenters.items():
                        labels[seg].append(pd.Series(segmenter(result)).reindex(index).fillna("other").to_numpy())
                elif not o.index.equals(index):
                    raise RuntimeError(
                        f"seed {seed}: policy {name!r} created other arrangements than {baseline!r}; "
                        "common random numbers are broken"
                    )
                outcomes[name].append(o)
                bar.update(1)

    # -- compare ---------------------------------------------------------------------------------------------
    pooled = {name: pd.concat(frames, ignore_index=True) for name, frames in outcomes.items()}
    n_total = len(pooled[baseline])
    masks: dict[str, NDArray[np.bool_]] = {"all": np.ones(n_total, dtype=bool)}
    for seg in segmenters:
        seg_labels = np.concatenate(labels[seg])
        for label in sorted(set(seg_labels.tolist()), key=_label_order(segmenters[seg])):
            masks[f"{seg}={label}"] = seg_labels == label
    terms = {name: _terms(o) for name, o in pooled.items()}
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in factories}  # policy-major, as in the JSON
    for segment, mask in masks.items():
        n = int(mask.sum())
        per_seed = n / len(seed_list)
        base = {k: (num[mask], None if den is None else den[mask]) for k, (num, den) in terms[baseline].items()}
        results: dict[str, dict[str, tuple[float, PairedDifference]]] = {}
        for name in factories:
            results[name] = {}
            for kpi in KPI_NAMES:
                kind = KPI_KINDS[kpi]
                num, den = terms[name][kpi]
                mine = (num[mask], None if den is None else den[mask])
                value = _value(kind, mine[0], mine[1], len(seed_list))
                if name == baseline:  # exactly zero, whatever the arithmetic would round to
                    diff = PairedDifference(0.0, 0.0, 0.0, 0.0) if n else _NAN_DIFFERENCE
                else:
                    diff = _difference(kind, mine, base[kpi], per_seed, level)
                results[name][kpi] = (value, diff)
        for name in factories:
            for kpi in KPI_NAMES:
                value, d = results[name][kpi]
                gap = math.nan
                if oracle is not None:
                    d_oracle = results[oracle][kpi][1].diff
                    if math.isfinite(d_oracle) and d_oracle != 0:
                        gap = d.diff / d_oracle + 0.0  # + 0.0: the baseline's 0 / negative is 0, not -0
                rows[name].append(
                    {
                        "policy": name,
                        "segment": segment,
                        "kpi": kpi,
                        "value": value,
                        "diff": d.diff,
                        "ci_low": d.ci_low,
                        "ci_high": d.ci_high,
                        "gap_closed": gap,
                        "n_arrangements": n,
                    }
                )
    meta = {
        "population": population.name,
        "seeds": seed_list,
        "months": months,
        "arrangements_per_seed": n_arrangements,
        "level": level,
        "segmentations": list(segmenters),
        "methods": {
            "mean": "paired t interval over arrangements pooled across seeds",
            "ratio": "delta method over arrangements pooled across seeds (normal quantile)",
            "total": "per-seed total averaged over seeds; paired t interval of the per-arrangement mean "
            "scaled by arrangements per seed",
        },
        "kpi_kinds": dict(KPI_KINDS),
    }
    frame = pd.DataFrame([r for name in factories for r in rows[name]], columns=list(COLUMNS))
    return Evaluation(_typed_frame(frame), baseline, oracle, meta)


def _label_order(segmenter: Segmenter) -> Callable[[str], tuple[int, str]]:
    """Sort key of a segmentation's labels: a segmenter's declared ``labels`` order first, then by name."""
    declared = list(getattr(segmenter, "labels", ()))
    return lambda label: (declared.index(label) if label in declared else len(declared), label)
