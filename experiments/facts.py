"""The calibration facts of docs/calibration.md measured on a world: ``regsim facts``.

Each fact is measured the way its source measured it, on simulated arrangements of the given world, with common
random numbers for the paired trial designs (the same debtors, shocks and draws under each arm):

* **F3** (Cadena & Schoar): a monthly SMS a few days before each due date against none; the paired difference of
  each arrangement's share of installments paid on time, over the trial's population (:data:`TRIAL_TYPES`).
* **F5** (Karlan, McConnell & Mullainathan): the same SMS plus two further late SMS (the day after a miss and a
  week later) against the pre-due SMS alone; the same outcome.
* **F6**: the share of delivered SMS read, and of delivered emails opened (read, ground truth), under static
  dunning.
* **F7**: letters' days in the post (posting to delivery) under static dunning, and the share of letters
  delivered on a Sunday or a Monday (none: PostNL delivers Tuesday to Saturday).
* **F8**: breakdowns charged statutory collection costs without a letter posted at least 14 days before (none).
* **F9a**: completion of 3-6 installment plans and of 12+ installment plans under static dunning (the firm's own
  process); plan length as agreed at creation.
* **F9b**: completion when the first installment falls due soon after the agreement (within 10 days, the
  soonest the world allows being ``arrangements.min_days_to_first_due``) and when it is 28 days or more out.
* **fatigue**: the share of debtors who disengage under a policy the action space allows (a robocall at every
  decision point, within the rules): fatigue must bite for some policy.

A fact's range is its stated range (for "about" values, the reading given in :data:`FACTS`); a measured value
is in range when its 95% interval meets the range (the range widened by the estimate's own interval, never
more).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from agents.base import BasePolicy, slot_index
from agents.rules_based import Silent, StaticDunning
from experiments.run_folder import FactRow
from regsim import WorldConfig, simulate
from regsim.config import CHANNELS
from regsim.decision import CHANNEL, ContextBatch, DecisionBatch, DecisionKind, Policy
from regsim.eventlog import EventType, event_codes
from regsim.ledger import COLLECTION_COSTS_NOTICE_DAYS
from regsim.metrics import arrangement_outcomes
from regsim.simulate import SimulationResult

__all__ = [
    "FACTS",
    "TRIAL_TYPES",
    "FactCheck",
    "FactSpec",
    "LateSmsToo",
    "PreDueSms",
    "RobocallEveryTime",
    "measure_facts",
    "write_facts",
]

#: Debtor types standing for the trial populations of F3 and F5: borrowers able and willing to pay (microfinance
#: clients repaying to keep access to credit; savers who chose to save), i.e. every default type but the
#: unwilling.
TRIAL_TYPES: tuple[str, ...] = ("reliable", "forgetful", "liquidity_constrained", "shock_prone")
#: Months simulated: the longest default plan (12 installments) plus room for deferrals, so plans end.
MONTHS = 18
_Z95 = float(stats.norm.ppf(0.975))
_SMS, _ROBOCALL, _LETTER, _EMAIL = (1 + CHANNELS.index(c) for c in ("sms", "robocall", "letter", "email"))


@dataclass(frozen=True)
class FactSpec:
    """A calibration fact: its id, text, the source's value in words and the range it sets (in ``unit``)."""

    id: str
    fact: str
    source_value: str
    low: float
    high: float


#: Every fact measured, with its range. Readings of "about": F6's email ~20% as 17-23%; F9's ~88% / ~52% /
#: 92% / 67% as +-3 points; F5's "no additive effect" as within +-2 points; F7's 1-2 day norm, lengthening,
#: as a mean of 1 to 3 days (``channels.letter.delay_days_min..max``); fatigue "bites" as at least 1% of
#: debtors disengaging.
FACTS: dict[str, FactSpec] = {
    s.id: s
    for s in (
        FactSpec(
            "F3",
            "monthly pre-due SMS vs none: rise in the share of installments paid on time (trial population)",
            "+7 to 9 points",
            0.07,
            0.09,
        ),
        FactSpec(
            "F5",
            "two further late SMS on top of the pre-due SMS: rise in the on-time share (trial population)",
            "no additive effect",
            -0.02,
            0.02,
        ),
        FactSpec("F6-sms", "share of delivered SMS read", "95-98%", 0.95, 0.98),
        FactSpec("F6-email", "share of delivered emails opened (read)", "~20%", 0.17, 0.23),
        FactSpec("F7-delay", "letters: mean days from posting to delivery", "1-2 days, norms lengthening", 1.0, 3.0),
        FactSpec("F7-weekday", "share of letters delivered on a Sunday or a Monday", "none (Tuesday-Saturday)", 0, 0),
        FactSpec(
            "F8",
            "breakdowns charged collection costs without a letter posted 14 days before",
            "none (law)",
            0.0,
            0.0,
        ),
        FactSpec("F9a-short", "completion of 3-6 installment plans (static dunning)", "~88%", 0.85, 0.91),
        FactSpec("F9a-long", "completion of 12+ installment plans (static dunning)", "~52%", 0.49, 0.55),
        FactSpec("F9b-soon", "completion when the first payment is due within 10 days", "92%", 0.89, 0.95),
        FactSpec("F9b-late", "completion when the first payment is due 28+ days out", "67%", 0.64, 0.70),
        FactSpec(
            "fatigue",
            "share of debtors disengaged under a robocall at every decision point",
            "fatigue bites (> 0)",
            0.01,
            1.0,
        ),
    )
}


@dataclass(frozen=True)
class FactCheck(FactRow):
    """One fact measured on a world: the record of ``facts.json`` (:class:`FactRow`) with the fact's range.

    Attributes:
        low: The fact's range, lower end.
        high: The fact's range, upper end.
    """

    low: float
    high: float

    #: The keys written to ``facts.json``: exactly the fields of :class:`FactRow`, which its reader checks.
    JSON_KEYS: ClassVar[tuple[str, ...]] = tuple(FactRow.__dataclass_fields__)

    @classmethod
    def of(cls, spec: FactSpec, value: float, ci: tuple[float, float]) -> FactCheck:
        """The check of ``spec`` for a measured value and its interval (in range: the interval meets the range)."""
        low, high = float(ci[0]), float(ci[1])
        return cls(
            spec.id,
            spec.fact,
            spec.source_value,
            float(value),
            low,
            high,
            in_range=bool(high >= spec.low and low <= spec.high),
            low=spec.low,
            high=spec.high,
        )

    def as_json(self) -> dict[str, str | float | bool]:
        """The object written to ``facts.json`` (exactly :data:`JSON_KEYS`)."""
        return {k: getattr(self, k) for k in self.JSON_KEYS}


# -- the trial arms -------------------------------------------------------------------------------------------
def _actions(batch: ContextBatch, channel: NDArray[np.int64], slot: NDArray[np.int64]) -> DecisionBatch:
    allowed = batch.part_mask(CHANNEL)[np.arange(len(batch)), channel]
    actions = np.zeros((len(batch), 5), dtype=np.int64)
    actions[:, 0] = np.where(allowed, channel, 0)
    actions[:, 1] = slot
    return DecisionBatch(actions, np.ones(len(batch)))


class PreDueSms(BasePolicy):
    """F3's intervention: an SMS three days before every due date (at 10:00), nothing else."""

    name: ClassVar[str] = "facts-pre-due-sms"
    version: ClassVar[str] = "1"
    late: ClassVar[bool] = False

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        b = contexts
        kind = b.columns["kind"]
        want = kind == DecisionKind.PRE_DUE
        if self.late:  # F5: the day after a miss, and at the first follow-up a week later
            overdue = -b.columns["days_to_due"].astype(np.int64)
            want |= (kind == DecisionKind.MISSED) | ((kind == DecisionKind.FOLLOW_UP) & (overdue < 14))
        offset = np.where(kind == DecisionKind.PRE_DUE, np.maximum(b.columns["days_to_due"] - 3, 0), 0)
        return _actions(b, np.where(want, _SMS, 0).astype(np.int64), slot_index(b, offset, 10))


class LateSmsToo(PreDueSms):
    """F5's arm: :class:`PreDueSms` plus two late SMS, the day after a miss and a week later."""

    name: ClassVar[str] = "facts-late-sms-too"
    late: ClassVar[bool] = True


class RobocallEveryTime(BasePolicy):
    """A robocall at every decision point the rules allow (the heaviest contact the action space offers
    without collectors): the policy under which fatigue is measured."""

    name: ClassVar[str] = "facts-robocall-every-time"
    version: ClassVar[str] = "1"

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        b = contexts
        return _actions(b, np.full(len(b), _ROBOCALL, dtype=np.int64), slot_index(b, 0, 10))


# -- measuring -------------------------------------------------------------------------------------------------
def _share_ci(successes: float, n: float) -> tuple[float, tuple[float, float]]:
    """A proportion and its Wilson 95% interval."""
    if n <= 0:
        return float("nan"), (float("nan"), float("nan"))
    p = successes / n
    centre = (p + _Z95**2 / (2 * n)) / (1 + _Z95**2 / n)
    half = _Z95 * np.sqrt(p * (1 - p) / n + _Z95**2 / (4 * n * n)) / (1 + _Z95**2 / n)
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return p, (low, high)


def _mean_ci(x: NDArray[np.float64]) -> tuple[float, tuple[float, float]]:
    """A mean and its t 95% interval."""
    mean = float(np.mean(x))
    half = float(stats.t.ppf(0.975, len(x) - 1) * np.std(x, ddof=1) / np.sqrt(len(x)))
    return mean, (mean - half, mean + half)


def _ratio_ci(y: NDArray[np.float64], x: NDArray[np.float64]) -> tuple[float, tuple[float, float]]:
    """A ratio of sums over debtors (clustered: one debtor's messages together) and its delta-method interval."""
    keep = x > 0
    y, x = y[keep].astype(np.float64), x[keep].astype(np.float64)
    if not len(x):
        return float("nan"), (float("nan"), float("nan"))
    r = float(y.sum() / x.sum())
    n = len(x)
    se = float(np.sqrt(np.sum((y - r * x) ** 2) / (n * max(n - 1, 1))) / x.mean())
    return r, (r - _Z95 * se, r + _Z95 * se)


def _on_time_share(o: pd.DataFrame) -> NDArray[np.float64]:
    return (o["installments_on_time"] / o["installments_due"].clip(lower=1)).to_numpy(dtype=np.float64)


def _types(result: SimulationResult) -> pd.Series:
    truth = result.ground_truth.set_index("arrangement_id")
    return truth["debtor_type"].astype(str)


def _paired(a: SimulationResult, b: SimulationResult) -> tuple[float, tuple[float, float]]:
    """Paired on-time share difference (a - b) over the trial population's arrangements."""
    oa, ob = arrangement_outcomes(a.events), arrangement_outcomes(b.events)
    trial = _types(a).reindex(oa.index).isin(TRIAL_TYPES).to_numpy()
    diff = _on_time_share(oa) - _on_time_share(ob.reindex(oa.index))
    return _mean_ci(diff[trial])


def _read_rates(result: SimulationResult) -> list[FactCheck]:
    events, st = result.events, result.world.state
    codes = event_codes(events)
    ids = events.column("arrangement_id").to_numpy()
    channel = np.asarray(events.column("channel").to_pylist(), dtype=object)
    out = []
    rows = result.world.gid  # row -> arrangement id
    for fact_id, name in (("F6-sms", "sms"), ("F6-email", "email")):
        delivered = (codes == EventType.MESSAGE_DELIVERED) & (channel == name)
        per_id = pd.Series(ids[delivered]).value_counts()
        sent = per_id.reindex(rows, fill_value=0).to_numpy()
        read = st.noticed_by_channel[:, CHANNELS.index(name)]
        value, ci = _ratio_ci(read.astype(np.float64), sent.astype(np.float64))
        out.append(FactCheck.of(FACTS[fact_id], value, ci))
    return out


def _letters(result: SimulationResult) -> list[FactCheck]:
    st = result.world.state
    value, ci = _ratio_ci(st.letter_days_in_post.astype(np.float64), st.letters_delivered.astype(np.float64))
    out = [FactCheck.of(FACTS["F7-delay"], value, ci)]
    share, ci2 = _share_ci(float(st.letters_on_closed_days.sum()), float(st.letters_delivered.sum()))
    out.append(FactCheck.of(FACTS["F7-weekday"], share, ci2))
    return out


def _costs_without_letter(results: list[SimulationResult]) -> FactCheck:
    """Breakdowns charged collection costs with no letter posted at least 14 days before, over these runs."""
    bad = 0
    for result in results:
        ev = result.events
        codes = event_codes(ev)
        ids = ev.column("arrangement_id").to_numpy()
        time = ev.column("time").to_numpy()
        channel = np.asarray(ev.column("channel").to_pylist(), dtype=object)
        costs = np.nan_to_num(ev.column("collection_costs_eur").to_numpy(zero_copy_only=False).astype(np.float64))
        broken = (codes == EventType.BROKEN) & (costs > 0)
        letter = (codes == EventType.MESSAGE_SENT) & (channel == "letter")
        first_letter = pd.Series(time[letter], index=ids[letter]).groupby(level=0).min()
        when = pd.Series(time[broken], index=ids[broken])
        posted = first_letter.reindex(when.index).to_numpy()
        ok = np.isfinite(posted) & (posted <= when.to_numpy() - COLLECTION_COSTS_NOTICE_DAYS)
        bad += int(np.sum(~ok))
    return FactCheck.of(FACTS["F8"], float(bad), (float(bad), float(bad)))


def _plans(result: SimulationResult) -> list[FactCheck]:
    ev = result.events
    codes = event_codes(ev)
    ids = ev.column("arrangement_id").to_numpy()
    time = ev.column("time").to_numpy()
    inst = ev.column("installment").to_numpy(zero_copy_only=False)
    n_inst = ev.column("n_installments").to_numpy(zero_copy_only=False)
    o = arrangement_outcomes(ev)
    created = codes == EventType.ARRANGEMENT_CREATED
    length = pd.Series(n_inst[created], index=ids[created]).groupby(level=0).first().reindex(o.index)
    created_at = pd.Series(time[created], index=ids[created]).groupby(level=0).min()
    first_due_m = (codes == EventType.INSTALLMENT_DUE) & (inst == 0)
    first_due = pd.Series(time[first_due_m], index=ids[first_due_m]).groupby(level=0).min()
    days_out = (first_due - created_at).reindex(o.index)
    done = o["completed"].to_numpy(dtype=np.float64)
    out = []
    for fact_id, sel in (
        ("F9a-short", ((length >= 3) & (length <= 6)).to_numpy()),
        ("F9a-long", (length >= 12).to_numpy()),
        ("F9b-soon", (days_out <= 10).to_numpy()),
        ("F9b-late", (days_out >= 28).to_numpy()),
    ):
        value, ci = _share_ci(float(done[sel].sum()), float(sel.sum()))
        out.append(FactCheck.of(FACTS[fact_id], value, ci))
    return out


def measure_facts(
    config: WorldConfig,
    *,
    arrangements: int = 4_000,
    seed: int = 0,
    months: int = MONTHS,
    progress: Callable[[str], None] | None = None,
) -> list[FactCheck]:
    """Measure every fact of :data:`FACTS` on a world (in that order).

    Args:
        config: The world.
        arrangements: Arrangements per run (each arm of each design runs the same debtors).
        seed: The run seed (the same for every arm: common random numbers).
        months: Months simulated per run.
        progress: Called with the name of each run as it starts.

    Returns:
        One :class:`FactCheck` per fact.
    """
    if arrangements < 100:
        raise ValueError(f"arrangements: at least 100 are needed for an interval, got {arrangements}")
    runs: dict[str, SimulationResult] = {}
    arms: tuple[tuple[str, Policy], ...] = (
        ("silent", Silent()),
        ("pre-due SMS", PreDueSms()),
        ("pre-due and late SMS", LateSmsToo()),
        ("static dunning", StaticDunning()),
        ("robocall every time", RobocallEveryTime()),
    )
    for label, policy in arms:
        if progress is not None:
            progress(label)
        runs[label] = simulate(config, policy, arrangements=arrangements, months=months, seed=seed)
    checks = [
        FactCheck.of(FACTS["F3"], *_paired(runs["pre-due SMS"], runs["silent"])),
        FactCheck.of(FACTS["F5"], *_paired(runs["pre-due and late SMS"], runs["pre-due SMS"])),
        *_read_rates(runs["static dunning"]),
        *_letters(runs["static dunning"]),
        _costs_without_letter(list(runs.values())),
        *_plans(runs["static dunning"]),
    ]
    disengaged = runs["robocall every time"].ground_truth["disengaged"].to_numpy(dtype=np.float64)
    checks.append(FactCheck.of(FACTS["fatigue"], *_share_ci(float(disengaged.sum()), float(len(disengaged)))))
    return checks


def write_facts(checks: list[FactCheck], path: str | Path) -> Path:
    """Write ``facts.json`` (a JSON list of objects with the keys of :data:`FactCheck.JSON_KEYS`).

    ``path`` is a folder (created if needed; the file is ``facts.json`` in it) or a ``.json`` file. Returns the
    file written.
    """
    target = Path(path)
    if target.suffix != ".json":
        target.mkdir(parents=True, exist_ok=True)
        target = target / "facts.json"
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps([c.as_json() for c in checks], indent=2) + "\n")
    return target


def format_facts(checks: list[FactCheck]) -> str:
    """A plain-text table of the checks (one line per fact)."""
    lines = [f"{'id':<11} {'source':<28} {'simulated':>10} {'95% interval':>22}  {'range':>17}  in range"]
    for c in checks:
        interval = f"[{c.ci_low:.3f}, {c.ci_high:.3f}]"
        span = f"[{c.low:g}, {c.high:g}]"
        lines.append(
            f"{c.id:<11} {c.source_value[:28]:<28} {c.sim_value:>10.3f} {interval:>22}  {span:>17}  "
            f"{'yes' if c.in_range else 'NO'}"
        )
    return "\n".join(lines)
