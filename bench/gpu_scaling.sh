#!/usr/bin/env bash
# On the GPU machine, after bench/gpu_run.sh (same PAYLOAD): the text-gpu server with 8 and 12
# workers (WORKER_COUNTS), then py-spy profiles (bench/profile_server.py, every worker) of the text server with 8
# workers at 1,000/s and of the tabular+history server with 8 workers at 64 in flight.
#
#   bench/gpu_scaling.sh [PAYLOAD]
#
# Results: bench/results/suite-gpu-{8,12}w.{json,md}, profile-gpu-{text,history}.{md,raw.txt}; copied
# to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/gpu_env.sh
source bench/gpu_env.sh "${1:-.gpu/payload}"

for workers in ${WORKER_COUNTS:-8 12}; do
    $py bench/suite.py --only text-gpu --gpu-workers $workers --results suite-gpu-${workers}w --seconds 8
done
$py bench/profile_server.py --kind text --workers 8 --rate 1000 --seconds 15 --results profile-gpu-text
$py bench/profile_server.py --kind history --workers 8 --concurrency 64 --seconds 15 \
    --results profile-gpu-history

if [ -n "${OUT:-}" ]; then
    for name in suite-gpu-8w.json suite-gpu-8w.md suite-gpu-12w.json suite-gpu-12w.md \
        profile-gpu-text.md profile-gpu-history.md profile-gpu-text.raw.txt profile-gpu-history.raw.txt; do
        cp "bench/results/$name" "$OUT"/ 2>/dev/null || true
    done
fi
