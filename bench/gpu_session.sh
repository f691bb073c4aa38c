#!/usr/bin/env bash
# The GPU checks of the project for a lent GPU (../shared/device): the throughput benches (training step
# and augmentation, issue 4) and the gpu-quick suite end to end, timed (issues 3 and 4). Run from the repo
# root with .bundle (Ray, AdamP, MLflow client) and .data/fmnist.tar.xz (the four raw Fashion-MNIST IDX
# files) carried:
#   bash bench/gpu_session.sh OUT_DIR [benches] [suite]     # both when no part is named
# One device call runs at most 600 s: run "benches" (about 4 min) and "suite" (about 6 min) as two calls.
# Everything printed is also written under OUT_DIR, flat (nested run folders do not come back).
set -uo pipefail
out=${1:?usage: gpu_session.sh OUT_DIR [benches] [suite]}
shift
parts=${*:-benches suite}
mkdir -p "$out" /tmp/fmnist
export PYTHONUNBUFFERED=1
if [ -d .bundle ]; then bash .bundle/use-bundle.sh .bundle && export PYTHONPATH=/tmp/site:$PWD; fi
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv;
  python3 -c 'import torch, ray; print("torch", torch.__version__, "cuda", torch.version.cuda, "ray", ray.__version__)'; } 2>&1 | tee "$out/device.txt"
if [[ " $parts " == *" benches "* ]]; then
  timeout "${BENCH_TIMEOUT:-240}" python3 bench/gpu_throughput.py --json "$out/gpu_throughput.json" ${BENCH_ARGS:-} 2>&1 | tee "$out/gpu_throughput.txt"
  timeout 90 python3 bench/augment_throughput.py --device cuda 2>&1 | tee "$out/augment_throughput.txt"
fi
if [[ " $parts " == *" suite "* ]]; then
  tar -C /tmp/fmnist -xJf .data/fmnist.tar.xz
  runs=/tmp/gpu-quick-runs
  start=$SECONDS
  # mlflow-skinny has no server: log straight to a sqlite file.
  timeout "${SUITE_TIMEOUT:-540}" python3 run_suite.py --suite gpu-quick --set data.root=/tmp/fmnist \
    --tracking-uri "sqlite:///$out/mlflow.db" --results "$runs" ${SUITE_ARGS:-} 2>&1 | tee "$out/gpu_quick.txt"
  echo "gpu-quick wall time: $((SECONDS - start)) s (exit ${PIPESTATUS[0]})" | tee -a "$out/gpu_quick.txt"
  # The tables, curves and logs come back; checkpoints and per-trial fragments stay on the device.
  for f in "$runs"/gpu-quick/*/{table.txt,table.md,suite.yaml,trial_specs.json,*.parquet}; do
    [ -f "$f" ] && cp "$f" "$out/"
  done
fi
