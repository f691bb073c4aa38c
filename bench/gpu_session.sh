#!/usr/bin/env bash
# The GPU checks of the project, as one script for a lent H100 (../shared/device): the throughput benches
# (training step and augmentation, issue 4) and the gpu-quick suite end to end (issues 3 and 4). Run from
# the repo root with .bundle (Ray, AdamP, MLflow client) and .data/fmnist.tar.xz (the four raw
# Fashion-MNIST IDX files) carried:
#   bash bench/gpu_session.sh OUT_DIR
# Everything it prints is also written under OUT_DIR.
set -uo pipefail
out=${1:?usage: gpu_session.sh OUT_DIR}
mkdir -p "$out" /tmp/fmnist
export PYTHONUNBUFFERED=1
if [ -d .bundle ]; then bash .bundle/use-bundle.sh .bundle && export PYTHONPATH=/tmp/site:$PWD; fi
tar -C /tmp/fmnist -xJf .data/fmnist.tar.xz
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv;
  python3 -c 'import torch, ray; print("torch", torch.__version__, "cuda", torch.version.cuda, "ray", ray.__version__)'; } 2>&1 | tee "$out/device.txt"
timeout "${BENCH_TIMEOUT:-200}" python3 bench/gpu_throughput.py --json "$out/gpu_throughput.json" ${BENCH_ARGS:-} 2>&1 | tee "$out/gpu_throughput.txt"
timeout 90 python3 bench/augment_throughput.py --device cuda 2>&1 | tee "$out/augment_throughput.txt"
# mlflow-skinny has no server: log straight to a sqlite file.
timeout "${SUITE_TIMEOUT:-330}" python3 run_suite.py --suite gpu-quick --set data.root=/tmp/fmnist \
  --tracking-uri "sqlite:///$out/mlflow.db" --results "$out/runs" ${SUITE_ARGS:-} 2>&1 | tee "$out/gpu_quick.txt"
# Checkpoints (tens of MB per trial) stay on the device; the tables, curves and logs come back.
rm -rf "$out"/runs/*/*/ray
