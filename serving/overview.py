"""The call-centre overview of one arrangement: its plan, what was sent and what happens next, and why.

Read from the store alone (the arrangement's events replayed through the ledger, as a fresh process would see
them), so the overview is what any server process would answer; it changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from regsim.config import CHANNELS
from regsim.decision import ActionSpace, MessagePurpose
from regsim.messages import MessageState
from regsim.replay import LogReplay
from serving import schemas
from serving.cache import ArrangementInfo
from serving.store import load_events

__all__ = ["installments_of", "opted_out_of", "overview"]

_CHANNEL_NAMES = ("none", *CHANNELS)
_PURPOSE_NAMES = tuple(p.name.lower() for p in MessagePurpose)
_MESSAGE_EVENTS = ("message_sent", "message_delivered", "message_opened", "message_clicked", "message_cancelled")


def installments_of(replay: LogReplay, arrangement_id: int, epoch: dt.date) -> list[schemas.InstallmentOut]:
    """The current plan of a tracked arrangement, installment by installment."""
    row, s = replay.row[arrangement_id], replay.ledger.sched
    out = []
    for j in range(int(s.n[row])):
        due = int(s.due[row, j])
        paid = j < int(s.first_open[row])
        overdue = not paid and j < int(s.miss_ptr[row])
        out.append(
            schemas.InstallmentOut(
                index=j,
                due_time=due,
                due_date=epoch + dt.timedelta(days=due),
                amount_eur=float(s.amount[row, j]),
                paid_eur=float(s.paid[row, j]),
                status="paid" if paid else "overdue" if overdue else "open",
            )
        )
    return out


def opted_out_of(replay: LogReplay, arrangement_id: int) -> list[str]:
    """The channels a tracked arrangement's debtor opted out of."""
    flags = replay.ledger.history.opted_out[replay.row[arrangement_id]]
    return [c for c, f in zip(CHANNELS, flags.tolist(), strict=True) if f]


def overview(
    conn: sa.Connection,
    replay: LogReplay,
    info: ArrangementInfo,
    epoch: dt.date,
    at_of: Callable[[float], dt.datetime],
) -> schemas.Overview:
    """The overview of one arrangement whose state ``replay`` holds (rebuilt from the store)."""
    aid = info.arrangement_id
    ledger = replay.ledger
    row, s = replay.row[aid], ledger.sched
    log = load_events(conn, [aid], epoch)
    decisions = {d.decision_id: d for d in _decision_summaries(log, replay.space)}
    m = ledger.messages
    mine = m.of_rows(np.array([row], dtype=np.int64), ledger.n)
    pending = mine[m.state[mine] == int(MessageState.PENDING)]
    next_action = None
    if len(pending):
        k = int(pending[np.lexsort((m.message_id[pending], m.send_time[pending]))[0]])
        decided_by = decisions.get(int(m.decision[k]))
        if decided_by is not None:
            next_action = schemas.NextAction(
                message_id=int(m.message_id[k]),
                channel=_CHANNEL_NAMES[int(m.channel[k])],
                purpose=_PURPOSE_NAMES[int(m.purpose[k])],
                installment=int(m.installment[k]),
                send_time=float(m.send_time[k]),
                send_at=at_of(float(m.send_time[k])),
                decided_by=decided_by,
            )
    contact = []
    events = log.column("event").to_pylist()
    for k, name in enumerate(events):
        if name in _MESSAGE_EVENTS:
            t = float(log.column("time")[k].as_py())
            contact.append(
                schemas.ContactRecord(
                    time=t,
                    at=at_of(t),
                    event=name,
                    channel=str(log.column("channel")[k].as_py()),
                    message_id=int(log.column("message_id")[k].as_py()),
                    decision_id=int(log.column("decision_id")[k].as_py()),
                )
            )
    payments = [
        schemas.PaymentRecord(
            time=float(r["time"]),
            at=at_of(float(r["time"])),
            amount_eur=float(r["amount_eur"]),
            channel=str(r["channel"]),
        )
        for r in log.select(["event", "time", "amount_eur", "channel"]).to_pylist()
        if r["event"] == "payment"
    ]
    paid = int(s.first_open[row])
    return schemas.Overview(
        arrangement_id=aid,
        status=info.status,
        debt_eur=float(info.debt_eur),
        balance_eur=float(s.balance[row]),
        installments_paid=paid,
        installments_open=int(s.n[row]) - paid,
        installments=installments_of(replay, aid, epoch),
        opted_out=opted_out_of(replay, aid),
        next_action=next_action,
        last_decision=max(decisions.values(), key=lambda d: d.decision_id) if decisions else None,
        contact_history=contact,
        payments=payments,
    )


def _decision_summaries(log: pa.Table, space: ActionSpace) -> list[schemas.DecisionSummary]:
    out = []
    for r in log.to_pylist():
        if r["event"] != "decision":
            continue
        out.append(
            schemas.DecisionSummary(
                decision_id=int(r["decision_id"]),
                time=float(r["time"]),
                kind=r["decision_kind"],
                installment=int(r["installment"]),
                channel=_CHANNEL_NAMES[int(r["a_channel"])],
                deferral_days=int(space.deferral_days[int(r["a_deferral"])]),
                reduction=float(space.reduction_fractions[int(r["a_reduction"])]),
                policy=str(r["policy"]),
                policy_version=str(r["policy_version"]),
                propensity=float(r["propensity"]),
                masked_rules=[m for m in (r["masked_rules"] or "").split(",") if m],
            )
        )
    return out
