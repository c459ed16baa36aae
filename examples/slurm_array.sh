#!/usr/bin/env bash
# The seed experiment on a Slurm cluster: an array of shards, one GPU each, writing into one results
# folder on a shared filesystem, then one report job once every shard has ended.
#
#   bash examples/slurm_array.sh            # on the login node, from the project root
#
# Run like that, the script submits itself as the array (4 shards) and `vlmbench-report` as a job
# that starts after the array (afterany: a failed or pre-empted shard's finished chunks still
# count; resubmit the array to complete what is missing, finished chunks are skipped). Inside the
# array, `--vlm-shard auto` reads SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_COUNT.
# Set VLMBENCH_RESULTS (a folder every node sees) and the caches (HF_HOME, VLMBENCH_CACHE) first.
#SBATCH --job-name=vlmbench-shard
#SBATCH --array=0-3
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=04:00:00
#SBATCH --output=vlmbench-%A_%a.out
set -euo pipefail
results=${VLMBENCH_RESULTS:-$PWD/results/seed-sharded}
export VLMBENCH_RESULTS=$results

if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
  array=$(sbatch --parsable --export=ALL "$0")
  sbatch --dependency="afterany:${array%%;*}" --job-name=vlmbench-report --time=00:30:00 \
    --output=vlmbench-report-%j.out --export=ALL --wrap "vlmbench-report '$results'"
  echo "submitted shards as job $array; the report runs after them into $results"
  exit 0
fi

# one shard; several GPUs per task also work: add --gres=gpu:N above and `-n N` here
pytest benchmarks --vlm-shard auto --vlm-results "$results" -p no:cacheprovider -rs
