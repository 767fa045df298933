#!/usr/bin/env bash
# Simulator speed on one CUDA machine, the eager and the fast paths side by side in one call:
# a paper_bair-sized generator (random weights) at N = 1 and 64, fp32 eager against bf16 with
# torch.compile (default mode, and "reduce-overhead": CUDA graphs), and a sprites checkpoint at
# N = 256 and 1,024. Each part is capped with `timeout`.
#
#   OUT=runs/gpu_speed CHECKPOINT=lcvg_env/assets/sprites_small.safetensors bash benchmarks/gpu_speed.sh
#
# Writes to $OUT: log.txt and one JSON file per part.
set -u
out=${OUT:-runs/gpu_speed}
python=${PYTHON:-python3}
checkpoint=${CHECKPOINT:-lcvg_env/assets/sprites_small.safetensors}
export PYTHONUNBUFFERED=1
mkdir -p "$out"
exec > >(tee -a "$out/log.txt") 2>&1
run() {  # name, seconds, env_step flags...
  local name=$1 seconds=$2; shift 2
  echo "== $name"
  timeout "$seconds" $python -m benchmarks.env_step --device cuda "$@" > "$out/$name.json"
  echo "exit $?"
}
run paper_eager 40 --skip-sprites --sizes 1 64 --budget 3 --precision fp32 --tracking carry
run paper_compiled 70 --skip-sprites --sizes 1 64 --budget 3 --precision bf16 --tracking carry \
  --compile default
run paper_graphs 70 --skip-sprites --sizes 1 64 --budget 3 --precision bf16 --tracking carry \
  --compile reduce-overhead
run sprites_large_n 40 --skip-paper --sizes 256 1024 --budget 3 --checkpoint "$checkpoint" \
  --tracking carry
