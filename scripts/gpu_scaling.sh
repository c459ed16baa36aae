#!/usr/bin/env bash
# Two-GPU scaling of the sweep (issue 12): the same sweep with one worker on one GPU and with
# `pytest benchmarks -n 2` on two GPUs, in one invocation; prints the wall times, their ratio,
# whether the fp16 captions are identical and which GPU each worker's chunks ran on.
#
#   scripts/gpu_scaling.sh OUTDIR [prime one two compare]      (default: all four, in that order)
#
# Sweep shape: fp16, int8, int8_vit of the Qwen2.5-VL-3B architecture with random weights
# (configs/gpu-3b-random.yaml), 1024 px, 40 tokens forced, 256 generated images per variant in 8
# chunks of 32 at micro-batch 32 (the 64-image COCO sample is too small for 256). Latency and size on
# disk are switched off: they do not depend on the number of GPUs and would only lengthen both runs.
# `prime` builds the random weights into VLMBENCH_CACHE and warms the page cache so that neither
# timed run pays for that. Expected (docs/PERFORMANCE.md, H200 at micro-batch 32: fp16 4.4 img/s,
# int8 3.0 img/s): about 3.5 min on one GPU; two GPUs split the 24 chunks 12/12 (fp16 + half of int8
# / the other half of int8 + int8_vit), one extra int8 load, a ratio of about 1.9-2.0.
# Needs at least two GPUs (nvidia-smi); takes the first two of CUDA_VISIBLE_DEVICES when set.
set -uo pipefail
out=${1:?usage: scripts/gpu_scaling.sh OUTDIR [prime one two compare]}
shift
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(prime one two compare)
mkdir -p "$out"
export VLMBENCH_CACHE=${VLMBENCH_CACHE:-/tmp/vlmbench-cache}
plugin=()
python3 -c "import importlib.metadata as m; m.distribution('pytest-vlmbench')" 2>/dev/null || plugin=(-p vlmbench.plugin)
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
  IFS=, read -ra gpus <<< "$CUDA_VISIBLE_DEVICES"
else
  mapfile -t gpus < <(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null)
fi
[ ${#gpus[@]} -ge 2 ] || { echo "gpu_scaling.sh: needs two GPUs, sees ${#gpus[@]} (${gpus[*]:-none})"; exit 2; }
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true

sweep=(--vlm-config configs/gpu-3b-random.yaml --vlm-set dataset.coco_dir=null
       --vlm-set dataset.present_images_only=false --vlm-set dataset.synthetic_images=256
       --vlm-set dataset.limit=256 --vlm-set inference.batch_size=32 --vlm-set inference.micro_batch_size=32
       --vlm-set measure.latency_images=0 --vlm-set measure.model_size=false)

run() {  # name, CUDA_VISIBLE_DEVICES, pytest arguments...: wall seconds into OUTDIR/<name>.wall_s
  local name=$1 devices=$2; shift 2
  echo "=== $name on GPU(s) $devices: $(date -u +%FT%TZ)"
  local start end
  start=$(date +%s.%N)
  CUDA_VISIBLE_DEVICES=$devices python3 -m pytest benchmarks "${plugin[@]}" -p no:cacheprovider -q -rs \
    --vlm-results "$out/$name" "${sweep[@]}" "$@" > "$out/$name.log" 2>&1
  local code=$?
  end=$(date +%s.%N)
  python3 -c "print(round($end - $start, 2))" > "$out/$name.wall_s"
  echo "=== $name: exit $code after $(cat "$out/$name.wall_s") s"
  tail -n 3 "$out/$name.log"
}

for part in "${parts[@]}"; do
  case $part in
    prime) run prime "${gpus[0]}" -k "fp16 and batch0" ;;
    one)   run one "${gpus[0]}" -n 1 ;;
    two)   run two "${gpus[0]},${gpus[1]}" -n 2 ;;
    compare)
      python3 - "$out" <<'PY'
import csv, json, sys
from pathlib import Path
out = Path(sys.argv[1])
def rows(name):
    found = {}
    for path in sorted((out / name).glob("*_batch_*.csv")):
        with open(path, newline="") as handle:
            found[path.name] = list(csv.DictReader(handle))
    return found
one, two = rows("one"), rows("two")
wall = {n: float((out / f"{n}.wall_s").read_text()) for n in ("one", "two")}
fp16 = sorted(n for n in one if n.startswith("fp16_"))
captions_equal = bool(fp16) and all([r["caption"] for r in one[n]] == [r["caption"] for r in two.get(n, [])] for n in fp16)
gpu_of_worker = {}
for chunk in two.values():
    for r in chunk:
        gpu_of_worker.setdefault(r["worker"], set()).add(r["gpu_uuid"])
one_gpu_each = all(len(u) == 1 for u in gpu_of_worker.values()) and \
    len({next(iter(u)) for u in gpu_of_worker.values()}) == len(gpu_of_worker)
report = {"wall_s_one_gpu": round(wall["one"], 1), "wall_s_two_gpus": round(wall["two"], 1),
          "speedup": round(wall["one"] / wall["two"], 3), "target_speedup": 1.9,
          "chunks_one": len(one), "chunks_two": len(two), "fp16_captions_identical": captions_equal,
          "gpu_of_worker": {w: sorted(u) for w, u in sorted(gpu_of_worker.items())},
          "each_worker_one_gpu_of_its_own": one_gpu_each,
          "chunk_wall_s_sum": {n: round(sum(float(c[0]["chunk_wall_s"]) for c in rows(n).values()), 1) for n in ("one", "two")}}
(out / "scaling.json").write_text(json.dumps(report, indent=2) + "\n")
print(json.dumps(report))
PY
      ;;
    *) echo "unknown part $part (prime, one, two, compare)"; exit 2 ;;
  esac
done
tar -C "$out" -czf "$out.tar.gz" . && mv "$out.tar.gz" "$out/results.tar.gz"
