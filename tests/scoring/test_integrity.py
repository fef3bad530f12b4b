"""Model bundles and text encoders are checked against their manifests before anything in them loads,
and every tampering is refused naming the problem and the file: a flipped byte, a truncated file, a
file from another bundle or variant, a manifest entry that leaves the directory (`../x`, an absolute
path), a symbolic link (even to identical bytes elsewhere), a file the manifest does not list, an
encoder whose identity does not match its files. Nothing is ever unpickled.

The flip, truncate, swap, missing, unlisted and path-traversal cases of the bundle alone are in
tests/scoring/test_bundle.py; this module adds the rest, the encoder's, and `fraudscore serve`'s."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from features.text.encoder import EncoderError, TextEncoder, read_manifest
from scoring.bundle import read_bundle, write_bundle
from scoring.errors import BundleError
from scoring.model import ScoringModel, check_encoder

ROOT = Path(__file__).resolve().parents[2]


def _linked_copy(source: Path, target: Path) -> Path:
    """A copy whose files are hard links (the encoder is 160 MB): a test must replace a file, never
    write into it, which `_replace` does."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link)
    return target


def _replace(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    _replace(path, bytes(data))


def _truncate(path: Path) -> None:
    _replace(path, path.read_bytes()[: path.stat().st_size // 2])


def _symlink_outside(path: Path, outside: Path) -> None:
    """`path` becomes a link to a copy of its own bytes outside the directory: the bytes match."""
    outside.mkdir(exist_ok=True)
    target = outside / path.name
    target.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(target)


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    _replace(path, json.dumps(data).encode())


# -- encoders -------------------------------------------------------------------------------------
@pytest.fixture
def encoder(encoder_dir: Path, tmp_path: Path) -> Path:
    return _linked_copy(encoder_dir, tmp_path / "encoder")


def _add_entry(name: str):
    return lambda d: d["files"].update({name: "0" * 64})


def _swap_variants(encoder: Path, _: Path) -> None:
    _replace(encoder / "model.int8.onnx", (encoder / "model.fp16.onnx").read_bytes())


def _other_tokenizer(encoder: Path, _: Path) -> None:
    """Another encoder's tokenizer (truncation changed), manifest left alone."""
    _edit_json(encoder / "tokenizer.json", lambda d: d.update(truncation=None))


def _other_tokenizer_rehashed(encoder: Path, _: Path) -> None:
    """As someone with write access would: another tokenizer, its sha256 rewritten to match, the
    identity (what the bundle pins) kept."""
    import hashlib

    _other_tokenizer(encoder, _)
    digest = hashlib.sha256((encoder / "tokenizer.json").read_bytes()).hexdigest()
    _edit_json(encoder / "encoder.json", lambda d: d["files"].update({"tokenizer.json": digest}))


ENCODER_TAMPERING = {
    "flipped byte in the int8 graph": (
        lambda e, _: _flip(e / "model.int8.onnx"),
        r"encoder file model\.int8\.onnx does not match its sha256 in encoder\.json",
    ),
    "truncated fp32 graph": (
        lambda e, _: _truncate(e / "model.fp32.onnx"),
        r"encoder file model\.fp32\.onnx does not match its sha256",
    ),
    "the fp16 graph in place of the int8 one": (
        _swap_variants,
        r"encoder file model\.int8\.onnx does not match its sha256",
    ),
    "another tokenizer": (_other_tokenizer, r"encoder file tokenizer\.json does not match its sha256"),
    "another tokenizer, manifest rewritten to match": (
        _other_tokenizer_rehashed,
        r"identity all-MiniLM-L6-v2@sha256:\w+ does not match the tokenizer\.json",
    ),
    "entry ../x": (
        lambda e, _: _edit_json(e / "encoder.json", _add_entry("../x")),
        r"names an unsafe path '\.\./x'",
    ),
    "entry with an absolute path": (
        lambda e, _: _edit_json(e / "encoder.json", _add_entry("/etc/passwd")),
        r"names an unsafe path '/etc/passwd'",
    ),
    "entry in a subdirectory": (
        lambda e, _: _edit_json(e / "encoder.json", _add_entry("sub/model.int8.onnx")),
        r"names an unsafe path 'sub/model\.int8\.onnx'",
    ),
    "entry ..": (
        lambda e, _: _edit_json(e / "encoder.json", _add_entry("..")),
        r"names an unsafe path '\.\.'",
    ),
    "graph linked to identical bytes outside": (
        lambda e, out: _symlink_outside(e / "model.int8.onnx", out),
        r"encoder file model\.int8\.onnx is a symbolic link",
    ),
    "manifest linked to outside": (
        lambda e, out: _symlink_outside(e / "encoder.json", out),
        r"encoder\.json is a symbolic link",
    ),
    "missing graph": (
        lambda e, _: (e / "model.fp16.onnx").unlink(),
        r"encoder file model\.fp16\.onnx is missing",
    ),
    "manifest listing no files": (
        lambda e, _: _edit_json(e / "encoder.json", lambda d: d.update(files={})),
        r"encoder\.json lists no files",
    ),
}


@pytest.mark.parametrize("case", list(ENCODER_TAMPERING))
def test_a_tampered_encoder_is_refused_naming_the_file(encoder, tmp_path, case):
    tamper, message = ENCODER_TAMPERING[case]
    tamper(encoder, tmp_path / "outside")
    with pytest.raises(EncoderError, match=message):
        read_manifest(encoder)


def test_a_graph_the_manifest_does_not_list_is_never_loaded(encoder):
    """The graph the encoder runs is read once, checked and loaded from those bytes: one left out
    of the manifest is refused, not loaded unchecked."""
    _edit_json(encoder / "encoder.json", lambda d: d["files"].pop("model.int8.onnx"))
    with pytest.raises(EncoderError, match=r"model\.int8\.onnx is not listed in encoder\.json"):
        TextEncoder(encoder, providers=["cpu"], variant="int8")
    # The other variants still load: the manifest is otherwise intact.
    assert TextEncoder(encoder, providers=["cpu"], variant="fp32").info.variant == "fp32"


def _rebuild(encoder: Path, name: str) -> None:
    """The graph written again with another doc string (other bytes, the same weights and identity)
    and the manifest rewritten to match: what someone able to write the directory could do."""
    model = onnx.load_from_string((encoder / name).read_bytes())
    model.doc_string = "rebuilt"
    data = model.SerializeToString()
    _replace(encoder / name, data)
    digest = hashlib.sha256(data).hexdigest()
    _edit_json(encoder / "encoder.json", lambda d: d["files"].update({name: digest}))


def test_a_graph_rebuilt_under_the_same_identity_is_refused_by_the_bundle(bundle_dir, encoder):
    """The bundle pins the bytes of each graph it was trained with, not only the encoder's identity."""
    model = ScoringModel.load(bundle_dir)
    _rebuild(encoder, "model.int8.onnx")
    rebuilt = TextEncoder(encoder, providers=["cpu"], variant="int8").info  # its own manifest agrees
    assert rebuilt.identity == model.text_spec.encoder
    with pytest.raises(BundleError, match=r"pins text encoder file model\.int8\.onnx to another sha256"):
        check_encoder(model, rebuilt)
    check_encoder(model, TextEncoder(encoder, providers=["cpu"], variant="fp32").info)  # untouched


def test_an_encoder_shipping_only_its_fp16_graph_is_accepted(bundle_dir, encoder):
    """A GPU host's payload (bench/gpu_payload.sh) lists only the fp16 graph and the tokenizer."""
    for name in ("model.fp32.onnx", "model.int8.onnx"):
        (encoder / name).unlink()
    keep = ("model.fp16.onnx", "tokenizer.json")
    _edit_json(encoder / "encoder.json", lambda d: d.update(files={k: d["files"][k] for k in keep}))
    check_encoder(ScoringModel.load(bundle_dir), TextEncoder(encoder, providers=["cpu"], variant="fp16").info)


def test_an_intact_linked_copy_loads(encoder, encoder_dir):
    assert TextEncoder(encoder, providers=["cpu"]).info.identity == read_manifest(encoder_dir)["identity"]


# -- bundles --------------------------------------------------------------------------------------
@pytest.fixture
def bundle(bundle_dir: Path, tmp_path: Path) -> Path:
    return _linked_copy(bundle_dir, tmp_path / "bundle")


@pytest.fixture
def other_bundle(bundle_dir: Path, tmp_path: Path) -> Path:
    """Another bundle: the same files but the thresholds, written with its own manifest."""
    files = {p.name: p.read_bytes() for p in bundle_dir.iterdir() if p.name != "MANIFEST.json"}
    thresholds = json.loads(files["thresholds.json"])
    thresholds["CONSUMER"]["decline"] = 0.5
    files["thresholds.json"] = json.dumps(thresholds).encode()
    out = tmp_path / "other"
    write_bundle(out, files)
    return out


def _from_other(name: str):
    return lambda b, other, _: _replace(b / name, (other / name).read_bytes())


BUNDLE_TAMPERING = {
    "thresholds from another bundle": (_from_other("thresholds.json"), r"thresholds\.json does not match"),
    "manifest from another bundle": (_from_other("MANIFEST.json"), r"thresholds\.json does not match"),
    "the fallback model in place of the model": (
        lambda b, _o, _t: _replace(b / "model.txt", (b / "model_fallback.txt").read_bytes()),
        r"model\.txt does not match its sha256",
    ),
    "model linked to identical bytes outside": (
        lambda b, _o, out: _symlink_outside(b / "model.txt", out),
        r"model\.txt is a symbolic link",
    ),
    "manifest linked to outside": (
        lambda b, _o, out: _symlink_outside(b / "MANIFEST.json", out),
        r"MANIFEST\.json is a symbolic link",
    ),
    "entry ..\\x": (
        lambda b, _o, _t: _edit_json(b / "MANIFEST.json", _add_entry("..\\x")),
        r"unsafe path '\.\.\\\\x'",
    ),
    "entry .hidden": (
        lambda b, _o, _t: _edit_json(b / "MANIFEST.json", _add_entry(".hidden")),
        r"unsafe path '\.hidden'",
    ),
    "empty entry": (lambda b, _o, _t: _edit_json(b / "MANIFEST.json", _add_entry("")), r"unsafe path ''"),
}


@pytest.mark.parametrize("case", list(BUNDLE_TAMPERING))
def test_a_tampered_bundle_is_refused_naming_the_file(bundle, other_bundle, tmp_path, case):
    tamper, message = BUNDLE_TAMPERING[case]
    tamper(bundle, other_bundle, tmp_path / "outside")
    with pytest.raises(BundleError, match=message):
        ScoringModel.load(bundle)


def test_the_other_bundle_is_itself_intact(other_bundle, bundle_dir):
    assert read_bundle(other_bundle).version != read_bundle(bundle_dir).version


# -- serve ----------------------------------------------------------------------------------------
def _serve(bundle: Path, encoder: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scoring.cli", "serve", "--bundle", str(bundle), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "FRAUDSCORE_ENCODER_DIR": str(encoder),
            "FRAUDSCORE_DATA_DIR": str(data_dir),
            "PATH": "/usr/bin:/bin",
        },
    )


@pytest.mark.slow
def test_serve_refuses_a_tampered_encoder_or_a_linked_bundle_file_and_says_which(
    bundle, encoder, bundle_dir, encoder_dir, tmp_path
):
    _flip(encoder / "model.int8.onnx")
    proc = _serve(bundle_dir, encoder, tmp_path / "var")
    assert proc.returncode == 3, proc.stderr
    assert "refusing to serve" in proc.stderr
    assert "model.int8.onnx does not match its sha256 in encoder.json" in proc.stderr
    assert "Traceback" not in proc.stderr

    _symlink_outside(bundle / "thresholds.json", tmp_path / "outside")
    proc = _serve(bundle, encoder_dir, tmp_path / "var")
    assert proc.returncode == 3, proc.stderr
    assert "thresholds.json is a symbolic link" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- nothing is unpickled ---------------------------------------------------------------------------
UNPICKLING = re.compile(
    r"\b(?:c?[Pp]ickle|joblib|dill|cloudpickle)\.(?:loads?|Unpickler)\b"
    r"|\bread_pickle\b|allow_pickle\s*=\s*True|\btorch\.load\b|\bimport\s+(?:joblib|dill|cloudpickle)\b"
)


def test_no_code_of_the_service_unpickles():
    sources = [p for d in ("scoring", "features") for p in (ROOT / d).rglob("*.py")]
    assert len(sources) > 20
    found = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in sources
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if UNPICKLING.search(line)
    ]
    assert found == []
    assert UNPICKLING.search("model = joblib.load(path)") and UNPICKLING.search("pickle.loads(blob)")


def test_loading_a_bundle_and_an_encoder_unpickles_nothing(bundle_dir, encoder_dir, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    import _pickle

    for module in (pickle, _pickle):
        for name in ("load", "loads", "Unpickler"):
            monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(pickle, "_Unpickler", refuse)
    model = ScoringModel.load(bundle_dir)
    encoder = TextEncoder(encoder_dir, providers=["cpu"])
    assert model.version.startswith("fs-")
    assert encoder.encode(["a text"]).shape == (1, encoder.info.hidden)
