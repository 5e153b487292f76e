"""The hindsight oracle: per arrangement, the best life found in hindsight on the very same random numbers.

Every draw of regsim is a pure function of (seed, purpose, debtor, day) (:mod:`regsim.random`): two runs with
the same seed face the same random numbers, and a policy's actions never shift another draw. Seen from the
end, an arrangement's life is then a deterministic function of the actions taken in it, and the best of
those lives is an upper reference for every policy. The hindsight oracle estimates it from below in two
parts, and takes per arrangement the better of the two:

1. **The floor**: the per-arrangement best of the evaluated policies' outcomes (each policy's run of the whole
   population in the shared :class:`~regsim.world.World`, on the same seed). No evaluated policy can beat the
   oracle on an arrangement, by construction.
2. **Rollout search** (lookahead), which lifts it above the floor: each arrangement is played in a
   :class:`~regsim.vector_world.VectorWorld` row with a base policy (each of :attr:`HindsightSettings.bases`;
   the best per arrangement is kept), then, decision point by decision point (the first
   :attr:`HindsightSettings.max_decisions` of the arrangement's best life so far), every candidate action is
   played forward to the horizon with the base policy deciding the rest, on the same random numbers, and the
   best candidate is committed when it beats the life so far (ties keep it). Because the life so far is one
   of the candidates, an arrangement's value never falls from one decision point to the next (a rollout
   algorithm's improvement property: Bertsekas, *Rollout, Policy Iteration, and Distributed Reinforcement
   Learning*, 2020, section 2.1), and it ends at least at the best base policy's value.

**Candidate actions** at a decision point (a reduced set; every candidate respects the point's mask): the
life so far's own action; no contact; each channel at each send hour on the same day offset as that action
(or day 0 when it sends nothing), keeping its re-plan parts; that action with each allowed deferral, with each
allowed reduction, and (at plan creation) with each allowed due day.

**The objective** is the evaluation's verdict, :func:`regsim.metrics.runoff_value` of the arrangement's outcome
(net recovery plus a completion bonus), on outcomes that :func:`regsim.metrics.arrangement_outcomes` reads from
an event log; the rollouts keep full logs, so both parts are scored by the same function.

**Shared capacity.** The evaluated policies ran in the shared World, where arrangements queue for collectors,
robocall lines and the print room; rollout rows have dedicated capacity per arrangement (as the env's
episodes). The oracle is a per-arrangement mixture of lives from both, so it is an **upper reference, not a
realisable trajectory** of one policy in one shared world: its collectors may be busy with several debtors at
once. :attr:`HindsightResult.capacity_gap_eur` measures what dedicated capacity is worth: the mean, over
arrangements, of a base policy's value in the rollout rows minus the same policy's value in the World (for
base policies that were also evaluated).

**Compute** is bounded by :attr:`HindsightSettings.max_decisions` and the candidate set: at most
``len(bases) + max_decisions * candidates`` lives per arrangement (plus one replay of the final lives, which
checks that the search's lives are reproduced exactly); :class:`HindsightCost` reports what was spent.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from agents.hindsight_rollouts import Lives, Script, play
from agents.registry import make
from regsim import metrics
from regsim.actions import ActionSpace
from regsim.config import WorldConfig
from regsim.decision import CHANNEL, DEFERRAL, DUE_DAY, REDUCTION, SEND_SLOT, DecisionKind
from regsim.runoff import RunoffCap

__all__ = ["HINDSIGHT_ORACLE", "HindsightCost", "HindsightResult", "HindsightSettings", "hindsight_oracle"]

#: The name the evaluation and the CLI know the hindsight oracle by (it is no policy: it is computed from the
#: evaluated policies' outcomes and rollouts, after they ran).
HINDSIGHT_ORACLE = "hindsight-oracle"
#: Base policies the rollouts may use: fixed, deterministic, reading only their row's context.
ROLLOUT_BASES = ("silent", "static-dunning", "payday-aligned")
_TOLERANCE = 1e-6  # euros: a candidate must beat the life so far by more than rounding


@dataclass(frozen=True)
class HindsightSettings:
    """How hard the hindsight oracle searches.

    Attributes:
        bases: Base policies of the rollouts (names among :data:`ROLLOUT_BASES`); each arrangement starts from
            the best of them and they decide every decision point after the searched one.
        max_decisions: Decision points searched per arrangement (its first ones); later ones are left to the
            base policy. Bounds the compute.
        completion_bonus_eur: The objective's completion bonus (:func:`regsim.metrics.runoff_value`).
    """

    bases: tuple[str, ...] = ROLLOUT_BASES
    max_decisions: int = 8
    completion_bonus_eur: float = 300.0

    def __post_init__(self) -> None:
        if not self.bases:
            raise ValueError("bases: give at least one base policy")
        unknown = sorted(set(self.bases) - set(ROLLOUT_BASES))
        if unknown:
            raise ValueError(f"bases: {unknown} cannot drive rollouts; allowed: {list(ROLLOUT_BASES)}")
        if self.max_decisions < 0:
            raise ValueError(f"max_decisions: must be >= 0, got {self.max_decisions}")
        if self.completion_bonus_eur < 0:
            raise ValueError(f"completion_bonus_eur: must be >= 0, got {self.completion_bonus_eur}")


@dataclass(frozen=True)
class HindsightCost:
    """What the hindsight oracle spent.

    Attributes:
        wall_s: Wall time of the search (seconds; the evaluated policies' runs not counted).
        lives: Arrangement lives simulated in rollout rows (each from day 0 to the horizon).
        passes: Vector-world runs (one per searched decision depth, plus the bases and the replay).
    """

    wall_s: float
    lives: int
    passes: int

    def __add__(self, other: HindsightCost) -> HindsightCost:
        return HindsightCost(self.wall_s + other.wall_s, self.lives + other.lives, self.passes + other.passes)


@dataclass(frozen=True)
class HindsightResult:
    """The hindsight oracle on one seed.

    Attributes:
        outcomes: Per arrangement, the outcome row (columns of :func:`regsim.metrics.arrangement_outcomes`) of
            the best life found; the index of the floor's outcomes.
        value: Its objective per arrangement.
        floor: The per-arrangement best of the evaluated policies' objective.
        lookahead: The rollout search's objective per arrangement.
        start: The best base policy's objective per arrangement in the rollout rows (where the search began;
            ``lookahead`` is never below it).
        source: Where each arrangement's life comes from: an evaluated policy's name, or ``"lookahead"``.
        capacity_gap_eur: Mean over arrangements of a base policy's objective with dedicated capacity (rollout
            rows) minus with shared capacity (the World), per base policy that was also evaluated.
        cost: The compute spent.
    """

    outcomes: pd.DataFrame
    value: pd.Series
    floor: pd.Series
    lookahead: pd.Series
    start: pd.Series
    source: pd.Series
    capacity_gap_eur: dict[str, float]
    cost: HindsightCost


def hindsight_oracle(
    config: WorldConfig,
    seed: int,
    months: int,
    evaluated: Mapping[str, pd.DataFrame],
    settings: HindsightSettings | None = None,
    *,
    runoff: RunoffCap | None = None,
) -> HindsightResult:
    """The hindsight oracle's per-arrangement outcomes on one seed.

    Args:
        config: The world the policies were evaluated on.
        seed: Their run seed.
        months: Their horizon in months.
        evaluated: Each evaluated policy's :func:`regsim.metrics.arrangement_outcomes` on that seed (all with
            the same index: the same arrangements).
        settings: The search's settings (default :class:`HindsightSettings`).
        runoff: The run-off cap the evaluated outcomes were censored at (the rollouts are censored at it too,
            so both parts are scored alike); ``months`` must then cover every cap. None: a fixed horizon.

    Raises:
        ValueError: No evaluated outcomes, or outcomes on different arrangements.
    """
    settings = settings or HindsightSettings()
    if not evaluated:
        raise ValueError("evaluated: the floor needs at least one evaluated policy's outcomes")
    names = list(evaluated)
    index = evaluated[names[0]].index
    for name in names[1:]:
        if not evaluated[name].index.equals(index):
            raise ValueError(f"evaluated: {name!r} has other arrangements than {names[0]!r}")
    start = time.perf_counter()
    bonus = settings.completion_bonus_eur
    values = np.stack([metrics.runoff_value(evaluated[n], completion_bonus_eur=bonus).to_numpy() for n in names])
    best_policy = np.argmax(values, axis=0)
    floor = values.max(axis=0)

    search = _RolloutSearch(config, seed, months, index.to_numpy().astype(np.int64), settings, runoff)
    lives, lookahead, cost = search.run()
    gap = {
        b: float(
            np.mean(search.base_values[i] - metrics.runoff_value(evaluated[b], completion_bonus_eur=bonus).to_numpy())
        )
        for i, b in enumerate(settings.bases)
        if b in evaluated
    }

    use_lookahead = lookahead > floor + _TOLERANCE
    # Each arrangement's outcome row from its source: the best evaluated policy, or the search's best life.
    pick = np.where(use_lookahead, len(names), best_policy)
    frames = [*(evaluated[n] for n in names), lives]
    columns = list(evaluated[names[0]].columns)
    chosen = pd.DataFrame({c: np.choose(pick, [f[c].to_numpy() for f in frames]) for c in columns}, index=index).astype(
        {c: evaluated[names[0]][c].dtype for c in columns}
    )
    source = pd.Series(np.where(use_lookahead, "lookahead", np.asarray(names, dtype=object)[best_policy]), index=index)
    value = metrics.runoff_value(chosen, completion_bonus_eur=bonus)
    wall = time.perf_counter() - start
    return HindsightResult(
        outcomes=chosen,
        value=value,
        floor=pd.Series(floor, index=index),
        lookahead=pd.Series(lookahead, index=index),
        start=pd.Series(search.base_values.max(axis=0), index=index),
        source=source,
        capacity_gap_eur=gap,
        cost=HindsightCost(wall, cost.lives, cost.passes),
    )


class _RolloutSearch:
    """Rollout search over the first decision points of each arrangement (see the module docstring)."""

    def __init__(
        self,
        config: WorldConfig,
        seed: int,
        months: int,
        debtors: NDArray[np.int64],
        settings: HindsightSettings,
        runoff: RunoffCap | None,
    ) -> None:
        self.config, self.seed, self.months, self.debtors, self.runoff = config, seed, months, debtors, runoff
        self.settings = settings
        self.bases = [make(name) for name in settings.bases]
        self.space = ActionSpace.from_config(config.decisions)
        self.lives = 0
        self.passes = 0
        self.base_values = np.zeros((len(settings.bases), len(debtors)))

    def _play(self, script: Script) -> tuple[Lives, NDArray[np.float64]]:
        lives = play(self.config, self.seed, self.months, script, self.bases, cap=self.runoff)
        self.lives += len(script.debtor)
        self.passes += 1
        value = metrics.runoff_value(lives.outcomes, completion_bonus_eur=self.settings.completion_bonus_eur).to_numpy()
        return lives, value

    def run(self) -> tuple[pd.DataFrame, NDArray[np.float64], HindsightCost]:
        """The best lives found (outcomes indexed by arrangement id), their objective, and the cost."""
        start = time.perf_counter()
        n, b = len(self.debtors), len(self.bases)
        # The bases, each on every arrangement; the best per arrangement is where the search starts.
        script = Script(np.tile(self.debtors, b), np.repeat(np.arange(b), n), np.zeros((n * b, 0, 5), np.int64), None)
        lives, value = self._play(script)
        self.base_values = value.reshape(b, n)
        best_base = np.argmax(self.base_values, axis=0)
        rows = best_base * n + np.arange(n)
        best = _Best.of(lives, rows, value[rows], best_base)
        for depth in range(self.settings.max_decisions):
            if not self._improve(best, depth):
                break
        # Replay the final lives: the search's bookkeeping must reproduce them exactly (common random numbers).
        replay = Script(self.debtors, best.base, best.padded_actions(), None)
        lives, value = self._play(replay)
        if not np.allclose(value, best.value, rtol=0.0, atol=_TOLERANCE):
            worst = int(np.argmax(np.abs(value - best.value)))
            raise RuntimeError(
                f"arrangement {self.debtors[worst]}: replaying its best life gave {value[worst]:.4f}, the search "
                f"found {best.value[worst]:.4f}; rollouts are not reproducible"
            )
        outcomes = lives.outcomes.set_axis(pd.Index(self.debtors, name="arrangement_id"))
        return outcomes, value, HindsightCost(time.perf_counter() - start, self.lives, self.passes)

    def _improve(self, best: _Best, depth: int) -> bool:
        """Search decision point ``depth`` of every arrangement that has one; False when none has."""
        arrangement, candidates = [], []
        for i in np.flatnonzero(best.n_decisions > depth):
            mask, kind, current = best.masks[i][depth], int(best.kinds[i][depth]), best.actions[i][depth]
            for action in _candidates(self.space, mask, kind, current):
                arrangement.append(i)
                candidates.append(action)
        if not arrangement:
            return False
        who = np.array(arrangement, dtype=np.int64)
        script = Script(
            self.debtors[who],
            best.base[who],
            np.stack([best.actions[i][:depth] for i in who]).reshape(len(who), depth, 5),
            np.stack(candidates),
        )
        lives, value = self._play(script)
        # Per arrangement, the best candidate, adopted when it beats the life so far.
        order = np.lexsort((-value, who))
        first = order[np.r_[True, who[order][1:] != who[order][:-1]]]
        better = first[value[first] > best.value[who[first]] + _TOLERANCE]
        if len(better):
            best.adopt(who[better], lives, better, value[better])
        return True


@dataclass
class _Best:
    """Each arrangement's best life so far: its base policy, value and decisions (action, mask, kind)."""

    base: NDArray[np.int64]
    value: NDArray[np.float64]
    actions: list[NDArray[np.int64]]
    masks: list[NDArray[np.bool_]]
    kinds: list[NDArray[np.int64]]

    @classmethod
    def of(cls, lives: Lives, rows: NDArray[np.int64], value: NDArray[np.float64], base: NDArray[np.int64]) -> _Best:
        at = lives.decisions_of(rows)
        return cls(
            base.astype(np.int64),
            value.copy(),
            [lives.actions[p] for p in at],
            [lives.masks[p] for p in at],
            [lives.kinds[p] for p in at],
        )

    @property
    def n_decisions(self) -> NDArray[np.int64]:
        return np.array([len(a) for a in self.actions], dtype=np.int64)

    def adopt(
        self, arrangements: NDArray[np.int64], lives: Lives, rows: NDArray[np.int64], value: NDArray[np.float64]
    ) -> None:
        """Take the lives of these rollout rows as these arrangements' best."""
        for i, p in zip(arrangements.tolist(), lives.decisions_of(rows), strict=True):
            self.actions[i], self.masks[i], self.kinds[i] = lives.actions[p], lives.masks[p], lives.kinds[p]
        self.value[arrangements] = value

    def padded_actions(self) -> NDArray[np.int64]:
        """Every arrangement's actions, shape ``(n, longest, 5)`` (zeros past a life's end are never read)."""
        longest = int(self.n_decisions.max()) if len(self.actions) else 0
        out = np.zeros((len(self.actions), longest, 5), dtype=np.int64)
        for i, a in enumerate(self.actions):
            out[i, : len(a)] = a
        return out


def _candidates(
    space: ActionSpace, mask: NDArray[np.bool_], kind: int, current: NDArray[np.int64]
) -> list[NDArray[np.int64]]:
    """The candidate actions at a decision point other than ``current`` (distinct, allowed, canonical)."""
    off = space.offsets

    def allowed(part: int) -> NDArray[np.int64]:
        return np.flatnonzero(mask[off[part] : off[part] + space.nvec[part]])

    slots = space.send_slots
    first_slot = int(allowed(SEND_SLOT)[0])
    day = slots[current[SEND_SLOT]].day_offset if current[CHANNEL] > 0 else 0
    out: list[NDArray[np.int64]] = [np.array([0, first_slot, *current[2:]], dtype=np.int64)]
    ok_slots = set(allowed(SEND_SLOT).tolist())
    for channel in allowed(CHANNEL).tolist():
        if channel == 0:
            continue
        for s, slot in enumerate(slots):
            if slot.day_offset == day and s in ok_slots:
                out.append(np.array([channel, s, *current[2:]], dtype=np.int64))
    for part in (DEFERRAL, REDUCTION) + ((DUE_DAY,) if kind == DecisionKind.PLAN_CREATED else ()):
        for option in allowed(part).tolist():
            a = current.copy()
            a[part] = option
            out.append(a)
    stacked = space.normalise(np.full(len(out), kind), np.stack(out), np.full(len(out), first_slot))
    here = space.normalise(np.array([kind]), current[None, :], np.array([first_slot]))[0]
    distinct = np.unique(stacked, axis=0)
    return [a for a in distinct if not np.array_equal(a, here)]
