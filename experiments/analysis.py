"""What the product-owner report needs from an evaluation beyond its KPI table, and what drives learned policies.

:class:`RunDetails` is passed to :func:`agents.evaluate.evaluate` as ``on_result=details.add``; from every
(policy, seed) run it keeps small summaries, never the event log:

* ``outcomes.parquet``: one row per (policy, seed, arrangement): the outcome (completed, broken, referred,
  still active), euros collected, contact cost, net recovery, how and when the follow-up ended (``end_kind``,
  ``months_to_end``: censored at the run-off cap as the evaluation censors it; the input of the cumulative
  incidence curves), contacts in all and per channel (the *burden* on the debtor),
  and the segment labels of :data:`agents.evaluate.DEFAULT_SEGMENTS` (hidden ``debtor_type`` from ground truth,
  observable ``debt_band`` from the ``arrangement_created`` event) plus the debt itself.
* ``mix.parquet``: messages sent, counted by (policy, seed, debtor_type, debt_band, channel, send hour).
* ``menus.parquet`` (only with self-service on): per (policy, seed, arrangement), the menus shown, each option
  offered and chosen, concessions and custom cases (:func:`experiments.report_menu.menu_rows`).
* ``resources.parquet``: the queue samples of the shared resources (``SimulationResult.resources``: time,
  resource, queued, busy, capacity), tagged with policy and seed.

:func:`feature_importance` measures which observable features (:mod:`regsim.features`) a learned policy's
choices depend on, by permutation: see its docstring.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from agents.base import FixedPolicy
from agents.evaluate import DebtBands, by_debtor_type
from regsim.config import CHANNELS, WorldConfig
from regsim.decision import ContextBatch, DecisionBatch
from regsim.eventlog import EventType, event_codes
from regsim.features import FEATURE_LAYOUT, features
from regsim.simulate import SimulationResult, simulate

__all__ = [
    "FEATURE_GROUPS",
    "MIX_COLUMNS",
    "OUTCOME_COLUMNS",
    "RESOURCE_COLUMNS",
    "GreedyPolicy",
    "RunDetails",
    "feature_importance",
]

#: Columns of ``outcomes.parquet``, in order (``contacts_<channel>`` for each channel of the world).
OUTCOME_COLUMNS: tuple[str, ...] = (
    "policy",
    "seed",
    "arrangement_id",
    "debtor_type",
    "debt_band",
    "debt_eur",
    "completed",
    "broken",
    "referred",
    "active",
    "collected_eur",
    "contact_cost_eur",
    "net_recovery_eur",
    "end_kind",
    "months_to_end",
    "contacts",
    *(f"contacts_{c}" for c in CHANNELS),
)

#: Columns of ``mix.parquet``: message counts per (policy, seed, segment, channel, local send hour 0-23).
MIX_COLUMNS: tuple[str, ...] = ("policy", "seed", "debtor_type", "debt_band", "channel", "hour", "messages")

#: Columns of ``resources.parquet``: the world's queue samples (time in days) tagged with policy and seed.
RESOURCE_COLUMNS: tuple[str, ...] = ("policy", "seed", "time", "resource", "queued", "busy", "capacity")

#: One-hot blocks of the feature layout that are permuted together and reported under one name: permuting a
#: single indicator of a block would create rows with two (or no) decision kinds or weekdays, which no
#: context has.
FEATURE_GROUPS: dict[str, str] = {"kind_": "decision_kind", "weekday_": "weekday"}

_DEBT_BANDS = DebtBands()


# ---------------------------------------------------------------------------------------------------------------
# Per-run details
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class RunDetails:
    """Collects what the report needs from each evaluation run (kept small: summaries, not event logs).

    Use as ``evaluate(..., on_result=details.add)``, then :meth:`write` the three tables into the run folder's
    ``evaluation/``. Rows keep the order in which runs were added (``evaluate`` runs seed by seed, the baseline
    first), so the same evaluation gives the same files bit for bit.
    """

    _outcomes: list[pd.DataFrame] = field(default_factory=list)
    _mix: list[pd.DataFrame] = field(default_factory=list)
    _resources: list[pd.DataFrame] = field(default_factory=list)
    _menus: list[pd.DataFrame] = field(default_factory=list)
    _seen: set[tuple[str, int]] = field(default_factory=set)

    def add(self, policy: str, seed: int, result: SimulationResult) -> None:
        """Summarise one run (the ``on_result`` hook of :func:`agents.evaluate.evaluate`).

        Args:
            policy: The policy's report name.
            seed: The run seed.
            result: The run.

        Raises:
            ValueError: The same (policy, seed) was added before.
        """
        key = (str(policy), int(seed))
        if key in self._seen:
            raise ValueError(f"RunDetails: policy {policy!r} with seed {seed} was added already")
        self._seen.add(key)
        labels = _labels(result)
        self._outcomes.append(_outcomes(key, result, labels))
        self._mix.append(_mix(key, result, labels))
        if result.world.desk is not None:  # self-service on: the menus' summary (experiments.report_menu)
            from experiments.report_menu import menu_rows

            self._menus.append(menu_rows(key, result, labels))
        res = result.resources
        self._resources.append(
            pd.DataFrame(
                {
                    "policy": key[0],
                    "seed": np.full(len(res), key[1], dtype=np.int64),
                    "time": res["time"].to_numpy(np.float64),
                    "resource": res["resource"].astype(str).to_numpy(),
                    "queued": res["queued"].to_numpy(np.int64),
                    "busy": res["busy"].to_numpy(np.int64),
                    "capacity": res["capacity"].to_numpy(np.int64),
                }
            )
        )

    @property
    def runs(self) -> list[tuple[str, int]]:
        """The (policy, seed) pairs added so far."""
        return sorted(self._seen)

    def outcomes(self) -> pd.DataFrame:
        """All per-arrangement rows (columns :data:`OUTCOME_COLUMNS`)."""
        return _concat(self._outcomes, OUTCOME_COLUMNS)

    def mix(self) -> pd.DataFrame:
        """All message counts (columns :data:`MIX_COLUMNS`)."""
        return _concat(self._mix, MIX_COLUMNS)

    def resources(self) -> pd.DataFrame:
        """All queue samples (columns :data:`RESOURCE_COLUMNS`)."""
        return _concat(self._resources, RESOURCE_COLUMNS)

    def write(self, folder: Path) -> dict[str, Path]:
        """Write ``outcomes.parquet``, ``mix.parquet`` and ``resources.parquet`` into ``folder`` (created).

        Returns:
            The written paths by table name (``"outcomes"``, ``"mix"``, ``"resources"``).

        Raises:
            ValueError: Nothing was added.
        """
        if not self._seen:
            raise ValueError("RunDetails.write: no run was added (pass details.add as evaluate's on_result)")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, frame in (("outcomes", self.outcomes()), ("mix", self.mix()), ("resources", self.resources())):
            path = folder / f"{name}.parquet"
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
            paths[name] = path
        if self._menus:
            path = folder / "menus.parquet"
            pq.write_table(pa.Table.from_pandas(pd.concat(self._menus, ignore_index=True), preserve_index=False), path)
            paths["menus"] = path
        return paths


def _labels(result: SimulationResult) -> pd.DataFrame:
    """Per arrangement id: hidden debtor type, debt at creation and its observable band."""
    codes = event_codes(result.events)
    created = codes == EventType.ARRANGEMENT_CREATED
    ids = result.events.column("arrangement_id").to_numpy()[created]
    debt = result.events.column("amount_eur").to_numpy(zero_copy_only=False)[created]
    out = pd.DataFrame({"debt_eur": debt.astype(np.float64)}, index=pd.Index(ids, name="arrangement_id"))
    out = out[~out.index.duplicated()]
    out["debt_band"] = _DEBT_BANDS(result).reindex(out.index).astype(str)
    out["debtor_type"] = by_debtor_type(result).reindex(out.index).fillna("other").astype(str)
    return out


def _channels(events: pa.Table) -> NDArray[np.str_]:
    """The ``channel`` column of an event log as strings (decoded from its dictionary without Python objects)."""
    col = events.column("channel").combine_chunks()
    names = np.asarray(col.dictionary.to_pylist(), dtype=str)
    return names[col.indices.to_numpy(zero_copy_only=False)]


def _outcomes(key: tuple[str, int], result: SimulationResult, labels: pd.DataFrame) -> pd.DataFrame:
    o = result.outcomes()  # censored as the evaluation censors (at each run-off cap, or at the horizon)
    lab = labels.reindex(o.index)
    sent = event_codes(result.events) == EventType.MESSAGE_SENT
    ids = result.events.column("arrangement_id").to_numpy()[sent]
    channel = _channels(result.events)[sent]
    ended = o["completed"] + o["broken"] + o["referred"]
    frame: dict[str, Any] = {
        "policy": key[0],
        "seed": np.full(len(o), key[1], dtype=np.int64),
        "arrangement_id": o.index.to_numpy(np.int64),
        "debtor_type": lab["debtor_type"].fillna("other").astype(str).to_numpy(),
        "debt_band": lab["debt_band"].fillna("other").astype(str).to_numpy(),
        "debt_eur": lab["debt_eur"].to_numpy(np.float64),
        "completed": o["completed"].to_numpy(np.int64),
        "broken": o["broken"].to_numpy(np.int64),
        "referred": o["referred"].to_numpy(np.int64),
        "active": (ended == 0).to_numpy(np.int64),
        "collected_eur": o["collected_eur"].to_numpy(np.float64),
        "contact_cost_eur": o["contact_cost_eur"].to_numpy(np.float64),
        "net_recovery_eur": o["net_recovery_eur"].to_numpy(np.float64),
        "end_kind": o["end_kind"].astype(str).to_numpy(),
        "months_to_end": o["months_to_end"].to_numpy(np.float64),
        "contacts": o["contacts"].to_numpy(np.int64),
    }
    for c in CHANNELS:
        counts = pd.Series(ids[channel == c]).value_counts()
        frame[f"contacts_{c}"] = counts.reindex(o.index, fill_value=0).to_numpy(np.int64)
    return pd.DataFrame(frame)


def _mix(key: tuple[str, int], result: SimulationResult, labels: pd.DataFrame) -> pd.DataFrame:
    sent = event_codes(result.events) == EventType.MESSAGE_SENT
    ev = result.events
    ids = ev.column("arrangement_id").to_numpy()[sent]
    time = ev.column("time").to_numpy()[sent]
    lab = labels.reindex(ids)
    # Send hour from the time of day (days since the run's start, day 0 at midnight); the small offset keeps a
    # message sent at 09:00, stored as 0.375 days, in hour 9 despite rounding.
    hour = np.floor(np.mod(time, 1.0) * 24.0 + 1e-6).astype(np.int64) % 24
    frame = pd.DataFrame(
        {
            "debtor_type": lab["debtor_type"].fillna("other").astype(str).to_numpy(),
            "debt_band": lab["debt_band"].fillna("other").astype(str).to_numpy(),
            "channel": _channels(ev)[sent],
            "hour": hour,
        }
    )
    counts = frame.groupby(["debtor_type", "debt_band", "channel", "hour"], sort=True).size()
    out = counts.rename("messages").reset_index()
    out.insert(0, "seed", np.full(len(out), key[1], dtype=np.int64))
    out.insert(0, "policy", key[0])
    out["messages"] = out["messages"].astype(np.int64)
    out["hour"] = out["hour"].astype(np.int64)
    return out


def _concat(frames: Sequence[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame({c: [] for c in columns})
    out = pd.concat(frames, ignore_index=True)[list(columns)]
    for c in ("policy", "debtor_type", "debt_band", "channel", "resource", "end_kind"):
        if c in out:
            out[c] = out[c].astype(str)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Feature importance
# ---------------------------------------------------------------------------------------------------------------
@runtime_checkable
class GreedyPolicy(Protocol):
    """A learned policy whose deterministic choice can be recomputed from given feature rows.

    ``agents.sb3.SB3Policy`` (PPO, MaskablePPO, DQN) and ``agents.bandits.LinearBandit`` (epsilon-greedy,
    LinUCB, linear TS) have it.
    """

    @property
    def name(self) -> str:
        """Policy name."""
        ...

    @property
    def version(self) -> str:
        """Policy version."""
        ...

    def greedy_actions(self, contexts: ContextBatch, observations: NDArray[np.floating]) -> NDArray[np.int64]:
        """Deterministic actions ``(B, 5)`` of the contexts (for masks) with ``observations`` as features."""
        ...


class _GreedyRecorder(FixedPolicy):
    """Decides with a policy's greedy actions on the contexts' own features, keeping every context batch.

    It has no ``feedback_window_days``, so the world feeds nothing back: the policy is frozen while the
    contexts are collected, and the contexts are those the measured (greedy) policy meets.
    """

    def __init__(self, policy: GreedyPolicy) -> None:
        self.policy = policy
        self.name = f"{policy.name}:greedy"
        self.version = str(policy.version)
        self.batches: list[ContextBatch] = []

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        self.batches.append(contexts)
        actions = self.policy.greedy_actions(contexts, features(contexts))
        return DecisionBatch(actions, np.ones(len(contexts)))


def _feature_groups() -> dict[str, list[int]]:
    """Reported feature name -> columns of the feature matrix (one-hot blocks grouped, see FEATURE_GROUPS)."""
    groups: dict[str, list[int]] = {}
    for i, f in enumerate(FEATURE_LAYOUT):
        name = next((g for prefix, g in FEATURE_GROUPS.items() if f.name.startswith(prefix)), f.name)
        groups.setdefault(name, []).append(i)
    return groups


def feature_importance(
    policy: Any,
    config: WorldConfig,
    *,
    arrangements: int,
    months: int,
    seed: int,
    repeats: int = 3,
) -> pd.DataFrame:
    """Which observable features drive a learned policy's choices: permutation importance on its decisions.

    1. **Contexts.** A population of ``arrangements`` is simulated for ``months`` with run seed ``seed``,
       deciding with the policy's greedy (deterministic) action, which is what is measured; every decision
       context is kept (features :math:`X`, shape ``(N, F)``, and the masks). The policy is deep-copied for
       this run and frozen (no feedback), so the policy passed in is left unchanged.
    2. **Permutation.** For each feature *j* (the one-hot blocks of :data:`FEATURE_GROUPS` as one feature) and
       each of ``repeats`` rounds, column *j* is shuffled across the *N* contexts with a permutation from a
       ``numpy.random.Generator`` seeded by ``seed``, the greedy actions :math:`a^{(j,r)}` are recomputed
       under each context's own mask, and the importance is the share of decisions whose action (any of its
       five parts) changes, averaged over rounds:
       :math:`I_j = \\frac1R \\sum_r \\frac1N \\sum_i 1[a^{(j,r)}_i \\ne a_i]`.

    :math:`I_j \\in [0, 1]`: 0 for a feature the policy ignores (or one constant across the contexts); the
    share of choices that hinge on it otherwise. Features are assessed one at a time, so two correlated
    features that carry the same information can each look unimportant. Reference: Breiman, "Random Forests",
    Machine Learning 45 (2001), section 10 (permutation importance), applied to the policy's choices instead of
    a prediction error.

    Args:
        policy: A learned policy with ``greedy_actions(contexts, observations)`` (:class:`GreedyPolicy`): the SB3
            policies and the linear bandits.
        config: The world to collect contexts in.
        arrangements: Arrangements of the collecting run (>= 1).
        months: Its horizon in months (>= 1).
        seed: Run seed of the collecting run and seed of the permutations (>= 0).
        repeats: Permutation rounds per feature (>= 1).

    Returns:
        A frame with columns ``feature`` (str), ``importance`` (float64) and ``rank`` (int64, 1 = most
        important, ties share the best rank), sorted by importance (descending), then layout order.
        ``frame.attrs["n_contexts"]`` is *N*.

    Raises:
        TypeError: The policy has no ``greedy_actions`` (a rule-based or oracle policy).
        ValueError: A size or seed out of range, or the run made no decisions.
    """
    if not isinstance(policy, GreedyPolicy):
        raise TypeError(
            f"feature_importance needs a learned policy with greedy_actions(contexts, observations) (SB3 "
            f"ppo/maskable-ppo/dqn artifacts, bandits epsilon-greedy/linucb/linear-ts); got {type(policy).__name__}"
        )
    for label, value, low in (("arrangements", arrangements, 1), ("months", months, 1), ("repeats", repeats, 1)):
        if int(value) < low:
            raise ValueError(f"{label} must be >= {low}, got {value}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    recorder = _GreedyRecorder(copy.deepcopy(policy))
    simulate(config, recorder, arrangements=int(arrangements), months=int(months), seed=int(seed))
    batches = [b for b in recorder.batches if len(b)]
    if not batches:
        raise ValueError("feature_importance: the collecting run made no decisions; use more arrangements or months")
    contexts = ContextBatch.concat(batches)
    X = features(contexts)
    measured = recorder.policy
    base = measured.greedy_actions(contexts, X)
    n = len(contexts)
    # Its own stream, tagged so that the permutations never coincide with a world stream of the same seed.
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5045524D]))
    groups = _feature_groups()
    changed = dict.fromkeys(groups, 0.0)
    for _ in range(int(repeats)):
        for name, cols in groups.items():
            order = rng.permutation(n)
            shuffled = X.copy()
            shuffled[:, cols] = X[order][:, cols]
            actions = measured.greedy_actions(contexts, shuffled)
            changed[name] += float(np.any(actions != base, axis=1).mean())
    out = pd.DataFrame(
        {
            "feature": pd.Series(list(groups), dtype=str),
            "importance": np.array([changed[g] / repeats for g in groups], dtype=np.float64),
        }
    )
    out["_order"] = np.arange(len(out))
    out = out.sort_values(["importance", "_order"], ascending=[False, True], kind="stable").drop(columns="_order")
    out["rank"] = out["importance"].rank(method="min", ascending=False).astype(np.int64)
    out = out.reset_index(drop=True)
    out.attrs["n_contexts"] = n
    return out
