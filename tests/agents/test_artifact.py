"""Policy artifacts: manifests, checksums, version checks and loading by kind (no torch needed here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import agents
from agents import artifact
from agents.artifact import ArtifactError, load_policy, read_manifest, register_loader, write_manifest
from agents.reference import RandomPolicy
from regsim import Policy, WorldConfig
from regsim.features import FEATURE_VERSION

KIND = "test-random"


def _load_random(folder: Path, manifest: dict[str, Any], *, seed: int | None = None) -> Policy:
    params = json.loads((folder / "params.json").read_text())
    return RandomPolicy(seed=params["seed"] if seed is None else seed)


@pytest.fixture(autouse=True)
def test_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loader kind for these tests only, removed afterwards."""
    monkeypatch.setitem(artifact._LOADERS, KIND, _load_random)


def make_artifact(folder: Path, *, rules_version: str = "rules-1", **extra_files: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps({"seed": 3}))
    (folder / "sub").mkdir()
    (folder / "sub" / "notes.txt").write_text("nested files are covered too")
    for name, text in extra_files.items():
        (folder / name).write_text(text)
    write_manifest(
        folder,
        kind=KIND,
        policy_name="random",
        policy_version="1",
        rules_version=rules_version,
        training={"seed": 3, "steps": np.int64(10), "lr": np.float32(0.5), "path": folder, "fn": make_artifact},
        metrics={"completion_rate": 0.5, "nan": float("nan"), "by_type": {"reliable": np.float64(0.9)}},
    )
    return folder


def test_manifest_records_provenance_and_checksums(tmp_path: Path) -> None:
    folder = make_artifact(tmp_path / "a")
    text = (folder / "manifest.json").read_text()
    manifest = json.loads(text)
    assert "NaN" not in text  # strict JSON
    assert manifest["kind"] == KIND and (manifest["policy_name"], manifest["policy_version"]) == ("random", "1")
    assert manifest["feature_version"] == FEATURE_VERSION and manifest["rules_version"] == "rules-1"
    assert set(manifest["packages"]) == set(artifact.PACKAGES) and manifest["packages"]["numpy"] == np.__version__
    assert manifest["training"]["steps"] == 10 and manifest["training"]["lr"] == 0.5
    assert manifest["training"]["fn"].endswith("make_artifact")
    assert manifest["metrics"]["nan"] is None and manifest["metrics"]["by_type"]["reliable"] == 0.9
    assert set(manifest["files"]) == {"params.json", "sub/notes.txt"}
    assert manifest["files"]["params.json"] == artifact.sha256_file(folder / "params.json")
    assert manifest["created"].endswith("+00:00")
    assert read_manifest(folder, rules_version="rules-1") == manifest


def test_load_policy_dispatches_on_kind_and_passes_arguments(tmp_path: Path) -> None:
    folder = make_artifact(tmp_path / "a")
    policy = load_policy(folder)
    assert isinstance(policy, RandomPolicy) and policy.seed == 3
    assert isinstance(load_policy(str(folder), seed=9), RandomPolicy)
    assert load_policy(folder, seed=9).seed == 9  # type: ignore[attr-defined]


# what to do to the folder, the fragment the error must contain
TAMPERING: list[tuple[str, Any, str]] = [
    ("modified", lambda f: (f / "params.json").write_text(json.dumps({"seed": 4})), "'params.json' was modified"),
    ("modified-nested", lambda f: (f / "sub" / "notes.txt").write_text("x"), "'sub/notes.txt' was modified"),
    ("missing", lambda f: (f / "params.json").unlink(), "'params.json' is listed in manifest.json but missing"),
    ("extra", lambda f: (f / "backdoor.py").write_text("import os"), "'backdoor.py' is not listed"),
    ("no-manifest", lambda f: (f / "manifest.json").unlink(), "no manifest.json"),
    ("bad-json", lambda f: (f / "manifest.json").write_text("{"), "not valid JSON"),
]


@pytest.mark.parametrize(("what", "tamper", "fragment"), TAMPERING, ids=[t[0] for t in TAMPERING])
def test_tampered_artifact_is_refused_naming_the_file(what: str, tamper: Any, fragment: str, tmp_path: Path) -> None:
    folder = make_artifact(tmp_path / "a")
    tamper(folder)
    with pytest.raises(ArtifactError) as info:
        load_policy(folder)
    assert fragment in str(info.value), str(info.value)


def test_feature_version_mismatch_is_refused_naming_both_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_artifact(tmp_path / "a")
    # The running code computes another layout.
    monkeypatch.setattr("regsim.features.FEATURE_VERSION", "features-2")
    with pytest.raises(ArtifactError) as info:
        read_manifest(folder)
    assert "feature layout" in str(info.value)
    assert repr(FEATURE_VERSION) in str(info.value) and "'features-2'" in str(info.value)
    monkeypatch.undo()
    # The artifact claims another layout (the manifest edited; it lists the other files, not itself).
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["feature_version"] = "features-0"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError) as info:
        load_policy(folder)
    assert "'features-0'" in str(info.value) and repr(FEATURE_VERSION) in str(info.value)


def test_rules_version_mismatch_is_refused_naming_both_versions(tmp_path: Path) -> None:
    folder = make_artifact(tmp_path / "a", rules_version="rules-1")
    with pytest.raises(ArtifactError) as info:
        load_policy(folder, rules_version="rules-7")
    assert "rule set" in str(info.value) and "'rules-1'" in str(info.value) and "'rules-7'" in str(info.value)
    assert isinstance(load_policy(folder, rules_version=WorldConfig().rules.version), RandomPolicy)


def test_unknown_kind_lists_the_known_kinds(tmp_path: Path) -> None:
    folder = make_artifact(tmp_path / "a")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["kind"] = "crystal-ball"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError) as info:
        load_policy(folder)
    message = str(info.value)
    assert "'crystal-ball'" in message
    for kind in (KIND, "sb3-ppo", "sb3-maskable-ppo", "sb3-dqn"):
        assert repr(kind) in message, message


def test_a_kind_cannot_be_registered_twice() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_loader(KIND)(_load_random)
    with pytest.raises(ValueError, match="kind"):
        register_loader("")


def test_write_manifest_refuses_what_it_cannot_record(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(ArtifactError, match=r"training\.x"):
        write_manifest(
            tmp_path / "a",
            kind=KIND,
            policy_name="p",
            policy_version="1",
            rules_version="r",
            training={"x": object()},
            metrics={},
        )
    with pytest.raises(ArtifactError, match="policy_version"):
        write_manifest(
            tmp_path / "a", kind=KIND, policy_name="p", policy_version="", rules_version="r", training={}, metrics={}
        )
    with pytest.raises(ArtifactError, match="not a folder"):
        write_manifest(
            tmp_path / "b", kind=KIND, policy_name="p", policy_version="1", rules_version="r", training={}, metrics={}
        )


def test_links_are_refused(tmp_path: Path) -> None:
    folder = make_artifact(tmp_path / "a")
    (folder / "link").symlink_to(folder / "params.json")
    with pytest.raises(ArtifactError, match="'link' is a symbolic link"):
        read_manifest(folder)


def test_artifact_policy_is_made_by_name(tmp_path: Path) -> None:
    folder = make_artifact(tmp_path / "a")
    policy = agents.make("artifact", path=str(folder), rules_version="rules-1", seed=5)
    assert isinstance(policy, RandomPolicy) and policy.seed == 5
    with pytest.raises(agents.UnknownPolicyError, match="path"):
        agents.make("artifact")
