#!/usr/bin/env bash
# Train the bundled sprites models on one CUDA machine inside a fixed time budget, in one run:
# varied-style sprites made there, then three trainings side by side on the one GPU (the
# `sprites` preset in the default and the fast layout, and the paper's `small` preset on the
# same data for comparison), each stage cut at a wall-clock budget (SIGTERM: the trainer saves
# its resumable checkpoint and stops; the next stage starts from it). `pytest -m gpu` runs
# beside them (it checks behaviour, not speed).
#
#   OUT=runs/gpu_sprites STAGE1_S=200 STAGE2_S=220 bash benchmarks/gpu_sprites.sh
#
# Writes to $OUT: log.txt, <name>.safetensors (each final generator, ~1 MB), <name>.json (its
# run's config and last logged metrics), pytest_gpu.txt.
set -u
out=${OUT:-runs/gpu_sprites}
work=${WORK:-/tmp/lcvg_sprites}
s1=${STAGE1_S:-200}
s2=${STAGE2_S:-220}
clips=${CLIPS:-2000}
style=${STYLE-varied}
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$out" "$work"
start=$(date +%s)
exec > >(tee -a "$out/log.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv || true

echo "== data ($clips clips, style ${style:-default})"
$python -m training.data.cli make sprites --out "$work/data" --clips "$clips" --size 64 \
  --seed 1 ${style:+--style "$style"} --overwrite || exit 1

( timeout $(( s1 + s2 + 40 )) $python -m pytest -q -m gpu -p no:cacheprovider tests > "$out/pytest_gpu.txt" 2>&1
  echo "pytest -m gpu exit $?" >> "$out/pytest_gpu.txt" ) &

train() {  # name, preset, extra flags...
  local name=$1 preset=$2; shift 2
  local run="$work/$name" common=(--data "$work/data" --batch-size 32 --num-workers 3
    --eval-clips 0 --progress false --checkpoint-every 200 --sample-every 0 --log-every 100)
  timeout --foreground -k 30 "$s1" $python -m training.cli --preset "$preset" --out "$run/s1" --stage 1 \
    --stage1-steps 100000 "${common[@]}" "$@"
  timeout --foreground -k 30 "$s2" $python -m training.cli --preset "$preset" --out "$run/s2" --stage 2 \
    --init "$run/s1/checkpoints/last.safetensors" --stage2-steps 100000 "${common[@]}" "$@"
  $python - "$run" "$out/$name" <<'PY'
import json, sys
from pathlib import Path
from lcvg_env.models import LayeredGenerator
run, dest = Path(sys.argv[1]), sys.argv[2]
LayeredGenerator.from_checkpoint(run / "s2" / "checkpoints" / "last.safetensors",
                                 device="cpu").save(dest + ".safetensors")
info = {"config": json.loads((run / "s2" / "config.json").read_text())}
for stage in ("s1", "s2"):
    lines = (run / stage / "metrics.jsonl").read_text().splitlines() if (
        run / stage / "metrics.jsonl").is_file() else []
    info[stage + "_last"] = json.loads(lines[-1]) if lines else None
    info[stage + "_logged"] = len(lines)
Path(dest + ".json").write_text(json.dumps(info, indent=1))
print("exported", dest)
PY
}
train sprites_small sprites &
train sprites_fast sprites --model.patch-size 2 --model.ch 16 --model.ch-mult 1,2 &
train paper_small small &
wait
ls -la "$out"
echo "== done in $(( $(date +%s) - start )) s"
