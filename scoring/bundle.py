"""The model bundle: a directory holding everything a scoring process needs, with a manifest of
sha256 sums that is checked before any file in it is read.

    MANIFEST.json        {"format": 1, "files": {"model.txt": "<sha256>", ...}}
    model.txt            LightGBM booster, text format (never a pickle)
    calibration.json     probability calibration
    feature_spec.json    features, kinds, categorical vocabularies, lender attributes
    thresholds.json      per-product probability thresholds for REVIEW and DECLINE
    metrics.json         test-set metrics per product, split description
    bundle.json          created_at, training-data fingerprint, library versions, synthetic flag

The bundle's version is a digest of its manifest, so any change to any file changes the version.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from scoring.errors import BundleError

MANIFEST: Final = "MANIFEST.json"
FORMAT: Final = 1
REQUIRED_FILES: Final = (
    "model.txt",
    "calibration.json",
    "feature_spec.json",
    "thresholds.json",
    "metrics.json",
    "bundle.json",
)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_bundle(directory: Path, files: Mapping[str, bytes]) -> str:
    """Writes the files and their manifest; returns the bundle version.

    Written into a sibling temporary directory and renamed into place, so a crash mid-write never
    leaves a half bundle where a server would look for one."""
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        raise BundleError(f"bundle is missing {', '.join(missing)}")
    directory = directory.resolve()
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    listed: dict[str, str] = {}
    for name, data in sorted(files.items()):
        _check_name(name)
        (tmp / name).write_bytes(data)
        listed[name] = hashlib.sha256(data).hexdigest()
    manifest = {"format": FORMAT, "files": listed}
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()
    (tmp / MANIFEST).write_bytes(manifest_bytes)
    if directory.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
        old.rmdir()
        directory.rename(old)
        tmp.rename(directory)
        for child in old.iterdir():
            child.unlink()
        old.rmdir()
    else:
        tmp.rename(directory)
    return version_of(manifest_bytes)


def version_of(manifest_bytes: bytes) -> str:
    return "fs-" + hashlib.sha256(manifest_bytes).hexdigest()[:16]


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise BundleError(f"bundle manifest names an unsafe path {name!r}")


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    """A bundle whose every file matched its manifest when it was read; holds the bytes read,
    so nothing is read twice and nothing can change between check and use."""

    directory: Path
    version: str
    files: Mapping[str, bytes]

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.files[name])
        except (KeyError, ValueError) as exc:
            raise BundleError(f"bundle {self.directory}: {name} is not valid JSON") from exc


def read_bundle(directory: Path, *, expected_version: str | None = None) -> VerifiedBundle:
    """Reads and verifies a bundle; raises BundleError naming the first file that does not match.

    The manifest proves the files belong together, not who wrote them: anyone who can write the
    directory can write a matching manifest. `expected_version` (settings: `bundle_version`) pins
    the bundle a deployment approved, so a rewritten bundle is refused too."""
    manifest_path = directory / MANIFEST
    if not directory.is_dir():
        raise BundleError(f"bundle {directory} does not exist or is not a directory")
    if manifest_path.is_symlink():
        raise BundleError(
            f"bundle {directory}: {MANIFEST} is a symbolic link; bundle files must be regular files"
        )
    try:
        manifest_bytes = manifest_path.read_bytes()
        manifest = json.loads(manifest_bytes)
        listed: dict[str, str] = dict(manifest["files"])
        if manifest.get("format") != FORMAT:
            raise BundleError(f"bundle {directory}: unsupported manifest format {manifest.get('format')!r}")
    except FileNotFoundError as exc:
        raise BundleError(f"bundle {directory} has no {MANIFEST}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"bundle {directory}: {MANIFEST} is unreadable") from exc
    files: dict[str, bytes] = {}
    for name, expected in sorted(listed.items()):
        _check_name(name)
        path = directory / name
        if path.is_symlink():
            raise BundleError(
                f"bundle {directory}: {name} is a symbolic link; bundle files must be regular files"
            )
        if not path.is_file():
            raise BundleError(f"bundle {directory}: {name} is listed in the manifest but missing")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected:
            raise BundleError(f"bundle {directory}: {name} does not match its sha256 in {MANIFEST}")
        files[name] = data
    for name in REQUIRED_FILES:
        if name not in files:
            raise BundleError(f"bundle {directory}: manifest does not list {name}")
    extra = sorted(p.name for p in directory.iterdir() if p.name != MANIFEST and p.name not in files)
    if extra:
        raise BundleError(f"bundle {directory}: {extra[0]} is not listed in {MANIFEST}")
    version = version_of(manifest_bytes)
    if expected_version is not None and version != expected_version:
        raise BundleError(
            f"bundle {directory} is version {version}, but {expected_version} is the one approved"
        )
    return VerifiedBundle(directory=directory, version=version, files=files)
