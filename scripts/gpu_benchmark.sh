#!/usr/bin/env bash
# The GPU measurement behind docs/PERFORMANCE.md: fp16, int8 and int8_vit on the Qwen2.5-VL-3B
# architecture with random weights (configs/gpu-3b-random.yaml), real processor, real COCO images.
#
#   scripts/gpu_benchmark.sh OUTDIR [mb32|mb8|mb1|smoke ...]     (default: mb32 mb8 mb1)
#
# Each part is one `pytest benchmarks` run with its own results folder OUTDIR/<part>/ and log
# OUTDIR/<part>.log. Data paths come from VLMBENCH_MODEL_DIR / VLMBENCH_COCO_DIR (default
# .device-data/..., see ../shared/device/README.md). Works without `pip install` (loads the plugin
# with -p) so that it runs on a bare GPU box with the project on PYTHONPATH.
set -uo pipefail
out=${1:?usage: scripts/gpu_benchmark.sh OUTDIR [parts...]}
shift
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(mb32 mb8 mb1)
mkdir -p "$out"
export VLMBENCH_CACHE=${VLMBENCH_CACHE:-/tmp/vlmbench-cache}
plugin=()
python3 -c "import importlib.metadata as m; m.distribution('vlmbench')" 2>/dev/null || plugin=(-p vlmbench.plugin)
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true

run() {
  local name=$1; shift
  echo "=== $name: $(date -u +%FT%TZ)"
  python3 -m pytest benchmarks "${plugin[@]}" -p no:cacheprovider -q -rs --vlm-results "$out/$name" \
    --benchmark-json "$out/$name.benchmark.json" "$@" > "$out/$name.log" 2>&1
  echo "=== $name: exit $? at $(date -u +%FT%TZ)"
  sed -n '/vlmbench summary/,/regression gate/p' "$out/$name.log"
}

for part in "${parts[@]}"; do
  case $part in
    smoke) run smoke --vlm-config configs/smoke.yaml ;;
    mb32)  run mb32 --vlm-config configs/gpu-3b-random.yaml --vlm-set inference.micro_batch_size=32 ;;
    # latency and size on disk do not depend on the micro-batch: measured in mb32 only
    mb8)   run mb8 --vlm-config configs/gpu-3b-random.yaml --vlm-set inference.micro_batch_size=8 \
             --vlm-set dataset.limit=32 --vlm-set inference.batch_size=16 --vlm-set measure.latency_images=0 \
             --vlm-set measure.model_size=false ;;
    mb1)   run mb1 --vlm-config configs/gpu-3b-random.yaml --vlm-set inference.micro_batch_size=1 \
             --vlm-set dataset.limit=8 --vlm-set inference.batch_size=4 --vlm-set measure.latency_images=0 \
             --vlm-set measure.model_size=false ;;
    *) echo "unknown part $part (mb32, mb8, mb1, smoke)"; exit 2 ;;
  esac
done
# one archive, so that a transfer limited in file count brings everything back
tar -C "$out" -czf "$out.tar.gz" . && mv "$out.tar.gz" "$out/results.tar.gz"
