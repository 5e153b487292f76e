"""The policy that replays a log's own decisions in the simulator, so simulated moments answer the same treatment.

Pairing. By default simulated arrangement ``k`` (ids ``0..n-1``, as :class:`regsim.world.World` numbers them)
takes the decisions of the log's ``k``-th arrangement in id order (:class:`LoggedDecisions`); with
``pairing="debtor"`` it takes those of a log arrangement of the same plan length and the nearest debt
(:func:`pair_by_debtor`). Measured on a 5,000-arrangement, 6-month log under ``epsilon-mixture``, simulated with
another seed: 42.5% of the simulated decision points fell back with arrangement pairing, 39.9% with debtor
pairing (in the true world and in the default one alike), so most fall-backs are the debtors' own divergence
(one missed where the other paid), not a mismatched plan. A decision point of the simulated
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

The lookup is vectorised per batch of decision points (sorted slot codes and binary search), so replaying costs
about a tenth of the simulation it drives.

Treatment by the policy (``pairing="policy"``). Replaying realised actions is biased wherever the simulated
states diverge from the logged ones: the logging policy chose each logged action for the logged debtor's state
and draws, and a simulated debtor in another state receives an offer made to someone else (at the true parameters
of the 50,000-arrangement benchmark the deferral uptake per decision was 7-10% off in every segment,
docs/calibration_fit.md, "The model at the truth"). When the log names a registered logging policy, simulating
that policy itself on the simulated states has, at the true parameters, the distribution the log was drawn from.
With ``pairing="policy"`` no logged action is replayed: every decision is the logging policy's
(:func:`logging_policy`, rebuilt with the simulation's seed for its own stream, as the fallback is), its
propensities kept; a log whose policy is not a registered one is refused (:func:`require_logging_policy`), since
no rule is known to apply to the simulated states.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from agents.base import FixedPolicy, first_allowed
from regsim.decision import PART_NAMES, ContextBatch, DecisionBatch, DecisionKind, Feedback, Policy

__all__ = [
    "PAIRINGS",
    "PAIRING_CHOICES",
    "LoggedDecisions",
    "NoAction",
    "Pairing",
    "PairingChoice",
    "ReplayStats",
    "ReplayingPolicy",
    "fallback_policy",
    "logging_policy",
    "pair_by_debtor",
    "require_logging_policy",
    "resolve_pairing",
]

_KIND = {k.name.lower(): int(k) for k in DecisionKind}
_ACTION_COLUMNS = ("a_channel", "a_send_slot", "a_due_day", "a_deferral", "a_reduction")


#: Decision kinds in the key's encoding (``DecisionKind`` values are below it).
_N_KINDS = len(DecisionKind)


@dataclass(frozen=True)
class LoggedDecisions:
    """A log's decisions, per log arrangement in id order, as sorted arrays (looked up by binary search).

    A decision point's *slot* is (log position, kind, installment), encoded as one integer
    (:meth:`slot_code`); the log's slots are :attr:`slots` (sorted, distinct), and the ``j``-th logged decision of
    slot ``i`` is row ``starts[i] + j`` of :attr:`table` (``j < counts[i]``).

    Attributes:
        arrangement_ids: The log's arrangement ids, sorted; position ``p`` is ``arrangement_ids[p]``.
        slots: The distinct slot codes of the logged decisions, sorted, shape ``(S,)``.
        starts: Row of each slot's first decision in :attr:`table`, shape ``(S,)``.
        counts: Logged decisions per slot (their occurrences), shape ``(S,)``.
        table: The five logged option indices of every decision, by slot then occurrence, shape ``(N, 5)``.
        installments: The encoding's radix: the largest logged installment index plus 2 (index -1 is 0).
        n_installments: Each log arrangement's plan length at creation, shape ``(A,)``.
        debt_eur: Each log arrangement's debt at creation, shape ``(A,)`` (unit: EUR).
        policy: The most frequent logging policy's name (``None``: no decision in the log).
        version: Its version.
    """

    arrangement_ids: NDArray[np.int64]
    slots: NDArray[np.int64]
    starts: NDArray[np.int64]
    counts: NDArray[np.int64]
    table: NDArray[np.int64]
    installments: int
    n_installments: NDArray[np.int64]
    debt_eur: NDArray[np.float64]
    policy: str | None
    version: str | None

    def __len__(self) -> int:
        """Logged decisions."""
        return len(self.table)

    def slot_code(
        self, position: NDArray[np.int64], kind: NDArray[np.int64], installment: NDArray[np.int64]
    ) -> NDArray[np.int64]:
        """The slot codes of (log position, kind, installment) rows; ``-1`` where the installment is outside the
        log's range (no logged decision can match)."""
        inst = np.asarray(installment, np.int64) + 1
        code = (np.asarray(position, np.int64) * _N_KINDS + np.asarray(kind, np.int64)) * self.installments + inst
        return np.where((inst >= 0) & (inst < self.installments), code, -1)

    def with_table(self, table: NDArray[np.int64], policy: str | None, version: str | None) -> LoggedDecisions:
        """The same decision points with other logged actions (shape of :attr:`table`) and logging policy."""
        if table.shape != self.table.shape:
            raise ValueError(f"table: expected shape {self.table.shape}, got {table.shape}")
        return LoggedDecisions(
            self.arrangement_ids,
            self.slots,
            self.starts,
            self.counts,
            np.asarray(table, np.int64),
            self.installments,
            self.n_installments,
            self.debt_eur,
            policy,
            version,
        )

    @classmethod
    def from_log(cls, events: pa.Table) -> LoggedDecisions:
        """Read the decisions (and arrangement ids, plan lengths and debts) of an event log.

        Raises:
            ValueError: The log has no ``arrangement_created`` event.
        """
        cols = ["event", "time", "arrangement_id", "installment", "decision_kind", "policy", "policy_version"]
        frame = events.select([*cols, "amount_eur", "n_installments", *_ACTION_COLUMNS]).to_pandas()
        is_created = (frame["event"] == "arrangement_created").to_numpy(bool)
        created_rows = frame.loc[is_created].drop_duplicates("arrangement_id").sort_values("arrangement_id")
        created = created_rows["arrangement_id"].to_numpy(np.int64)
        if len(created) == 0:
            raise ValueError("the log has no arrangement_created event: nothing to replay")
        dec = frame[(frame["event"] == "decision").to_numpy(bool)].sort_values("time", kind="stable")
        dec = dec[dec["arrangement_id"].isin(created)]
        kind = dec["decision_kind"].astype(str).map(_KIND).to_numpy(np.int64)
        inst = dec["installment"].to_numpy(np.int64)
        pos = np.searchsorted(created, dec["arrangement_id"].to_numpy(np.int64))
        radix = int(inst.max()) + 2 if len(inst) else 1
        code = (pos * _N_KINDS + kind) * radix + (inst + 1)
        # Stable by code keeps the time order within a slot: row j of a slot is its j-th occurrence.
        order = np.argsort(code, kind="stable")
        slots, starts, counts = np.unique(code[order], return_index=True, return_counts=True)
        table = dec[list(_ACTION_COLUMNS)].to_numpy(np.int64)[order]
        named = Counter(zip(dec["policy"].astype(str), dec["policy_version"].astype(str), strict=True))
        policy, version = named.most_common(1)[0][0] if named else (None, None)
        return cls(
            created,
            slots.astype(np.int64),
            starts.astype(np.int64),
            counts.astype(np.int64),
            table,
            radix,
            created_rows["n_installments"].to_numpy(np.int64),
            created_rows["amount_eur"].to_numpy(float),
            policy,
            version,
        )


class NoAction(FixedPolicy):
    """The stated fallback for an unknown logging policy: the first allowed option of every part (no contact,
    keep the plan)."""

    name = "no-action"
    version = "1"

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        """Per row, the lowest allowed option of each part."""
        actions = np.stack([first_allowed(contexts, p) for p in range(len(PART_NAMES))], axis=1)
        return DecisionBatch(actions, np.ones(len(contexts)))


def logging_policy(decisions: LoggedDecisions, seed: int) -> Policy | None:
    """The log's logging policy rebuilt from its name and version (:func:`agents.ope.behaviour.logged_behaviour`)
    with ``seed`` for its own stream where it takes one (``epsilon-mixture``); ``None`` when the log names no
    registered policy (or has no decision)."""
    from agents.ope.behaviour import EpsilonMixture, logged_behaviour

    if decisions.policy is None or decisions.version is None:
        return None
    made = logged_behaviour(decisions.policy, decisions.version)
    if isinstance(made, EpsilonMixture):
        return EpsilonMixture(base=made.base.name, epsilon=made.epsilon, seed=seed)
    return made


def fallback_policy(decisions: LoggedDecisions, seed: int) -> Policy:
    """The logging policy when the log names a registered one (:func:`logging_policy`), else :class:`NoAction`."""
    made = logging_policy(decisions, seed)
    return NoAction() if made is None else made


def require_logging_policy(decisions: LoggedDecisions, seed: int) -> Policy:
    """:func:`logging_policy`, for the treatment ``pairing="policy"``.

    Raises:
        ValueError: The log names no registered policy (the message names ``--pairing``, what the log says and
            the alternatives).
    """
    made = logging_policy(decisions, seed)
    if made is None:
        said = (
            "no decision"
            if decisions.policy is None
            else f"policy {decisions.policy!r} version {decisions.version!r}, not a registered policy"
        )
        raise ValueError(
            f"--pairing policy: simulates the log's logging policy, but the log has {said}; "
            f"use --pairing arrangement or --pairing debtor (replay the log's decisions)"
        )
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


#: How simulated arrangements are paired with log arrangements (module docstring).
Pairing = Literal["arrangement", "debtor", "policy"]
PAIRINGS: tuple[Pairing, ...] = ("arrangement", "debtor", "policy")
#: What a user may ask for: a pairing, or ``"auto"`` (:func:`resolve_pairing`), the default.
PairingChoice = Literal["auto", "arrangement", "debtor", "policy"]
PAIRING_CHOICES: tuple[PairingChoice, ...] = ("auto", *PAIRINGS)


def resolve_pairing(choice: PairingChoice, decisions: LoggedDecisions) -> Pairing:
    """The pairing a calibration uses: ``choice`` itself, or for ``"auto"`` ``"policy"`` where the log names a
    registered logging policy (:func:`logging_policy`) and ``"arrangement"`` otherwise.

    Why policy first: at the true parameters of the 50,000-arrangement benchmark, simulating the logging policy
    gives the log's distribution (Q of the 8-seed mean 343 on 304 moments), while replaying the logged actions on
    diverging states does not (509: the deferral offers, docs/calibration_fit.md, "The model at the truth").

    Raises:
        ValueError: An unknown choice (the message names the allowed ones).
    """
    if choice not in PAIRING_CHOICES:
        raise ValueError(f"pairing: expected one of {', '.join(PAIRING_CHOICES)}, got {choice!r}")
    if choice != "auto":
        return choice
    return "arrangement" if logging_policy(decisions, 0) is None else "policy"


def pair_by_debtor(
    decisions: LoggedDecisions, n_installments: NDArray[np.int64], debt_eur: NDArray[np.float64]
) -> NDArray[np.int64]:
    """Per simulated arrangement (its plan length and debt at creation), the log position it replays: a log
    arrangement with the same plan length and the nearest debt (the nearest plan length where the log has none of
    that length; ties to the lower debt). Several simulated arrangements may share one log arrangement."""
    lengths = np.unique(decisions.n_installments)
    want = np.asarray(n_installments, np.int64)
    idx = np.clip(np.searchsorted(lengths, want), 0, len(lengths) - 1)
    below = np.clip(idx - 1, 0, len(lengths) - 1)
    length = np.where(np.abs(lengths[below] - want) < np.abs(lengths[idx] - want), lengths[below], lengths[idx])
    out = np.empty(len(want), dtype=np.int64)
    for n in np.unique(length):
        pool = np.flatnonzero(decisions.n_installments == n)
        pool = pool[np.argsort(decisions.debt_eur[pool], kind="stable")]
        debts = decisions.debt_eur[pool]
        rows = np.flatnonzero(length == n)
        hi = np.clip(np.searchsorted(debts, debt_eur[rows]), 0, len(pool) - 1)
        lo = np.clip(hi - 1, 0, len(pool) - 1)
        nearer_lo = np.abs(debts[lo] - debt_eur[rows]) <= np.abs(debts[hi] - debt_eur[rows])
        out[rows] = pool[np.where(nearer_lo, lo, hi)]
    return out


class ReplayingPolicy(FixedPolicy):
    """Replays the logged decisions (module docstring); one instance per simulation (it counts occurrences).

    Args:
        decisions: The log's decisions.
        fallback: The policy deciding where the log has no decision (:func:`fallback_policy`).
        pairing: ``"arrangement"``: simulated arrangement ``k`` replays the log's ``k``-th; ``"debtor"``: the log
            arrangement of the same plan length and nearest debt (:func:`pair_by_debtor`), fixed at its first
            decision point; ``"policy"``: nothing replayed, every decision is the fallback's, which must then be the
            logging policy (:func:`require_logging_policy`; module docstring), its propensities kept and every
            decision counted as a fallback; a learning logging policy learns as it did in the log (its feedback
            window, reward and :meth:`update` are passed through).

    Raises:
        ValueError: An unknown pairing, or ``"policy"`` with a log that names no registered policy.
    """

    name = "log-replay"
    version = "1"

    def __init__(self, decisions: LoggedDecisions, fallback: Policy, pairing: Pairing = "arrangement") -> None:
        if pairing not in PAIRINGS:
            raise ValueError(f"pairing: expected one of {', '.join(PAIRINGS)}, got {pairing!r}")
        if pairing == "policy":
            require_logging_policy(decisions, 0)  # the name check only; the caller's fallback decides
            # The world feeds matured outcomes only to a policy that asks (its window), as it fed the logger.
            self.feedback_window_days = fallback.feedback_window_days
            self.feedback_reward = fallback.feedback_reward
        self.decisions = decisions
        self.fallback = fallback
        self.pairing = pairing
        self.stats = ReplayStats()
        self._seen_points = np.zeros(0, dtype=np.int64)  # sorted (arrangement, kind, installment) codes
        self._seen_counts = np.zeros(0, dtype=np.int64)
        self._paired: dict[int, int] = {}

    def _positions(self, ids: NDArray[np.int64], contexts: ContextBatch) -> NDArray[np.int64]:
        """The log position each row's arrangement replays (``-1``: none)."""
        limit = len(self.decisions.arrangement_ids)
        if self.pairing == "arrangement":
            return np.where((ids >= 0) & (ids < limit), ids, -1)
        cols = contexts.by_name()
        new = [i for i, a in enumerate(ids.tolist()) if a not in self._paired]
        if new:
            rows = np.asarray(new, dtype=np.int64)
            firsts = {int(ids[r]): int(r) for r in rows[::-1]}  # an arrangement's first row in the batch
            keep = np.asarray(sorted(firsts.values()), dtype=np.int64)
            got = pair_by_debtor(
                self.decisions, cols["n_installments"][keep].astype(np.int64), cols["debt_eur"][keep].astype(float)
            )
            self._paired.update(zip(ids[keep].tolist(), got.tolist(), strict=True))
        return np.fromiter((self._paired[a] for a in ids.tolist()), dtype=np.int64, count=len(ids))

    def _count(self, points: NDArray[np.int64], first: NDArray[np.bool_]) -> NDArray[np.int64]:
        """The times each of the sorted ``points`` (``first``: a run's first row) was reached before this batch;
        then adds this batch's."""
        seen, counts = self._seen_points, self._seen_counts
        at = np.searchsorted(seen, points)
        present = at < len(seen)
        present[present] = seen[at[present]] == points[present]
        before = np.zeros(len(points), dtype=np.int64)
        before[present] = counts[at[present]]
        starts = np.flatnonzero(first)
        added = np.diff(np.r_[starts, len(points)])
        old = present[starts]
        counts = counts.copy()
        counts[at[starts[old]]] += added[old]
        # New points go in before their insertion positions (sorted, so the merged array stays sorted).
        new = starts[~old]
        self._seen_points = np.insert(seen, at[new], points[new])
        self._seen_counts = np.insert(counts, at[new], added[~old])
        return before

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        """The logged action where one matches and is allowed; the fallback's (or its part) elsewhere."""
        n = len(contexts)
        cols = contexts.by_name()
        kinds = cols["kind"].astype(np.int64)
        if self.pairing == "policy":
            self.stats.fallback += n
            self._count_fallbacks(kinds)
            return self.fallback.decide_batch(contexts)
        ids = cols["arrangement_id"].astype(np.int64)
        insts = cols["installment"].astype(np.int64)
        d = self.decisions
        pos = self._positions(ids, contexts)
        code = np.where(pos >= 0, d.slot_code(np.maximum(pos, 0), kinds, insts), -1)
        at = np.clip(np.searchsorted(d.slots, code), 0, max(len(d.slots) - 1, 0))
        known = (code >= 0) & (len(d.slots) > 0)
        if len(d.slots):
            known &= d.slots[at] == code
        slot = np.where(known, at, -1)
        # The occurrence of each row's decision point: the times the simulated arrangement reached that (kind,
        # installment) before, plus its rank among this batch's rows of the same point (in row order).
        occurrence = np.zeros(n, dtype=np.int64)
        rows = np.flatnonzero(known)
        if len(rows):
            own = (ids[rows] * _N_KINDS + kinds[rows]) * d.installments + insts[rows] + 1
            order = np.argsort(own, kind="stable")
            point = own[order]
            first = np.r_[True, point[1:] != point[:-1]]
            rank = np.arange(len(order)) - np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
            occurrence[rows[order]] = self._count(point, first) + rank
        matched = known & (occurrence < np.where(known, d.counts[np.maximum(slot, 0)], 0))
        logged = np.full((n, len(PART_NAMES)), -1, dtype=np.int64)
        hit = np.flatnonzero(matched)
        logged[hit] = d.table[d.starts[slot[hit]] + occurrence[hit]]
        allowed = np.ones((n, len(PART_NAMES)), dtype=bool)
        for part in range(len(PART_NAMES)):
            mask = contexts.part_mask(part)
            allowed[hit, part] = mask[hit, logged[hit, part]]
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
        self._count_fallbacks(kinds[~matched])
        return DecisionBatch(actions, np.ones(n))

    def update(self, feedback: Feedback) -> None:
        """With ``pairing="policy"`` the logging policy's own update; a replay learns nothing."""
        if self.pairing == "policy":
            self.fallback.update(feedback)

    def _count_fallbacks(self, kinds: NDArray[np.int64]) -> None:
        """Adds the fallback decisions of these kinds to :attr:`stats`'s ``by_kind``."""
        for k, c in enumerate(np.bincount(kinds, minlength=_N_KINDS)):
            if c:
                self.stats.by_kind[DecisionKind(k).name.lower()] += int(c)
