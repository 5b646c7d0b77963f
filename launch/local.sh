#!/usr/bin/env bash
# Runs a prunephase sweep on this machine (one host; all of its GPUs/TPU chips, or the CPU).
#
# Usage:
#   launch/local.sh [--dry-run] CONFIG[:ARG] WORKDIR [EXTRA_PRUNEPHASE_FLAGS...]
#
# Examples:
#   launch/local.sh configs/default.py runs/default
#   launch/local.sh configs/default.py:quick /tmp/quick --config.mesh.data=2
#   launch/local.sh --dry-run configs/cifar10_epochs.py runs/epochs --stages=train,prune
#
# Arguments:
#   --dry-run      (first argument only) print the command(s) instead of running them.
#   -h, --help     print this help.
#   CONFIG[:ARG]   config file, optionally with its argument (configs/default.py:quick); the file
#                  must exist (paths are relative to the current directory, as for prunephase).
#   WORKDIR        the run's directory (created if absent; re-running the command resumes).
#   EXTRA...       passed to prunephase unchanged, e.g. --config.mesh.data=2 --stages=train.
#
# Which prunephase runs (first match wins):
#   1. $PRUNEPHASE, if set (path of the executable);
#   2. .venv/bin/prunephase of this repository (the README's set-up command creates it);
#   3. prunephase on PATH;
#   4. otherwise .venv is created first: `python3 -m venv .venv && .venv/bin/pip install -e .`
#      in the repository root ($PYTHON instead of python3 if set). This needs network access.
#
# On several devices the population is sharded over config.mesh (see docs/scaling.md); nothing
# here sets mesh flags: pass them as EXTRA flags.
set -euo pipefail

usage() {
  echo "usage: launch/local.sh [--dry-run] CONFIG[:ARG] WORKDIR [EXTRA_PRUNEPHASE_FLAGS...]" >&2
}

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then
  DRY_RUN=1
  shift
fi
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  usage
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 0
fi
if [[ $# -lt 2 ]]; then
  usage
  exit 2
fi
CONFIG=$1
WORKDIR=$2
shift 2
if [[ "$CONFIG" == -* || "$WORKDIR" == -* ]]; then
  echo "launch/local.sh: error: CONFIG and WORKDIR come before any prunephase flag" >&2
  usage
  exit 2
fi
if [[ ! -f "${CONFIG%%:*}" ]]; then
  echo "launch/local.sh: error: config file ${CONFIG%%:*} not found" >&2
  usage
  exit 2
fi

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SETUP=()
if [[ -n "${PRUNEPHASE:-}" ]]; then
  BIN=$PRUNEPHASE
elif [[ -x "$REPO_ROOT/.venv/bin/prunephase" ]]; then
  BIN=$REPO_ROOT/.venv/bin/prunephase
elif command -v prunephase >/dev/null 2>&1; then
  BIN=$(command -v prunephase)
else
  BIN=$REPO_ROOT/.venv/bin/prunephase
  SETUP=("${PYTHON:-python3}" -m venv "$REPO_ROOT/.venv")
fi

COMMAND=("$BIN" "--config=$CONFIG" "--workdir=$WORKDIR" "$@")
if (( DRY_RUN )); then
  if (( ${#SETUP[@]} )); then
    quote "${SETUP[@]}"
    quote "$REPO_ROOT/.venv/bin/pip" install -e "$REPO_ROOT"
  fi
  quote "${COMMAND[@]}"
  exit 0
fi
if (( ${#SETUP[@]} )); then
  echo "launch/local.sh: no prunephase found; creating $REPO_ROOT/.venv (needs network)" >&2
  "${SETUP[@]}"
  "$REPO_ROOT/.venv/bin/pip" install -e "$REPO_ROOT"
fi
exec "${COMMAND[@]}"
