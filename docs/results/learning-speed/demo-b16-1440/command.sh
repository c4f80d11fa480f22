#!/usr/bin/env bash
# The batch-16 screen of `demo` at equal CPU time on a 2-core CPU without AMX (about 45 minutes).
python benchmarks/learning_speed.py demo --steps 784 --eval-every 392 --items 1000 --seeds 0 1 \
  --time-steps 15 --jobs 1 --setting default= \
  --setting 'batch16=train.batch_size=16;train.max_steps=1440' --out runs/b16-screen
