"""The portfolio's live figures, read from the store with a few aggregate queries (nothing is replayed)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from serving import db

__all__ = ["ChannelFigures", "Portfolio", "portfolio"]


@dataclass(frozen=True)
class ChannelFigures:
    """Messages of one channel: planned, sent, opened, clicked, cancelled, and what was spent on them."""

    channel: str
    planned: int
    sent: int
    opened: int
    clicked: int
    cancelled: int
    cost_eur: float


@dataclass(frozen=True)
class Portfolio:
    """The portfolio as the store has it now.

    Attributes:
        arrangements: Registered arrangements.
        by_status: Arrangements per status (offered, active, completed, broken, referred).
        debt_eur: The debt agreed in every arrangement.
        collected_eur: Everything paid.
        installments_paid: Installments paid in full.
        installments_paid_on_time: Those paid by their due day.
        installments_missed: Installments booked missed.
        channels: Messages per channel.
        incidents: Messages that went out after a late event had made them moot.
    """

    arrangements: int
    by_status: dict[str, int]
    debt_eur: float
    collected_eur: float
    installments_paid: int
    installments_paid_on_time: int
    installments_missed: int
    channels: list[ChannelFigures]
    incidents: int

    @property
    def collected_share(self) -> float:
        """Collected over agreed debt (0 without debt)."""
        return self.collected_eur / self.debt_eur if self.debt_eur > 0 else 0.0

    @property
    def on_time_share(self) -> float:
        """Installments paid on time over installments paid (0 without any)."""
        return self.installments_paid_on_time / self.installments_paid if self.installments_paid else 0.0


_STATUSES = ("offered", "active", "completed", "broken", "referred")


def portfolio(conn: sa.Connection) -> Portfolio:
    """The portfolio's figures (read only)."""
    a, e, m = db.arrangements, db.events, db.messages
    by_status = dict.fromkeys(_STATUSES, 0)
    for status, n in conn.execute(sa.select(a.c.status, sa.func.count()).group_by(a.c.status)):
        by_status[str(status)] = int(n)
    debt = float(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(a.c.debt_eur), 0.0))).scalar_one())
    counted = {
        str(event): (int(n), float(total or 0.0))
        for event, n, total in conn.execute(
            sa.select(e.c.event, sa.func.count(), sa.func.sum(e.c.amount_eur))
            .where(e.c.event.in_(("payment", "installment_paid", "installment_missed")))
            .group_by(e.c.event)
        )
    }
    on_time = int(
        conn.execute(
            sa.select(sa.func.count()).where(e.c.event == "installment_paid", e.c.deferral_days <= 0)
        ).scalar_one()
    )
    planned = {str(c): int(n) for c, n in conn.execute(sa.select(m.c.channel, sa.func.count()).group_by(m.c.channel))}
    by_event: dict[tuple[str, str], tuple[int, float]] = {}
    for channel, event, n, total in conn.execute(
        sa.select(e.c.channel, e.c.event, sa.func.count(), sa.func.sum(e.c.amount_eur))
        .where(e.c.event.in_(("message_sent", "message_opened", "message_clicked", "message_cancelled")))
        .group_by(e.c.channel, e.c.event)
    ):
        by_event[(str(channel), str(event))] = (int(n), float(total or 0.0))
    channels = [
        ChannelFigures(
            channel=c,
            planned=planned.get(c, 0),
            sent=by_event.get((c, "message_sent"), (0, 0.0))[0],
            opened=by_event.get((c, "message_opened"), (0, 0.0))[0],
            clicked=by_event.get((c, "message_clicked"), (0, 0.0))[0],
            cancelled=by_event.get((c, "message_cancelled"), (0, 0.0))[0],
            cost_eur=by_event.get((c, "message_sent"), (0, 0.0))[1],
        )
        for c in sorted(set(planned) | {k[0] for k in by_event})
    ]
    return Portfolio(
        arrangements=sum(by_status.values()),
        by_status=by_status,
        debt_eur=debt,
        collected_eur=counted.get("payment", (0, 0.0))[1],
        installments_paid=counted.get("installment_paid", (0, 0.0))[0],
        installments_paid_on_time=on_time,
        installments_missed=counted.get("installment_missed", (0, 0.0))[0],
        channels=channels,
        incidents=int(conn.execute(sa.select(sa.func.count()).select_from(db.incidents)).scalar_one()),
    )
