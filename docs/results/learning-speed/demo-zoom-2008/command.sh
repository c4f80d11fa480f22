#!/bin/bash
# about 100 minutes on 2 cores (two runs side by side, one thread each, about 1.2 s per step);
# a rerun resumes and skips what is done
cd "$(dirname "$0")/../../../.." && . .venv/bin/activate
python benchmarks/learning_speed.py demo --steps 2008 --eval-every 1004 --items 1000 --seeds 0 1 \
  --time-steps 20 --jobs 2 --setting default= --setting zoom0.4='objective.pose_zoom=0.4' \
  --out runs/zoom-screen-2008
