#!/usr/bin/env bash
# Fetch, where PyPI is reachable, the wheels the GPU check needs on a machine that has torch and
# transformers but no network: DeepSpeed and its pure-Python needs, PyAV, pydantic (+ its compiled core).
# They land in speed/gpu/wheels/ (git-ignored: never committed) and travel with the working tree;
# run.sh installs them with `pip install --no-index --no-deps`.
#
#   bash speed/gpu/fetch_wheels.sh            # PYTHON_VERSION=3.12 by default (the lent H200's python3)
#
# Versions are the project's pins (requirements.txt) where it has one, else the ones its venv resolved.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DEST=${WHEELS:-$HERE/wheels}
PYVER=${PYTHON_VERSION:-3.12}
PIP=${PIP:-python3 -m pip}
mkdir -p "$DEST"

# Pure-Python: any platform. DeepSpeed is published as an sdist only; its ops compile just in time, so
# the wheel built here without torch holds no compiled code.
$PIP wheel --quiet --no-deps --wheel-dir "$DEST" deepspeed==0.19.8
$PIP download --quiet --no-deps --only-binary=:all: --dest "$DEST" \
  hjson==3.1.0 pydantic==2.14.4 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0

# Compiled: CPython $PYVER on manylinux x86_64.
$PIP download --quiet --no-deps --only-binary=:all: --dest "$DEST" \
  --python-version "$PYVER" --implementation cp --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  av==18.1.0 pydantic-core==2.50.5

ls -l "$DEST"
du -sh "$DEST"
