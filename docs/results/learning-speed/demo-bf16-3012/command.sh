#!/bin/bash
# about 45 minutes on 2 cores for bf16 (two runs side by side, one thread each, about 0.7 s per
# step); `default` is reused from ../demo-zoom-2008's runs when they are copied into
# runs/bf16-3012/default (with their rows of curves.csv and their speed.json entry), and is
# otherwise trained too (about 50 minutes more). A rerun resumes and skips what is done.
# bf16 gets the steps of default's CPU time: 3,012 steps at 0.483 s against 2,008 at 0.718 s.
cd "$(dirname "$0")/../../../.." && . .venv/bin/activate
python benchmarks/learning_speed.py demo --steps 2008 --eval-every 1004 --items 1000 --seeds 0 1 \
  --time-steps 20 --jobs 2 --setting default='train.precision=32' \
  --setting 'bf16=train.precision=bf16;train.max_steps=3012' --out runs/bf16-3012
