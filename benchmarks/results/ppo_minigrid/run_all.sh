#!/bin/bash
# LP vs uniform, 3 seeds each, one run at a time, niced: the runs recorded in BENCHMARKS.md.
# Usage: bash benchmarks/results/ppo_minigrid/run_all.sh [TOTAL_STEPS]
set -e
cd "$(dirname "$0")/../../.."
steps=${1:-245760}
for seed in 1 2 3; do
  for algo in lp uniform; do
    out=benchmarks/results/ppo_minigrid/$algo-seed$seed
    mkdir -p "$out"
    echo "$(date -u +%H:%M:%S) start $algo seed $seed"
    PYTHONPATH=$PWD nice -n 10 python examples/ppo_minigrid.py --algorithm "$algo" --seed "$seed" \
      --total-steps "$steps" --output-dir "$out" --log-every 20 > "$out/log.txt" 2>&1
    echo "$(date -u +%H:%M:%S) done $algo seed $seed"
  done
done
