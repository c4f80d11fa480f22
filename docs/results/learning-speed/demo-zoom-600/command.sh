#!/bin/bash
# about 45 minutes on 2 cores at about 1 s per demo step; a rerun resumes and skips what is done
cd "$(dirname "$0")/../../../.." && . .venv/bin/activate
python benchmarks/learning_speed.py demo --steps 600 --eval-every 300 --items 1000 --seeds 0 1 \
  --time-steps 5 --setting default= --setting zoom0.4='objective.pose_zoom=0.4' \
  --out runs/zoom-screen-600
