"""Policy artifacts: a folder of files and a ``manifest.json`` that pins what they were made with.

An artifact is what training hands to evaluation and to the server. Its folder holds the files a loader needs
(for an SB3 policy: ``network.json`` and ``weights.pt``) and ``manifest.json``:

* ``kind``: which loader rebuilds the policy (``"sb3-maskable-ppo"``, ``"bandit-linucb"``, ...);
* ``policy_name`` and ``policy_version``: what the policy logs with every decision;
* ``feature_version``: the feature layout it was trained on (:data:`regsim.features.FEATURE_VERSION`);
* ``rules_version``: the rule set it was trained under (:attr:`regsim.config.RulesConfig.version`);
* ``training``: the training configuration, including the seed; ``metrics``: its evaluation;
* ``packages``: versions of regsim, torch, stable_baselines3, sb3_contrib, numpy and gymnasium (``null``
  when not installed), ``python``, ``git_commit`` (when the code runs from a checkout), ``created`` (UTC);
* ``files``: the SHA-256 of every other file in the folder, by path relative to it.

In code the manifest is a :class:`Manifest`, a frozen pydantic model that refuses unknown keys, so a loader
reads typed attributes (``manifest.policy_name``) rather than keys of a dict.

:func:`read_manifest` verifies every checksum and refuses a folder with a modified, missing or unlisted file,
a feature layout other than the running code's, or (when asked) another rule set, so that a policy is never
served features or rules it was not trained on. :func:`load_policy` then dispatches on ``kind`` to a loader
registered with :func:`register_loader`; loaders must never unpickle code (torch weights are read with
``torch.load(..., weights_only=True)`` into a freshly built network).

Example::

    policy = load_policy("runs/ppo-1/policy", rules_version=config.rules.version)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import importlib.metadata
import json
import math
import platform
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Concatenate, Final, Literal, TypeVar

import numpy as np
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_serializer,
)

import regsim.features as _features  # read at call time: the running code's layout version
from agents.registry import register
from regsim.decision import Policy

__all__ = [
    "MANIFEST",
    "PACKAGES",
    "ArtifactError",
    "Loader",
    "Manifest",
    "artifact_policy",
    "known_kinds",
    "load_policy",
    "read_manifest",
    "register_loader",
    "sha256_file",
    "write_manifest",
]

#: Name of the manifest file inside an artifact folder.
MANIFEST = "manifest.json"
#: The manifest format tags this code reads (one: the tag is bumped when the keys change incompatibly).
FormatTag = Literal["regsim-policy-artifact-1"]
#: Format tag of the manifest this code writes.
FORMAT: Final[FormatTag] = "regsim-policy-artifact-1"
#: Packages whose versions every manifest records (distribution names).
PACKAGES: tuple[str, ...] = ("regsim", "torch", "stable_baselines3", "sb3_contrib", "numpy", "gymnasium")


class ArtifactError(ValueError):
    """An artifact folder is incomplete, was modified, or does not fit the running code; the message says which
    file or which versions."""


# ----------------------------------------------------------------------------------------------------------
# The manifest
# ----------------------------------------------------------------------------------------------------------
_SHA256_DIGITS = frozenset("0123456789abcdef")


def _check_sha256(value: str) -> str:
    # Lowercase only: that is what hashlib's hexdigest writes, and the digests are compared as strings.
    if len(value) != 64 or not _SHA256_DIGITS.issuperset(value):
        raise ValueError("expected a SHA-256 digest: 64 lowercase hex digits")
    return value


#: A SHA-256 digest as :func:`sha256_file` writes it.
_Sha256 = Annotated[str, AfterValidator(_check_sha256)]
_NonEmpty = Annotated[str, Field(min_length=1)]


class Manifest(BaseModel):
    """The contents of ``manifest.json``: what an artifact is, what it was made with, and its files' checksums.

    Validated strictly (no coercion: ``"policy_version": 3`` is refused, not turned into ``"3"``), frozen, and
    closed to unknown keys, so a typo or a manifest of another format is refused instead of silently ignored.
    The JSON layout is :meth:`to_json`; field names are the file's keys.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    format: FormatTag = Field(description="Format tag of the manifest (:data:`FORMAT`).")
    kind: _NonEmpty = Field(description="Which registered loader rebuilds the policy, e.g. 'sb3-maskable-ppo'.")
    policy_name: _NonEmpty = Field(description="The policy's name, as it logs it with every decision.")
    policy_version: _NonEmpty = Field(description="The policy's version, as it logs it with every decision.")
    feature_version: _NonEmpty = Field(description="Feature layout the policy was trained on (FEATURE_VERSION).")
    rules_version: _NonEmpty = Field(description="Rule set the policy was trained under (RulesConfig.version).")
    training: dict[str, JsonValue] = Field(description="Training configuration, including the seed (provenance).")
    metrics: dict[str, JsonValue] = Field(description="Evaluation results; non-finite numbers recorded as null.")
    packages: dict[str, str | None] = Field(description="Version of each package in PACKAGES; null if not installed.")
    python: _NonEmpty = Field(description="Python version the artifact was written with, e.g. '3.11.7'.")
    git_commit: _NonEmpty | None = Field(description="Commit of the checkout that wrote it; null outside a checkout.")
    created: AwareDatetime = Field(description="When the manifest was written (UTC, whole seconds).")
    files: dict[_NonEmpty, _Sha256] = Field(description="SHA-256 of every other file, by POSIX path relative to it.")

    @field_serializer("created", when_used="json")
    def _created_as_iso(self, value: dt.datetime) -> str:
        # isoformat keeps the "+00:00" offset that manifests have always had (pydantic would write "Z").
        return value.isoformat()

    def to_json(self) -> str:
        """The manifest as the text of ``manifest.json`` (indented strict JSON, keys in field order)."""
        return json.dumps(self.model_dump(mode="json"), indent=2, allow_nan=False) + "\n"


def _invalid(exc: ValidationError, where: object) -> ArtifactError:
    """An :class:`ArtifactError` naming every offending field of ``exc`` and what it allows."""
    keys = list(Manifest.model_fields)
    problems = []
    for err in exc.errors(include_url=False):
        head, *rest = err["loc"] or ("<root>",)
        field = str(head) + "".join(f"[{p!r}]" for p in rest)
        got = err.get("input")
        shown = "{...}" if isinstance(got, dict) else repr(got)
        if err["type"] == "extra_forbidden":
            problems.append(f"{field}: unknown key; allowed keys: {keys}")
        elif err["type"] == "missing":
            problems.append(f"{field}: missing key; a manifest has the keys {keys}")
        elif err["type"] == "value_error":
            # The message of our own validator, without pydantic's "Value error, " prefix.
            problems.append(f"{field}: {err.get('ctx', {}).get('error', err['msg'])} (got {shown})")
        else:
            problems.append(f"{field}: {err['msg']} (got {shown})")
    return ArtifactError(f"{where}: malformed manifest: " + "; ".join(problems))


#: A loader rebuilds a policy from a verified artifact: ``loader(folder, manifest, **kwargs) -> Policy``.
Loader = Callable[Concatenate[Path, Manifest, ...], Policy]
L = TypeVar("L", bound=Loader)

_LOADERS: dict[str, Loader] = {}

# Modules that register the loaders of a family of kinds, imported on first use so that loading an artifact
# does not need its family imported beforehand (and ``import agents.artifact`` stays free of torch).
_LOADER_MODULES: dict[str, str] = {"sb3-": "agents.sb3", "sb3-menu-": "agents.sb3_menu", "bandit-": "agents.bandits"}


# ----------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _listing(folder: Path) -> dict[str, Path]:
    """Every file of the folder except the manifest, by POSIX path relative to the folder."""
    out: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_symlink():
            raise ArtifactError(f"{folder}: {rel!r} is a symbolic link; an artifact holds plain files only")
        if p.is_dir():
            continue
        if not p.is_file():
            raise ArtifactError(f"{folder}: {rel!r} is not a plain file")
        if rel != MANIFEST:
            out[rel] = p
    return out


def _jsonable(value: object, where: str) -> JsonValue:
    """``value`` as strict JSON data: NumPy scalars and arrays unwrapped, NaN and infinities as ``null``,
    paths as strings, classes and functions by qualified name; anything else is refused naming ``where``."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return _jsonable(value.item(), where)
    if isinstance(value, np.ndarray):
        return [_jsonable(v, where) for v in value.tolist()]
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, type) or callable(value):
        module = getattr(value, "__module__", None) or "?"
        return f"{module}.{getattr(value, '__qualname__', repr(value))}"
    raise ArtifactError(f"{where}: cannot record a {type(value).__name__} in a manifest")


def _json_object(value: Mapping[str, object], where: str) -> dict[str, JsonValue]:
    """A mapping as a JSON object of :func:`_jsonable` values (``training`` and ``metrics`` are objects)."""
    if not isinstance(value, Mapping):
        raise ArtifactError(f"{where}: expected a mapping, got a {type(value).__name__}")
    return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}


def _package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git_commit() -> str | None:
    """The commit of the checkout this code runs from, read from ``.git`` (no subprocess); None outside one."""
    root = Path(__file__).resolve().parent.parent / ".git"
    try:
        head = (root / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head or None
        ref = head[5:]
        ref_file = root / ref
        if ref_file.is_file():
            return ref_file.read_text().strip() or None
        packed = root / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                sha, _, name = line.partition(" ")
                if name == ref:
                    return sha
    except OSError:
        return None
    return None


def write_manifest(
    folder: Path,
    *,
    kind: str,
    policy_name: str,
    policy_version: str,
    rules_version: str,
    training: Mapping[str, object],
    metrics: Mapping[str, object],
) -> Path:
    """Hash every file already in ``folder`` (except ``manifest.json``) and write the manifest.

    Args:
        folder: The artifact folder, holding the files the loader of ``kind`` needs.
        kind: The loader kind (see :func:`register_loader`).
        policy_name: The policy's name, as it logs it.
        policy_version: The policy's version, as it logs it.
        rules_version: The rule set the policy was trained under (``config.rules.version``).
        training: The training configuration (algorithm, steps, seed, hyperparameters, world config ...).
            NumPy values, paths and classes are recorded as JSON (see :class:`Manifest`).
        metrics: Evaluation results. Non-finite floats are recorded as ``null`` (strict JSON).

    Returns:
        The path of ``manifest.json``.

    Raises:
        ArtifactError: The folder is missing, holds a link or special file, a value cannot be recorded, or a
            field is invalid (an empty name or version, naming the field).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: not a folder")
    files = {rel: sha256_file(p) for rel, p in _listing(folder).items()}
    try:
        manifest = Manifest(
            format=FORMAT,
            kind=kind,
            policy_name=policy_name,
            policy_version=policy_version,
            feature_version=_features.FEATURE_VERSION,
            rules_version=rules_version,
            training=_json_object(training, "training"),
            metrics=_json_object(metrics, "metrics"),
            packages=_package_versions(),
            python=platform.python_version(),
            git_commit=_git_commit(),
            # Whole seconds, as manifests have always recorded it.
            created=dt.datetime.now(dt.UTC).replace(microsecond=0),
            files=files,
        )
    except ValidationError as exc:
        raise _invalid(exc, folder) from None
    path = folder / MANIFEST
    path.write_text(manifest.to_json(), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------------------
# Reading and verifying
# ----------------------------------------------------------------------------------------------------------
def read_manifest(folder: Path, *, rules_version: str | None = None) -> Manifest:
    """Read and verify an artifact's manifest.

    Verifies, in this order: the manifest is a valid :class:`Manifest` of this :data:`FORMAT`; every file
    listed exists and has its recorded SHA-256, no file is unlisted; the feature layout version equals the
    running code's :data:`regsim.features.FEATURE_VERSION`; and, when ``rules_version`` is given, the rule-set
    version equals it.

    Args:
        folder: The artifact folder.
        rules_version: The rule set the policy will run under (``config.rules.version``); ``None`` skips the check.

    Returns:
        The verified manifest.

    Raises:
        ArtifactError: The manifest is missing or malformed (naming each offending key and what it allows:
            unknown and missing keys, wrong types, digests that are not SHA-256); a file was modified, is
            missing or is not listed (naming the file); or a version differs (naming both versions).
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{folder}: no {MANIFEST}; not a policy artifact")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: the manifest must be a JSON object")
    # The format first: a manifest of another format would otherwise be reported key by key.
    if "format" in data and data["format"] != FORMAT:
        raise ArtifactError(f"{path}: format {data['format']!r} is not {FORMAT!r}")
    try:
        # From the text, not from ``data``: in strict mode only JSON input may give ``created`` as a string.
        manifest = Manifest.model_validate_json(text)
    except ValidationError as exc:
        raise _invalid(exc, path) from None
    listed = manifest.files

    present = _listing(folder)
    for rel in sorted(listed):
        if rel not in present:
            raise ArtifactError(f"{folder}: file {rel!r} is listed in {MANIFEST} but missing")
        actual = sha256_file(present[rel])
        if actual != listed[rel]:
            raise ArtifactError(
                f"{folder}: file {rel!r} was modified (sha256 {actual[:12]}..., manifest {listed[rel][:12]}...)"
            )
    extra = sorted(set(present) - set(listed))
    if extra:
        raise ArtifactError(f"{folder}: file {extra[0]!r} is not listed in {MANIFEST} (unlisted: {extra})")

    running = _features.FEATURE_VERSION
    if manifest.feature_version != running:
        raise ArtifactError(
            f"{folder}: feature layout version mismatch: the policy was trained on {manifest.feature_version!r}, "
            f"the running code computes {running!r}"
        )
    if rules_version is not None and manifest.rules_version != rules_version:
        raise ArtifactError(
            f"{folder}: rule set version mismatch: the policy was trained under {manifest.rules_version!r}, "
            f"the world runs {rules_version!r}"
        )
    return manifest


# ----------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------
def register_loader(kind: str) -> Callable[[L], L]:
    """Register the loader of an artifact kind (a function decorator).

    The loader is called as ``loader(folder: Path, manifest: Manifest, **kwargs)`` with a verified manifest and
    the keyword arguments given to :func:`load_policy`, and returns a :class:`~regsim.decision.Policy`.

    Raises:
        ValueError: The kind is empty or already registered.
    """
    if not kind:
        raise ValueError("kind: expected a non-empty string")

    def deco(loader: L) -> L:
        if kind in _LOADERS:
            raise ValueError(f"a loader for artifact kind {kind!r} is already registered")
        _LOADERS[kind] = loader
        return loader

    return deco


def known_kinds() -> tuple[str, ...]:
    """The artifact kinds with a registered loader (after importing the built-in families that are installed)."""
    for module in _LOADER_MODULES.values():
        _import_quietly(module)
    return tuple(sorted(_LOADERS))


def _import_quietly(module: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # Only the family's own module may be absent (e.g. bandits not written yet); a missing dependency
        # inside it is a real error.
        if exc.name is None or not module.startswith(exc.name):
            raise


def load_policy(path: str | Path, *, rules_version: str | None = None, **kwargs: Any) -> Policy:
    """Load a policy from an artifact folder, verified by :func:`read_manifest`.

    Args:
        path: The artifact folder.
        rules_version: The rule set the policy will run under; a different one recorded in the artifact is
            refused. ``None`` skips the check (offline analysis).
        **kwargs: Passed to the kind's loader (for SB3 policies: ``deterministic``, ``seed``; see
            :mod:`agents.sb3`).

    Raises:
        ArtifactError: The artifact fails verification, or its kind has no loader (the message lists the
            known kinds).
    """
    folder = Path(path)
    manifest = read_manifest(folder, rules_version=rules_version)
    kind = manifest.kind
    if kind not in _LOADERS:
        for prefix, module in _LOADER_MODULES.items():
            if kind.startswith(prefix):
                _import_quietly(module)
    loader = _LOADERS.get(kind)
    if loader is None:
        raise ArtifactError(f"{folder}: unknown artifact kind {kind!r}; known kinds: {list(known_kinds())}")
    return loader(folder, manifest, **kwargs)


@register("artifact")
def artifact_policy(
    *,
    path: str | Path,
    rules_version: str | None = None,
    deterministic: bool | None = None,
    seed: int | None = None,
) -> Policy:
    """A trained policy loaded from an artifact folder (verified; see ``agents.artifact``).

    Args:
        path: The artifact folder.
        rules_version: The rule set the policy will run under (refused if the artifact's differs).
        deterministic: Greedy decisions (True) or draws from the policy's distribution (False); the loader's
            default when not given.
        seed: Seed of the policy's own exploration stream; the loader's default when not given.
    """
    kwargs: dict[str, Any] = {}
    if deterministic is not None:
        kwargs["deterministic"] = deterministic
    if seed is not None:
        kwargs["seed"] = seed
    return load_policy(path, rules_version=rules_version, **kwargs)
