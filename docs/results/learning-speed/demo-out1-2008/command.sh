#!/bin/bash
# about 50 minutes on 2 cores for the new setting (two runs side by side, one thread each, about
# 1.2 s per step); `default` is reused from ../demo-zoom-2008's runs when they are copied into
# runs/out1-2008/default, and is otherwise trained too (about 50 minutes more).
# A rerun resumes and skips what is done.
cd "$(dirname "$0")/../../../.." && . .venv/bin/activate
python benchmarks/learning_speed.py demo --steps 2008 --eval-every 1004 --items 1000 --seeds 0 1 \
  --time-steps 20 --jobs 2 --setting default= --setting out1='model.output_blocks=1' \
  --out runs/out1-2008
