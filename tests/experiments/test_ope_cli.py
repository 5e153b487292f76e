"""``regsim ope``: ope.json and ope.html on a simulated log, the deploy gate, the shadow policy, bad arguments; and
``regsim simulate``'s ``decision_value_eur``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import agents
from agents.ope.candidates import effective_actions
from agents.ope.estimators import ESTIMATOR_NAMES
from agents.ope.inputs import BanditFeedback
from agents.ope.logged import decision_rewards, logged_decisions
from experiments.cli import main
from experiments.ope import paired_gate
from regsim import load_world_config
from regsim.eventlog import read_events
from tests.experiments.conftest import REPO

WORLD = load_world_config(REPO / "configs" / "population" / "default.yaml")


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small log under the epsilon-mixture logger (``regsim simulate``), with static dunning as a shadow."""
    out = tmp_path_factory.mktemp("log")
    args = ["simulate", "--policy", "epsilon-mixture", "--arrangements", "40", "--months", "3"]
    assert main([*args, "--seed", "5", "--out", str(out), "--quiet"]) == 0
    events = read_events(out / "events.parquet")
    logged = logged_decisions(events, WORLD)
    own = effective_actions(logged.contexts, agents.make("static-dunning").decide_batch(logged.contexts).actions)
    shadow = {"decision_id": logged.rewards.decision_id.tolist()}
    for k, part in enumerate(("channel", "send_slot", "due_day", "deferral", "reduction")):
        shadow[f"a_{part}"] = own[:, k].tolist()
    pq.write_table(pa.table(shadow), out / "shadow_decisions.parquet")
    return out


def test_simulate_writes_the_on_policy_decision_value(log_dir: Path) -> None:
    kpis = json.loads((log_dir / "kpis.json").read_text())
    value = decision_rewards(read_events(log_dir / "events.parquet"), horizon_days=90.0).value
    assert kpis["decision_value_eur"] == pytest.approx(value)
    assert 0 < kpis["decision_value_eur"] < 1_000


def test_ope_writes_every_estimator_the_counts_and_a_verdict(log_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ope"
    code = main(["ope", "--log", str(log_dir), "--policy", "static-dunning", "--out", str(out), "--bootstrap", "50",
                 "--no-recommend", "--quiet", "--reward-model", "linear"])  # fmt: skip
    assert code == 0
    report = json.loads((out / "ope.json").read_text())
    assert set(report["estimators"]) == set(ESTIMATOR_NAMES)
    for name, r in report["estimators"].items():
        assert {"value", "ci_low", "ci_high", "diagnostics"} <= set(r), name
        assert r["diagnostics"]["refused"] is None, name  # the mixture supports every action
        assert r["ci_low"] <= r["value"] <= r["ci_high"], name
    assert "feedback window" in report["estimand"]["per_decision"]
    assert "net recovery" in report["estimand"]["per_arrangement"]
    excluded = report["excluded"]
    assert excluded["decisions_counted"] + excluded["decisions_open"] == excluded["decisions"]
    assert excluded["decisions_open"] > 0  # a 3-month log: the last two weeks' windows are open
    assert report["gate"]["verdict"] in ("better", "worse", "unclear")
    assert report["gate"]["baseline"] == "the logging policy"
    counted = excluded["decisions_counted"]
    assert isinstance(report["gate"]["baseline_value"], float) and counted > 100
    page = (out / "ope.html").read_text()
    assert '<section id="ope">' in page and report["gate"]["sentence"].split(":")[0] in page


def test_the_shadow_policy_is_evaluated_like_the_policy_it_copies(log_dir: Path, tmp_path: Path) -> None:
    """A shadow that stored static dunning's decisions gets static dunning's estimates; and it can be a baseline."""

    def run(policy: str, out: Path, *extra: str) -> dict[str, object]:
        args = ["ope", "--log", str(log_dir), "--policy", policy, "--out", str(out), "--bootstrap", "20"]
        assert main([*args, "--no-recommend", "--quiet", "--reward-model", "linear", *extra]) == 0
        return dict(json.loads((out / "ope.json").read_text()))

    shadow = run("shadow", tmp_path / "shadow")
    same = run("static-dunning", tmp_path / "same", "--baseline", "shadow")
    for name in ("ips", "snips"):
        assert shadow["estimators"][name]["value"] == pytest.approx(same["estimators"][name]["value"])  # type: ignore[index]
    gate = same["gate"]
    assert isinstance(gate, dict) and gate["difference"] == pytest.approx(0.0, abs=1e-9)
    assert gate["verdict"] == "unclear"


def _two_arm_log(n: int = 4_000) -> tuple[BanditFeedback, BanditFeedback]:
    """A uniform logger over two actions, action 1 paying 1 more on average: always-1 vs always-0."""
    rng = np.random.default_rng(0)
    action = rng.integers(0, 2, n)
    reward = action + rng.normal(0.0, 1.0, n)
    cluster = np.arange(n) // 4
    pscore = np.full(n, 0.5)
    return (
        BanditFeedback(cluster, reward, pscore, (action == 1).astype(float)),
        BanditFeedback(cluster, reward, pscore, (action == 0).astype(float)),
    )


def test_the_gate_sees_a_better_candidate_and_an_equal_one() -> None:
    better, worse = _two_arm_log()
    gate = paired_gate(better, worse, "ips", candidate_label="best", baseline_label="worst", n_bootstrap=100)
    assert gate.verdict == "better" and gate.ci_low > 0 and "Deploy" in gate.sentence
    assert gate.difference == pytest.approx(1.0, abs=0.15)
    flipped = paired_gate(worse, better, "snips", candidate_label="worst", baseline_label="best", n_bootstrap=100)
    assert flipped.verdict == "worse" and flipped.ci_high < 0
    tie = paired_gate(better, better, "ips", candidate_label="a", baseline_label="a", n_bootstrap=50)
    assert tie.difference == 0.0 and tie.verdict == "unclear"
    refused = paired_gate(better, None, "ips", candidate_label="a", baseline_label="b", refused="failed support")
    assert refused.verdict == "refused" and "failed support" in refused.sentence


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "no-such-policy"], "--policy"),
        (["--policy", "static-dunning", "--baseline", "nope"], "--baseline"),
        (["--policy", "static-dunning", "--bootstrap", "0"], "--bootstrap"),
        (["--policy", "static-dunning", "--window-days", "-1"], "--window-days"),
        (["--policy", "one-step-oracle"], "ground truth"),
    ],
)
def test_bad_arguments_name_the_flag(
    log_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code = main(["ope", "--log", str(log_dir), "--out", str(tmp_path), "--no-recommend", "--quiet", *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_a_missing_log_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ope", "--log", str(tmp_path / "none"), "--policy", "silent", "--out", str(tmp_path), "--quiet"])
    assert code == 2
    assert "--log" in capsys.readouterr().err


def test_a_servers_shadow_policy_is_evaluated_from_its_export(tmp_path: Path) -> None:
    """The server logs its active policy's decisions (epsilon-mixture: propensities) and its shadow's (static
    dunning); `regsim export-log` writes both, and `regsim ope --policy shadow` evaluates the shadow on them."""
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.cli import export_log
    from tests.serving.conftest import AUTH, make_settings

    store = f"sqlite:///{tmp_path / 'store.db'}"
    settings = make_settings(store, policy="epsilon-mixture", shadow_policy="static-dunning")
    with TestClient(create_app(settings), headers=AUTH) as client:
        for aid in range(1, 7):
            plan = {"arrangement_id": aid, "debt_eur": 300.0, "n_installments": 3, "due_day": 1, "time": 0.0}
            assert client.post("/v1/arrangements", json=plan).status_code == 201
            for kind, t in (("plan_created", 0.0), ("pre_due", 22.0)):
                r = client.post("/v1/decisions", json={"arrangement_id": aid, "kind": kind, "time": t})
                assert r.status_code == 200, r.text
        assert client.post("/v1/clock", json={"time": 60.0}).status_code == 200
    export_log(store, tmp_path / "export")
    shadow = pq.read_table(tmp_path / "export" / "shadow_decisions.parquet")
    assert shadow.num_rows == 12 and set(shadow.column("policy").to_pylist()) == {"static-dunning"}
    out = tmp_path / "ope"
    args = ["ope", "--log", str(tmp_path / "export"), "--policy", "shadow", "--out", str(out), "--bootstrap", "20"]
    assert main([*args, "--no-recommend", "--quiet", "--reward-model", "linear"]) == 0
    report = json.loads((out / "ope.json").read_text())
    assert report["candidate"]["policy"] == "shadow policy (server)"
    assert report["excluded"]["decisions"] == 12 and report["excluded"]["decisions_counted"] == 12
    assert report["estimators"]["ips"]["value"] is not None


def test_the_recommendation_can_come_from_a_saved_validation_and_says_what_it_rests_on(
    log_dir: Path, tmp_path: Path
) -> None:
    """``--validation FILE`` recommends from that table: the log's own logger's cells, the candidate's, at the
    largest validated size at most the log's (40 arrangements: the 20-arrangement cells, where ``ips`` is best;
    at 1,000 it would be ``dr``; ``dm`` is smaller still but covers badly, so it is passed over). The report names
    the file, the size and the seeds, and the gate uses the recommended estimator."""
    from experiments.ope_validation import ValidationResult, ValidationRow

    label = str(np.unique(logged_decisions(read_events(log_dir / "events.parquet"), WORLD).policy)[0])

    def row(size: int, estimator: str, error: float, coverage: float, behaviour: str = "mix") -> ValidationRow:
        return ValidationRow(behaviour, "static-dunning", size, "per-decision", estimator, 30.0, "branched", 0.2,
                             30.0, error, 0.0, coverage, 20, 0)  # fmt: skip

    rows = [row(20, "ips", 0.10, 0.95), row(20, "dr", 0.15, 0.95), row(20, "dm", 0.05, 0.40)]
    rows += [row(1000, "ips", 0.05, 0.95), row(1000, "dr", 0.02, 0.95), row(1000, "dm", 0.01, 0.40)]
    rows += [row(20, "dr", 0.01, 0.95, behaviour="other")]  # (another logger's cell: not the log's, left out)
    payload = ValidationResult(tuple(rows), tuple(range(20)), 1.0, 0.95).to_json(
        world="default", reward_model="interactions", behaviour_labels={"mix": label, "other": "random 1"}
    )
    file = tmp_path / "ope_validation.json"
    file.write_text(json.dumps(payload))
    out = tmp_path / "ope"
    args = ["ope", "--log", str(log_dir), "--policy", "static-dunning", "--out", str(out), "--bootstrap", "20"]
    assert main([*args, "--validation", str(file), "--quiet", "--reward-model", "linear"]) == 0
    report = json.loads((out / "ope.json").read_text())
    rec = report["recommendation"]
    assert rec["estimator"] == "ips" and rec["arrangements"] == 20 and rec["seeds"] == 20
    assert rec["source"] == str(file) and rec["candidates"] == ["static-dunning"]
    assert "20 seeds" in rec["sentence"] and "20 arrangements" in rec["sentence"]
    assert report["gate"]["estimator"] == "ips"
    missing = tmp_path / "none.json"
    assert main([*args, "--validation", str(missing), "--quiet", "--reward-model", "linear"]) == 2
