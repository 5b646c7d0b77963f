#!/usr/bin/env bash
# Fills .wheels/ (git-ignored) with the wheels benchmarks/accelerator_check.sh installs on a GPU
# machine without a network. Run here, where pip can reach an index, then copy the checkout
# with .wheels/ there:
#
#   benchmarks/fetch_wheels.sh            # PYTHON_VERSION=3.11 for a Python 3.11 machine
#
# Pure-Python wheels fit any Python 3; PyYAML, wrapt, dm-tree and array-record are built per
# Python version, so PYTHON_VERSION (default 3.12) must match the GPU machine's Python.
# What is fetched, and why (each `--no-deps`; accelerator_check.sh installs only what is missing):
#   ml-collections, PyYAML            the configs (the check needs these)
#   setuptools                        build backend, to install prunephase offline
#   mnist1d, requests, urllib3, idna, certifi, charset-normalizer
#                                     MNIST-1D (scipy, numpy, matplotlib come with jax's stack)
#   tensorflow-datasets, array-record, toml, promise, six, wrapt, tqdm, immutabledict, dm-tree,
#   importlib-resources, tensorflow-metadata
#                                     what `import tensorflow_datasets`, prunephase/tfds_data.py's
#                                     read path and tfds' mock data import beyond the packages
#                                     orbax-checkpoint already brings (etils, protobuf, psutil,
#                                     fsspec, zipp), found by trying in a fresh environment
# Versions are the ones this project's environment was tested with.
set -euo pipefail
cd "$(dirname "$0")/.."
PY_VERSION=${PYTHON_VERSION:-3.12}
PIP=${PIP:-python3 -m pip}
WHEELS=${WHEELS:-.wheels}
mkdir -p "$WHEELS"
download() {
  $PIP download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "$PY_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$WHEELS" "$@"
}
# Needed by the check: failures stop here.
download ml-collections==1.1.0 PyYAML==6.0.4 'setuptools>=77'
# Optional: each on its own, a failure is reported and the rest go on.
failed=()
for spec in mnist1d==0.0.2.post1 requests==2.34.2 urllib3 idna certifi charset-normalizer \
    tensorflow-datasets==4.9.10 array-record==0.8.6 toml==0.10.2 six wrapt==2.5.2 \
    tqdm==4.70.1 immutabledict==4.3.1 dm-tree==0.1.10 importlib-resources==7.1.0 \
    tensorflow-metadata==1.21.0; do
  download "$spec" || failed+=("$spec")
done
# promise publishes only a source archive: build its pure-Python wheel here.
$PIP wheel -q --disable-pip-version-check --no-deps -w "$WHEELS" promise==2.3 \
  || failed+=(promise==2.3)
ls "$WHEELS"
du -sh "$WHEELS"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fetch_wheels: not fetched (optional; tensorflow-datasets or mnist1d will not import" \
    "on the GPU machine without them): ${failed[*]}" >&2
fi
