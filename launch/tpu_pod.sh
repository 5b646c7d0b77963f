#!/usr/bin/env bash
# Sets up prunephase on every worker of a Cloud TPU VM pod slice and starts one sweep on all of
# them (JAX's multi-controller model: the same program on every host, joined by
# jax.distributed.initialize(), which prunephase calls with --config.distributed=True and which
# finds the other TPU hosts by itself). Run it from your own machine, where gcloud is set up.
#
# STATUS: prunephase's multi-host path is verified with two local CPU processes
# (tests/test_distributed.py), not yet on a real pod (see docs/scaling.md). Try :quick first.
#
# Usage:
#   launch/tpu_pod.sh --name NAME --zone ZONE [--project PROJECT] --repo GIT_URL_OR_PATH
#       [--ref COMMIT_OR_TAG] [--remote-dir DIR] --config CONFIG[:ARG] --workdir /SHARED/DIR
#       [--skip-setup] [--background] [--dry-run] [-- EXTRA_PRUNEPHASE_FLAGS...]
#
# Example:
#   launch/tpu_pod.sh --name my-v4-32 --zone us-central2-b \
#     --repo https://github.com/ORG/prunephase.git --config configs/cifar10_epochs.py \
#     --workdir /mnt/runs/cifar10_epochs --background
#
# Flags (each also accepted as --flag=value):
#   --name NAME        the TPU VM (pod slice) name, as in `gcloud compute tpus tpu-vm list`.
#   --zone ZONE        its zone.
#   --project PROJECT  optional: the Google Cloud project (default: gcloud's configured project).
#   --repo SRC         where the code comes from; required unless --skip-setup:
#                        a git URL (https://, ssh://, git://, git@host:path, or ending in .git):
#                          every worker runs `git clone SRC DIR`, or in an existing clone
#                          `git pull --ff-only` (`git fetch` and a checkout when --ref is given);
#                        a local directory: it is packed with tar (without .git, .venv, runs/,
#                          workdirs/, __pycache__, *.egg-info) into a temporary file, copied to
#                          every worker with `gcloud compute tpus tpu-vm scp ... --worker=all`
#                          and unpacked into DIR (files already there are overwritten).
#   --ref REF          optional, git URL only: check out this commit or tag on every worker
#                      (recommended: without it each worker takes the branch head at clone time).
#   --remote-dir DIR   the checkout on each worker, relative to the login home (default prunephase).
#   --config CONFIG    config file relative to the repository root, optionally with ':ARG'.
#   --workdir PATH     ABSOLUTE path of the run directory on storage that EVERY worker sees at the
#                      same path: an NFS / Filestore mount, or a gs:// bucket mounted with gcsfuse
#                      (e.g. `gcsfuse --implicit-dirs BUCKET /mnt/runs` on each worker). Why:
#                      orbax writes one checkpoint from all hosts together, the workdir lock and
#                      config record must be seen by all hosts, and a restart of all hosts must
#                      find the same checkpoints to resume. A worker-local disk breaks all three;
#                      a gs:// URL itself is refused (prunephase uses ordinary file paths).
#                      gcsfuse caveat: it is not POSIX (no file locks shared between hosts,
#                      non-atomic directory renames on buckets without hierarchical namespace),
#                      so NFS/Filestore is the safer choice.
#   --skip-setup       only start the sweep (the code and .venv are already on every worker).
#   --background       start the sweep with nohup on each worker and return: output goes to
#                      DIR/prunephase.log and the process id to DIR/prunephase.pid there.
#                      Without it the sweep runs in the foreground of the ssh session (closing
#                      it stops the sweep).
#   --dry-run          print every command (local and gcloud) instead of running it.
#   -h, --help         print this help.
#   -- EXTRA...        everything after `--` is passed to prunephase unchanged,
#                      e.g. -- --config.mesh.data=2 --stages=train,prune.
#
# Environment variables (defaults in brackets):
#   PYTHON             [python3] the Python (>= 3.11) used for the venv on the workers. Ubuntu
#                      22.04 TPU images ship 3.10: install e.g. python3.11 and python3.11-venv
#                      there and set PYTHON=python3.11; the setup step stops if it is older.
#   JAX_PIP_SPEC       ['jax[tpu]'] the JAX requirement installed next to prunephase.
#   LIBTPU_FIND_LINKS  [https://storage.googleapis.com/jax-releases/libtpu_releases.html] passed
#                      to pip as -f (where libtpu wheels are found); set it empty to omit -f.
#   TMPDIR             [/tmp] where the tar file of a local --repo is made (removed afterwards).
#
# The commands, in order (--dry-run prints them with every value filled in):
#   1. code:  git URL -> gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all
#                          --command "if [ -d DIR/.git ]; then git -C DIR pull --ff-only;
#                                     else git clone SRC DIR; fi"
#             path    -> tar ... ; gcloud compute tpus tpu-vm scp TAR NAME:prunephase-src.tar.gz
#                          --zone ZONE --worker=all ; ssh ... --command "tar -xzf ... -C DIR"
#   2. setup: ssh ... --worker=all --command "cd DIR && $PYTHON -m venv .venv &&
#               .venv/bin/pip install -e . 'jax[tpu]' -f $LIBTPU_FIND_LINKS"
#   3. sweep: ssh ... --worker=all --command "cd DIR && .venv/bin/prunephase --config=CONFIG
#               --workdir=WORKDIR --config.distributed=True EXTRA..."
# Stop a --background sweep on every worker:
#   gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all \
#     --command 'kill $(cat prunephase/prunephase.pid)'
# Re-running with --skip-setup and the same --config/--workdir resumes from WORKDIR's checkpoints.
set -euo pipefail

PROG=launch/tpu_pod.sh
usage() {
  cat >&2 <<EOF
usage: $PROG --name NAME --zone ZONE [--project PROJECT] --repo GIT_URL_OR_PATH [--ref REF]
         [--remote-dir DIR] --config CONFIG[:ARG] --workdir /SHARED/DIR [--skip-setup]
         [--background] [--dry-run] [-- EXTRA_PRUNEPHASE_FLAGS...]
EOF
}
die() {
  echo "$PROG: error: $*" >&2
  usage
  exit 2
}

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NAME='' ZONE='' PROJECT='' REPO='' REF='' REMOTE_DIR=prunephase CONFIG='' WORKDIR=''
SKIP_SETUP=0 BACKGROUND=0 DRY_RUN=0
EXTRA=()
while [[ $# -gt 0 ]]; do
  flag=$1
  case "$flag" in
    --name|--zone|--project|--repo|--ref|--remote-dir|--config|--workdir)
      [[ $# -ge 2 ]] || die "$flag needs a value"
      value=$2
      shift 2
      ;;
    --name=*|--zone=*|--project=*|--repo=*|--ref=*|--remote-dir=*|--config=*|--workdir=*)
      value=${flag#*=}
      flag=${flag%%=*}
      shift
      ;;
    --skip-setup) SKIP_SETUP=1; shift; continue ;;
    --background) BACKGROUND=1; shift; continue ;;
    --dry-run) DRY_RUN=1; shift; continue ;;
    -h|--help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
      exit 0
      ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown argument $flag" ;;
  esac
  case "$flag" in
    --name) NAME=$value ;;
    --zone) ZONE=$value ;;
    --project) PROJECT=$value ;;
    --repo) REPO=$value ;;
    --ref) REF=$value ;;
    --remote-dir) REMOTE_DIR=$value ;;
    --config) CONFIG=$value ;;
    --workdir) WORKDIR=$value ;;
  esac
done

[[ -n "$NAME" ]] || die "--name is required"
[[ -n "$ZONE" ]] || die "--zone is required"
[[ -n "$CONFIG" ]] || die "--config is required"
[[ -n "$WORKDIR" ]] || die "--workdir is required"
[[ -n "$REMOTE_DIR" ]] || die "--remote-dir must not be empty"
if [[ "$WORKDIR" == gs://* ]]; then
  die "--workdir $WORKDIR: mount the bucket with gcsfuse on every worker and pass the mount path"
fi
[[ "$WORKDIR" == /* ]] || die "--workdir must be an absolute path on storage shared by all workers"
if (( ! SKIP_SETUP )); then
  [[ -n "$REPO" ]] || die "--repo is required (or --skip-setup when the workers are set up)"
fi

IS_GIT=0
if [[ "$REPO" =~ ^(https?|ssh|git|file):// || "$REPO" =~ ^[^/]+@[^/]+: || "$REPO" == *.git ]]; then
  IS_GIT=1
fi
if (( ! SKIP_SETUP && ! IS_GIT )); then
  [[ -d "$REPO" ]] || die "--repo $REPO is neither a git URL nor a directory"
  [[ -f "$REPO/pyproject.toml" ]] || die "--repo $REPO has no pyproject.toml"
  REPO=$(cd "$REPO" && pwd)
fi
[[ -z "$REF" || "$IS_GIT" == 1 || "$SKIP_SETUP" == 1 ]] || die "--ref needs a git URL as --repo"

PYTHON=${PYTHON:-python3}
JAX_PIP_SPEC=${JAX_PIP_SPEC:-jax[tpu]}
LIBTPU_FIND_LINKS=${LIBTPU_FIND_LINKS-https://storage.googleapis.com/jax-releases/libtpu_releases.html}

if (( ! DRY_RUN )) && ! command -v gcloud >/dev/null 2>&1; then
  echo "$PROG: error: gcloud not found (install the Google Cloud CLI, or use --dry-run)" >&2
  exit 1
fi

GCLOUD_FLAGS=(--zone "$ZONE" --worker=all)
if [[ -n "$PROJECT" ]]; then
  GCLOUD_FLAGS+=(--project "$PROJECT")
fi

run() {
  if (( DRY_RUN )); then
    quote "$@"
  else
    "$@"
  fi
}
note() {
  if (( DRY_RUN )); then
    echo "# $*"
  else
    echo "$PROG: $*" >&2
  fi
}
on_workers() {  # on_workers COMMAND_STRING: runs it on every worker.
  run gcloud compute tpus tpu-vm ssh "$NAME" "${GCLOUD_FLAGS[@]}" --command "$1"
}

DIR_Q=$(quote "$REMOTE_DIR")
if (( ! SKIP_SETUP )); then
  if (( IS_GIT )); then
    note "1/3 code: clone (or update) $REPO into ~/$REMOTE_DIR on every worker"
    REPO_Q=$(quote "$REPO")
    if [[ -n "$REF" ]]; then
      code="if [ -d $DIR_Q/.git ]; then git -C $DIR_Q fetch --quiet --tags origin"
      code+="; else git clone --quiet $REPO_Q $DIR_Q; fi"
      code+=" && git -C $DIR_Q checkout --quiet --detach $(quote "$REF")"
    else
      code="if [ -d $DIR_Q/.git ]; then git -C $DIR_Q pull --ff-only --quiet"
      code+="; else git clone --quiet $REPO_Q $DIR_Q; fi"
    fi
    on_workers "$code"
  else
    note "1/3 code: copy $REPO to ~/$REMOTE_DIR on every worker"
    if (( DRY_RUN )); then
      TARBALL=${TMPDIR:-/tmp}/prunephase-src.XXXXXX.tar.gz
    else
      TARBALL=$(mktemp "${TMPDIR:-/tmp}/prunephase-src.XXXXXX.tar.gz")
      trap 'rm -f "$TARBALL"' EXIT
    fi
    run tar -C "$REPO" --exclude=.git --exclude=.venv --exclude=./runs --exclude=./workdirs \
      --exclude=__pycache__ --exclude=.pytest_cache --exclude='*.egg-info' -czf "$TARBALL" .
    run gcloud compute tpus tpu-vm scp "$TARBALL" "$NAME:prunephase-src.tar.gz" "${GCLOUD_FLAGS[@]}"
    on_workers "mkdir -p $DIR_Q && tar -xzf prunephase-src.tar.gz -C $DIR_Q && rm prunephase-src.tar.gz"
  fi

  note "2/3 setup: a venv with prunephase and $JAX_PIP_SPEC on every worker"
  PY_Q=$(quote "$PYTHON")
  setup="cd $DIR_Q && { $PY_Q -c 'import sys; sys.exit(sys.version_info < (3, 11))'"
  setup+=" || { echo \"prunephase needs Python >= 3.11; $PYTHON is older: set PYTHON\" >&2; exit 1; }; }"
  setup+=" && $PY_Q -m venv .venv && .venv/bin/pip install --quiet --upgrade pip"
  pip_line=(.venv/bin/pip install -e . "$JAX_PIP_SPEC")
  if [[ -n "$LIBTPU_FIND_LINKS" ]]; then
    pip_line+=(-f "$LIBTPU_FIND_LINKS")
  fi
  setup+=" && $(quote "${pip_line[@]}")"
  on_workers "$setup"
fi

note "3/3 sweep: prunephase on every worker, joined by jax.distributed.initialize()"
sweep=$(quote .venv/bin/prunephase "--config=$CONFIG" "--workdir=$WORKDIR" \
  --config.distributed=True "${EXTRA[@]+"${EXTRA[@]}"}")
if (( BACKGROUND )); then
  launch="cd $DIR_Q && { nohup $sweep > prunephase.log 2>&1 < /dev/null & echo \$! > prunephase.pid; }"
else
  launch="cd $DIR_Q && $sweep"
fi
on_workers "$launch"
if (( BACKGROUND )); then
  note "started; log: ~/$REMOTE_DIR/prunephase.log on each worker (outputs in $WORKDIR)"
fi
