#!/usr/bin/env bash
# The text-on-GPU scenarios, on a machine with an NVIDIA GPU (CUDA 13, cuDNN 9) and no package index.
#
#   bench/gpu_run.sh [PAYLOAD]          # PAYLOAD defaults to .gpu/payload
#
# PAYLOAD holds what such a machine lacks (bench/gpu_payload.sh makes it on a machine with the
# project installed): wheels/ (onnxruntime-gpu and the runtime dependencies, for the machine's
# Python), data/ (the demo bundle and the encoder directory with its fp16 graph) and reference.npz
# (fp32 CPU embeddings of 64 texts, from `bench/text_encoder.py --write-reference`).
#
# It records the GPU and the providers ONNX Runtime offers; asks for TensorRT, CUDA, CPU in that
# order and prints the provider that actually started; times the fp16 encoder on the CUDA provider
# and checks its embeddings against the CPU's fp32 ones; then runs `bench/suite.py --only text-gpu`
# (fraudscore serve --workers 4, the fp16 encoder on CUDA, every answer's provider counted).
# Results: bench/results/text_encoder-cuda.{json,md} and suite-gpu.{json,md}, copied to $OUT if set.
# SUITE_ARGS (default "--seconds 8") is passed to the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/gpu_env.sh
source bench/gpu_env.sh "${1:-.gpu/payload}"
encoder=$payload/data/encoder

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
nproc
$py -c 'import onnxruntime as ort; print("onnxruntime", ort.__version__, ort.get_device(), ort.get_available_providers())'

echo "== providers asked in turn; the one that started"
echo "Roof repair after storm damage" >/tmp/fraudscore-line.txt
for providers in tensorrt,cuda,cpu cuda,cpu cuda; do
    echo "asked: $providers"
    $py -m scoring.cli encoder embed --encoder "$encoder" --in /tmp/fraudscore-line.txt \
        --out /tmp/fraudscore-line.npy --providers "$providers" --variant fp16 2>&1 | tail -4 || true
done

echo "== encoder: fp16 on CUDA, latency and agreement with fp32 on the CPU"
$py bench/text_encoder.py --encoder "$encoder" --providers "${ENCODER_PROVIDERS:-cuda}" --variants fp16 \
    --batches "${ENCODER_BATCHES:-1,8,32,128}" --repeats "${ENCODER_REPEATS:-100}" --reference "$payload/reference.npz"

echo "== service: bench/suite.py --only text-gpu"
# shellcheck disable=SC2086
$py bench/suite.py --only text-gpu --results suite-gpu ${SUITE_ARGS:---seconds 8}

if [ -n "${OUT:-}" ]; then
    cp bench/results/text_encoder-cuda.json bench/results/text_encoder-cuda.md \
        bench/results/suite-gpu.json bench/results/suite-gpu.md "$OUT"/ 2>/dev/null || true
fi
