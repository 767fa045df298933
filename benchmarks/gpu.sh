#!/usr/bin/env bash
# The GPU numbers of docs/performance.md (speed) and docs/results.md (the robot-pushing run) in
# one run on a CUDA machine, inside a fixed time budget:
#   1. training throughput of the official_bair model (128x128 and 256x256, fp32 and bf16);
#   2. env_step frames/s of a paper_bair-sized model (fp32 and bf16) and of the sprites models;
#   3. the pseudo-control fitter against the released procedure;
#   4. an official_bair-sized model trained on robot-pushing clips at 128x128 for what time is
#      left (steps sized from the throughput measured in 1), with the final evaluation.
# Each part is capped with `timeout`, so one failure or overrun leaves the others' results.
#
#   OUT=runs/gpu DATA=runs/data/fetchpush128 BUDGET=540 bash benchmarks/gpu.sh
#
# Writes only two files to $OUT: log.txt (everything printed) and results.tar.gz (the JSON of
# each benchmark and the training run without its checkpoints); works in $WORK.
set -u
out=${OUT:-runs/gpu}
work=${WORK:-/tmp/lcvg_gpu}
data=${DATA:-runs/data/fetchpush128}
budget=${BUDGET:-540}
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$out" "$work/results"
res="$work/results"
start=$(date +%s)
left() { echo $(( budget - ($(date +%s) - start) )); }
exec > >(tee -a "$out/log.txt") 2>&1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
$python -c "import torch, lcvg_env, training; print('torch', torch.__version__,
torch.cuda.get_device_name(0))" || exit 1

echo "== train_step 128 ($(left) s left)"
timeout 90 $python -m benchmarks.train_step --preset official_bair --resolution 128 128 \
  --steps 20 > "$res/train_step_128.json"
echo "== train_step 256 ($(left) s left)"
timeout 90 $python -m benchmarks.train_step --preset official_bair --resolution 256 256 \
  --steps 15 > "$res/train_step_256.json"
echo "== env_step paper_bair ($(left) s left)"
timeout 120 $python -m benchmarks.env_step --device cuda --budget 3 --skip-sprites \
  --precision fp32 bf16 > "$res/env_step_paper.json"
echo "== control_fit ($(left) s left)"
timeout 45 $python -m benchmarks.control_fit --device cuda --pairs 64 --official-pairs 2 \
  > "$res/control_fit.json"

# Training: stage I gets 3/4 of the time left after a reserve for start-up, the final
# evaluation, the sprites benchmark and packing; steps from the measured bf16 step rate, with a
# margin for data loading and logging.
train_s=$(( $(left) - 130 ))
read -r s1 s2 < <($python - "$res/train_step_128.json" "$train_s" <<'EOF'
import json, sys
rows = {r["phase"]: r for r in json.load(open(sys.argv[1]))["results"]}  # the last amp: bf16
seconds = max(float(sys.argv[2]), 0.0)
rate = {phase: 0.7 * rows[phase]["samples_per_s"] / 8 for phase in ("stage1", "stage2")}
print(int(rate["stage1"] * seconds * 0.75), int(rate["stage2"] * seconds * 0.25))
EOF
) || { s1=0; s2=0; }
echo "== train official_bair 128x128 on $data: stage I $s1, stage II $s2 steps ($(left) s left)"
if [ "${s1:-0}" -gt 0 ] && [ "${s2:-0}" -gt 0 ]; then
  timeout $(( $(left) - 50 )) $python -m training.cli --preset official_bair --data "$data" \
    --out "$work/robot128" --model.resolution 128,128 --stage1-steps "$s1" --stage2-steps "$s2" \
    --num-workers 8 --eval-clips 10 --sample-every 500 --checkpoint-every 100000 \
    --progress false
fi
echo "== env_step sprites ($(left) s left)"
timeout $(( $(left) - 15 )) $python -m benchmarks.env_step --device cuda --budget 2 \
  --skip-paper > "$res/env_step_sprites.json"

tar czf "$out/results.tar.gz" --exclude=checkpoints --exclude='*.safetensors' \
  --exclude=tensorboard -C "$work" results $( [ -d "$work/robot128" ] && echo robot128 )
echo "== done in $(( $(date +%s) - start )) s"
