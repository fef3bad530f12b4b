#!/usr/bin/env bash
# Makes the payload bench/gpu_run.sh needs on a GPU machine that has no package index:
#
#   bench/gpu_payload.sh [OUT] [PYTHON_VERSION]     # defaults: .gpu/payload 3.12
#
# - wheels/: onnxruntime-gpu and the runtime dependencies a CUDA image with PyTorch lacks, at the
#   versions uv.lock pins, for PYTHON_VERSION on manylinux x86-64 (pip download: needs PyPI);
# - data/: the demo bundle and the encoder directory with only its fp16 graph and tokenizer (its
#   manifest rewritten to list just those: the identity depends on the weights, tokenizer, length and
#   pooling, not on which graphs are shipped, so the bundle accepts it);
# - reference.npz: fp32 CPU embeddings of 64 texts, to check the GPU's answers against.
#
# Needs the project installed (`uv sync`) and the demo state in var/ (`make serve` once).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.gpu/payload}
pyver=${2:-3.12}
data=${FRAUDSCORE_DATA_DIR:-var}
rm -rf "$out" && mkdir -p "$out/wheels" "$out/data/encoder"

pinned() { awk -v n="$1" '$0=="name = \""n"\""{getline; gsub(/"/, "", $3); print n"=="$3; exit}' uv.lock; }
packages=(onnxruntime-gpu grpcio grpcio-health-checking grpcio-reflection protobuf polars polars-runtime-32
    lightgbm pydantic pydantic-core pydantic-settings python-dotenv typing-inspection annotated-types
    typing-extensions cryptography cffi pycparser)
specs=()
for p in "${packages[@]}"; do specs+=("$(pinned "$p")"); done
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
    platforms+=(--platform "$p")
done
uv run --frozen --with pip python -m pip download -q --no-deps --only-binary=:all: \
    --python-version "$pyver" --implementation cp "${platforms[@]}" -d "$out/wheels" "${specs[@]}"

cp -r "$data/demo-bundle" "$out/data/"
cp "$data/encoder/model.fp16.onnx" "$data/encoder/tokenizer.json" "$out/data/encoder/"
uv run --frozen python - "$data/encoder/encoder.json" "$out/data/encoder/encoder.json" <<'EOF'
import json, sys
manifest = json.load(open(sys.argv[1]))
manifest["files"] = {k: v for k, v in manifest["files"].items() if k in ("model.fp16.onnx", "tokenizer.json")}
json.dump(manifest, open(sys.argv[2], "w"), indent=2)
EOF
uv run --frozen python bench/text_encoder.py --encoder "$data/encoder" --write-reference "$out/reference.npz"
du -sh "$out"
