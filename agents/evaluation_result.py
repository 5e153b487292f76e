"""The result of a paired evaluation: :class:`Evaluation`, its tidy frame, tables, and (de)serialisation.

:func:`agents.evaluate.evaluate` returns an :class:`Evaluation`: one row per (policy, segment, KPI) with the
value, the difference to the baseline, its paired interval and the gap closed (:data:`COLUMNS`). It writes and
reads itself as Parquet (provenance in the file's metadata) or JSON, and prints a paired table by eye.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["COLUMNS", "TABLE_KPIS", "Evaluation"]

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

#: The KPIs :meth:`Evaluation.table` shows by default.
TABLE_KPIS: tuple[str, ...] = (
    "completion_rate",
    "on_time_installment_rate",
    "breakdown_rate",
    "contacts_per_arrangement",
    "collected_eur_per_arrangement",
    "net_recovery_eur_per_arrangement",
    "cost_per_eur_collected",
    "censored_rate",
)

_META_KEY = b"regsim.evaluation"


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
        foot = ""
        search = self.meta.get("hindsight_oracle")
        if self.oracle is not None and isinstance(search, dict):
            foot = (
                f"\ngap closed: against {self.oracle!r}, per arrangement the best life found on the same random "
                f"numbers by {search['objective']} (search depth {search['max_decisions']} decisions, "
                f"{search['lives_simulated']:,} lives simulated in {search['wall_s']:.0f} s; an upper reference on "
                "that objective only, not on every KPI)"
            )
        return head + "\n" + body.to_string() + foot

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
