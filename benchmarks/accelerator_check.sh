#!/usr/bin/env bash
# The accelerator check in one command, for a GPU machine without a network whose Python has
# jax (with its CUDA plugin), flax, optax, orbax-checkpoint, chex, absl-py, numpy and matplotlib.
#
#   benchmarks/fetch_wheels.sh            # first, here, with a network: fills .wheels/
#   benchmarks/accelerator_check.sh       # there, from the repository root (about 4 minutes)
#   benchmarks/accelerator_check.sh --cpu-smoke    # the reduced run (also chosen on a CPU)
#
# 1. Installs, from the wheels in $WHEELS (.wheels/) and without dependencies or an index, each
#    package the check needs that the Python lacks (ml-collections, PyYAML), and mnist1d,
#    tensorflow-datasets and their dependencies where their wheels are there (the check itself
#    does not import them: its data are synthetic arrays), into $ACCEL_DIR/site (.accel/site).
# 2. Installs prunephase itself there with --no-deps (falling back to the source tree, said so,
#    where no build backend is available offline).
# 3. Runs benchmarks/accelerator_check.py with the remaining arguments; its last five lines are
#    machine-readable (named in its docstring: `gpu_matmul_fraction` is the fraction of a matmul
#    measured in the run, `gpu_mfu` of the device's published peak, `n/a` where none is known).
#    Compiled programs are cached in $ACCEL_DIR/jax_cache, so a rerun is faster.
# Environment: PYTHON (default python3), WHEELS (.wheels), ACCEL_DIR (.accel).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.wheels}
ACCEL_DIR=${ACCEL_DIR:-.accel}
SITE="$ACCEL_DIR/site"
mkdir -p "$SITE" "$ACCEL_DIR/jax_cache"
SITE=$(cd "$SITE" && pwd)
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND=Agg
start=$SECONDS

has_module() { "$PYTHON" -c "import $1" >/dev/null 2>&1; }
has_wheel() { ls "$WHEELS" 2>/dev/null | grep -iq "^${1//-/_}-"; }
pip_install() {
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-index --no-deps \
    --find-links "$WHEELS" --target "$SITE" --upgrade "$@"
}

# module:distribution pairs. Required by the check:
REQUIRED="yaml:PyYAML ml_collections:ml-collections"
# Optional (mnist1d for the MNIST-1D configs, tfds for real image datasets and their tests):
OPTIONAL="certifi:certifi charset_normalizer:charset-normalizer idna:idna urllib3:urllib3
requests:requests mnist1d:mnist1d six:six toml:toml promise:promise wrapt:wrapt tqdm:tqdm
immutabledict:immutabledict tree:dm-tree importlib_resources:importlib-resources
tensorflow_metadata:tensorflow-metadata array_record:array-record
tensorflow_datasets:tensorflow-datasets"

install=() absent=()
for pair in $REQUIRED; do
  if ! has_module "${pair%%:*}"; then
    has_wheel "${pair#*:}" || { echo "accelerator_check: error: ${pair#*:} is not installed" \
      "and has no wheel in $WHEELS; run benchmarks/fetch_wheels.sh where there is a network" >&2
      exit 2; }
    install+=("${pair#*:}")
  fi
done
for pair in $OPTIONAL; do
  if ! has_module "${pair%%:*}"; then
    if has_wheel "${pair#*:}"; then install+=("${pair#*:}"); else absent+=("${pair#*:}"); fi
  fi
done
if [ ${#install[@]} -gt 0 ]; then
  echo "installing from $WHEELS into $SITE: ${install[*]}"
  pip_install "${install[@]}"
fi
[ ${#absent[@]} -eq 0 ] || echo "not installed (no wheel; not needed by the check): ${absent[*]}"
if log=$(pip_install . 2>&1); then
  echo "installed prunephase (--no-deps) into $SITE"
else
  echo "prunephase not installed ($(echo "$log" | grep -m1 -i error || echo "pip failed"));" \
    "running it from the source tree"
  rm -rf "$SITE"/prunephase "$SITE"/prunephase-*.dist-info
  export PYTHONPATH="$PWD:$PYTHONPATH"
fi
echo "set-up: $((SECONDS - start)) s"
exec "$PYTHON" benchmarks/accelerator_check.py --cache_dir "$ACCEL_DIR/jax_cache" "$@"
