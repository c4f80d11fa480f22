#!/usr/bin/env bash
# GPU check for CUDA machines: install rodi with a CUDA build of PyTorch, then train on sprites at
# 64x64 with bf16 for a fixed number of steps and print images/s, utilisation against the GPU's
# measured bf16 matmul rate, and peak memory. Run from the repository root:
#     bash benchmarks/gpu_check.sh [SPRITES_ROOT] [BATCH]
set -euo pipefail
ROOT="${1:-../shared/data/lpc-sprites}"
BATCH="${2:-256}"
python3 -m venv .venv-gpu
. .venv-gpu/bin/activate
python -c "import torch; assert torch.cuda.is_available()" 2>/dev/null || pip install -q torch
pip install -q -e .
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for precision in bf16 32; do
  echo "== sprites, batch $BATCH pairs, precision $precision =="
  python benchmarks/throughput.py sprites --data-root "$ROOT" --batch-size "$BATCH" --steps 100 \
    train.device=cuda train.precision=$precision
done
echo "== a short training run (2000 steps, bf16) =="
python -m rodi.cli train sprites data.root="$ROOT" train.device=cuda train.precision=bf16 \
  train.max_steps=2000 train.batch_size="$BATCH" train.out_dir="runs/gpu-check-$$" --no-progress
tail -n 2 "runs/gpu-check-$$/scalars.csv"
