#!/usr/bin/env bash
# Submits one independent single-node Slurm job per config (family): each job runs one
# prunephase process on one node with all of that node's GPUs on the mesh (no
# jax.distributed, no communication between jobs). The simple way to run the paper's
# families (configs/cifar10_epochs.py, cifar10_batch_size.py, cifar10_sam_rho.py, ...) side by
# side. For ONE sweep spread over several nodes use launch/slurm.sbatch instead.
#
# Usage (from the repository root, on a login node):
#   launch/slurm_families.sh [--dry-run] WORKDIR_ROOT CONFIG[:ARG] [CONFIG[:ARG]...] \
#       [-- EXTRA_PRUNEPHASE_FLAGS...]
#
# Example:
#   PARTITION=gpu ACCOUNT=myproj GPUS_PER_NODE=4 TIME=48:00:00 launch/slurm_families.sh \
#     /shared/runs configs/cifar10_epochs.py configs/cifar10_batch_size.py \
#     configs/cifar10_sam_rho.py configs/cifar10_epochs.py:cifar100
#
# Arguments:
#   --dry-run       (first argument only) print the sbatch commands instead of submitting.
#   -h, --help      print this help.
#   WORKDIR_ROOT    each family runs in WORKDIR_ROOT/NAME, where NAME is the config file's name
#                   without .py, followed by its argument with ':' and ',' turned into '-'
#                   (configs/cifar10_epochs.py:cifar100,quick -> cifar10_epochs-cifar100-quick).
#                   Must be on storage the compute nodes see (a node-local path does not work).
#                   Two configs giving the same NAME are refused.
#   CONFIG[:ARG]    config files relative to the current directory (the jobs start here).
#   -- EXTRA...     passed to every prunephase unchanged, e.g. -- --config.mesh.data=2.
#
# Environment variables (defaults in brackets), turned into sbatch options:
#   PARTITION       [empty = cluster default]  --partition=PARTITION
#   ACCOUNT         [empty = cluster default]  --account=ACCOUNT
#   GPUS_PER_NODE   [1]          --gpus-per-node=GPUS_PER_NODE (0 = no GPU option: CPU jobs)
#   CPUS_PER_TASK   [empty = cluster default]  --cpus-per-task=CPUS_PER_TASK
#   TIME            [24:00:00]   --time=TIME
#   JOB_PREFIX      [prunephase] job name JOB_PREFIX-NAME
#   LOG_DIR         [WORKDIR_ROOT/slurm-logs]  --output=LOG_DIR/JOBNAME-JOBID.out (created here)
#   PRUNEPHASE      [./.venv/bin/prunephase as an absolute path if it exists, else prunephase
#                   on the job's PATH] the executable each job runs.
# Every job also gets --nodes=1 --ntasks=1. Any other sbatch setting can be given through
# sbatch's own environment variables (SBATCH_QOS, SBATCH_MEM_PER_NODE, ...).
#
# Each job runs:  exec PRUNEPHASE --config=CONFIG --workdir=WORKDIR_ROOT/NAME EXTRA...
# Resubmitting the same command resumes every family from its workdir.
set -euo pipefail

PROG=launch/slurm_families.sh
usage() {
  echo "usage: $PROG [--dry-run] WORKDIR_ROOT CONFIG[:ARG] [CONFIG[:ARG]...]" \
       "[-- EXTRA_PRUNEPHASE_FLAGS...]" >&2
}
die() {
  echo "$PROG: error: $*" >&2
  usage
  exit 2
}

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then
  DRY_RUN=1
  shift
fi
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 0
fi
[[ $# -ge 2 ]] || die "need WORKDIR_ROOT and at least one CONFIG"
ROOT=$1
shift
[[ "$ROOT" != -* ]] || die "WORKDIR_ROOT comes first"
ROOT=${ROOT%/}
CONFIGS=()
EXTRA=()
while [[ $# -gt 0 ]]; do
  if [[ "$1" == "--" ]]; then
    shift
    EXTRA=("$@")
    break
  fi
  [[ "$1" != -* ]] || die "unknown argument $1 (prunephase flags go after --)"
  CONFIGS+=("$1")
  shift
done
[[ ${#CONFIGS[@]} -ge 1 ]] || die "no CONFIG given"

PARTITION=${PARTITION:-}
ACCOUNT=${ACCOUNT:-}
GPUS_PER_NODE=${GPUS_PER_NODE:-1}
CPUS_PER_TASK=${CPUS_PER_TASK:-}
TIME=${TIME:-24:00:00}
JOB_PREFIX=${JOB_PREFIX:-prunephase}
LOG_DIR=${LOG_DIR:-$ROOT/slurm-logs}
[[ "$GPUS_PER_NODE" =~ ^[0-9]+$ ]] || die "GPUS_PER_NODE must be a number, got '$GPUS_PER_NODE'"
if [[ -n "${PRUNEPHASE:-}" ]]; then
  BIN=$PRUNEPHASE
elif [[ -x .venv/bin/prunephase ]]; then
  BIN=$PWD/.venv/bin/prunephase
else
  BIN=prunephase
fi

NAMES=()
for config in "${CONFIGS[@]}"; do
  file=${config%%:*}
  [[ -f "$file" ]] || die "config file $file not found"
  name=$(basename "$file" .py)
  if [[ "$config" == *:* && -n "${config#*:}" ]]; then
    arg=${config#*:}
    arg=${arg//[:,]/-}
    name+="-$arg"
  fi
  for seen in "${NAMES[@]+"${NAMES[@]}"}"; do
    [[ "$seen" != "$name" ]] || die "two configs give the workdir name $name"
  done
  NAMES+=("$name")
done

if (( DRY_RUN )); then
  quote mkdir -p "$LOG_DIR"
else
  command -v sbatch >/dev/null 2>&1 || { echo "$PROG: error: sbatch not found" >&2; exit 1; }
  mkdir -p "$LOG_DIR"
fi
for i in "${!CONFIGS[@]}"; do
  config=${CONFIGS[$i]}
  name=${NAMES[$i]}
  job="$JOB_PREFIX-$name"
  options=("--job-name=$job" --nodes=1 --ntasks=1 "--time=$TIME" "--output=$LOG_DIR/%x-%j.out")
  if (( GPUS_PER_NODE > 0 )); then
    options+=("--gpus-per-node=$GPUS_PER_NODE")
  fi
  [[ -z "$CPUS_PER_TASK" ]] || options+=("--cpus-per-task=$CPUS_PER_TASK")
  [[ -z "$PARTITION" ]] || options+=("--partition=$PARTITION")
  [[ -z "$ACCOUNT" ]] || options+=("--account=$ACCOUNT")
  wrap=$(quote exec "$BIN" "--config=$config" "--workdir=$ROOT/$name" "${EXTRA[@]+"${EXTRA[@]}"}")
  if (( DRY_RUN )); then
    quote sbatch "${options[@]}" --wrap "$wrap"
  else
    echo "$PROG: $name -> $ROOT/$name" >&2
    sbatch "${options[@]}" --wrap "$wrap"
  fi
done
