"""The sentence encoder at run time: ONNX Runtime, the provider that actually ran, a bounded cache.

An encoder directory is what ``fraudscore encoder build`` writes (:mod:`features.text.export`):
``encoder.json`` lists every file with its sha256, which is checked before anything loads.

Providers are asked for in the order settings give (``tensorrt``, ``cuda``, ``cpu``); ONNX Runtime
falls back silently when a GPU provider cannot load (no CUDA libraries, no device), so the provider
reported is read back from the session after it is created, never assumed. The fp16 graph runs on
a GPU provider; on the CPU the int8 graph runs (``variant="auto"``), or the one settings name.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from features.text.export import VARIANTS, identity_of, sha256_file

log = logging.getLogger(__name__)

PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
GPU_PROVIDERS = frozenset({"TensorrtExecutionProvider", "CUDAExecutionProvider"})
# Texts per ONNX Runtime call; texts are sorted by length first so little padding is computed.
BATCH_TEXTS = 32

Embeddings = npt.NDArray[np.float32]


class EncoderError(RuntimeError):
    """The encoder directory is unusable or the encoder failed; the message says why."""


@dataclass(frozen=True, slots=True)
class EncoderInfo:
    identity: str  # e.g. "all-MiniLM-L6-v2@sha256:33c5f263009cdbe5"
    name: str
    variant: str  # "fp32", "fp16" or "int8"
    provider: str  # the ONNX Runtime provider that runs it, read back from the session
    max_seq_length: int
    hidden: int
    # sha256 of each file loaded (the graph that runs and the tokenizer), as checked: what a model
    # bundle pins (`scoring.model.check_encoder`)
    loaded: Mapping[str, str] = field(default_factory=dict)


MANIFEST = "encoder.json"


def read_manifest(directory: Path) -> dict[str, Any]:
    """``encoder.json`` after checking every file it lists against its sha256 (each a plain name of a
    regular file in the directory: no path, no symbolic link) and its identity against the
    tokenizer, weights, length and pooling it lists."""
    directory = Path(directory)
    path = directory / MANIFEST
    if path.is_symlink():
        raise EncoderError(f"{path} is a symbolic link; an encoder's files must be regular files")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EncoderError(f"{directory} is not an encoder directory: {MANIFEST} is missing") from None
    except (OSError, ValueError) as exc:
        raise EncoderError(f"{path} cannot be read ({exc})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not files:
        raise EncoderError(f"{path} lists no files")
    for key, kind in (("name", str), ("identity", str), ("hidden", int), ("max_seq_length", int)):
        if not isinstance(manifest.get(key), kind):
            raise EncoderError(f"{path}: {key} is missing or not a {kind.__name__}")
    for name, expected in files.items():
        if sha256_file(_listed_file(directory, name)) != expected:
            raise EncoderError(f"encoder file {name} does not match its sha256 in {MANIFEST}")
    identity = identity_of(
        manifest["name"],
        str(manifest.get("source_weights_sha256")),
        str(files.get("tokenizer.json")),
        manifest["max_seq_length"],
        str(manifest.get("pooling")),
    )
    if manifest["identity"] != identity:
        raise EncoderError(
            f"{path}: identity {manifest['identity']} does not match the tokenizer.json, weights, length "
            f"and pooling it lists ({identity})"
        )
    return dict(manifest)


def _listed_file(directory: Path, name: object) -> Path:
    """The path of a file the manifest lists, refused unless it is a plain name of a regular file."""
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or Path(name).name != name
        or "\\" in name
    ):
        raise EncoderError(
            f"{MANIFEST} in {directory} names an unsafe path {name!r}: files must be plain names"
        )
    file = directory / name
    if file.is_symlink():
        raise EncoderError(
            f"encoder file {name} is a symbolic link; an encoder's files must be regular files"
        )
    if not file.is_file():
        raise EncoderError(f"encoder file {name} is missing from {directory}")
    return file


def read_verified(directory: Path, manifest: dict[str, Any], name: str) -> bytes:
    """The bytes of a file the encoder loads, read once and checked against the manifest, so what is
    loaded is what was checked (the file cannot change in between) and nothing unlisted is loaded."""
    expected = manifest["files"].get(name)
    if expected is None:
        raise EncoderError(f"encoder file {name} is not listed in {MANIFEST}; it cannot be verified")
    data = _listed_file(Path(directory), name).read_bytes()
    if hashlib.sha256(data).hexdigest() != expected:
        raise EncoderError(f"encoder file {name} does not match its sha256 in {MANIFEST}")
    return data


def _session_options(threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # a failed GPU provider is reported below, not as a C++ log line
    # Idle encoder threads sleep instead of spinning: the cores are shared with polars and LightGBM
    # (measured on 2 cores: server CPU per sequential request 29 ms spinning, see docs/text.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


@functools.cache
def _load_gpu_libraries() -> None:
    """Loads CUDA and cuDNN for onnxruntime-gpu, once per process: from the ``nvidia-*`` pip packages
    where they are installed (ONNX Runtime's ``preload_dlls``), else the system's library path. Without
    it, a machine whose CUDA libraries came from pip (as PyTorch's do) runs the encoder on the CPU. The
    helper prints its warnings; they are logged instead, since stdout carries the serving banner."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            preload()
    except Exception as exc:  # a missing library shows as the provider that ran, below
        log.info("text encoder: preloading CUDA libraries failed (%s)", type(exc).__name__)
    if printed.getvalue().strip():
        log.info("text encoder: %s", " ".join(printed.getvalue().split()))


class TextEncoder:
    """Normalised sentence embeddings for lists of texts; thread-safe."""

    def __init__(
        self,
        directory: Path,
        *,
        providers: Sequence[str] = ("cuda", "cpu"),
        variant: str = "auto",
        threads: int = 0,
        cache_size: int = 20_000,
        max_seq_length: int | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.directory = Path(directory)
        manifest = read_manifest(self.directory)
        self._manifest = manifest
        unknown = [p for p in providers if p not in PROVIDERS]
        if unknown or not providers:
            raise EncoderError(f"text providers must be some of {sorted(PROVIDERS)} (got {list(providers)})")
        if variant not in (*VARIANTS, "auto"):
            raise EncoderError(f"encoder variant must be auto or one of {VARIANTS} (got {variant!r})")
        wanted = [PROVIDERS[p] for p in providers]
        available = set(ort.get_available_providers())
        gpu_wanted = [p for p in wanted if p in GPU_PROVIDERS and p in available]
        session = None
        if gpu_wanted and variant in ("auto", "fp16", "fp32"):
            chosen = "fp16" if variant == "auto" else variant
            _load_gpu_libraries()
            # A GPU provider that cannot load prints C++ log lines; the warning below says it instead.
            ort.set_default_logger_severity(4)
            try:
                session = self._open(chosen, [*gpu_wanted, "CPUExecutionProvider"], threads)
            finally:
                ort.set_default_logger_severity(2)
            if session.get_providers()[0] not in GPU_PROVIDERS:
                log.warning(
                    "text encoder: %s asked for but could not start (no GPU, or no CUDA 13 / cuDNN 9 "
                    "libraries); running on the CPU",
                    " and ".join(gpu_wanted) + (" were" if len(gpu_wanted) > 1 else " was"),
                )
                session = None
        if session is None:
            if "CPUExecutionProvider" not in wanted:
                raise EncoderError(
                    f"no GPU provider could start and the CPU is not allowed ({list(providers)})"
                )
            chosen = "int8" if variant == "auto" else variant
            session = self._open(chosen, ["CPUExecutionProvider"], threads)
        self._session = session
        length = max_seq_length or int(manifest["max_seq_length"])
        loaded = (f"model.{chosen}.onnx", "tokenizer.json")
        self.info = EncoderInfo(
            identity=str(manifest["identity"]),
            name=str(manifest["name"]),
            variant=chosen,
            provider=session.get_providers()[0],
            max_seq_length=length,
            hidden=int(manifest["hidden"]),
            loaded={name: str(manifest["files"].get(name)) for name in loaded},
        )
        tokenizer = Tokenizer.from_str(
            read_verified(self.directory, manifest, "tokenizer.json").decode("utf-8")
        )
        tokenizer.enable_truncation(max_length=length)
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._cache: OrderedDict[bytes, Embeddings] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        # Texts being encoded now, by key: a second thread asking for one waits for its result.
        self._running: dict[bytes, Future[Embeddings]] = {}
        self.encoded = 0  # texts that went through the model (cache misses)

    def _open(self, variant: str, providers: list[str], threads: int) -> Any:
        import onnxruntime as ort

        name = f"model.{variant}.onnx"
        graph = read_verified(self.directory, self._manifest, name)
        # On the CPU, ONNX Runtime's SkipLayerNormalization kernel is slower than the Add, Add and
        # LayerNormalization the graph is written with (0.26 against 0.06 ms for 128 x 384; 12 of them
        # were a fifth of an int8 encode): a CPU-only session keeps them apart.
        cpu_only = providers == ["CPUExecutionProvider"]
        try:
            return ort.InferenceSession(
                graph,
                _session_options(threads),
                providers=providers,
                disabled_optimizers=["SkipLayerNormFusion"] if cpu_only else [],
            )
        except Exception as exc:
            raise EncoderError(f"ONNX Runtime cannot load {name} ({exc})") from None

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(e.ids) for e in self._tokenizer.encode_batch(list(texts))]

    def _run(self, texts: Sequence[str]) -> Embeddings:
        ids = self.tokenize(texts)
        out = np.empty((len(ids), self.info.hidden), dtype=np.float32)
        order = np.argsort([len(x) for x in ids], kind="stable")
        for start in range(0, len(order), BATCH_TEXTS):
            chunk = order[start : start + BATCH_TEXTS]
            width = max(len(ids[i]) for i in chunk)
            input_ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, i in enumerate(chunk):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            try:
                (result,) = self._session.run(
                    ["sentence_embedding"], {"input_ids": input_ids, "attention_mask": mask}
                )
            except Exception as exc:
                raise EncoderError(f"the text encoder failed ({type(exc).__name__})") from exc
            out[chunk] = result
        return out

    def encode(self, texts: Sequence[str]) -> Embeddings:
        """One unit-length row per text (an empty text is encoded too: [CLS] [SEP]). A text another
        thread is encoding right now (`scoring.text.EncodeAhead`) is waited for, not encoded twice."""
        keys = [hashlib.blake2b(t.encode("utf-8"), digest_size=16).digest() for t in texts]
        out = np.empty((len(texts), self.info.hidden), dtype=np.float32)
        mine: dict[bytes, list[int]] = {}
        theirs: dict[bytes, tuple[Future[Embeddings], list[int]]] = {}
        with self._lock:
            for i, key in enumerate(keys):
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    out[i] = hit
                elif key in mine or key not in self._running:
                    mine.setdefault(key, []).append(i)
                else:
                    theirs.setdefault(key, (self._running[key], []))[1].append(i)
            claimed: dict[bytes, Future[Embeddings]] = {}
            for key in mine:
                claimed[key] = self._running[key] = Future()
        if mine:
            self._encode_claimed(texts, mine, claimed, out)
        for running, rows in theirs.values():
            out[rows] = running.result()  # the other thread's vector, or its failure raised here
        return out

    def _encode_claimed(
        self,
        texts: Sequence[str],
        mine: Mapping[bytes, list[int]],
        claimed: Mapping[bytes, Future[Embeddings]],
        out: Embeddings,
    ) -> None:
        """Runs the texts this call claimed, caches them and hands them to threads waiting for them."""
        try:
            fresh = self._run([texts[rows[0]] for rows in mine.values()])
        except BaseException as exc:
            with self._lock:
                for key, running in claimed.items():
                    del self._running[key]
                    running.set_exception(exc)
            raise
        with self._lock:
            self.encoded += len(mine)
            for (key, rows), vector in zip(mine.items(), fresh, strict=True):
                out[rows] = vector
                if self._cache_size:
                    self._cache[key] = vector
                    if len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
                del self._running[key]
                claimed[key].set_result(vector)
