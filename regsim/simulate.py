"""Running a population of arrangements under a policy, and what such a run produces."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from regsim.config import WorldConfig
from regsim.decision import Policy
from regsim.eventlog import write_events
from regsim.metrics import arrangement_outcomes, kpis, kpis_by_segment
from regsim.runoff import RunoffCap
from regsim.world import World

__all__ = ["SimulationResult", "simulate"]


@dataclass
class SimulationResult:
    """The outputs of one run.

    Attributes:
        events: The event log (production schema).
        ground_truth: Latent facts per arrangement (simulation only).
        resources: Queue samples of the shared resources.
        kpis: KPIs of the whole run (see :mod:`regsim.metrics`), each arrangement censored at its run-off cap
            in a run-off.
        kpis_by_type: KPIs per hidden debtor type.
        world: The finished world (for inspection).
        runoff: The run-off cap the run followed (``None``: a fixed horizon). The event log holds every event
            the world produced, also those after an arrangement's cap; :meth:`outcomes` leaves those out.
        horizon_days: When the run stopped (unit: days since its start).
    """

    events: pa.Table
    ground_truth: pd.DataFrame
    resources: pd.DataFrame
    kpis: dict[str, float]
    kpis_by_type: pd.DataFrame
    world: World
    runoff: RunoffCap | None = None
    horizon_days: float = field(default=float("nan"))

    def outcomes(self) -> pd.DataFrame:
        """Per arrangement, :func:`regsim.metrics.arrangement_outcomes` of the run, censored as it ran (at each
        run-off cap, or at the horizon)."""
        horizon = None if self.horizon_days != self.horizon_days else self.horizon_days  # NaN: the log's end
        return arrangement_outcomes(self.events, cap=self.runoff, horizon_days=horizon)

    def write(self, out: str | Path) -> Path:
        """Write ``events.parquet``, ``ground_truth.parquet``, ``resources.parquet``, ``kpis.json`` and
        ``kpis_by_type.csv`` to a folder (created if needed); returns the folder."""
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        write_events(self.events, folder / "events.parquet")
        pq.write_table(pa.Table.from_pandas(self.ground_truth, preserve_index=False), folder / "ground_truth.parquet")
        pq.write_table(pa.Table.from_pandas(self.resources, preserve_index=False), folder / "resources.parquet")
        (folder / "kpis.json").write_text(json.dumps(self.kpis, indent=2, sort_keys=False) + "\n")
        self.kpis_by_type.to_csv(folder / "kpis_by_type.csv", index_label="debtor_type")
        return folder


def simulate(
    config: WorldConfig,
    policy: Policy,
    *,
    arrangements: int | None = None,
    months: int | None = None,
    runoff: RunoffCap | None = None,
    seed: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Simulate a population under a policy.

    Args:
        config: The world.
        policy: The policy deciding at every decision point.
        arrangements: Arrangements (default from the config).
        months: Horizon in months of 30 days (default from the config, unless ``runoff`` is given).
        runoff: Run off instead: follow each arrangement to its end or its cap (:class:`regsim.runoff.RunoffCap`)
            and stop once all have ended or passed it; KPIs count no event after an arrangement's cap and report
            the censored share. Not together with ``months``.
        seed: Run seed (default from the config). Same seed and policy: the same event log, bit for bit.
        progress: Called with the number of simulated days after each day.
    """
    world = World(config, policy, arrangements=arrangements, months=months, runoff=runoff, seed=seed, progress=progress)
    world.run()
    events = world.log.to_table()
    truth = world.ground_truth()
    segment = dict(zip(truth["arrangement_id"], truth["debtor_type"].astype(str), strict=True))
    # A fixed horizon censors open arrangements at the horizon; a run-off, at each cap (or where it stopped).
    horizon = float(world.days) if runoff is None else world.stopped_at
    outcomes = arrangement_outcomes(events, cap=runoff, horizon_days=horizon)
    return SimulationResult(
        events=events,
        ground_truth=truth,
        resources=world.resource_queues(),
        kpis=kpis(outcomes),
        kpis_by_type=kpis_by_segment(outcomes, segment),
        world=world,
        runoff=runoff,
        horizon_days=horizon,
    )
