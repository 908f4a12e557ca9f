"""Every env in envs/ can be created: pip's resolver, at the envs' own pip version, resolves each env's pip
list against the package index for the machine ``conda env create`` would run it on, and finds no
conflict.

That machine is a GPU cluster node: Linux x86_64 with glibc 2.34 (RHEL/Rocky 9; vLLM's llguidance ships
wheels for glibc >= 2.31 only), CPython at the env's version. So the GPU wheels' metadata are resolved
(torch's CUDA dependencies, vllm's), not this machine's CPU builds. ``pip install --dry-run
--ignore-installed --report`` with those platform flags installs nothing; with ``fast-deps`` it reads
each wheel's metadata by HTTP range requests instead of downloading gigabytes of CUDA wheels.
``--isolated`` keeps this machine's pip configuration (local wheel folders, extra indexes, constraints)
out of the answer. A package the index has as source only (``SDIST_ONLY``) cannot be resolved under
platform flags: its metadata are built here from the sdist, and its requirements take its place in the
list, so a conflict with them still shows.

Needs the package index (``VERIPO_PIP_INDEX``, default PyPI): skipped, saying so, when it cannot be reached.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

import yaml

from conftest import ROOT
from test_envs import ENVS, env_pip, normalise

INDEX = os.environ.get("VERIPO_PIP_INDEX", "https://pypi.org/simple")
GLIBC_MINOR = 34
# pip takes the platforms literally: a manylinux_2_17 wheel needs its own tag in the list
PLATFORMS = [f"manylinux_2_{m}_x86_64" for m in range(GLIBC_MINOR, 4, -1)] + [
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
SDIST_ONLY = {"deepspeed"}


def env_versions(name: str) -> tuple[str, str]:
    """(python version, pip version) of an env's conda dependencies."""
    deps = yaml.safe_load((ROOT / "envs" / name).read_text())["dependencies"]
    conda = dict(d.split("=", 1) for d in deps if isinstance(d, str))
    return conda["python"], conda["pip"]


@pytest.fixture(scope="module")
def index_reachable() -> None:
    try:
        urllib.request.urlopen(f"{INDEX.rstrip('/')}/pip/", timeout=20).close()
    except OSError as exc:
        pytest.skip(f"the package index {INDEX} cannot be reached ({exc}): resolving the envs needs it "
                    "(set VERIPO_PIP_INDEX for a mirror)")


def pip_wheel(version: str, folder) -> str:
    """The pip release the envs install, as a wheel pip runs from (``python pip-X.whl/pip``)."""
    subprocess.run([sys.executable, "-m", "pip", "--isolated", "download", "--no-deps", "--only-binary=:all:",
                    "--index-url", INDEX, "-d", str(folder), f"pip=={version}"], check=True, capture_output=True)
    return str(next(folder.glob(f"pip-{version}-*.whl")))


def sdist_requirements(pip: str, line: str, folder) -> list[str]:
    """The requirements a source-only package declares (extras left out), from its metadata built here."""
    report = folder / f"{normalise(line.split('==')[0])}.json"
    subprocess.run([sys.executable, f"{pip}/pip", "--isolated", "--disable-pip-version-check", "install", "--dry-run",
                    "--no-deps", "--ignore-installed", "--report", str(report), "--index-url", INDEX, line],
                   check=True, capture_output=True, text=True, timeout=600)
    [item] = json.loads(report.read_text())["install"]
    return [r for r in item["metadata"].get("requires_dist", []) if "extra ==" not in r]


def resolve(env: str, work) -> dict:
    python, pip_version = env_versions(env)
    folder = work / env
    folder.mkdir()
    pip = pip_wheel(pip_version, folder)
    lines = []
    for line in env_pip(ROOT / "envs" / env):
        lines += sdist_requirements(pip, line, folder) if normalise(line.split("==")[0]) in SDIST_ONLY else [line]
    (folder / "requirements.txt").write_text("\n".join(lines) + "\n")
    platforms = [flag for p in PLATFORMS for flag in ("--platform", p)]
    proc = subprocess.run(
        [sys.executable, f"{pip}/pip", "--isolated", "--disable-pip-version-check", "install", "--dry-run",
         "--ignore-installed", "--report", str(folder / "report.json"), "--target", str(folder / "target"),
         "--python-version", python, *platforms, "--only-binary=:all:", "--use-feature=fast-deps",
         "--index-url", INDEX, "-r", str(folder / "requirements.txt")],
        capture_output=True, text=True, timeout=1200)
    report = json.loads((folder / "report.json").read_text()) if proc.returncode == 0 else None
    return {"returncode": proc.returncode, "stderr": proc.stderr, "report": report}


@pytest.fixture(scope="module")
def resolutions(index_reachable, tmp_path_factory) -> dict:
    """Every env resolved, all at once (each spends its time waiting on the index)."""
    work = tmp_path_factory.mktemp("resolve")
    with ThreadPoolExecutor(len(ENVS)) as pool:
        futures = {env: pool.submit(resolve, env, work) for env in sorted(ENVS)}
    return {env: f.result() for env, f in futures.items()}


@pytest.mark.slow
@pytest.mark.parametrize("env", sorted(ENVS))
def test_env_resolves_without_conflict(env, resolutions):
    result = resolutions[env]
    assert result["returncode"] == 0, f"envs/{env} does not resolve:\n" + result["stderr"][-3000:]
    chosen = {normalise(item["metadata"]["name"]): item["metadata"]["version"] for item in result["report"]["install"]}
    for line in env_pip(ROOT / "envs" / env):
        name, version = line.split("==")
        if normalise(name) in SDIST_ONLY:
            continue  # its requirements were resolved in its place
        assert chosen[normalise(name)] == version, f"envs/{env}: {line} resolved to {chosen[normalise(name)]}"
    if "torch" in chosen:  # the GPU build: its CUDA libraries came with it
        assert any(name.startswith("nvidia-") for name in chosen), f"envs/{env}: torch without CUDA libraries"


def test_source_only_packages_are_pinned_somewhere():
    pinned = {normalise(line.split("==")[0]) for env in ENVS for line in env_pip(ROOT / "envs" / env)}
    assert SDIST_ONLY <= pinned
