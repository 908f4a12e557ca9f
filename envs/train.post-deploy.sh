#!/usr/bin/env bash
# Snakemake runs this in the train env right after creating it (--sdm conda). flash-attn compiles
# against the env's torch, so pip cannot install it from the env file (see envs/train.yaml).
set -euo pipefail
if command -v nvcc >/dev/null; then
    pip install packaging psutil ninja setuptools wheel
    MAX_JOBS="${MAX_JOBS:-8}" pip install flash-attn==2.8.3.post2 --no-build-isolation
else
    echo "envs/train.post-deploy.sh: no nvcc here: flash-attn not built; the policy loads with sdpa (one warning)" >&2
fi
