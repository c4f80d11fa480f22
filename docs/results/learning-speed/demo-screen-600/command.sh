#!/bin/bash
cd /work/main && . .venv/bin/activate
python benchmarks/learning_speed.py demo --steps 600 --eval-every 300 --items 1000 --seeds 0 1 \
  --setting default= --setting out1='model.output_blocks=1' --setting lr2e-3='optim.lr=2e-3' \
  --out runs/demo-screen-600
