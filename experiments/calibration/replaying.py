"""The policy that replays a log's own decisions in the simulator, so simulated moments answer the same treatment.

Simulated arrangement ``k`` (ids ``0..n-1``, as :class:`regsim.world.World` numbers them) takes the decisions of
the log's ``k``-th arrangement in id order (:class:`LoggedDecisions`). A decision point of the simulated
arrangement is matched to a logged decision by (decision kind, installment, occurrence): the ``j``-th time the
simulated arrangement reaches a ``follow_up`` for installment 2 it takes the action of the ``j``-th logged
``follow_up`` decision for installment 2 of that log arrangement. So a decision point the simulation shares with
the log gets the logged action, whatever the order of the others.

Where the simulated arrangement reaches a decision point the log does not have (it missed an installment the
logged debtor paid, say), or a logged option is masked by the rules in the simulation (its contact cap was
reached earlier), the **fallback** decides that decision (or that part of it): the logging policy, rebuilt from
the log's policy name and version by :func:`agents.ope.behaviour.logged_behaviour` when it is a registered one
(``epsilon-mixture``, ``random``, ``static-dunning``...), else :class:`NoAction` (the first allowed option of every
part: no contact, no re-plan). :class:`ReplayStats` counts how often each happened.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.typing import NDArray

from agents.base import FixedPolicy, first_allowed
from regsim.decision import PART_NAMES, ContextBatch, DecisionBatch, DecisionKind, Policy

__all__ = ["LoggedDecisions", "NoAction", "ReplayStats", "ReplayingPolicy", "fallback_policy"]

_KIND = {k.name.lower(): int(k) for k in DecisionKind}
_ACTION_COLUMNS = ("a_channel", "a_send_slot", "a_due_day", "a_deferral", "a_reduction")


@dataclass(frozen=True)
class LoggedDecisions:
    """A log's decisions, per log arrangement in id order.

    Attributes:
        arrangement_ids: The log's arrangement ids, sorted; simulated arrangement ``k`` replays ``ids[k]``.
        actions: ``(position, kind, installment, occurrence)`` -> the five logged option indices.
        policy: The most frequent logging policy's name (``None``: no decision in the log).
        version: Its version.
    """

    arrangement_ids: NDArray[np.int64]
    actions: dict[tuple[int, int, int, int], tuple[int, int, int, int, int]]
    policy: str | None
    version: str | None

    @classmethod
    def from_log(cls, events: pa.Table) -> LoggedDecisions:
        """Read the decisions (and arrangement ids) of an event log.

        Raises:
            ValueError: The log has no ``arrangement_created`` event.
        """
        cols = ["event", "time", "arrangement_id", "installment", "decision_kind", "policy", "policy_version"]
        frame = events.select([*cols, *_ACTION_COLUMNS]).to_pandas()
        frame["event"] = frame["event"].astype(str)
        created = np.unique(frame.loc[frame["event"] == "arrangement_created", "arrangement_id"].to_numpy(np.int64))
        if len(created) == 0:
            raise ValueError("the log has no arrangement_created event: nothing to replay")
        dec = frame[frame["event"] == "decision"].sort_values("time", kind="stable")
        dec = dec[dec["arrangement_id"].isin(created)]
        kind = dec["decision_kind"].astype(str).map(_KIND).to_numpy(np.int64)
        occurrence = (
            pd.DataFrame({"a": dec["arrangement_id"].to_numpy(), "k": kind, "i": dec["installment"].to_numpy()})
            .groupby(["a", "k", "i"])
            .cumcount()
            .to_numpy()
        )
        pos = np.searchsorted(created, dec["arrangement_id"].to_numpy(np.int64))
        acts = dec[list(_ACTION_COLUMNS)].to_numpy(np.int64)
        inst = dec["installment"].to_numpy(np.int64)
        actions = {
            (int(p), int(k), int(i), int(o)): (int(a[0]), int(a[1]), int(a[2]), int(a[3]), int(a[4]))
            for p, k, i, o, a in zip(pos, kind, inst, occurrence, acts, strict=True)
        }
        named = Counter(zip(dec["policy"].astype(str), dec["policy_version"].astype(str), strict=True))
        policy, version = named.most_common(1)[0][0] if named else (None, None)
        return cls(created, actions, policy, version)


class NoAction(FixedPolicy):
    """The stated fallback for an unknown logging policy: the first allowed option of every part (no contact,
    keep the plan)."""

    name = "no-action"
    version = "1"

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        """Per row, the lowest allowed option of each part."""
        actions = np.stack([first_allowed(contexts, p) for p in range(len(PART_NAMES))], axis=1)
        return DecisionBatch(actions, np.ones(len(contexts)))


def fallback_policy(decisions: LoggedDecisions, seed: int) -> Policy:
    """The logging policy when the log names a registered one (rebuilt with ``seed`` for its own stream where it
    takes one), else :class:`NoAction`."""
    from agents.ope.behaviour import EpsilonMixture, logged_behaviour

    if decisions.policy is None or decisions.version is None:
        return NoAction()
    made = logged_behaviour(decisions.policy, decisions.version)
    if made is None:
        return NoAction()
    if isinstance(made, EpsilonMixture):
        return EpsilonMixture(base=made.base.name, epsilon=made.epsilon, seed=seed)
    return made


@dataclass
class ReplayStats:
    """What the replaying policy did: decisions replayed as logged, replayed with some part from the fallback
    (the logged option masked), and decided by the fallback (no logged decision matched)."""

    replayed: int = 0
    partly_fallback: int = 0
    fallback: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        """All decisions."""
        return self.replayed + self.partly_fallback + self.fallback


class ReplayingPolicy(FixedPolicy):
    """Replays the logged decisions (module docstring); one instance per simulation (it counts occurrences).

    Args:
        decisions: The log's decisions.
        fallback: The policy deciding where the log has no decision (:func:`fallback_policy`).
    """

    name = "log-replay"
    version = "1"

    def __init__(self, decisions: LoggedDecisions, fallback: Policy) -> None:
        self.decisions = decisions
        self.fallback = fallback
        self.stats = ReplayStats()
        self._seen: Counter[tuple[int, int, int]] = Counter()

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        """The logged action where one matches and is allowed; the fallback's (or its part) elsewhere."""
        n = len(contexts)
        cols = contexts.by_name()
        ids, kinds, insts = cols["arrangement_id"], cols["kind"], cols["installment"]
        logged = np.full((n, len(PART_NAMES)), -1, dtype=np.int64)
        limit = len(self.decisions.arrangement_ids)
        for r in range(n):
            key = (int(ids[r]), int(kinds[r]), int(insts[r]))
            occurrence = self._seen[key]
            self._seen[key] += 1
            if key[0] < limit:
                action = self.decisions.actions.get((*key, occurrence))
                if action is not None:
                    logged[r] = action
        matched = logged[:, 0] >= 0
        allowed = np.ones((n, len(PART_NAMES)), dtype=bool)
        rows = np.flatnonzero(matched)
        for part in range(len(PART_NAMES)):
            mask = contexts.part_mask(part)
            allowed[rows, part] = mask[rows, logged[rows, part]]
        # A send slot matters only with a contact: a masked slot of "no contact" falls back like any part.
        need = ~matched | ~allowed.all(axis=1)
        actions = logged.copy()
        if need.any():
            sub = np.flatnonzero(need)
            fb = self.fallback.decide_batch(contexts.take(sub)).actions
            take = ~matched[sub, None] | ~allowed[sub]
            actions[sub] = np.where(take, fb, logged[sub])
        self.stats.replayed += int((matched & allowed.all(axis=1)).sum())
        self.stats.partly_fallback += int((matched & ~allowed.all(axis=1)).sum())
        self.stats.fallback += int((~matched).sum())
        for k in kinds[~matched]:
            self.stats.by_kind[DecisionKind(int(k)).name.lower()] += 1
        return DecisionBatch(actions, np.ones(n))
