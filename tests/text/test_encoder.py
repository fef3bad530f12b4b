"""The ONNX encoder against the reference implementation (sentence-transformers on CPU torch, whose
output is committed in reference/minilm_l6_v2.npz; reference/make_reference.py says how it was made),
and the encoder directory's checks, cache and command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from features.text.encoder import EncoderError, TextEncoder
from features.text.export import BertConfig, EncoderBuildError, build_encoder

REFERENCE = Path(__file__).parent / "reference" / "minilm_l6_v2.npz"
# Stated bounds: fp32 is the same computation; int8 (dynamic, per-channel weights) drifts a little.
FP32_MIN_COSINE = 0.999
INT8_MIN_COSINE = 0.97
INT8_MEAN_COSINE = 0.985


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _sentences(reference: dict[str, np.ndarray]) -> list[str]:
    return [str(s) for s in reference["sentences"]]


def test_the_reference_covers_english_chinese_empty_and_past_truncation(reference):
    sentences = _sentences(reference)
    assert any("\u4e00" <= ch <= "\u9fff" for s in sentences for ch in s)
    assert "" in sentences
    assert int(reference["max_seq_length"]) == 256
    assert (reference["token_counts"] == 256).sum() >= 2  # the long texts were cut


def test_tokenisation_matches_the_reference_with_truncation(encoder_dir, reference):
    encoder = TextEncoder(encoder_dir, providers=["cpu"], variant="fp32")
    ids = encoder.tokenize(_sentences(reference))
    for row, (got, count) in enumerate(zip(ids, reference["token_counts"], strict=True)):
        assert got == reference["input_ids"][row][:count].tolist(), _sentences(reference)[row][:40]


# fp16 is the GPU's graph; ONNX Runtime also runs it on the CPU, which checks its numbers here.
@pytest.mark.parametrize(
    ("variant", "minimum", "mean"),
    [
        ("fp32", FP32_MIN_COSINE, 0.9999),
        ("fp16", FP32_MIN_COSINE, 0.9999),
        ("int8", INT8_MIN_COSINE, INT8_MEAN_COSINE),
    ],
)
def test_embeddings_match_the_reference(encoder_dir, reference, variant, minimum, mean):
    encoder = TextEncoder(encoder_dir, providers=["cpu"], variant=variant, cache_size=0)
    got = encoder.encode(_sentences(reference))
    cosine = (got * reference["embeddings"]).sum(axis=1)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert cosine.min() >= minimum, dict(zip(_sentences(reference), cosine.round(4), strict=True))
    assert cosine.mean() >= mean


def test_batching_and_padding_do_not_change_an_embedding(encoder_dir, reference):
    encoder = TextEncoder(encoder_dir, providers=["cpu"], variant="fp32", cache_size=0)
    sentences = _sentences(reference)
    together = encoder.encode(sentences)
    alone = np.stack([encoder.encode([s])[0] for s in sentences])
    assert np.abs(together - alone).max() < 1e-5


def test_the_graph_uses_fused_operators_and_the_variants_differ_as_stated(encoder_dir):
    fp32 = onnx.load(encoder_dir / "model.fp32.onnx")
    ops = {n.op_type for n in fp32.graph.node}
    assert {"EmbedLayerNormalization", "Attention", "LayerNormalization", "BiasGelu"} <= ops
    assert "SkipLayerNormalization" not in ops  # fused by ONNX Runtime where it pays (not on the CPU)
    fp16 = onnx.load(encoder_dir / "model.fp16.onnx")
    onnx.checker.check_model(fp16)
    weights = [t for t in fp16.graph.initializer if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
    big = [t for t in weights if np.prod(t.dims) > 1]
    assert big and all(t.data_type == TensorProto.FLOAT16 for t in big)
    int8 = onnx.load(encoder_dir / "model.int8.onnx")
    int8_ops = {n.op_type for n in int8.graph.node}
    assert "QAttention" in int8_ops and ({"DynamicQuantizeMatMul", "MatMulInteger"} & int8_ops)


def test_the_provider_reported_is_the_one_the_session_runs(encoder_dir):
    import onnxruntime as ort

    encoder = TextEncoder(encoder_dir, providers=["cuda", "cpu"])
    assert encoder.info.provider == encoder._session.get_providers()[0]
    if "CUDAExecutionProvider" not in encoder._session.get_providers():
        # No usable GPU here: the CPU ran, with the CPU's graph.
        assert encoder.info.provider == "CPUExecutionProvider"
        assert encoder.info.variant == "int8"
    assert encoder.info.provider in ort.get_available_providers()


def test_identical_texts_are_encoded_once(encoder_dir):
    encoder = TextEncoder(encoder_dir, providers=["cpu"], cache_size=100)
    first = encoder.encode(["pay off my cards", "pay off my cards", "new roof"])
    assert encoder.encoded == 2
    again = encoder.encode(["new roof", "pay off my cards"])
    assert encoder.encoded == 2
    assert np.array_equal(again, first[[2, 0]])


def _held(encoder: TextEncoder, fail: bool = False) -> tuple[threading.Event, threading.Event]:
    """Makes the encoder's next model run wait until released (and then fail, if asked): the only
    way to have two threads meet at the same text on purpose. Returns (started, release)."""
    started, release = threading.Event(), threading.Event()
    real = encoder._run

    def run(texts):
        encoder._run = real  # once
        started.set()
        assert release.wait(10)
        if fail:
            raise EncoderError("injected failure")
        return real(texts)

    encoder._run = run  # type: ignore[method-assign]
    return started, release


def test_a_text_another_thread_is_encoding_is_waited_for_not_encoded_twice(encoder_dir):
    encoder = TextEncoder(encoder_dir, providers=["cpu"], cache_size=100)
    started, release = _held(encoder)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(encoder.encode, ["pay off my cards"])
        assert started.wait(10)
        second = pool.submit(encoder.encode, ["new roof", "pay off my cards"])
        # The second call encodes its other text and then waits: it cannot finish before the first.
        with pytest.raises(FutureTimeout):
            second.result(timeout=0.5)
        release.set()
        a, b = first.result(10), second.result(10)
    assert encoder.encoded == 2  # "pay off my cards" went through the model once
    assert np.array_equal(a[0], b[1])
    assert np.array_equal(b[0], encoder.encode(["new roof"])[0])


def test_a_failed_encoding_fails_the_thread_waiting_for_it_and_leaves_nothing_behind(encoder_dir):
    encoder = TextEncoder(encoder_dir, providers=["cpu"], cache_size=100)
    started, release = _held(encoder, fail=True)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(encoder.encode, ["new roof"])
        assert started.wait(10)
        second = pool.submit(encoder.encode, ["new roof"])
        time.sleep(0.2)  # the second call is waiting for the first
        release.set()
        for call in (first, second):
            with pytest.raises(EncoderError, match="injected failure"):
                call.result(10)
    assert encoder.encoded == 0
    assert encoder.encode(["new roof"]).shape == (1, encoder.info.hidden)  # encodes anew
    assert encoder.encoded == 1


def test_a_changed_encoder_file_is_refused(encoder_dir, tmp_path):
    copy = tmp_path / "enc"
    shutil.copytree(encoder_dir, copy)
    tokenizer = json.loads((copy / "tokenizer.json").read_text())
    tokenizer["truncation"] = None
    (copy / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(EncoderError, match=r"tokenizer\.json does not match its sha256"):
        TextEncoder(copy, providers=["cpu"])
    with pytest.raises(EncoderError, match=r"encoder\.json is missing"):
        TextEncoder(tmp_path, providers=["cpu"])


def test_build_refuses_what_it_cannot_build(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(EncoderBuildError, match="not BERT-family"):
        BertConfig.read(tmp_path, None)
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "model_type": "bert",
                "hidden_size": 8,
                "num_attention_heads": 2,
                "num_hidden_layers": 1,
                "intermediate_size": 16,
                "max_position_embeddings": 64,
            }
        )
    )
    with pytest.raises(EncoderBuildError, match=r"max_seq_length must be within 2\.\.64"):
        BertConfig.read(tmp_path, 128)
    with pytest.raises(EncoderBuildError, match=r"model\.safetensors is missing"):
        build_encoder(tmp_path, tmp_path / "out")


@pytest.mark.slow
def test_embed_command_writes_one_row_per_line_empty_lines_included(encoder_dir, tmp_path):
    lines = ["Consolidate two credit cards", "", "用于装修房子", "   ", "Buying a used car"]
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "emb.npy"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scoring.cli",
            "encoder",
            "embed",
            "--encoder",
            str(encoder_dir),
            "--in",
            str(source),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    vectors = np.load(out)
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32
    expected = TextEncoder(encoder_dir, providers=["cpu"], variant="fp32").encode(lines)
    assert np.abs(vectors - expected).max() < 1e-6
    assert np.array_equal(vectors[1], vectors[3])  # blank and empty both encode as [CLS] [SEP]
