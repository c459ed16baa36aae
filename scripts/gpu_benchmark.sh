#!/usr/bin/env bash
# The GPU measurement behind docs/PERFORMANCE.md: fp16, int8 and int8_vit on the Qwen2.5-VL-3B
# architecture with random weights (configs/gpu-3b-random.yaml), real processor, real COCO images.
#
#   scripts/gpu_benchmark.sh OUTDIR [mb32|mb8|mb1|smoke|compare|repeat|chunk1000 ...]   (default: mb32 mb8 mb1)
#
# Each part is one or more `pytest benchmarks` runs with their own results folders OUTDIR/<run>/ and
# logs OUTDIR/<run>.log. ENGINE (default auto = fast on CUDA) sets inference.engine for mb32/mb8/mb1.
#   compare    stock and fast on the same 64 images (micro-batch 32), one after the other in this
#              invocation (variants COMPARE_VARIANTS, default all three); prints the speed-up per
#              variant (throughput, batch-1 latency p50, idle share).
#   repeat     one case (REPEAT_VARIANT, default fp16; engine ENGINE) three times, batch-1 latency on
#              REPEAT_LATENCY_IMAGES per chunk (default 16); prints the coefficient of variation
#              (stdev/mean) of throughput and of batch-1 latency p50.
#   xdist1     the repeat case once more under pytest-xdist with one worker (-n 1), to set against repeat.
#   vision     issue 20, the compiled vision tower: VISION_VARIANTS (default "fp16 int8 int8_vit") on
#              VISION_IMAGES (default 64, chunks of 32) images at micro-batch 32, no batch-1 latency, four
#              processes one after the other:
#              vision-fast (fast engine, vision blocks compiled, compile cache emptied first: a cold run),
#              vision-cached (the same on the first 32 images: a second run on the cache the first left),
#              vision-off (fast, inference.compile_vision=false), vision-stock (stock); prints per variant
#              the img/s of each, the speed-ups and both warm-ups (seconds, cache state, graph breaks).
#              About 8-10 minutes on an H200 (cold compilations, random weights made once per cache);
#              VISION_VARIANTS="fp16 int8_vit", then int8 alone, fits two calls if one is too short.
#   methods-16, methods-bnb, methods-fp8, methods-w4, methods-ao8, methods
#              the quantization methods side by side (issue 18), all into OUTDIR/methods (one fingerprint: a
#              part finds fp16's chunk complete and reuses it): 256 generated 1024 px images per variant in
#              one chunk, micro-batch 64, 40 tokens, 3 images timed alone. Each part stops (SIGINT, so its
#              summary is still written) after METHODS_TIMEOUT seconds (default 570), and lists fp16 first:
#                methods-16   fp16 bf16                    expected 3-4 min (compiled decode: ~60 s warm-up each)
#                methods-bnb  int8 int8_vit nf4 nf4_vit fp4 fp4_vit  expected 8-10 min (int8 ~5 img/s)
#                methods-fp8  fp8 fp8_vit                 expected 8-10 min (fp8's first compiled generate: 276 s)
#                methods-w4   w4a16 w4a16_vit             expected 3-5 min
#                methods-ao8  w8a16 w8a16_vit w8a8 w8a8_vit  unknown: torchao int8 in fp16 did not finish a
#                             micro-batch in 5 min eagerly on 2026-12-02; compiled here, it may, or the timeout ends it
#                methods      every variant above: all chunks are complete by then, so it only writes the one
#                             summary and table of all methods (seconds). METHODS_VARIANTS overrides its list.
#              METHODS_LATENCY_IMAGES (default 3): images timed alone per variant; 0 spares a compilation of
#              the batch-1 decode step (as long again as the first for a torchao variant).
#                methods=V1,V2,...[@SECONDS]  these variants (after fp16), stopped after SECONDS (default
#                             METHODS_TIMEOUT): a call of several such parts bounds each group, so one slow
#                             compilation cannot take the others' time
#   precompile=V1,V2,...[@SECONDS]
#              fills the compile cache for these variants, PRECOMPILE_JOBS (default 5) processes at a time on
#              the one GPU, each stopped after SECONDS (default 300): the methods part's shapes (micro-batch 64,
#              64 of its 256 generated images, one batch-1 image), results in OUTDIR/precompile-<variant>/ (their
#              timings are of processes sharing the GPU: only their warm-up seconds are of interest, a cold
#              compilation under contention). A later methods part on the same machine then finds its graphs
#              in the cache (its records say "warm"), so a variant's window is load, a cached warm-up and the
#              timed pass. Run the methods part's fp16 first (it makes the random weights and the sample).
#   families   issue 21: the real-size architecture (random weights, processor built in code) of FAMILIES (default
#              "smolvlm qwen2_vl gemma3"), FAMILY_VARIANTS (default "fp16 int8") on the 64 real COCO images at
#              1024 px (Gemma 3 squashes every image to its 896 px), micro-batch 32, 40 tokens forced, engine ENGINE;
#              each family one process stopped after FAMILY_TIMEOUT seconds (default 150).
#   chunk1000  one chunk of 1000 generated images at 1024 px per variant (CHUNK1000_VARIANTS, default
#              "fp16 int8 int8_vit"), micro-batch sized from free memory; confirms a sweep projection.
# A short table of every part run is printed last (also in OUTDIR/table.md). Data paths come from VLMBENCH_MODEL_DIR / VLMBENCH_COCO_DIR (default
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
python3 -c "import importlib.metadata as m; m.distribution('pytest-vlmbench')" 2>/dev/null || plugin=(-p vlmbench.plugin)
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true

engine=${ENGINE:-auto}
as_list() { echo "$1" | sed 's/ \+/, /g'; }  # "fp16 int8" -> "fp16, int8" (a YAML flow list's items)
gpu=(--vlm-config configs/gpu-3b-random.yaml --vlm-set "inference.engine=$engine")

run_prefix=()  # e.g. (timeout 570): a part that may hang stops and keeps its finished variants
run() {
  local name=$1; shift
  echo "=== $name: $(date -u +%FT%TZ)"
  "${run_prefix[@]}" python3 -m pytest benchmarks "${plugin[@]}" -p no:cacheprovider -q -rs --vlm-results "$out/${results_name:-$name}" \
    --benchmark-json "$out/$name.benchmark.json" "$@" > "$out/$name.log" 2>&1
  echo "=== $name: exit $? at $(date -u +%FT%TZ)"
  sed -n '/vlmbench summary/,/regression gate/p' "$out/$name.log"
}

family_checkpoint() {  # the checkpoint whose real-size shape vlmbench/models/tiny/<family>.py builds
  python3 -c "import importlib, sys; print(importlib.import_module('vlmbench.models.tiny.' + sys.argv[1]).CHECKPOINT)" "$1"
}

tables=()
table() {  # python3 -m vlmbench.results.perf_table KIND OUTDIR RUN... : a markdown table from the runs' summaries
  local text
  text=$(python3 -m vlmbench.results.perf_table "$@" 2>&1)
  echo "$text"
  tables+=("$text")
}

for part in "${parts[@]}"; do
  case $part in
    smoke) run smoke --vlm-config configs/smoke.yaml ;;
    mb32)  run mb32 "${gpu[@]}" --vlm-set inference.micro_batch_size=32; table runs "$out" mb32 ;;
    # latency and size on disk do not depend on the micro-batch: measured in mb32 only
    mb8)   run mb8 "${gpu[@]}" --vlm-set inference.micro_batch_size=8 \
             --vlm-set dataset.limit=32 --vlm-set inference.batch_size=16 --vlm-set measure.latency_images=0 \
             --vlm-set measure.model_size=false; table runs "$out" mb8 ;;
    mb1)   run mb1 "${gpu[@]}" --vlm-set inference.micro_batch_size=1 \
             --vlm-set dataset.limit=8 --vlm-set inference.batch_size=4 --vlm-set measure.latency_images=0 \
             --vlm-set measure.model_size=false; table runs "$out" mb1 ;;
    compare)
      for e in stock fast; do
        run "compare-$e" --vlm-config configs/gpu-3b-random.yaml --vlm-set "inference.engine=$e" \
          --vlm-set inference.micro_batch_size=32 --vlm-set measure.model_size=false \
          --vlm-set "variants=[$(as_list "${COMPARE_VARIANTS:-fp16 int8 int8_vit}")]"
      done
      table compare "$out" compare-stock compare-fast ;;
    repeat)
      for i in 1 2 3; do
        run "repeat-$i" "${gpu[@]}" --vlm-set inference.micro_batch_size=32 --vlm-set measure.model_size=false \
          --vlm-set "measure.latency_images=${REPEAT_LATENCY_IMAGES:-16}" --vlm-set "variants=[${REPEAT_VARIANT:-fp16}]"
      done
      table repeat "$out" repeat-1 repeat-2 repeat-3 ;;
    xdist1)  # the repeat case under pytest-xdist with one worker (issue 11: -n 1 against -n 0)
      run xdist1 "${gpu[@]}" --vlm-set inference.micro_batch_size=32 --vlm-set measure.model_size=false \
        --vlm-set "variants=[${REPEAT_VARIANT:-fp16}]" -n 1
      table runs "$out" xdist1 ;;
    vision)  # issue 20: stock vs fast (vision eager) vs fast (vision compiled), and a cached second run
      rm -rf "${TORCHINDUCTOR_CACHE_DIR:-$VLMBENCH_CACHE/torch-compile}"  # the compile cache in use (vlmbench.engines.compile_cache): start cold
      vision=(--vlm-config configs/gpu-3b-random.yaml --vlm-set inference.micro_batch_size=32 \
        --vlm-set "dataset.limit=${VISION_IMAGES:-64}" --vlm-set measure.model_size=false --vlm-set measure.latency_images=0 \
        --vlm-set "variants=[$(as_list "${VISION_VARIANTS:-fp16 int8 int8_vit}")]")
      run vision-fast "${vision[@]}" --vlm-set inference.engine=fast
      run vision-cached "${vision[@]}" --vlm-set inference.engine=fast --vlm-set dataset.limit=32
      run vision-off "${vision[@]}" --vlm-set inference.engine=fast --vlm-set inference.compile_vision=false
      run vision-stock "${vision[@]}" --vlm-set inference.engine=stock
      table vision "$out" vision-stock vision-off vision-fast vision-cached ;;
    families)  # issue 21: other families' real-size architectures (random weights, processors built in code)
      for fam in ${FAMILIES:-smolvlm qwen2_vl gemma3}; do
        run_prefix=(timeout -s INT -k 20 "${FAMILY_TIMEOUT:-150}")
        run "family-$fam" "${gpu[@]}" --vlm-set model.config_dir=null --vlm-set model.processor=builtin \
          --vlm-set model.architecture="$fam" --vlm-set model_id="$(family_checkpoint "$fam")" \
          --vlm-set experiment_name="$fam-random-weights" --vlm-set inference.micro_batch_size=32 \
          --vlm-set measure.latency_images=3 --vlm-set "variants=[$(as_list "${FAMILY_VARIANTS:-fp16 int8}")]"
        run_prefix=()
      done
      table runs "$out" $(for fam in ${FAMILIES:-smolvlm qwen2_vl gemma3}; do echo "family-$fam"; done) ;;
    chunk1000)
      variants=$(as_list "${CHUNK1000_VARIANTS:-fp16 int8 int8_vit}")
      run chunk1000 "${gpu[@]}" --vlm-set dataset.coco_dir=null --vlm-set dataset.present_images_only=false \
        --vlm-set dataset.synthetic_images=1000 --vlm-set dataset.limit=1000 --vlm-set inference.batch_size=1000 \
        --vlm-set inference.micro_batch_size=auto --vlm-set measure.model_size=false --vlm-set measure.latency_images=0 \
        --vlm-set "variants=[$variants]"
      table runs "$out" chunk1000 ;;
    precompile=*)
      limit=300
      if [[ $part == *@* ]]; then limit=${part##*@}; part=${part%@*}; fi
      echo "=== $part: $(date -u +%FT%TZ), ${PRECOMPILE_JOBS:-5} at a time, ${limit} s each"
      for v in $(echo "${part#precompile=}" | tr ',' ' '); do
        while [ "$(jobs -rp | wc -l)" -ge "${PRECOMPILE_JOBS:-5}" ]; do wait -n; done
        run_prefix=(timeout -s INT -k 30 "$limit")
        run "precompile-$v" "${gpu[@]}" --vlm-set dataset.coco_dir=null --vlm-set dataset.present_images_only=false \
          --vlm-set dataset.synthetic_images=256 --vlm-set dataset.limit=64 --vlm-set inference.batch_size=64 \
          --vlm-set inference.micro_batch_size=64 --vlm-set measure.latency_images=1 --vlm-set measure.model_size=false \
          --vlm-set "variants=[$v]" --vlm-set "baseline=$v" > "$out/precompile-$v.out" 2>&1 &
        run_prefix=()
      done
      wait
      echo "=== $part: done at $(date -u +%FT%TZ)"
      grep -Ho '"warmup_s": [0-9.]*' "$out"/precompile-*/variant_*.json 2>/dev/null ;;
    methods*)
      limit=${METHODS_TIMEOUT:-570}
      if [[ $part == *@* ]]; then limit=${part##*@}; part=${part%@*}; fi  # methods=V1,V2@SECONDS
      case $part in
        methods-16) variants="bf16" ;;
        methods-bnb) variants="int8 int8_vit nf4 nf4_vit fp4 fp4_vit" ;;
        methods-fp8) variants="fp8 fp8_vit" ;;
        methods-w4) variants="w4a16 w4a16_vit" ;;
        methods-ao8) variants="w8a16 w8a16_vit w8a8 w8a8_vit" ;;
        methods) variants=${METHODS_VARIANTS:-bf16 int8 int8_vit nf4 nf4_vit fp4 fp4_vit fp8 fp8_vit w4a16 w4a16_vit w8a16 w8a16_vit w8a8 w8a8_vit} ;;
        methods=*) variants=$(echo "${part#methods=}" | tr ',' ' ' | sed 's/\bfp16\b//g') ;;  # fp16 is always first
        *) echo "unknown part $part"; exit 2 ;;
      esac
      run_prefix=(timeout -s INT -k 60 "$limit")
      results_name=methods run "$(echo "$part" | tr '=,' '--')" "${gpu[@]}" --vlm-set dataset.coco_dir=null --vlm-set dataset.present_images_only=false \
        --vlm-set dataset.synthetic_images=256 --vlm-set dataset.limit=256 --vlm-set inference.batch_size=256 \
        --vlm-set inference.micro_batch_size=64 --vlm-set "measure.latency_images=${METHODS_LATENCY_IMAGES:-3}" \
        --vlm-set "variants=[$(as_list "$(echo fp16 $variants)")]"
      run_prefix=()
      table methods "$out" methods ;;
    *) echo "unknown part $part (mb32, mb8, mb1, smoke, compare, repeat, xdist1, vision, chunk1000, methods-16, methods-bnb, methods-fp8, methods-w4, methods-ao8, methods, methods=V1,V2, precompile=V1,V2, families)"; exit 2 ;;
  esac
done
if [ ${#tables[@]} -gt 0 ]; then printf '%s\n\n' "${tables[@]}" > "$out/table.md"; else : > "$out/table.md"; fi
# one archive, so that a transfer limited in file count brings everything back
tar -C "$out" -czf "$out.tar.gz" . && mv "$out.tar.gz" "$out/results.tar.gz"
echo; echo "=== short table"; cat "$out/table.md"
