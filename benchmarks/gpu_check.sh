#!/usr/bin/env bash
# Everything that needs a GPU, in one go (make gpu-check): the CUDA tests, the GPU benchmark,
# and the Transformer translation preset timed end to end. Output also goes to $LOG_DIR/gpu_check.log.
#   LOG_DIR=/some/dir PYTHON=python3 bash benchmarks/gpu_check.sh
set -uo pipefail
PY=${PYTHON:-python3}
LOG_DIR=${LOG_DIR:-outputs}
mkdir -p "$LOG_DIR"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  echo "== CUDA tests"
  $PY -m pytest tests/test_gpu.py -v -p no:cacheprovider 2>&1 | tail -12
  echo "== benchmark"
  $PY benchmarks/bench_gpu.py
  echo "== experiment=mt_transformer on the GPU"
  run_dir=$(mktemp -d)/mt
  SECONDS=0
  $PY -m dlexp experiment=mt_transformer trainer.progress=false hydra.run.dir="$run_dir" > "$LOG_DIR/mt_transformer.log" 2>&1
  echo "exit $?, ${SECONDS} s wall (process start to exit)"
  $PY -c "import json,sys; d=json.load(open(sys.argv[1])); print({k: d[k] for k in d if k.startswith('test/') or k in ('status','device','wall_seconds','epochs_run')})" "$run_dir/summary.json"
} 2>&1 | tee "$LOG_DIR/gpu_check.log"
