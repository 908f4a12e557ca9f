#!/usr/bin/env bash
# The GPU check: a random Qwen2.5-VL at 3B shapes (no download) through the project's own code on one GPU,
# in about 5 minutes (BUDGET, default 480 s). Steps, each its own process under its own time limit, so
# one failure (or a hang) does not stop the rest:
#   preflight  versions, the GPU, the carried packages; the model's size and the video prompt's tokens
#   fwd_bwd    bf16 forward+backward of policy.completion_logprobs with the video, checkpointing off/on
#   sampler    greedy policy.sample (CUDA graphs and eager) and batch_generate.generate == HF generate
#              (fp32, small shapes); bf16 agreement at the full shape; decode ms/step and tok/s of groups of
#              8, 32 and 64 (eager and CUDA graphs), each against the weight-read floor
#   grpo       two GRPO rounds (train_grpo, forwards packed as the 7B config packs them) on DeepSpeed ZeRO-2,
#              then ZeRO-3, world 1, as many text layers as ZeRO-2 fits (TRAIN_LAYERS): the second round's
#              update MFU and each stage's peak memory next to the memory plan's prediction
#   dpo        two DPO steps (train_dpo), likewise
#   engines    one step of 3 uneven micro-batches on torch AdamW, ZeRO-2 and ZeRO-3 from the same weights
#              (small shape, bf16; fp32 on cpu): the gradient norms agree (ratio to torch's), as do the weights
# Results: $OUT/summary.json (every step's numbers and errors), $OUT/summary.txt (the lines printed at the
# end), $OUT/steps.log (every step's output).
#
#   bash speed/gpu/run.sh                                   # SHAPE=3b DEVICE=cuda OUT=speed/gpu/out
#   SHAPE=tiny DEVICE=cpu OUT=/tmp/gpu-check bash speed/gpu/run.sh    # the CPU dry run (fp32, gloo; ~2 min)
#
# Knobs (environment): SHAPE (3b | 7b | tiny), DEVICE (cuda | cpu), OUT, BUDGET (s; a step is skipped when
# less than half its limit is left), PYTHON (default: the repo's .venv, else python3), TRAIN_LAYERS, FWD_N,
# FWD_T, LOGPROB_CHUNK, SAMPLER_TOKENS, DECODE_G (comma list), DECODE_TOKENS, GRPO_G, GRPO_TOKENS, DPO_TOKENS,
# ENGINES_TOKENS, PEAK_TFLOPS, MEMORY_BANDWIDTH_TBS
# (see steps.py).
# Without deepspeed or av importable, the wheels in WHEELS (default speed/gpu/wheels/, made by
# fetch_wheels.sh) are installed with pip --no-index --no-deps into a scratch folder put on PYTHONPATH.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export SHAPE=${SHAPE:-3b} DEVICE=${DEVICE:-cuda}
OUT=${OUT:-$HERE/out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
BUDGET=${BUDGET:-480}
WHEELS=${WHEELS:-$HERE/wheels}
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  [ -x "$ROOT/.venv/bin/python" ] && PYTHON="$ROOT/.venv/bin/python"
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/veripo-gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/results" "$WORK/logs"
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
if [ "$DEVICE" = cpu ]; then
  export CUDA_VISIBLE_DEVICES="" DS_ACCELERATOR=cpu
fi
START=$(date +%s)
cd "$ROOT"

{
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  echo "== setup: SHAPE=$SHAPE DEVICE=$DEVICE PYTHON=$PYTHON commit=$commit"
  if ! "$PYTHON" -c "import deepspeed, av" 2>/dev/null; then
    if compgen -G "$WHEELS/*.whl" >/dev/null; then
      echo "installing $(cd "$WHEELS" && echo *.whl)"
      "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" \
        "$WHEELS"/*.whl 2>&1
      export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
    else
      echo "deepspeed or av is not importable and $WHEELS holds no wheels (fetch_wheels.sh makes them)"
    fi
  fi
} >"$WORK/logs/00_setup.log" 2>&1
cat "$WORK/logs/00_setup.log"
if [ "$DEVICE" = cuda ] && ! "$PYTHON" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  echo "DEVICE=cuda but $PYTHON's torch sees no GPU; the CPU dry run is SHAPE=tiny DEVICE=cpu" >&2
  exit 2
fi

: >"$WORK/steps.tsv"
step() {  # name, time limit (s)
  local name=$1 limit=$2 t0 left rc status
  t0=$(date +%s)
  left=$(( BUDGET - (t0 - START) ))
  if [ "$left" -lt $(( limit / 2 )) ]; then
    printf '%s\tskipped\t\t0\t%s\n' "$name" "$limit" >>"$WORK/steps.tsv"
    echo "$name: skipped (${left}s of the budget left)"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  timeout -k 10 "$limit" "$PYTHON" "$HERE/steps.py" "$name" --results "$WORK/results" --work "$WORK" \
    >"$WORK/logs/$name.log" 2>&1
  rc=$?
  case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$(( $(date +%s) - t0 ))" "$limit" >>"$WORK/steps.tsv"
  echo "$name: $status in $(( $(date +%s) - t0 ))s (limit ${limit}s)"
}
if [ "$DEVICE" = cuda ]; then
  step preflight 90; step fwd_bwd 120; step sampler 150; step grpo 180; step dpo 150; step engines 120
else
  # DeepSpeed builds its CPU shared-memory op (~90 s on 2 cores) the first time, into torch's extension cache
  step preflight 90; step fwd_bwd 90; step sampler 90; step grpo 240; step dpo 120; step engines 90
fi

for f in "$WORK"/logs/*.log; do echo "===== $(basename "$f" .log)"; cat "$f"; done >"$OUT/steps.log"
"$PYTHON" "$HERE/summary.py" --results "$WORK/results" --steps "$WORK/steps.tsv" --out "$OUT" \
  --seconds $(( $(date +%s) - START ))
