"""Policy artifacts: manifests, checksums, version checks and loading by kind (no torch needed here)."""

from __future__ import annotations

import datetime as dt
import json
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import agents
from agents import artifact
from agents.artifact import ArtifactError, Manifest, load_policy, read_manifest, register_loader, write_manifest
from agents.reference import RandomPolicy
from regsim import Policy, WorldConfig
from regsim.features import FEATURE_VERSION

KIND = "test-random"


def _load_random(folder: Path, manifest: Manifest, *, seed: int | None = None) -> Policy:
    assert isinstance(manifest, Manifest)  # loaders get the typed, verified manifest
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
    # The layout every artifact so far has: these keys in this order (old artifacts must keep loading).
    assert list(manifest) == [
        "format", "kind", "policy_name", "policy_version", "feature_version", "rules_version", "training",
        "metrics", "packages", "python", "git_commit", "created", "files",
    ]  # fmt: skip
    assert manifest["format"] == "regsim-policy-artifact-1"
    read = read_manifest(folder, rules_version="rules-1")
    assert read.model_dump(mode="json") == manifest and read.to_json() == text


def test_write_then_read_gives_an_equal_manifest(tmp_path: Path) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    folder = make_artifact(tmp_path / "a")
    read = read_manifest(folder, rules_version="rules-1")
    assert before <= read.created <= dt.datetime.now(dt.UTC) and read.created.utcoffset() == dt.timedelta(0)
    assert read.created.microsecond == 0  # whole seconds, as manifests have always recorded it
    expected = Manifest(
        format=artifact.FORMAT,
        kind=KIND,
        policy_name="random",
        policy_version="1",
        feature_version=FEATURE_VERSION,
        rules_version="rules-1",
        training={"seed": 3, "steps": 10, "lr": 0.5, "path": folder.as_posix(), "fn": read.training["fn"]},
        metrics={"completion_rate": 0.5, "nan": None, "by_type": {"reliable": 0.9}},
        packages=artifact._package_versions(),
        python=platform.python_version(),
        git_commit=artifact._git_commit(),
        created=read.created,  # the one field the test cannot know beforehand, bounded above
        files={rel: artifact.sha256_file(folder / rel) for rel in ("params.json", "sub/notes.txt")},
    )
    assert read == expected
    # Written again from the model, the file is byte-identical and reads back equal.
    text = (folder / "manifest.json").read_text()
    (folder / "manifest.json").write_text(read.to_json())
    assert (folder / "manifest.json").read_text() == text and read_manifest(folder) == read
    with pytest.raises(ValueError, match="frozen"):
        read.policy_name = "other"  # type: ignore[misc]


def test_a_manifest_as_written_before_the_typed_model_still_loads(tmp_path: Path) -> None:
    # The exact layout the dict-based writer produced, written by hand here so that the model cannot drift.
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "params.json").write_text(json.dumps({"seed": 4}))
    old = {
        "format": "regsim-policy-artifact-1",
        "kind": KIND,
        "policy_name": "random",
        "policy_version": "1",
        "feature_version": FEATURE_VERSION,
        "rules_version": "rules-1",
        "training": {"seed": 4, "nested": {"a": [1, 2.5, None, True, "x"]}},
        "metrics": {},
        "packages": {"regsim": "0.1.0", "torch": None},
        "python": "3.11.7",
        "git_commit": None,
        "created": "2025-01-02T03:04:05+00:00",
        "files": {"params.json": artifact.sha256_file(folder / "params.json")},
    }
    (folder / "manifest.json").write_text(json.dumps(old, indent=2) + "\n")
    manifest = read_manifest(folder, rules_version="rules-1")
    assert manifest.created == dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert manifest.training == old["training"] and manifest.packages == old["packages"]
    assert manifest.git_commit is None and manifest.to_json() == json.dumps(old, indent=2) + "\n"
    assert load_policy(folder).seed == 4  # type: ignore[attr-defined]


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


def _edit_manifest(folder: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    """Apply ``edit`` to the manifest's JSON object in place (the other files keep their checksums)."""
    data = json.loads((folder / "manifest.json").read_text())
    edit(data)
    (folder / "manifest.json").write_text(json.dumps(data))


def _set(key: str, value: object) -> Callable[[dict[str, Any]], object]:
    return lambda m: m.__setitem__(key, value)


def _set_digest(value: object) -> Callable[[dict[str, Any]], object]:
    return lambda m: m["files"].__setitem__("params.json", value)


# what to do to the manifest, the fragments the error must contain (the field first)
MALFORMED: list[tuple[str, Callable[[dict[str, Any]], object], tuple[str, ...]]] = [
    ("unknown-key", _set("colour", "blue"), ("colour: unknown key", "allowed keys", "'policy_name'")),
    ("missing-required", lambda m: m.pop("policy_version"), ("policy_version: missing key", "'policy_version'")),
    ("missing-provenance", lambda m: m.pop("python"), ("python: missing key",)),
    ("missing-files", lambda m: m.pop("files"), ("files: missing key",)),
    ("version-not-a-string", _set("policy_version", 3), ("policy_version: Input should be a valid string", "3")),
    ("empty-kind", _set("kind", ""), ("kind: String should have at least 1 character",)),
    ("uppercase-digest", lambda m: m["files"].__setitem__("params.json", m["files"]["params.json"].upper()),
     ("files['params.json']: expected a SHA-256 digest: 64 lowercase hex digits",)),
    ("short-digest", _set_digest("abc123"), ("files['params.json']: expected a SHA-256 digest", "'abc123'")),
    ("digest-not-a-string", _set_digest(7), ("files['params.json']: Input should be a valid string",)),
    ("files-not-an-object", _set("files", ["params.json"]), ("files: Input should be an object",)),
    ("training-not-an-object", _set("training", [1, 2]), ("training: Input should be an object",)),
    ("package-version-a-number", lambda m: m["packages"].__setitem__("numpy", 2), ("packages['numpy']",)),
    ("created-a-timestamp", _set("created", 1735787045), ("created:",)),  # strict: no numbers as dates
    ("created-naive", _set("created", "2025-01-02T03:04:05"), ("created: Input should have timezone info",)),
    ("git-commit-a-number", _set("git_commit", 1), ("git_commit:",)),
]  # fmt: skip


@pytest.mark.parametrize(("what", "edit", "fragments"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_manifest_is_refused_naming_the_field(
    what: str, edit: Callable[[dict[str, Any]], object], fragments: tuple[str, ...], tmp_path: Path
) -> None:
    folder = make_artifact(tmp_path / "a")
    _edit_manifest(folder, edit)
    with pytest.raises(ArtifactError) as info:
        read_manifest(folder)
    message = str(info.value)
    assert "malformed manifest" in message and str(folder / "manifest.json") in message, message
    for fragment in fragments:
        assert fragment in message, message
    with pytest.raises(ArtifactError, match="malformed manifest"):
        load_policy(folder)


def test_every_offending_field_is_named(tmp_path: Path) -> None:
    folder = make_artifact(tmp_path / "a")
    _edit_manifest(folder, lambda m: m.update(policy_name=1, colour="blue") or m.pop("rules_version"))
    with pytest.raises(ArtifactError) as info:
        read_manifest(folder)
    message = str(info.value)
    assert "policy_name:" in message and "colour: unknown key" in message and "rules_version: missing key" in message


def test_another_format_is_refused_naming_both_tags(tmp_path: Path) -> None:
    folder = make_artifact(tmp_path / "a")
    _edit_manifest(folder, lambda m: m.update(format="regsim-policy-artifact-2", weights="new"))
    with pytest.raises(ArtifactError) as info:
        read_manifest(folder)
    # Named once, not as a list of the new format's unknown keys.
    assert "'regsim-policy-artifact-2' is not 'regsim-policy-artifact-1'" in str(info.value)
    assert "unknown key" not in str(info.value)


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
    with pytest.raises(ArtifactError, match="policy_version: String should have at least 1 character"):
        write_manifest(
            tmp_path / "a", kind=KIND, policy_name="p", policy_version="", rules_version="r", training={}, metrics={}
        )
    valid: dict[str, Any] = {"kind": KIND, "policy_name": "p", "policy_version": "1", "rules_version": "r"}
    with pytest.raises(ArtifactError, match="rules_version: Input should be a valid string"):
        write_manifest(tmp_path / "a", **{**valid, "rules_version": 1}, training={}, metrics={})
    with pytest.raises(ArtifactError, match="metrics: expected a mapping"):
        write_manifest(tmp_path / "a", **valid, training={}, metrics=[])  # type: ignore[arg-type]
    assert not (tmp_path / "a" / "manifest.json").exists()  # nothing is written when a field is refused
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
