#!/bin/bash
# PPO on MiniGrid, the runs recorded in BENCHMARKS.md ("Real agent: PPO on MiniGrid"): niced,
# one after another. Usage:
#   bash benchmarks/results/ppo_minigrid/run_all.sh [TOTAL_STEPS [ALGO:SEED ...]]
# Default: 245,760 env steps; lp and uniform, seeds 1 2 3. Each run writes
# benchmarks/results/ppo_minigrid/ALGO-seedSEED/{episodes.csv,summary.json,curves.png,log.txt}.
set -e
cd "$(dirname "$0")/../../.."
steps=${1:-245760}
shift || true
runs=("$@")
if [ ${#runs[@]} -eq 0 ]; then
  runs=(lp:1 uniform:1 lp:2 uniform:2 lp:3 uniform:3)
fi
for run in "${runs[@]}"; do
  algo=${run%%:*}
  seed=${run##*:}
  out=benchmarks/results/ppo_minigrid/$algo-seed$seed
  mkdir -p "$out"
  echo "$(date -u +%H:%M:%S) start $algo seed $seed"
  PYTHONPATH=$PWD nice -n 10 python examples/ppo_minigrid.py --algorithm "$algo" --seed "$seed" \
    --total-steps "$steps" --output-dir "$out" --log-every 20 > "$out/log.txt" 2>&1
  echo "$(date -u +%H:%M:%S) done $algo seed $seed"
done
