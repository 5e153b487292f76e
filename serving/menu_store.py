"""The ``menus`` table (revision 0005): every self-service menu shown, its choice and the custom cases queued.

The event log holds what the world logs (``menu_shown``, ``menu_choice`` and their consequences); this table
holds what the server answers from: the menu and the choice as answered (JSON of
:class:`serving.schemas_menu.MenuOut` and :class:`~serving.schemas_menu.ChoiceOut`), the page's answers, and
the state of each menu:

* ``open``: shown, not answered yet;
* ``chosen``: answered (``chosen_option``, ``chosen_time``, ``choice_json``);
* ``superseded``: a later menu of the same arrangement replaced it before it was answered.

A custom solution's menu has ``case_state`` ``queued``: the case waits in the collectors' queue
(:func:`queued_cases`) until staff resolve it (``resolved``, :func:`mark_resolved`).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from serving import db

__all__ = [
    "MenuRow",
    "insert_menu",
    "latest_menu",
    "mark_chosen",
    "mark_resolved",
    "menu_row",
    "menus",
    "queued_cases",
    "supersede",
]

_FLOAT = sa.Float(precision=53)

menus = sa.Table(
    "menus",
    db.metadata,
    sa.Column("menu_id", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("arrangement_id", sa.BigInteger(), nullable=False, index=True),
    sa.Column("time", _FLOAT, nullable=False),
    sa.Column("installment", sa.SmallInteger(), nullable=False),
    sa.Column("levels", sa.String(64), nullable=False),
    sa.Column("propensity", _FLOAT, nullable=False),
    sa.Column("policy", sa.String(128), nullable=False),
    sa.Column("policy_version", sa.String(128), nullable=False),
    sa.Column("menu_json", sa.Text(), nullable=False),
    sa.Column("answers_json", sa.Text(), nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("chosen_option", sa.String(16), nullable=True),
    sa.Column("chosen_time", _FLOAT, nullable=True),
    sa.Column("choice_json", sa.Text(), nullable=True),
    sa.Column("case_state", sa.String(16), nullable=True),
)


@dataclass(frozen=True)
class MenuRow:
    """A row of ``menus``."""

    menu_id: int
    arrangement_id: int
    time: float
    installment: int
    levels: tuple[int, ...]
    menu_json: str
    state: str
    chosen_option: str | None
    chosen_time: float | None
    choice_json: str | None
    case_state: str | None

    @classmethod
    def from_row(cls, row: sa.Row[object]) -> MenuRow:
        m = row._mapping
        return cls(
            menu_id=int(m["menu_id"]),
            arrangement_id=int(m["arrangement_id"]),
            time=float(m["time"]),
            installment=int(m["installment"]),
            levels=tuple(int(v) for v in str(m["levels"]).split(",")),
            menu_json=str(m["menu_json"]),
            state=str(m["state"]),
            chosen_option=m["chosen_option"],
            chosen_time=None if m["chosen_time"] is None else float(m["chosen_time"]),
            choice_json=m["choice_json"],
            case_state=m["case_state"],
        )


def insert_menu(
    conn: sa.Connection,
    *,
    menu_id: int,
    arrangement_id: int,
    time: float,
    installment: int,
    levels: tuple[int, ...],
    propensity: float,
    policy: str,
    policy_version: str,
    menu_json: str,
    answers_json: str | None,
) -> None:
    """Store a menu just shown (state ``open``)."""
    conn.execute(
        sa.insert(menus).values(
            menu_id=menu_id,
            arrangement_id=arrangement_id,
            time=time,
            installment=installment,
            levels=",".join(str(v) for v in levels),
            propensity=propensity,
            policy=policy,
            policy_version=policy_version,
            menu_json=menu_json,
            answers_json=answers_json,
            state="open",
        )
    )


def menu_row(conn: sa.Connection, menu_id: int) -> MenuRow | None:
    """A menu by id (``None``: no such menu)."""
    row = conn.execute(sa.select(menus).where(menus.c.menu_id == menu_id)).first()
    return None if row is None else MenuRow.from_row(row)


def latest_menu(conn: sa.Connection, arrangement_id: int) -> MenuRow | None:
    """The arrangement's latest menu (``None``: none shown yet)."""
    stmt = sa.select(menus).where(menus.c.arrangement_id == arrangement_id).order_by(menus.c.menu_id.desc()).limit(1)
    row = conn.execute(stmt).first()
    return None if row is None else MenuRow.from_row(row)


def queued_cases(conn: sa.Connection, arrangement_id: int | None = None) -> list[MenuRow]:
    """Menus whose custom solution waits in the collectors' queue (of one arrangement, if given), oldest first."""
    stmt = sa.select(menus).where(menus.c.case_state == "queued")
    if arrangement_id is not None:
        stmt = stmt.where(menus.c.arrangement_id == arrangement_id)
    return [MenuRow.from_row(r) for r in conn.execute(stmt.order_by(menus.c.menu_id))]


def supersede(conn: sa.Connection, arrangement_id: int) -> None:
    """Mark the arrangement's open menus superseded (a new menu is being shown)."""
    conn.execute(
        sa.update(menus)
        .where(menus.c.arrangement_id == arrangement_id, menus.c.state == "open")
        .values(state="superseded")
    )


def mark_chosen(conn: sa.Connection, menu_id: int, option: str, time: float, choice_json: str, queued: bool) -> None:
    """Record a menu's answer (and, for a custom solution, its case in the collectors' queue)."""
    conn.execute(
        sa.update(menus)
        .where(menus.c.menu_id == menu_id)
        .values(
            state="chosen",
            chosen_option=option,
            chosen_time=time,
            choice_json=choice_json,
            case_state="queued" if queued else None,
        )
    )


def mark_resolved(conn: sa.Connection, menu_id: int) -> None:
    """A queued custom case was resolved by staff."""
    conn.execute(sa.update(menus).where(menus.c.menu_id == menu_id).values(case_state="resolved"))
