"""A bundle is checked against its manifest before anything in it is used."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scoring.bundle import read_bundle
from scoring.errors import BundleError
from scoring.model import ScoringModel


@pytest.fixture
def copy(bundle_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(bundle_dir, dst)
    return dst


def test_an_intact_bundle_loads_and_its_version_is_stable(bundle_dir, copy):
    assert ScoringModel.load(copy).version == ScoringModel.load(bundle_dir).version


def test_flipped_byte_is_refused_naming_the_file(copy):
    path = copy / "model.txt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.txt does not match its sha256"):
        read_bundle(copy)


def test_truncated_file_is_refused(copy):
    path = copy / "thresholds.json"
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(BundleError, match=r"thresholds\.json does not match"):
        read_bundle(copy)


def test_swapped_files_are_refused(copy):
    a, b = copy / "metrics.json", copy / "bundle.json"
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    with pytest.raises(BundleError, match=r"does not match its sha256"):
        read_bundle(copy)


def test_missing_file_is_refused(copy):
    (copy / "calibration.json").unlink()
    with pytest.raises(BundleError, match=r"calibration\.json is listed in the manifest but missing"):
        read_bundle(copy)


def test_unlisted_file_is_refused(copy):
    (copy / "extra.bin").write_bytes(b"x")
    with pytest.raises(BundleError, match=r"extra\.bin is not listed"):
        read_bundle(copy)


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/passwd", "sub/model.txt", ".."])
def test_path_traversal_in_the_manifest_is_refused(copy, name):
    manifest = json.loads((copy / "MANIFEST.json").read_text())
    manifest["files"][name] = "0" * 64
    (copy / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"unsafe path"):
        read_bundle(copy)


def _rewrite(bundle: Path, name: str, data: object) -> None:
    """Tampers with a file and rewrites the manifest to match, as an attacker with write access could."""
    path = bundle / name
    path.write_text(json.dumps(data))
    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    manifest["files"][name] = hashlib.sha256(path.read_bytes()).hexdigest()
    (bundle / "MANIFEST.json").write_text(json.dumps(manifest))


def test_a_rewritten_manifest_changes_the_version_and_a_pinned_version_refuses_it(copy, bundle_dir):
    approved = read_bundle(bundle_dir).version
    data = json.loads((copy / "thresholds.json").read_text())
    data["CONSUMER"]["decline"] = 0.999
    _rewrite(copy, "thresholds.json", data)
    assert read_bundle(copy).version != approved
    with pytest.raises(BundleError, match=rf"but {approved} is the one approved"):
        read_bundle(copy, expected_version=approved)
    assert read_bundle(bundle_dir, expected_version=approved).version == approved


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("thresholds.json", lambda d: d.pop("SMALL_BUSINESS"), "no thresholds for SMALL_BUSINESS"),
        ("thresholds.json", lambda d: d["CONSUMER"].update(review=0.9, decline=0.1), "unreadable"),
        ("calibration.json", lambda d: d.update(method="magic"), "unknown calibration method"),
        ("calibration.json", lambda d: d.update(x=list(reversed(d["x"]))), "increasing x"),
    ],
)
def test_contents_that_cannot_be_used_are_refused_at_load(copy, name, change, message):
    data = json.loads((copy / name).read_text())
    change(data)
    _rewrite(copy, name, data)
    with pytest.raises(BundleError, match=message):
        ScoringModel.load(copy)


def test_serve_refuses_a_tampered_bundle(copy):
    (copy / "feature_spec.json").write_text("{}")
    proc = subprocess.run(
        [sys.executable, "-m", "scoring.cli", "serve", "--bundle", str(copy), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3
    assert "refusing to serve" in proc.stderr
    assert "feature_spec.json does not match its sha256" in proc.stderr
